"""A trained run held ready to be looked at and perturbed, each perturbation a heads-only pass.

:class:`Workbench` keeps, for each network of a run (the run's own and, when ``RUN/plain`` holds
one, its plain-CNN baseline, ``Run.baseline()``), the features z of a fixed evaluation subset and
their logits, and what a person sees of the network (its :class:`~hpnet.operations.View`, from
other images). A :class:`~.perturbation.Perturbation` (registered operations in order, see
:mod:`.perturbation` for its JSON forms) is then one pass of the heads over the cached features:

    bench = Workbench.from_run("runs/demo", images=256)
    p = bench.perturbation({"operation": "scale", "channels": [3, 7], "alpha": 0.5})
    bench.apply(p)["measured"]        # per attribute: logit change, accuracy before and after, flips

Nothing here knows an operation by name (but the legacy form's reader): the prediction is each
operation's formula (``op.predict`` on the network's view; a composition in turn, see
:func:`.perturbation.predict`), the measurement the operation's heads-only function, the export its
``op.persist``, random trials ``op.draw`` over the families :data:`~hpnet.operations.OPERATIONS`
holds. Networks are named as every result names them (``Run.network_name``, relative to the run's
parent): "demo (attention)", "demo/plain (linear)".
"""
from __future__ import annotations

import dataclasses
import io
import os
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.moments import Moments
from ..core.stream import correct_counts, inference
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..operations import OPERATIONS, Operation
from ..operations.base import short
from ..ops.pruning import SCORERS, ScanInputs, ScanSettings, prunable, prune_physical
from ..predictability.human import SIZE_LEVELS
from ..results import PruningResult
from ..run import Run
from . import fires
from . import perturbation as perturbations
from .network import Network
from .perturbation import Perturbation

MAX_FLIPPED = 32            # flipped images listed by apply
PARTNERS = 5                # most correlated channels shown for a channel


class Workbench:
    """The networks of a run with their cached features; see the module's docstring.

    Thread-safe: every computation with a model holds one lock (the heads share their buffers).
    ``seed`` seeds the random trials; by default a fresh one from the OS (``self.seed`` keeps it).
    """

    def __init__(self, networks: Sequence[Network], data: MultiLabelDataset, name: str = "run",
                 semantic_order: Sequence[int] | None = None, seed: int | None = None):
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
        self._limits: torch.Tensor | None = None        # each channel's firing threshold, when first asked
        self.seed = secrets.randbits(63) if seed is None else int(seed)
        self.rng = np.random.default_rng(self.seed)
        moments = Moments()
        moments.add(self.main.z)
        self.correlation = moments.correlation().cpu()
        self.base_correct = {name: correct_counts(net.logits, self.targets) / count
                             for name, net in self.networks.items()}

    @classmethod
    def from_run(cls, run: str | Path | Run, images: int = 256, usage_images: int = 256,
                 batch_size: int = 128, progress: bool = False, seed: int | None = None) -> "Workbench":
        """The run's network (and its plain-CNN baseline, ``Run.baseline()``, when RUN/plain holds
        one) on the first ``images`` images of its evaluation split; the views from ``usage_images`` others."""
        run = Run.of(run)
        if not isinstance(images, int) or isinstance(images, bool) or images < 1:
            raise HPNetError(f"--images must be a positive integer, got {images!r}")
        split, data = run.eval_data(progress=progress)
        views = run.split("valid" if split == "test" else "train", progress)
        root = run.path.resolve().parent
        model = run.model("cpu")
        nets = [Network(run.network_name(root), model, data, views, images, usage_images, batch_size, run)]
        baseline = run.baseline() if model.has_masks else None
        if baseline is not None:
            nets.append(Network(baseline.network_name(root), baseline.model("cpu", needs_masks=False), data, views,
                                images, usage_images, batch_size, baseline))
        pruning = run.read(PruningResult)
        order = pruning.orders.get("semantic") if pruning is not None else None
        if order is None or sorted(order) != list(range(model.config.channels)):
            order = SCORERS.get("semantic")(ScanInputs(model, ScanSettings(), views))["semantic"]
        return cls(nets, data, run.path.resolve().name, order, seed)

    @classmethod
    def from_runs(cls, runs: Sequence[str | Path | Run], images: int = 256, usage_images: int = 256,
                  batch_size: int = 128, progress: bool = False, seed: int | None = None) -> "Workbench":
        """Several runs' networks side by side on the first ``images`` images of the first run's
        evaluation split (views from ``usage_images`` others), named relative to their common folder.
        The runs must predict the same attributes."""
        runs = [Run.of(r) for r in runs]
        if not runs:
            raise HPNetError("give at least one run")
        first = runs[0].model_config
        for run in runs[1:]:
            theirs = run.model_config
            if theirs.attribute_names != first.attribute_names:
                raise HPNetError(f"{run.path}: predicts {', '.join(theirs.attribute_names)}, but {runs[0].path} "
                                 f"predicts {', '.join(first.attribute_names)}; the networks must share attributes")
        split, data = runs[0].eval_data(progress=progress)
        views = runs[0].split("valid" if split == "test" else "train", progress)
        root = Path(os.path.commonpath([str(r.path.resolve().parent) for r in runs]))
        nets = [Network(run.network_name(root), run.model("cpu"), data, views, images,
                        usage_images, batch_size, run) for run in runs]
        names = [net.name for net in nets]
        if len(set(names)) < len(names):
            raise HPNetError(f"a run is named twice: {', '.join(names)}")
        return cls(nets, data, root.name, None, seed)

    # -- perturbations ------------------------------------------------------------------------

    def network(self, name) -> Network:
        if not isinstance(name, str) or name not in self.networks:
            raise HPNetError(f"network must be one of {', '.join(self.networks)}, got {short(name)}")
        return self.networks[name]

    def perturbation(self, spec) -> Perturbation:
        """A perturbation from its JSON form (see :mod:`.perturbation`); one-line errors."""
        if not isinstance(spec, dict):
            raise HPNetError("a perturbation must be a JSON object: {\"network\", \"operation\", ...its keys}")
        net = self.network(spec.get("network", self.main.name))
        rest = {k: v for k, v in spec.items() if k != "network"}
        return Perturbation(net.name, perturbations.parse_steps(rest, net.view, self.channel_choice))

    def attribute(self, name) -> int:
        if not isinstance(name, str) or name not in self.attributes:
            raise HPNetError(f"unknown attribute {short(name)}")
        return self.attributes.index(name)

    def channel(self, c) -> int:
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < self.channels:
            raise HPNetError(f"channel must be an id in 0..{self.channels - 1}, got {short(c)}")
        return c

    def channel_choice(self, value, name: str) -> list[int]:
        """The channel-set shortcuts: ``{"semantic_first": P}``, ``{"top_of": attribute, "count": N}``."""
        if isinstance(value, dict) and set(value) == {"semantic_first"}:
            P = value["semantic_first"]
            if not isinstance(P, int) or isinstance(P, bool) or not 0 <= P <= self.channels:
                raise HPNetError(f"semantic_first must be a count in 0..{self.channels}, got {short(P)}")
            return sorted(self.semantic_order[:P])
        if isinstance(value, dict) and set(value) in ({"top_of"}, {"top_of", "count"}):
            count = value.get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= self.channels:
                raise HPNetError(f"count must be in 1..{self.channels}, got {short(count)}")
            return sorted(self.top_channels(self.attribute(value["top_of"]), count))
        raise HPNetError(f"{name} must be a list of channel ids, {{\"semantic_first\": P}} or "
                         f"{{\"top_of\": \"<attribute>\", \"count\": N}}")

    def top_channels(self, k: int, count: int = 8) -> list[int]:
        """The ``count`` channels carrying most of attribute k's evidence on the run's network, strongest first."""
        return self.main.top_channels(k, count)

    def operations(self, networks: Sequence[str] | None = None) -> list[Operation]:
        """The registered operations that apply to every one of ``networks`` (default: all of them)."""
        views = [self.networks[n].view for n in (networks if networks is not None else self.networks)]
        return [op for _, op in OPERATIONS.items() if all(op.applies_to(v) for v in views)]

    def random_perturbation(self, network: str, blind: bool = False) -> Perturbation:
        """One operation for a trial: a family drawn uniformly among those that apply to ``network``
        (blind: to every network), then its ``op.draw``."""
        net = self.network(network)
        families = self.operations(None if blind else [network])
        op = families[int(self.rng.integers(len(families)))]
        return Perturbation(network, (perturbations.Step(op, op.draw(self.rng, net.view)),))

    # -- what a person sees, and the measurement ----------------------------------------------

    def cards(self, p: Perturbation) -> list:
        """What a person is shown of each operation of ``p`` (:class:`~hpnet.operations.Card`)."""
        net = self.networks[p.network]
        return perturbations.cards(net.view, net.own, p.steps)

    def describe(self, p: Perturbation) -> str:
        """``p`` in words: its cards' descriptions (``op.describe``, naming attributes where the family does)."""
        return "; ".join(card.description for card in self.cards(p)) or "no change"

    def predicted(self, p: Perturbation) -> list[dict]:
        """The formula's prediction per attribute (``op.predict``; in turn for several): ``change`` and ``size``."""
        net = self.networks[p.network]
        prediction = perturbations.predict(net.view, net.own, p.steps)
        return [{"attribute": a, "change": float(c), "size": float(s)}
                for a, c, s in zip(self.attributes, prediction.change.tolist(), prediction.size.tolist())]

    def measure(self, p: Perturbation) -> tuple[list[dict], list[dict]]:
        """The measured change per attribute on the cached images, and the images whose decision flipped."""
        net = self.networks[p.network]
        with self.lock:
            after = net.heads_on_cache(p.heads(net.model))
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
        """``{"perturbation", "cards", "predicted", "measured", "flipped_images", "seconds"}`` of ``p``."""
        start = time.perf_counter()
        measured, flipped = self.measure(p)
        return {"perturbation": p.to_json(), "cards": self.cards_json(p), "predicted": self.predicted(p),
                "measured": measured, "flipped_images": flipped, "seconds": time.perf_counter() - start}

    def cards_json(self, p: Perturbation, index: Sequence[int] | None = None) -> list[dict]:
        return [card.to_json(self.attributes, index) for card in self.cards(p)]

    def overview(self) -> dict:
        """Everything the page shows at first: the grid, weights, accuracies, orders, the operations."""
        main = self.main
        view = main.view
        return {"run": self.name, "networks": list(self.networks), "head": main.model.config.head,
                "has_masks": main.has_masks, "attributes": self.attributes, "channels": self.channels,
                "images": int(self.targets.shape[0]),
                "accuracy": {n: acc.tolist() for n, acc in self.base_correct.items()},
                "mean_accuracy": {n: float(acc.mean()) for n, acc in self.base_correct.items()},
                "grid": view.seen.tolist() if main.has_masks else None,
                "weights": view.weights.tolist(), "evidence": view.evidence().abs().tolist(),
                "semantic_order": self.semantic_order,
                "top_channels": {a: self.top_channels(k) for k, a in enumerate(self.attributes)},
                "roles": {name: _roles_json(net.view) for name, net in self.networks.items()},
                "operations": [self.operation_json(op) for _, op in OPERATIONS.items()
                               if any(op.applies_to(net.view) for net in self.networks.values())],
                "size_levels": list(SIZE_LEVELS)}

    def operation_json(self, op: Operation) -> dict:
        """A family as the page builds its controls: words, ``fields``, the networks it applies to."""
        return {"name": op.name, "title": op.title, "summary": op.summary, "shown": op.shown,
                "formula_text": op.formula_text, "fields": [dataclasses.asdict(f) for f in op.fields],
                "networks": [n for n, net in self.networks.items() if op.applies_to(net.view)]}

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
        grid, weights, evidence = net.view.seen, net.view.weights, net.view.evidence().abs()
        return {"attribute": name, "index": k, "accuracy": float(self.base_correct[net.name][k]),
                "kind": "mask" if net.has_masks else "activation",
                "top_channels": [{"channel": c, "mean_mask": float(grid[k, c]), "weight": float(weights[k, c]),
                                  "evidence": float(evidence[k, c])} for c in top],
                "samples": picks, "labels": [int(self.targets[i, k]) for i in picks],
                "map_size": list(z.shape[-2:]),
                "maps": {str(c): np.round(maps[:, c].numpy(), 4).tolist() for c in top[:channels]}}

    def channel_view(self, c: int) -> dict:
        """A channel's most correlated partners (Fig. 6) and its column of the grid and weights, each
        channel with its role (the face part where it fires, "none"; None when no parts are known);
        ``fires``: how the role was named (best part, its IoU, the rule), None without parts."""
        c = self.channel(c)
        r = self.correlation[c].clone()
        r[c] = 0.0
        partners = torch.argsort(r.abs(), descending=True)[:PARTNERS].tolist()
        view = self.main.view
        role = (lambda i: view.roles[i]) if view.roles is not None else (lambda i: None)
        d = view.dissection
        fires = None if d is None else {"best_part": d.channels[c]["best_part"], "iou": d.channels[c]["iou"],
                                        "quantile": d.quantile, "threshold": d.threshold, "images": d.images}
        return {"channel": c, "role": role(c), "fires": fires, "has_masks": self.main.has_masks,
                "partners": [{"channel": int(p), "r": float(r[p]), "role": role(int(p))} for p in partners],
                "mean_masks": view.seen[:, c].tolist(), "weights": view.weights[:, c].tolist()}

    def channel_maps(self, c: int, images: Sequence[int], attribute: str | None = None) -> fires.ChannelMaps:
        """Where channel c fires on the cached ``images`` (z_c upsampled, and its region above the
        dissection's threshold) and its mask for ``attribute`` (None: the mean over attributes)."""
        c, images = self.channel(c), [self.image_id(i) for i in images]
        k = self.attribute(attribute) if attribute is not None else None
        net = self.main
        with self.lock, inference(net.model):
            if self._limits is None:
                self._limits = fires.thresholds(net)
            return fires.channel_maps(net, c, images, k, self.images.shape[-1], self._limits)

    def channel_map_png(self, c: int, i: int, show: str, attribute: str | None = None) -> bytes:
        """Image i with where channel c fires (``show="fires"``: its activation, the region outlined)
        or with its mask for ``attribute`` (``show="mask"``; None: the mean over attributes), as PNG."""
        if show == "mask" and not self.main.has_masks:
            raise HPNetError(f"the {self.main.name} network has no attention masks (plain CNN): only where "
                             f"a channel fires can be shown")
        maps = self.channel_maps(c, [i], attribute)
        if show == "fires":
            return fires.overlay_png(self.images[maps.images[0]], maps.activation[0], maps.fires[0])
        return fires.overlay_png(self.images[maps.images[0]], maps.mask[0])

    def image_id(self, i) -> int:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < self.images.shape[0]:
            raise HPNetError(f"image must be in 0..{self.images.shape[0] - 1}, got {short(i)}")
        return i

    def image_png(self, i: int) -> bytes:
        i = self.image_id(i)
        buffer = io.BytesIO()
        Image.fromarray(self.images[i].permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        return buffer.getvalue()

    # -- export -------------------------------------------------------------------------------

    def export(self, p: Perturbation, out: str | Path) -> tuple[Path, int]:
        """The perturbed network as a run folder at ``out``, and its number of channels.

        The model is ``op.persist`` of each operation in turn; channels whose keep-mask is 0 are then
        cut out (``prune_physical``; kept masked where the backbone cannot remove them), the others
        keep their keep-mask value (1, or a scale)."""
        net = self.networks[p.network]
        if net.run is None:
            raise HPNetError("this workbench was not opened from a run folder: nothing to export from")
        with self.lock:
            model = p.persist(net.model)
            keep = model.operation_state().keep
            kept = torch.nonzero(keep != 0).flatten().tolist()
            if not kept:
                raise HPNetError("every channel is switched off: an exported model must keep at least one")
            if len(kept) < self.channels and prunable(model):
                model = prune_physical(model, kept)
        net.run.derive(model, out, perturbed_from=str(net.run.path.resolve()), kept_channels=kept,
                       perturbation=p.to_json())
        return Path(out), model.config.channels


def _roles_json(view) -> dict | None:
    """Where each channel of a view fires: ``{"parts", "role" (C,), "iou" (C,) or None}``; None
    when its images do not say where face parts lie."""
    if view.roles is None:
        return None
    iou = [c["iou"] for c in view.dissection.channels] if view.dissection is not None else None
    return {"parts": list(view.parts), "role": list(view.roles), "iou": iou}
