"""A trained run held ready to be looked at and perturbed, each perturbation a heads-only pass.

:class:`Workbench` keeps, for each network of a run (the run's own and, when ``RUN/plain`` holds
one, its plain-CNN baseline), the features z of a fixed evaluation subset and their logits, and
what a person sees of the network (the Fig. 5 mean-mask grid, the head weights, the mean channel
activations, from other images). A :class:`Perturbation` (channels switched off, a tone curve
g(M; n, beta) per attribute) is then one pass of the heads over the cached features:

    bench = Workbench.from_run("runs/demo", images=256)
    p = bench.perturbation({"off": [3, 7], "tone": {"all": {"n": 2, "beta": 0.2}}})
    bench.apply(p)["measured"]        # per attribute: logit change, accuracy before and after, flips

The formula prediction (:meth:`Workbench.predict`) is the human-side predictor of
:mod:`hpnet.predictability`, signed: the change of the attribute's evidence sum_c w_kc g(mbar_kc)
(mbar the Fig. 5 grid; for a plain CNN the mean activation, untransformed) over its total
sum_c |w_kc| g(mbar_kc). For a tone curve alone it is ``predict_transform``; its size (the summed
|change| of the per-channel evidence) for a pruning alone is ``predict_pruning``'s share.
"""
from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.moments import Moments
from ..core.stream import correct_counts, inference, stream
from ..core.tone import mask_transform
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..model import HPNet
from ..ops.pruning import SCORERS, ScanInputs, ScanSettings, prune_physical
from ..predictability import TRANSFORMS, channel_usage, pruning_operations
from ..results import PruningResult
from ..run import Run

N_LIMITS = (0.1, 10.0)      # the tone curve's exponent n on the page
BETA_LIMITS = (0.0, 1.0)
MAX_FLIPPED = 32            # flipped images listed by apply
PARTNERS = 5                # most correlated channels shown for a channel
PLAIN_DIR = "plain"


@dataclass(frozen=True)
class Perturbation:
    """Channels switched off and the tone curve (n, beta) per attribute, on one network."""

    network: str
    off: tuple[int, ...]
    n: tuple[float, ...]
    beta: tuple[float, ...]

    def to_json(self) -> dict:
        return {"network": self.network, "off": list(self.off), "n": list(self.n), "beta": list(self.beta)}


class Network:
    """One network with the cached features of the evaluation subset and its human-side views."""

    def __init__(self, name: str, model: HPNet, data: MultiLabelDataset, views: MultiLabelDataset,
                 images: int, usage_images: int, batch_size: int, run: Run | None = None):
        self.name, self.model, self.run = name, model.eval(), run
        zs, contexts, logits = [], [], []
        with inference(model):
            for x, _ in stream(data, batch_size, torch.device("cpu"), images):
                z, context = model.encode(x)
                zs.append(z.contiguous())
                contexts.append(context)
                logits.append(model.heads(z, context)[0])
        self.z = torch.cat(zs)
        self.context = torch.cat(contexts) if contexts[0] is not None else None
        self.usage = channel_usage(model, views, usage_images, batch_size)
        K = model.config.num_attributes
        self.own_n = model.heads.transform_n.detach().clone() if model.has_masks else torch.ones(K)
        self.own_beta = model.heads.transform_beta.detach().clone() if model.has_masks else torch.zeros(K)
        self.logits = torch.cat(logits).double()
        self.logit_std = self.logits.std(0) if self.logits.shape[0] > 1 else torch.ones(K, dtype=torch.float64)
        self.logit_std = torch.where(self.logit_std > 0, self.logit_std, torch.ones_like(self.logit_std))

    @property
    def has_masks(self) -> bool:
        return self.model.has_masks

    @property
    def own_tone(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The network's own (n, beta) per attribute, as a :class:`Perturbation` holds them."""
        return tuple(float(v) for v in self.own_n.tolist()), tuple(float(v) for v in self.own_beta.tolist())

    def seen(self) -> torch.Tensor:
        """What a person sees of each channel's weight in each decision (K, C): the Fig. 5 grid,
        or for a plain CNN the mean activation (the same for every attribute)."""
        if self.has_masks:
            return self.usage["mean_masks"]
        return self.usage["activation"].view(1, -1).expand_as(self.usage["weights"])

    def evidence(self) -> torch.Tensor:
        """mean mask (or activation) x |w| (K, C): what the pruning predictor reads."""
        return self.seen() * self.usage["weights"].abs()

    def logits_under(self, p: Perturbation) -> torch.Tensor:
        """Logits (N, K) of the cached images with ``p`` applied: the heads only."""
        C = self.model.config.channels
        keep = torch.ones(C)
        keep[list(p.off)] = 0.0
        z = self.z * keep.view(1, C, 1, 1)
        with inference(self.model):
            if not self.has_masks:
                return self.model.heads(z, None)[0].double()
            n, beta = torch.tensor([p.n]), torch.tensor([p.beta])
            return self.model.heads.logits_under(z, n, beta, self.context)[0].double()


class Workbench:
    """The networks of a run with their cached features; see the module's docstring.

    Thread-safe: every computation holds one lock (the heads share their buffers).
    """

    def __init__(self, networks: Sequence[Network], data: MultiLabelDataset, name: str = "run",
                 semantic_order: Sequence[int] | None = None, seed: int = 0):
        self.networks = {net.name: net for net in networks}
        self.main = networks[0]
        self.name = name
        self.attributes = list(self.main.model.attribute_names)
        self.channels = self.main.model.config.channels
        count = self.main.z.shape[0]
        self.images = data.images[:count] if hasattr(data, "images") else \
            torch.stack([data.image(i) for i in range(count)])
        self.targets = data.targets[:count].double()
        self.semantic_order = [int(c) for c in semantic_order] if semantic_order is not None \
            else list(range(self.channels))
        self.lock = threading.Lock()
        self.rng = np.random.default_rng(seed)
        moments = Moments()
        moments.add(self.main.z)
        self.correlation = moments.correlation().cpu()
        base = {name: net.logits for name, net in self.networks.items()}
        self.base_correct = {name: correct_counts(lg, self.targets) / count for name, lg in base.items()}

    @classmethod
    def from_run(cls, run: str | Path | Run, images: int = 256, usage_images: int = 256,
                 batch_size: int = 128, progress: bool = False) -> "Workbench":
        """The run's network (and its plain-CNN baseline in RUN/plain when there is one) on the
        first ``images`` images of its evaluation split; the views from ``usage_images`` others."""
        run = Run.of(run)
        if not isinstance(images, int) or isinstance(images, bool) or images < 1:
            raise HPNetError(f"--images must be a positive integer, got {images!r}")
        split, data = run.eval_data(progress=progress)
        views = run.split("valid" if split == "test" else "train", progress)
        nets = [Network(run.model_config.head, run.model("cpu"), data, views, images, usage_images, batch_size, run)]
        plain_path = run.file(PLAIN_DIR)
        if nets[0].has_masks and (plain_path / "model.safetensors").is_file():
            plain = Run.open(plain_path)
            model = plain.model("cpu", needs_masks=False)
            if model.attribute_names != nets[0].model.attribute_names:
                raise HPNetError(f"{plain_path}: the baseline was trained on {model.attribute_names}, "
                                 f"the run on {nets[0].model.attribute_names}")
            if model.config.channels != nets[0].model.config.channels:
                raise HPNetError(f"{plain_path}: the baseline has {model.config.channels} feature channels, the run "
                                 f"{nets[0].model.config.channels}; the same channels are switched off in both")
            nets.append(Network("plain", model, data, views, images, usage_images, batch_size, plain))
        pruning = run.read(PruningResult)
        order = pruning.orders.get("semantic") if pruning is not None else None
        if order is None or sorted(order) != list(range(nets[0].model.config.channels)):
            order = SCORERS.get("semantic")(ScanInputs(nets[0].model, ScanSettings(), views))["semantic"]
        return cls(nets, data, run.path.resolve().name, order)

    # -- perturbations ------------------------------------------------------------------------

    def perturbation(self, spec) -> Perturbation:
        """A perturbation from its JSON form (see the module's docstring); one-line errors."""
        if not isinstance(spec, dict):
            raise HPNetError("a perturbation must be a JSON object with \"network\", \"off\" and \"tone\"")
        unknown = sorted(set(spec) - {"network", "off", "tone", "n", "beta"})
        if unknown:
            raise HPNetError(f"unknown key {unknown[0]!r} in the perturbation (known: network, off, tone, n, beta)")
        network = spec.get("network", self.main.name)
        if not isinstance(network, str) or network not in self.networks:
            raise HPNetError(f"network must be one of {', '.join(self.networks)}, got {short(network)}")
        net = self.networks[network]
        off = self._channels_off(spec.get("off", []))
        n, beta = net.own_n.tolist(), net.own_beta.tolist()
        K = len(self.attributes)
        for key, values, limits in (("n", n, N_LIMITS), ("beta", beta, BETA_LIMITS)):
            if key in spec:                                      # the normalised form: one value per attribute
                given = spec[key]
                if not isinstance(given, list) or len(given) != K:
                    raise HPNetError(f"{key} must list one number per attribute ({K})")
                values[:] = [_number(v, key, limits, key) for v in given]
        if not net.has_masks and [n, beta] != [net.own_n.tolist(), net.own_beta.tolist()]:
            raise HPNetError(f"the {network} network has no attention masks: a tone curve cannot be set on it")
        tone = spec.get("tone") or {}
        if not isinstance(tone, dict):
            raise HPNetError("tone must be an object: {\"all\": {\"n\": 2, \"beta\": 0.2}, \"<attribute>\": {...}}")
        if tone and not net.has_masks:
            raise HPNetError(f"the {network} network has no attention masks: a tone curve cannot be set on it")
        for key in sorted(tone, key=lambda k: k != "all"):         # "all" first, attributes override it
            value = _tone_value(tone[key], key)
            targets = range(len(self.attributes)) if key == "all" else [self.attribute(key)]
            for k in targets:
                n[k], beta[k] = value
        return Perturbation(network, tuple(off), tuple(float(v) for v in n), tuple(float(v) for v in beta))

    def attribute(self, name) -> int:
        if not isinstance(name, str) or name not in self.attributes:
            raise HPNetError(f"unknown attribute {short(name)}")
        return self.attributes.index(name)

    def channel(self, c) -> int:
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < self.channels:
            raise HPNetError(f"channel must be an id in 0..{self.channels - 1}, got {short(c)}")
        return c

    def _channels_off(self, off) -> list[int]:
        if isinstance(off, dict):
            if set(off) == {"semantic_first"}:
                P = off["semantic_first"]
                if not isinstance(P, int) or isinstance(P, bool) or not 0 <= P <= self.channels:
                    raise HPNetError(f"semantic_first must be a count in 0..{self.channels}, got {short(P)}")
                return sorted(self.semantic_order[:P])
            if set(off) in ({"top_of"}, {"top_of", "count"}):
                count = off.get("count", 1)
                if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= self.channels:
                    raise HPNetError(f"count must be in 1..{self.channels}, got {short(count)}")
                return sorted(self.top_channels(self.attribute(off["top_of"]), count))
            raise HPNetError("off must be a list of channel ids, {\"semantic_first\": P} or "
                             "{\"top_of\": \"<attribute>\", \"count\": N}")
        if not isinstance(off, list):
            raise HPNetError("off must be a list of channel ids")
        ids = [self.channel(c) for c in off]
        if len(set(ids)) != len(ids):
            raise HPNetError("off: a channel is listed twice")
        return sorted(ids)

    def top_channels(self, k: int, count: int = 8) -> list[int]:
        """The ``count`` channels carrying most of attribute k's evidence (mean mask x |w|), strongest first."""
        return torch.argsort(self.main.evidence()[k], descending=True)[:count].tolist()

    def random_perturbation(self, network: str, pruning_only: bool = False) -> tuple[Perturbation, str]:
        """A perturbation of the family the predictability score uses (a random group of C/8
        channels or one channel switched off, or one of its tone curves for every attribute), and
        its description."""
        net = self.networks[network]
        ops = pruning_operations(self.channels, groups=16, singles=32, seed=int(self.rng.integers(1 << 30)))
        choices = [("off", op["channels"]) for op in ops]
        if net.has_masks and not pruning_only:
            choices += [("tone", t) for t in TRANSFORMS] * max(1, len(ops) // len(TRANSFORMS))
        kind, value = choices[int(self.rng.integers(len(choices)))]
        if kind == "off":
            return self.perturbation({"network": network, "off": list(value)}), describe_off(value)
        n, b = value
        return (self.perturbation({"network": network, "tone": {"all": {"n": n, "beta": b}}}),
                f"tone curve n = {n:g}, beta = {b:g} on every attribute's masks")

    # -- what a person sees, and the measurement ----------------------------------------------

    def predict(self, p: Perturbation) -> list[dict]:
        """The formula's prediction per attribute: signed ``change`` and its ``size``."""
        net = self.networks[p.network]
        w, seen = net.usage["weights"].double(), net.seen().double()
        K, C = w.shape
        keep = torch.ones(C, dtype=torch.float64)
        keep[list(p.off)] = 0.0
        if net.has_masks:
            before = w * mask_transform(seen, net.own_n.double().view(K, 1), net.own_beta.double().view(K, 1))
            after = keep * w * mask_transform(seen, torch.tensor(p.n, dtype=torch.float64).view(K, 1),
                                              torch.tensor(p.beta, dtype=torch.float64).view(K, 1))
        else:
            before, after = w * seen, keep * w * seen
        total = before.abs().sum(1)
        total = torch.where(total > 0, total, torch.ones_like(total))
        change = (after - before).sum(1) / total
        size = (after - before).abs().sum(1) / total
        return [{"attribute": a, "change": float(c), "size": float(s)}
                for a, c, s in zip(self.attributes, change.tolist(), size.tolist())]

    def measure(self, p: Perturbation) -> tuple[list[dict], list[dict]]:
        """The measured change per attribute on the cached images, and the images whose decision flipped."""
        net = self.networks[p.network]
        with self.lock:
            after = net.logits_under(p)
        before = net.logits
        diff = (after - before) / net.logit_std
        acc_after = correct_counts(after, self.targets) / self.targets.shape[0]
        acc_before = self.base_correct[p.network]
        flips = (after > 0) != (before > 0)
        rows = [{"attribute": a, "logit_change": float(d), "abs_logit_change": float(ad),
                 "accuracy_before": float(b), "accuracy_after": float(x), "accuracy_change": float(x - b),
                 "flipped": int(f)}
                for a, d, ad, b, x, f in zip(self.attributes, diff.mean(0).tolist(), diff.abs().mean(0).tolist(),
                                             acc_before.tolist(), acc_after.tolist(), flips.sum(0).tolist())]
        image, k = torch.nonzero(flips, as_tuple=True)
        flipped = [{"image": int(i), "attribute": self.attributes[int(a)], "before": int(before[i, a] > 0),
                    "after": int(after[i, a] > 0), "label": int(self.targets[i, a])}
                   for i, a in zip(image[:MAX_FLIPPED].tolist(), k[:MAX_FLIPPED].tolist())]
        return rows, flipped

    def apply(self, p: Perturbation) -> dict:
        """Prediction and measurement of ``p``: ``{"perturbation", "predicted", "measured", "flipped_images"}``."""
        start = time.perf_counter()
        measured, flipped = self.measure(p)
        return {"perturbation": p.to_json(), "predicted": self.predict(p), "measured": measured,
                "flipped_images": flipped, "seconds": time.perf_counter() - start}

    def overview(self) -> dict:
        """Everything the page shows at first: the grid, weights, accuracies, orders, limits."""
        main = self.main
        return {"run": self.name, "networks": list(self.networks), "head": main.model.config.head,
                "has_masks": main.has_masks, "attributes": self.attributes, "channels": self.channels,
                "images": int(self.targets.shape[0]),
                "accuracy": {n: acc.tolist() for n, acc in self.base_correct.items()},
                "mean_accuracy": {n: float(acc.mean()) for n, acc in self.base_correct.items()},
                "grid": main.usage["mean_masks"].tolist() if main.has_masks else None,
                "weights": main.usage["weights"].tolist(), "evidence": main.evidence().tolist(),
                "semantic_order": self.semantic_order,
                "top_channels": {a: self.top_channels(k) for k, a in enumerate(self.attributes)},
                "limits": {"n": list(N_LIMITS), "beta": list(BETA_LIMITS)},
                "size_levels": ["none", "small", "medium", "large"]}

    def attribute_view(self, name: str, samples: int = 6, channels: int = 4) -> dict:
        """An attribute's top channels and their mask maps (Fig. 4) over sample images (half of them
        positive where the cached images allow), or activation maps for a plain CNN."""
        k = self.attribute(name)
        net, top = self.main, self.top_channels(k)
        positive = torch.nonzero(self.targets[:, k] > 0.5).flatten().tolist()
        negative = torch.nonzero(self.targets[:, k] <= 0.5).flatten().tolist()
        half = samples // 2
        picks = positive[:max(half, samples - len(negative))] + negative[:samples]
        picks = sorted(picks[:samples])
        z = net.z[picks]
        with self.lock, inference(net.model):
            if net.has_masks:
                context = net.context[picks] if net.context is not None else None
                maps = net.model.masks(z, True, context)[:, k]                        # (S, C, H, W)
            else:
                maps = z / z.amax(dim=(2, 3), keepdim=True).clamp_min(1e-8)
        grid, weights = net.seen(), net.usage["weights"]
        return {"attribute": name, "index": k, "accuracy": float(self.base_correct[net.name][k]),
                "kind": "mask" if net.has_masks else "activation",
                "top_channels": [{"channel": c, "mean_mask": float(grid[k, c]), "weight": float(weights[k, c]),
                                  "evidence": float(net.evidence()[k, c])} for c in top],
                "samples": picks, "labels": [int(self.targets[i, k]) for i in picks],
                "map_size": list(z.shape[-2:]),
                "maps": {str(c): np.round(maps[:, c].numpy(), 4).tolist() for c in top[:channels]}}

    def channel_view(self, c: int) -> dict:
        """A channel's most correlated partners (Fig. 6) and its column of the grid and weights."""
        c = self.channel(c)
        r = self.correlation[c].clone()
        r[c] = 0.0
        partners = torch.argsort(r.abs(), descending=True)[:PARTNERS].tolist()
        return {"channel": c, "partners": [{"channel": int(p), "r": float(r[p])} for p in partners],
                "mean_masks": self.main.seen()[:, c].tolist(), "weights": self.main.usage["weights"][:, c].tolist()}

    def image_png(self, i: int) -> bytes:
        if not isinstance(i, int) or not 0 <= i < self.images.shape[0]:
            raise HPNetError(f"image must be in 0..{self.images.shape[0] - 1}, got {i!r}")
        buffer = io.BytesIO()
        Image.fromarray(self.images[i].permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        return buffer.getvalue()

    # -- export -------------------------------------------------------------------------------

    def export(self, p: Perturbation, out: str | Path) -> Path:
        """The perturbed network as a run folder at ``out``: physically pruned, its tone curve set."""
        net = self.networks[p.network]
        if net.run is None:
            raise HPNetError("this workbench was not opened from a run folder: nothing to export from")
        kept = [c for c in range(self.channels) if c not in set(p.off)]
        if not kept:
            raise HPNetError("every channel is switched off: an exported model must keep at least one")
        with self.lock:
            model = prune_physical(net.model, kept)
        if model.has_masks:
            model.set_transform(torch.tensor(p.n), torch.tensor(p.beta))
        net.run.derive(model, out, perturbed_from=str(net.run.path.resolve()), kept_channels=kept,
                       perturbation=p.to_json())
        return Path(out)


def describe_off(channels: Sequence[int]) -> str:
    ids = ", ".join(str(c) for c in channels)
    return f"switch off channel {ids}" if len(channels) == 1 else f"switch off channels {ids}"


def _tone_value(value, key: str) -> tuple[float, float]:
    if not isinstance(value, dict) or set(value) - {"n", "beta"}:
        raise HPNetError(f"tone[{key!r}] must be an object with \"n\" and \"beta\"")
    return (_number(value.get("n", 1.0), "n", N_LIMITS, f"tone[{key!r}]"),
            _number(value.get("beta", 0.0), "beta", BETA_LIMITS, f"tone[{key!r}]"))


def _number(v, name: str, limits: tuple[float, float], where: str) -> float:
    low, high = limits
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not low <= v <= high:
        prefix = f"{where}: " if where != name else ""
        raise HPNetError(f"{prefix}{name} must be a number in [{low:g}, {high:g}], got {short(v)}")
    return float(v)


def short(value) -> str:
    """A value as JSON shows it, cut to 40 characters (for one-line error messages)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
