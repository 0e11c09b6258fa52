"""Semantic channel pruning (paper Fig. 3, 6, 7), its baselines, and physical pruning.

The operation acts on the C channels of z = f_f(x), the input of every attention head:

1. a C x C Pearson correlation of the channels over training images: by default of what each
   channel contributes to the classifiers' logits (``correlation="contributions"``,
   :func:`hpnet.analysis.correlation.contribution_correlation`), or of the features themselves
   over every position, the paper's Fig. 6 (``"features"``,
   :func:`hpnet.analysis.correlation.channel_correlation`);
2. :func:`semantic_order`: scan channel pairs by correlation, highest first; of a pair whose two
   channels are both still kept, prune the one with the lower L1 norm of the filter producing it
   (``rule="higher"``: the higher one, as the paper's experiment section says once);
3. :func:`pruning_curves`: mean accuracy after pruning the first P channels of an order, P = 0..C
   (Fig. 7), for the semantic order and the baselines: random (several seeds), filter L1 magnitude
   (Li et al. 2017) and least-attended channels first (mean mask value, Fig. 5). Each pruned model
   is evaluated as it is (heads unchanged) and, with a fit set, with its K classifiers
   reconstructed: (w_k, b_k) refitted by least squares so the pruned model's logits match the
   original model's on training images (:class:`HeadFit`; no labels, no gradient steps, the
   extractor and the masks untouched). A redundant channel's partner can only stand in for it if
   the classifier weights may change; reconstruction is what lets it;
4. :func:`prune_physical`: a smaller model without the pruned channels (last conv, its BatchNorm,
   every A_k in rows and columns, every w_k), equal in output to the masked model;
   :func:`reconstruct_heads` refits its classifiers.

:func:`prune_run` does all of it for a run folder and writes ``RUN/pruning.json``.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..analysis.correlation import channel_correlation, contribution_correlation
from ..analysis.masks import mean_mask_grid
from ..analysis.stream import correct_counts, image_count, inference, median_latency, model_device, stream
from ..data import DataSpec, default_eval_split, load_split, require_nonempty
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..io import atomic_write_json
from ..model import HPNet, ModelConfig, count_macs, count_parameters
from ..train import CHECKPOINT, RUN_FILE, load_run_model, read_run, resolve_device

METHODS = ("semantic", "random", "l1", "attention")
RULES = ("lower", "higher")
CORRELATIONS = ("contributions", "features")
RESULT_FILE = "pruning.json"

Order = Sequence[int]


# ----------------------------------------------------------------------------------------------
# channel scores and orders (first entry = first channel pruned)


def filter_l1(model: HPNet) -> torch.Tensor:
    """L1 norm of each output filter of the last conv, the one producing channel c of z: (C,)."""
    return model.extractor.last_conv.weight.detach().abs().sum(dim=(1, 2, 3)).float().cpu()


def semantic_order(corr: torch.Tensor | np.ndarray, l1: torch.Tensor | np.ndarray,
                   rule: str = "lower", use_abs: bool = False) -> list[int]:
    """Pruning order of the semantic scan (paper Fig. 3); every channel exactly once.

    Pairs (i < j) are scanned by correlation, highest first, ties in (i, j) order; signed
    correlation by default (two channels that move in opposite directions do not play the same
    role), ``use_abs=True`` ranks by |R|. NaN correlations are scanned last. For a pair whose two
    channels are both still kept, the one with the lower L1 norm is pruned (``rule="higher"``: the
    higher); on equal norms the later channel j. The scan stops once C - 1 channels are pruned; the
    one channel left (there is exactly one: any two kept channels would form a pair the scan saw
    with both kept) comes last.
    """
    r, norms = _check_scan_inputs(corr, l1, rule)
    C = r.shape[0]
    i, j = np.triu_indices(C, k=1)
    score = np.abs(r[i, j]) if use_abs else r[i, j]
    score = np.where(np.isnan(score), -np.inf, score)
    ranked = np.lexsort((j, i, -score))  # last key is primary: highest correlation first
    kept = np.ones(C, dtype=bool)
    pruned: list[int] = []
    for a, b in zip(i[ranked], j[ranked]):
        if len(pruned) == C - 1:
            break
        if kept[a] and kept[b]:
            victim = _victim(int(a), int(b), norms, rule)
            kept[victim] = False
            pruned.append(victim)
    return pruned + _remaining(kept, norms, rule)


def _check_scan_inputs(corr, l1, rule: str) -> tuple[np.ndarray, np.ndarray]:
    if rule not in RULES:
        raise HPNetError(f"--rule must be 'lower' or 'higher', got {rule!r}")
    r = torch.as_tensor(corr).detach().cpu().double().numpy()
    norms = torch.as_tensor(l1).detach().cpu().double().numpy()
    if r.ndim != 2 or r.shape[0] != r.shape[1] or norms.shape != (r.shape[0],):
        raise HPNetError(f"correlation must be (C, C) and L1 norms (C,), got {r.shape} and {norms.shape}")
    return r, norms


def _victim(a: int, b: int, norms: np.ndarray, rule: str) -> int:
    if rule == "lower":
        return a if norms[a] < norms[b] else b
    return a if norms[a] > norms[b] else b


def _remaining(kept: np.ndarray, norms: np.ndarray, rule: str) -> list[int]:
    rest = np.flatnonzero(kept)
    key = norms[rest] if rule == "lower" else -norms[rest]
    return [int(c) for c in rest[np.argsort(key, kind="stable")]]


def random_order(channels: int, seed: int) -> list[int]:
    """A uniformly random order, reproducible from ``seed``."""
    return torch.randperm(channels, generator=torch.Generator().manual_seed(int(seed))).tolist()


def l1_order(model: HPNet) -> list[int]:
    """Smallest filter L1 norm first (Li et al. 2017); ties by channel id."""
    return torch.argsort(filter_l1(model), stable=True).tolist()


def attention_order(mean_masks: torch.Tensor) -> list[int]:
    """Least attended first: mean over attributes of the (K, C) mean-mask grid (Fig. 5); ties by id."""
    return torch.argsort(torch.as_tensor(mean_masks).double().mean(0), stable=True).tolist()


def default_grid(channels: int, points: int = 17) -> list[int]:
    """About ``points`` pruned-channel counts evenly from 0 to C, always with 0, C // 2 and C."""
    steps = np.linspace(0, channels, points).round().astype(int).tolist()
    return sorted(set(steps) | {0, channels // 2, channels})


# ----------------------------------------------------------------------------------------------
# physical pruning


def prune_physical(model: HPNet, keep: Sequence[int] | torch.Tensor) -> HPNet:
    """A new, smaller HPNet holding only the channels ``keep`` of z (kept in ascending id order).

    Removed: the last conv's output filters, their BatchNorm entries, the rows and columns of every
    A_k, the entries of a_k and w_k (attention heads) or the columns of the linear head. The
    transformation buffers are copied; the new ``channel_keep`` is the old one at ``keep``. In the
    model's mode, the result equals the masked model (zeros in ``channel_keep`` elsewhere).
    """
    index = _keep_index(keep, model.config.channels)
    config = ModelConfig.from_dict(model.config.to_dict())
    config.widths = config.widths[:-1] + (len(index),)
    small = HPNet(config)
    small.load_tensors(_sliced_state(model, index), "prune_physical")
    param = next(model.parameters())
    return small.to(device=param.device, dtype=param.dtype).train(model.training)


def _keep_index(keep: Sequence[int] | torch.Tensor, channels: int) -> torch.Tensor:
    index = torch.as_tensor(keep, dtype=torch.long).flatten().unique(sorted=True)
    if index.numel() != torch.as_tensor(keep).numel():
        raise HPNetError("kept channels: a channel id is listed twice")
    if index.numel() == 0:
        raise HPNetError("kept channels: keep at least one channel")
    if index[0] < 0 or index[-1] >= channels:
        raise HPNetError(f"kept channels must be ids in 0..{channels - 1}, got {index.tolist()}")
    return index


def _sliced_state(model: HPNet, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The model's state with channel dimensions of z cut to ``index``."""
    names = {m: n for n, m in model.named_modules()}
    conv, norm = names[model.extractor.last_conv], names[model.extractor.last_norm]
    rows = {f"{conv}.weight", f"{conv}.bias", f"{norm}.weight", f"{norm}.bias",
            f"{norm}.running_mean", f"{norm}.running_var", "channel_keep"}
    columns = {"heads.mask_bias", "heads.weight", "heads.linear.weight"}
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if key in rows:
            value = value[index]
        elif key in columns:
            value = value[:, index]
        elif key == "heads.mask_weight":
            value = value[:, index][:, :, index]                         # (K, C', C')
        state[key] = value.clone()
    return state


# ----------------------------------------------------------------------------------------------
# pruning curves (Fig. 7)


def pruning_curves(model: HPNet, data: MultiLabelDataset, orders: dict[str, Order | list[Order]],
                   grid: Sequence[int], batch_size: int = 64, max_images: int | None = None,
                   physical: bool = True, progress: bool = False, fit: MultiLabelDataset | None = None,
                   fit_images: int | None = 1000) -> dict:
    """Accuracy after pruning the first P channels of each order, for every P in ``grid``.

    ``orders`` maps a method name to one order (a permutation of the C channel ids) or to a list of
    orders (e.g. random seeds: reported as mean and standard deviation over them, ddof = 1).
    The extractor runs once per batch; every distinct pruned set then runs only the heads, on z
    with the pruned channels removed (``physical=True``, cheaper: the heads cost grows with C^2)
    or zeroed (``physical=False``, the masked model itself). Both give the same logits.

    With ``fit`` (a data set, e.g. the training split), every pruned model is also evaluated with
    its classifiers reconstructed on the first ``fit_images`` images of it (:class:`HeadFit`):
    then ``"methods"`` holds the reconstructed curves and ``"methods_heads_unchanged"`` the plain
    ones; without ``fit``, ``"methods"`` holds the plain ones.

    Returns ``{"methods": {name: [[P, accuracy], ...] or [[P, mean, std], ...]},
    "per_attribute": {name: [[K accuracies] per P]}, "grid", "channels", "images", "attributes",
    "orders", "configurations", "reconstructed"}``; accuracies are means over attributes.
    """
    C = model.config.channels
    grid = _check_grid(grid, C)
    plans, pruned_sets = _plan(orders, grid, C)
    heads = [_PrunedHeads(model, s, physical) for s in pruned_sets]
    if fit is not None:
        _reconstruct_all(model, heads, fit, batch_size, fit_images, progress)
    counts, n = _count_correct(model, data, heads, batch_size, max_images, progress)
    acc = counts / max(n, 1)                                              # (V, S, K)
    result = {"methods": {}, "per_attribute": {}, "grid": grid, "channels": C, "images": n,
              "attributes": list(model.attribute_names), "configurations": len(pruned_sets),
              "reconstructed": fit is not None,
              "orders": {name: _order_field(value) for name, value in orders.items()}}
    if fit is not None:
        result["fit_images"] = image_count(fit, fit_images)
        result["methods_heads_unchanged"] = {}
    for name, (multi, plan) in plans.items():
        rows, per_attribute = _summarise(acc[-1][torch.tensor(plan)], grid, multi)  # (R, G, K)
        result["methods"][name] = rows
        result["per_attribute"][name] = per_attribute
        if fit is not None:
            result["methods_heads_unchanged"][name] = _summarise(acc[0][torch.tensor(plan)], grid, multi)[0]
    return result


def _check_grid(grid: Sequence[int], channels: int) -> list[int]:
    values = sorted({int(p) for p in grid})
    if not values or values[0] < 0 or values[-1] > channels:
        raise HPNetError(f"pruning grid must hold channel counts in 0..{channels}, got {list(grid)}")
    return values


def _as_orders(value) -> tuple[bool, list[list[int]]]:
    """(several orders?, the orders as lists of ints)."""
    value = value.tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else value
    multi = len(value) > 0 and not np.isscalar(value[0])
    seq = value if multi else [value]
    return multi, [[int(c) for c in (o.tolist() if hasattr(o, "tolist") else o)] for o in seq]


def _order_field(value) -> list:
    multi, seq = _as_orders(value)
    return seq if multi else seq[0]


def _plan(orders: dict, grid: list[int], channels: int) -> tuple[dict, list[tuple[int, ...]]]:
    """Per method, the index of the pruned set at each (order, P); pruned sets deduplicated."""
    index: dict[tuple[int, ...], int] = {}
    plans = {}
    for name, value in orders.items():
        multi, seq = _as_orders(value)
        for order in seq:
            if sorted(order) != list(range(channels)):
                raise HPNetError(f"pruning order {name!r} must list each of the {channels} channels once")
        plans[name] = (multi, [[index.setdefault(tuple(sorted(o[:p])), len(index)) for p in grid]
                               for o in seq])
    return plans, list(index)


def _summarise(acc: torch.Tensor, grid: list[int], multi: bool) -> tuple[list[list], list[list[float]]]:
    """acc (R, G, K) -> rows [[P, mean]] or [[P, mean, std]] and per-attribute means (G, K)."""
    means = acc.mean(-1)                                                  # (R, G)
    per_attribute = acc.mean(0).tolist()
    if not multi:
        return [[p, float(m)] for p, m in zip(grid, means[0])], per_attribute
    std = means.std(0) if means.shape[0] > 1 else torch.zeros(len(grid), dtype=means.dtype)
    return [[p, float(m), float(s)] for p, m, s in zip(grid, means.mean(0), std)], per_attribute


class _PrunedHeads:
    """The heads of ``model`` with the channels ``pruned`` removed, and their classifiers.

    ``pooled(z)`` gives what the K classifiers read, (B, K, C') over the C' kept channels of the
    full z; ``classifiers`` lists (w (K, C'), b (K,)) pairs: the original weights at the kept
    channels first, then the reconstructed ones once :func:`_reconstruct_all` added them.
    """

    def __init__(self, model: HPNet, pruned: tuple[int, ...], physical: bool):
        C = model.config.channels
        device = model_device(model)
        kept = sorted(set(range(C)) - set(pruned))
        self.index = torch.tensor(kept, dtype=torch.long, device=device)
        self.model, self.small = model, None
        self.all = len(kept) == C
        if physical and 0 < len(kept) < C:
            self.small = prune_physical(model, kept).eval()
        elif not physical and not self.all:
            self.keep = torch.zeros(C, device=device)
            self.keep[self.index] = 1.0
        weight, bias = model.heads.weight.detach(), model.heads.bias.detach()
        self.classifiers = [(weight.index_select(1, self.index), bias)]

    def pooled(self, z: torch.Tensor) -> torch.Tensor:
        if self.index.numel() == 0:     # no channel left: the logits are the biases
            return z.new_zeros(z.shape[0], self.model.config.num_attributes, 0)
        if self.all:
            return self.model.heads.pooled(z)
        if self.small is not None:
            return self.small.heads.pooled(z.index_select(1, self.index))
        return self.model.heads.pooled(z * self.keep.view(1, -1, 1, 1)).index_select(2, self.index)

    def logits(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, K) under every classifier pair; the heads run once."""
        pooled = self.pooled(z)
        return [(pooled * w).sum(-1) + b for w, b in self.classifiers]


class HeadFit:
    """Least-squares classifiers reproducing target logits from pooled features, over batches.

    For each attribute k it accumulates the normal equations of ``logit_k ~ pooled_k . w + b``
    in float64; :meth:`solve` returns (w (K, C'), b (K,)). A small ridge (``ridge`` times the mean
    diagonal of each attribute's feature Gram matrix, not on the intercept) keeps dead or
    duplicate channels from making the system singular.
    """

    def __init__(self, attributes: int, channels: int, ridge: float = 1e-4, device=None):
        self.gram = torch.zeros(attributes, channels + 1, channels + 1, dtype=torch.float64, device=device)
        self.cross = torch.zeros(attributes, channels + 1, dtype=torch.float64, device=device)
        self.ridge = ridge
        self.n = 0

    def add(self, pooled: torch.Tensor, target: torch.Tensor) -> None:
        """pooled (B, K, C'), target logits (B, K)."""
        x = torch.cat([pooled.double(), pooled.new_ones(*pooled.shape[:2], 1, dtype=torch.float64)], -1)
        x = x.transpose(0, 1)                                             # (K, B, C'+1)
        self.gram += x.transpose(1, 2) @ x
        self.cross += (x * target.double().T[..., None]).sum(1)
        self.n += pooled.shape[0]

    def solve(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.n == 0:
            raise HPNetError("head reconstruction: the fit set holds no images")
        C = self.gram.shape[-1] - 1
        gram = self.gram.clone()
        if C:
            scale = gram.diagonal(dim1=1, dim2=2)[:, :C].mean(-1).clamp(min=1e-12)    # (K,)
            idx = torch.arange(C, device=gram.device)
            gram[:, idx, idx] += self.ridge * scale[:, None]
        sol = torch.linalg.solve(gram, self.cross)                        # (K, C'+1)
        return sol[:, :C].float(), sol[:, C].float()


def _reconstruct_all(model: HPNet, heads: list[_PrunedHeads], fit: MultiLabelDataset, batch_size: int,
                     fit_images: int | None, progress: bool) -> None:
    """Add to every pruned head set the classifiers refitted on ``fit`` (one extractor pass)."""
    device = model_device(model)
    K = model.config.num_attributes
    todo = [h for h in heads if not h.all]      # nothing pruned: the original classifiers stay
    fits = [HeadFit(K, h.index.numel(), device=device) for h in todo]
    if todo:
        with inference(model):
            for x, _ in stream(fit, batch_size, device, fit_images, progress, "reconstructing heads"):
                z = model.features(x)
                target = model.heads(z)[0]
                for h, f in zip(todo, fits):
                    f.add(h.pooled(z), target)
    for h, f in zip(todo, fits):
        h.classifiers.append(f.solve())
    for h in heads:
        if h.all:
            h.classifiers.append(h.classifiers[0])


def _count_correct(model: HPNet, data: MultiLabelDataset, heads: list[_PrunedHeads], batch_size: int,
                   max_images: int | None, progress: bool) -> tuple[torch.Tensor, int]:
    """Correct decisions (V, S, K) of every pruned set under each of its V classifier pairs."""
    device = model_device(model)
    V = len(heads[0].classifiers) if heads else 1
    counts = torch.zeros(V, len(heads), model.config.num_attributes, dtype=torch.float64, device=device)
    with inference(model):
        for x, y in stream(data, batch_size, device, max_images, progress, "pruning curves"):
            z = model.features(x)
            for s, h in enumerate(heads):
                for v, logits in enumerate(h.logits(z)):
                    counts[v, s] += ((logits > 0).float() == y).sum(0).double()
    return counts.cpu(), image_count(data, max_images)


def reconstruct_heads(small: HPNet, model: HPNet, kept: Sequence[int], data: MultiLabelDataset,
                      batch_size: int = 64, max_images: int | None = 1000, progress: bool = False) -> HPNet:
    """Refit the classifiers (w_k, b_k) of ``small`` (``model`` pruned physically to ``kept``) in
    place, so its logits match ``model``'s on ``data`` in the least-squares sense; returns ``small``."""
    index = _keep_index(kept, model.config.channels).tolist()
    heads = _PrunedHeads(model, tuple(sorted(set(range(model.config.channels)) - set(index))), physical=True)
    _reconstruct_all(model, [heads], data, batch_size, max_images, progress)
    weight, bias = heads.classifiers[-1]
    with torch.no_grad():
        small.heads.weight.copy_(weight)
        small.heads.bias.copy_(bias)
    return small


def method_orders(model: HPNet, correlations: dict[str, torch.Tensor] | torch.Tensor,
                  mean_masks: torch.Tensor | None, methods: Sequence[str] = METHODS, rule: str = "lower",
                  seeds: int = 5, both_rules: bool = True, use_abs: bool = False, seed: int = 0,
                  correlation: str = "contributions") -> dict[str, list]:
    """The pruning order of each method.

    ``correlations`` maps a kind ("contributions", "features") to its C x C matrix (a bare matrix
    is taken as the ``correlation`` kind). "semantic" scans ``correlations[correlation]`` with
    ``rule``; with ``both_rules`` also ``semantic_<other rule>``; every other kind given adds
    ``semantic_<kind>`` (same rule), so the paper's scan and ours sit side by side.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise HPNetError(f"--method must be among {', '.join(METHODS)}, got {', '.join(bad)}")
    if not isinstance(correlations, dict):
        correlations = {correlation: correlations}
    if "semantic" in methods and correlation not in correlations:
        raise HPNetError(f"--correlation must be among {', '.join(correlations)}, got {correlation!r}")
    C, l1 = model.config.channels, filter_l1(model)
    orders: dict[str, list] = {}
    for m in methods:
        if m == "semantic":
            orders["semantic"] = semantic_order(correlations[correlation], l1, rule, use_abs)
            if both_rules:
                other = RULES[1 - RULES.index(rule)]
                orders[f"semantic_{other}"] = semantic_order(correlations[correlation], l1, other, use_abs)
            for kind, corr in correlations.items():
                if kind != correlation:
                    orders[f"semantic_{kind}"] = semantic_order(corr, l1, rule, use_abs)
        elif m == "random":
            orders["random"] = [random_order(C, seed + s) for s in range(max(1, seeds))]
        elif m == "l1":
            orders["l1"] = l1_order(model)
        elif m == "attention" and mean_masks is not None:
            orders["attention"] = attention_order(mean_masks)
    return orders


def prune_run(run_dir: str | Path, methods: Sequence[str] = METHODS, rule: str = "lower",
              grid: Sequence[int] | None = None, seeds: int = 5, split: str | None = None,
              max_images: int | None = None, corr_images: int | None = 2000, batch_size: int = 64,
              both_rules: bool = True, use_abs: bool = False, keep: int | None = None,
              save: str | Path | None = None, device: str = "auto", progress: bool = True,
              correlation: str = "contributions", reconstruct: bool = True,
              fit_images: int | None = 1000) -> dict:
    """Fig. 7 for a run: pruning curves of every method, written to ``RUN/pruning.json``.

    The correlations and the mean masks come from the first ``corr_images`` training images, the
    curves from the first ``max_images`` of ``split`` (default "test", or "valid" when test is
    empty). "semantic" scans the ``correlation`` kind ("contributions" or "features"); the other
    kind's scan is reported as ``semantic_<kind>``. With ``reconstruct`` (default) every pruned
    model's classifiers are refitted on the first ``fit_images`` training images and "methods"
    holds those curves, "methods_heads_unchanged" the plain ones. With ``keep=N`` the model is also
    pruned physically to the last N channels of the semantic order (reconstructed likewise);
    params, MACs, latency and accuracy before/after go under "physical", and with ``save=OUT``
    the smaller model is written to OUT as a run folder (``hpnet eval OUT`` works).
    """
    if correlation not in CORRELATIONS:
        raise HPNetError(f"--correlation must be among {', '.join(CORRELATIONS)}, got {correlation!r}")
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    model = load_run_model(run_dir).to(resolve_device(device))
    _check_keep(model, keep, save, run_dir)
    spec = run_data_spec(record, run_dir)
    train = load_split(spec, "train", progress)
    split = split or default_eval_split(spec)
    data = require_nonempty(load_split(spec, split, progress), spec, split)
    fit = require_nonempty(train, spec, "train") if reconstruct else None
    start = time.perf_counter()
    correlations = {}
    if "semantic" in methods or keep is not None:      # only the semantic scan reads them
        correlations = {"contributions": contribution_correlation(model, train, batch_size, corr_images, progress),
                        "features": channel_correlation(model, train, batch_size, corr_images, progress)}
    wants_masks = model.has_masks and "attention" in methods          # only that baseline reads them
    masks = mean_mask_grid(model, train, batch_size, corr_images, progress) if wants_masks else None
    orders = method_orders(model, correlations, masks, methods, rule, seeds, both_rules, use_abs,
                           correlation=correlation)
    scan_s = time.perf_counter() - start
    result = pruning_curves(model, data, orders, grid or default_grid(model.config.channels),
                            batch_size, max_images, progress=progress, fit=fit, fit_images=fit_images)
    result.update(rule=rule, use_abs=use_abs, correlation=correlation, split=split, run=str(run_dir),
                  backbone=model.config.backbone, correlation_split="train",
                  correlation_images=image_count(train, corr_images), random_seeds=max(1, seeds),
                  filter_l1=filter_l1(model).tolist(),
                  seconds={"correlation_and_orders": scan_s, "curves": time.perf_counter() - start - scan_s})
    result["majority_baseline"] = majority_baseline(record, data, max_images)
    if "attention" in methods and not model.has_masks:
        result["skipped"] = {"attention": "the model has linear heads (no attention masks)"}
    if keep is not None:
        order = orders.get("semantic") or semantic_order(correlations[correlation], filter_l1(model), rule, use_abs)
        kept = order[-int(keep):]
        small = prune_physical(model, kept)
        if fit is not None:
            reconstruct_heads(small, model, kept, fit, batch_size, fit_images)
        result["physical"] = physical_report(model, kept, data, batch_size, max_images, small=small)
        result["physical"]["reconstructed"] = fit is not None
        if save is not None:
            save_pruned(small, kept, record, run_dir, save,
                        {"method": "semantic", "rule": rule, "correlation": correlation,
                         "reconstructed": fit is not None})
            result["physical"]["saved_to"] = str(save)
    atomic_write_json(result, run_dir / RESULT_FILE)
    return result


def _check_keep(model: HPNet, keep: int | None, save: str | Path | None, run_dir: Path) -> None:
    """Fail before the long passes when the physical-pruning arguments cannot work."""
    if save is not None and keep is None:
        raise HPNetError("--save needs --keep N (how many channels the saved model keeps)")
    if keep is not None and not 1 <= int(keep) <= model.config.channels:
        raise HPNetError(f"--keep must be in 1..{model.config.channels}, got {keep}")
    trained = save is not None and (Path(save) / CHECKPOINT).exists()
    if save is not None and (trained or Path(save).resolve() == run_dir.resolve()):
        raise HPNetError(f"{save}: holds a trained run; save the pruned model to another folder")


def run_data_spec(record: dict, run_dir: Path) -> DataSpec:
    if not record.get("data"):
        raise HPNetError(f"{run_dir / RUN_FILE}: the run records no data spec; it was not trained "
                         f"with `hpnet train`, so its data cannot be found")
    return DataSpec.from_dict(record["data"])


def majority_baseline(record: dict, data: MultiLabelDataset, max_images: int | None = None) -> float | None:
    """Mean accuracy of always answering each attribute's majority class of the training labels."""
    rates = record.get("train_positive_rate") or []
    if len(rates) != data.targets.shape[1]:
        return None
    majority = (torch.tensor(rates) >= 0.5).float()
    targets = data.targets[:image_count(data, max_images)]
    return float((targets == majority).float().mean()) if len(targets) else None


def physical_report(model: HPNet, kept: Sequence[int], data: MultiLabelDataset, batch_size: int = 64,
                    max_images: int | None = None, latency_images: int = 32, repeats: int = 5,
                    small: HPNet | None = None) -> dict:
    """Params, MACs, median latency of one batch and mean accuracy, before and after pruning.

    ``small`` is the pruned model (e.g. reconstructed); by default ``model`` pruned to ``kept``."""
    small = small if small is not None else prune_physical(model, kept)
    kept = sorted(int(c) for c in kept)
    device = model_device(model)
    x = next(stream(data, latency_images, device))[0]
    report = {"kept_channels": kept, "channels_before": model.config.channels,
              "channels_after": small.config.channels, "image_size": int(x.shape[-1]),
              "latency_batch": int(x.shape[0]), "latency_repeats": repeats}
    for tag, net in (("before", model), ("after", small)):
        with inference(net):
            report[f"latency_s_{tag}"] = median_latency(lambda: net(x), repeats)
        report[f"params_{tag}"] = count_parameters(net)
        report[f"macs_{tag}"] = count_macs(net, int(x.shape[-1]))
        report[f"accuracy_{tag}"] = mean_accuracy(net, data, batch_size, max_images)
    masked = masked_model(model, kept, small)
    with inference(masked), inference(small):
        diff = (small(x).logits - masked(x).logits).abs().max()
    report["max_abs_logit_diff_vs_masked"] = float(diff) if x.shape[0] else 0.0
    return report


def masked_model(model: HPNet, kept: Sequence[int], small: HPNet | None = None) -> HPNet:
    """A copy of ``model`` with the channels outside ``kept`` masked by ``channel_keep``; with
    ``small`` (a physically pruned, e.g. reconstructed, model) it carries ``small``'s classifiers
    at the kept channels, so that it gives ``small``'s logits."""
    index = _keep_index(kept, model.config.channels)
    masked = copy.deepcopy(model)
    keep = torch.zeros_like(model.channel_keep)
    keep[index] = model.channel_keep[index]
    masked.set_channel_keep(keep)
    if small is not None:
        with torch.no_grad():
            masked.heads.weight.zero_()
            masked.heads.weight[:, index.to(masked.heads.weight.device)] = small.heads.weight.detach().to(
                masked.heads.weight)
            masked.heads.bias.copy_(small.heads.bias.detach())
    return masked


def mean_accuracy(model: HPNet, data: MultiLabelDataset, batch_size: int = 64,
                  max_images: int | None = None) -> float:
    """Accuracy averaged over attributes (the model's own forward pass)."""
    total = torch.zeros(model.config.num_attributes, dtype=torch.float64)
    with inference(model):
        for x, y in stream(data, batch_size, model_device(model), max_images):
            total += correct_counts(model(x).logits, y)
    return float(total.mean() / max(image_count(data, max_images), 1))


def save_pruned(small: HPNet, kept: Sequence[int], record: dict, run_dir: Path, out: str | Path,
                how: dict | None = None) -> HPNet:
    """Write the physically pruned model ``small`` (channels ``kept`` of the run's model) to ``out``
    as a run folder (model files + run.json).

    The run record is the original one (data spec, training settings, training positive rates)
    with the new model config, ``pruned_from``, ``kept_channels`` and ``pruning`` (``how``).
    """
    out = Path(out)
    small = small.cpu()
    small.save(out)
    new = {k: v for k, v in record.items() if k not in ("history", "masks")}
    new.update(model=small.config.to_dict(), status="done", pruned_from=str(Path(run_dir).resolve()),
               kept_channels=sorted(int(c) for c in kept), pruning=how or {})
    atomic_write_json(new, out / RUN_FILE)
    return small
