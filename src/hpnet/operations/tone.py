"""The tone curve g(M; n, beta) on the attention masks (paper Eq. 11-12), per attribute.

What a person is shown, per attribute k: the curve set (n, beta) against the network's own, how
much of the attribute's evidence ``w_kc mbar_kc`` sits at low (< 0.5) and at high mean mask values
(signed shares of the whole), and the Fig. 5 row with the head weights the formula sums over. The
formula: ``change_k = sum_c w_kc (g(mbar_kc) - g_own(mbar_kc)) / sum_c |w_kc| g_own(mbar_kc)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.tone import mask_transform
from ..errors import HPNetError
from ..model import OperationState
from .base import Card, Field, Operation, Prediction, register, check_keys, checked_number, short
from .view import View

N_LIMITS = (0.1, 10.0)
BETA_LIMITS = (0.0, 1.0)
TRANSFORMS = ((0.5, 0.0), (2.0, 0.0), (4.0, 0.0), (1.0, 0.2), (1.0, 0.5), (0.5, 0.5), (2.0, 0.5), (4.0, 0.5))


@dataclass(frozen=True)
class ToneCurve:
    """The tone curve of every attribute (K values each): attributes not set keep the network's own."""

    n: tuple[float, ...]
    beta: tuple[float, ...]

    def to_json(self) -> dict:
        return {"n": list(self.n), "beta": list(self.beta)}


def curve(m: torch.Tensor, n: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """g(m; n_k, beta_k) on a (K, C) grid; the same (n, beta) for every row is computed as numbers."""
    if bool((n == n[0]).all() and (beta == beta[0]).all()):
        n0, b0 = float(n[0]), float(beta[0])
        return m if (n0, b0) == (1.0, 0.0) else mask_transform(m, n0, b0)
    return mask_transform(m, n.view(-1, 1), beta.view(-1, 1))


@register
class Tone(Operation):
    name = "tone"
    title = "Set the tone curve"
    summary = ("Pass every attention mask of the chosen attributes through the tone curve g(M; n, beta): n > 1 "
               "pushes mask values away from 0.5, beta lowers weak attention more than strong.")
    shown = ("For each attribute, the curve set against its own, and how much of its evidence (head weight x mean "
             "mask) sits at low and at high mean mask values, signed.")
    formula_text = ("change_k = sum_c w_kc (g(mbar_kc; n_k, beta_k) - g_own(mbar_kc)) / sum_c |w_kc| g_own(mbar_kc); "
                    "size_k = the same with |.| inside the sum")
    needs_masks = True
    shared_predictor = "mask_x_weight_x_activation"
    fields = (Field("attributes", "attributes", "attributes", default="all"),
              Field("n", "number", "n", N_LIMITS[0], N_LIMITS[1], 0.05, 1.0),
              Field("beta", "number", "beta", BETA_LIMITS[0], BETA_LIMITS[1], 0.01, 0.0))

    def parse(self, spec: dict, view: View) -> ToneCurve:
        """``{"n": x, "beta": y, "attributes": "all" | [names]}`` (one curve on those attributes),
        ``{"n": [K], "beta": [K]}`` (every attribute's), or ``{"curves": {"all" | name: {"n", "beta"}}}``
        (attributes override "all"); attributes not set keep the network's own curve."""
        self.check_applies(view)
        spec = check_keys(spec, ("n", "beta", "attributes", "curves"), "a tone operation")
        n, beta = view.n.tolist(), view.beta.tolist()
        if "curves" in spec:
            if set(spec) != {"curves"} or not isinstance(spec["curves"], dict):
                raise HPNetError("curves must be an object {\"all\" | attribute: {\"n\", \"beta\"}} and come alone")
            for key in sorted(spec["curves"], key=lambda k: k != "all"):
                value = check_keys(spec["curves"][key], ("n", "beta"), f"curves[{short(key)}]")
                self._set(n, beta, view, "all" if key == "all" else [key], value.get("n", 1.0),
                          value.get("beta", 0.0), f"curves[{short(key)}]: ")
        elif isinstance(spec.get("n"), list) or isinstance(spec.get("beta"), list):
            if "attributes" in spec:
                raise HPNetError("attributes goes with one n and one beta; lists of n and beta already give "
                                 "every attribute's curve")
            for key, values, limits in (("n", n, N_LIMITS), ("beta", beta, BETA_LIMITS)):
                if key in spec:
                    given = spec[key]
                    if not isinstance(given, list) or len(given) != len(view.attributes):
                        raise HPNetError(f"{key} must list one number per attribute ({len(view.attributes)})")
                    values[:] = [checked_number(v, key, *limits) for v in given]
        else:
            self._set(n, beta, view, spec.get("attributes", "all"), spec.get("n", 1.0), spec.get("beta", 0.0))
        return ToneCurve(tuple(float(v) for v in n), tuple(float(v) for v in beta))

    @staticmethod
    def _set(n: list, beta: list, view: View, attributes, n_value, beta_value, where: str = "") -> None:
        value = (checked_number(n_value, "n", *N_LIMITS, where), checked_number(beta_value, "beta", *BETA_LIMITS, where))
        if attributes == "all":
            targets = range(len(view.attributes))
        elif isinstance(attributes, list) and attributes and all(a in view.attributes for a in attributes):
            targets = [view.attribute(a) for a in attributes]
        else:
            raise HPNetError(f"{where}attributes must be \"all\" or a list of this network's attributes, "
                             f"got {short(attributes)}")
        for k in targets:
            n[k], beta[k] = value

    def apply(self, state: OperationState, params: ToneCurve) -> OperationState:
        if state.n is None:
            raise HPNetError("tone: this model has no attention masks, so it has no tone curve")
        return state._replace(n=torch.tensor(params.n, dtype=state.n.dtype),
                              beta=torch.tensor(params.beta, dtype=state.beta.dtype))

    def card(self, view: View, params: ToneCurve) -> Card:
        self.check_applies(view)
        evidence, total = view.evidence(), view.total()
        low = (evidence * (view.seen < 0.5)).sum(1) / total
        return Card(self.name, self.describe_for(params, view),
                    {"n": torch.tensor(params.n, dtype=torch.float64),
                     "beta": torch.tensor(params.beta, dtype=torch.float64),
                     "own_n": view.n, "own_beta": view.beta,
                     "evidence_low": low, "evidence_high": evidence.sum(1) / total - low,
                     "mean_mask": view.seen, "weight": view.weights},
                    {"n": "tone curve exponent n", "beta": "tone curve offset beta",
                     "own_n": "the network's own n", "own_beta": "the network's own beta",
                     "evidence_low": "evidence at mean mask < 0.5 (signed, share of the whole)",
                     "evidence_high": "evidence at mean mask >= 0.5 (signed, share of the whole)",
                     "mean_mask": "mean mask per channel (Fig. 5 row)", "weight": "head weight per channel"},
                    {"curves": [{"n": n, "beta": b, "points": curve_points(n, b)}
                                for n, b in sorted(set(zip(params.n, params.beta)))]})

    def formula(self, card: Card) -> Prediction:
        f = card.facts
        w, m = f["weight"], f["mean_mask"]
        before = curve(m, f["own_n"], f["own_beta"])
        total = (w.abs() * before).sum(1)
        total = torch.where(total > 0, total, torch.ones_like(total))
        delta = w * (curve(m, f["n"], f["beta"]) - before)
        return Prediction(delta.sum(1) / total, delta.abs().sum(1) / total)

    def describe(self, params: ToneCurve) -> str:
        pairs = set(zip(params.n, params.beta))
        if len(pairs) == 1:
            n, b = pairs.pop()
            return f"tone curve n = {n:g}, beta = {b:g} on every attribute's masks"
        return "tone curve " + "; ".join(f"n = {n:g}, beta = {b:g} on attribute {k}"
                                         for k, (n, b) in enumerate(zip(params.n, params.beta)))

    def describe_for(self, params: ToneCurve, view: View) -> str:
        """In words with the attributes' names, naming only those whose curve differs from their own."""
        changed = [(a, n, b) for a, n, b, n0, b0 in zip(view.attributes, params.n, params.beta, view.n.tolist(),
                                                        view.beta.tolist()) if (n, b) != (n0, b0)]
        if not changed:
            return "the network's own tone curve"
        if len(changed) == len(view.attributes) and len({(n, b) for _, n, b in changed}) == 1:
            return self.describe(params)
        return "; ".join(f"tone curve n = {n:g}, beta = {b:g} on {a}'s masks" for a, n, b in changed)

    def draw(self, rng: np.random.Generator, view: View) -> ToneCurve:
        n, b = TRANSFORMS[int(rng.integers(len(TRANSFORMS)))]
        return self.everywhere(view, n, b)

    def scored(self, view: View, settings) -> list[ToneCurve]:
        return [self.everywhere(view, n, b) for n, b in settings.transforms]

    @staticmethod
    def everywhere(view: View, n: float, beta: float) -> ToneCurve:
        K = len(view.attributes)
        return ToneCurve((float(n),) * K, (float(beta),) * K)

    def predictors(self, view: View) -> dict[str, View]:
        return {"mask_x_weight": view,
                "mask_x_weight_x_activation": view.replace(weights=view.weights * view.activation.view(1, -1))}


def curve_points(n: float, beta: float, points: int = 21) -> list[list[float]]:
    """(M, g(M)) at ``points`` values of M in [0, 1], for drawing the curve."""
    m = torch.linspace(0, 1, points, dtype=torch.float64)
    return [[round(a, 4), round(b, 4)] for a, b in zip(m.tolist(), mask_transform(m, n, beta).tolist())]

