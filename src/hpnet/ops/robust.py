"""Robustness to input noise under the intentional attention mask transformation (Fig. 8, Eq. 11-13).

Gaussian noise of standard deviation sigma is added to images scaled to [0, 1] (not clipped unless
``clip=True``), and the accuracy is measured for every (n, beta) of g(M; n, beta) (Eq. 11-12) in
the classifiers of Eq. 13; n = 1, beta = 0 is the network without transformation.

The comparison is paired: one standard normal draw eps per image (seeded) serves every noise level
(the noise at level sigma is sigma * eps) and every (n, beta). For each noisy batch the extractor
runs once, and the heads form each mask once and pool it under every (n, beta)
(``AttentionHeads.logits_under``). The model's own transformation is not used or changed.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .. import checks
from ..core.stream import image_count, inference, model_device, stream
from ..data import parse_splits
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..model import HPNet
from ..results import RobustnessResult

NS = (1.0, 2.0, 4.0)
BETAS = (0.0, 0.2, 0.5)
NOISE_STDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)

Number = float | torch.Tensor


def robustness_sweep(model: HPNet, data: MultiLabelDataset, ns: Sequence[float] = NS,
                     betas: Sequence[float] = BETAS, noise_stds: Sequence[float] = NOISE_STDS,
                     clip: bool = False, seed: int = 0, batch_size: int = 64,
                     max_images: int | None = None, progress: bool = False) -> dict:
    """Fig. 8: mean accuracy for every (n, beta, noise std); a model with linear heads allows only
    n = 1, beta = 0.

    Returns ``{"results": [{"n", "beta", "noise_std", "accuracy", "per_attribute": [K]}, ...],
    "ns", "betas", "noise_stds", "clip", "seed", "images", "attributes"}``; results are ordered by
    noise std, then n, then beta.
    """
    pairs = [(float(n), float(b)) for n in ns for b in betas]
    stds = _check_stds(noise_stds)
    acc = sweep_accuracy(model, data, pairs, stds, clip, seed, batch_size, max_images, progress)
    results = [{"n": n, "beta": b, "noise_std": std, "accuracy": float(acc[s, t].mean()),
                "per_attribute": acc[s, t].tolist()}
               for s, std in enumerate(stds) for t, (n, b) in enumerate(pairs)]
    return {"results": results, "ns": [float(n) for n in ns], "betas": [float(b) for b in betas],
            "noise_stds": stds, "clip": clip, "seed": seed, "images": image_count(data, max_images),
            "attributes": list(model.attribute_names)}


def _check_stds(noise_stds: Sequence[float]) -> list[float]:
    stds = [float(s) for s in noise_stds]
    if not stds or min(stds) < 0:
        raise HPNetError(f"--noise must be non-negative standard deviations, got {list(noise_stds)}")
    return stds


def sweep_accuracy(model: HPNet, data: MultiLabelDataset, transforms: Sequence[tuple[Number, Number]],
                   noise_stds: Sequence[float], clip: bool = False, seed: int = 0, batch_size: int = 64,
                   max_images: int | None = None, progress: bool = False) -> torch.Tensor:
    """Per-attribute accuracy (S, T, K) for each noise std and each (n, beta) (numbers or (K,) tensors)."""
    _check_transforms(model, transforms)
    device = model_device(model)
    K = model.config.num_attributes
    counts = torch.zeros(len(noise_stds), len(transforms), K, dtype=torch.float64, device=device)
    gen = torch.Generator().manual_seed(seed)
    n_all = torch.stack([torch.as_tensor(n, dtype=torch.float32).expand(K) for n, _ in transforms])
    beta_all = torch.stack([torch.as_tensor(b, dtype=torch.float32).expand(K) for _, b in transforms])
    with inference(model):
        for x, y in stream(data, batch_size, device, max_images, progress, "noise sweep"):
            eps = torch.randn(x.shape, generator=gen).to(device)  # drawn as evaluation.predict draws
            for s, std in enumerate(noise_stds):
                z, context = model.encode(_noisy(x, eps, std, clip))
                logits = _logits_under(model, z, context, n_all, beta_all)     # (T, B, K)
                counts[s] += ((logits > 0).float() == y).sum(1).double()
    return (counts / max(image_count(data, max_images), 1)).cpu()


def _logits_under(model: HPNet, z: torch.Tensor, context: torch.Tensor | None, n: torch.Tensor,
                  beta: torch.Tensor) -> torch.Tensor:
    """Logits (T, B, K) for every transformation, the masks formed once (linear heads: T copies)."""
    if model.has_masks:
        return model.heads.logits_under(z, n, beta, context)
    return model.heads(z, context)[0].expand(n.shape[0], -1, -1)


def _noisy(x: torch.Tensor, eps: torch.Tensor, std: float, clip: bool) -> torch.Tensor:
    x = x + std * eps if std > 0 else x
    return x.clamp(0.0, 1.0) if clip else x


def _check_transforms(model: HPNet, transforms: Sequence[tuple[Number, Number]]) -> None:
    if model.has_masks:
        return
    identity = all(bool((torch.as_tensor(n) == 1).all() and (torch.as_tensor(b) == 0).all())
                   for n, b in transforms)
    if not identity:
        raise HPNetError("mask transformation needs attention heads; this model has linear heads "
                         "(use --n 1 --beta 0)")


# ----------------------------------------------------------------------------------------------
# per-attribute selection


def select_transform(model: HPNet, valid_data: MultiLabelDataset, test_data: MultiLabelDataset,
                     noise_std: float = 0.3, ns: Sequence[float] = NS, betas: Sequence[float] = BETAS,
                     clip: bool = False, seed: int = 0, batch_size: int = 64,
                     max_images: int | None = None, progress: bool = False) -> dict:
    """Choose (n, beta) per attribute on validation data at ``noise_std``; set it on the model.

    The identity (1, 0) is always a candidate and wins ties, so the choice is never worse than no
    transformation on the validation data. Test accuracy (same noise level) is reported with the
    chosen transformation and with the identity. Returns ``{"n": (K,) tensor, "beta": (K,) tensor,
    "noise_std", "valid": {...}, "test": {...}, "chosen": [{"name", "n", "beta"}]}``; the model keeps
    the chosen transformation.
    """
    if not model.has_masks:
        raise HPNetError("mask transformation needs attention heads; this model has linear heads")
    pairs = _candidates(ns, betas)
    valid = sweep_accuracy(model, valid_data, pairs, [noise_std], clip, seed, batch_size, max_images,
                           progress)[0]                                   # (T, K)
    best = valid.argmax(0)                                                # first maximum: identity on ties
    n = torch.tensor([pairs[i][0] for i in best.tolist()])
    beta = torch.tensor([pairs[i][1] for i in best.tolist()])
    test = sweep_accuracy(model, test_data, [(n, beta), (1.0, 0.0)], [noise_std], clip, seed,
                          batch_size, max_images, progress)[0]            # (2, K)
    model.set_transform(n, beta)
    chosen_valid = valid.gather(0, best[None])[0]
    return {"n": n, "beta": beta, "noise_std": float(noise_std), "candidates": [list(p) for p in pairs],
            "valid": _comparison(chosen_valid, valid[0], image_count(valid_data, max_images)),
            "test": _comparison(test[0], test[1], image_count(test_data, max_images)),
            "chosen": [{"name": a, "n": float(nk), "beta": float(bk)}
                       for a, nk, bk in zip(model.attribute_names, n, beta)]}


def _candidates(ns: Sequence[float], betas: Sequence[float]) -> list[tuple[float, float]]:
    pairs = [(1.0, 0.0)]
    pairs += [(float(n), float(b)) for n in ns for b in betas if (float(n), float(b)) != (1.0, 0.0)]
    return pairs


def _comparison(selected: torch.Tensor, identity: torch.Tensor, images: int) -> dict:
    return {"accuracy_selected": float(selected.mean()), "accuracy_identity": float(identity.mean()),
            "per_attribute_selected": selected.tolist(), "per_attribute_identity": identity.tolist(),
            "images": images}


# ----------------------------------------------------------------------------------------------
# all of it


@dataclass
class RobustSettings:
    """What ``hpnet robust`` does (defaults are the command line's): accuracy for every (n, beta)
    in ``ns`` x ``betas`` and every noise std in ``noise_stds`` (``clip``: noisy images clipped to
    [0, 1]), on the first ``max_images`` images of ``split`` (default: the run's evaluation split).
    ``select``: also choose (n, beta) per attribute on validation data at ``select_noise_std``
    (default: the middle noise level)."""

    ns: Sequence[float] = field(default=NS, metadata={
        "flag": "--n", "help": "tone curve exponents n (default {default})"})
    betas: Sequence[float] = field(default=BETAS, metadata={
        "flag": "--beta", "help": "suppression values beta (default {default})"})
    noise_stds: Sequence[float] = field(default=NOISE_STDS, metadata={
        "flag": "--noise", "help": "Gaussian noise std on [0, 1] images (default {default})"})
    clip: bool = field(default=False, metadata={"flag": "--clip", "help": "clip noisy images to [0, 1]"})
    select: bool = field(default=False, metadata={
        "flag": "--select", "help": "also pick (n, beta) per attribute on validation data and report test accuracy"})
    select_noise_std: float | None = None
    split: str | None = field(default=None, metadata={
        "flag": "--split", "help": "evaluation split (default test, or valid when empty)"})
    max_images: int | None = field(default=None, metadata={
        "flag": "--max-images", "help": "evaluate on at most N images"})
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        self.ns = checks.numbers(self.ns, "--n", 0, low_open=True)
        self.betas = checks.numbers(self.betas, "--beta", 0, 1)
        self.noise_stds = checks.numbers(self.noise_stds, "--noise", 0)
        checks.flag(self.clip, "--clip")
        checks.flag(self.select, "--select")
        checks.number(self.select_noise_std, "select_noise_std", 0, optional=True)
        if self.split is not None:
            parse_splits(self.split)
        checks.count(self.max_images, "--max-images", optional=True)
        checks.count(self.batch_size, "batch_size")
        checks.seed(self.seed, "seed")


def robustness(model: HPNet, data: MultiLabelDataset, settings: RobustSettings | None = None,
               valid: MultiLabelDataset | None = None, progress: bool = False) -> RobustnessResult:
    """Fig. 8 for ``model`` on ``data``; with ``settings.select`` the per-attribute (n, beta) is
    chosen on ``valid`` (``data`` itself when None) and reported under ``selection``; the model
    then keeps the chosen transformation. ``run``, ``split``, ``majority_baseline`` and the
    selection's split names are the caller's to fill."""
    s = settings or RobustSettings()
    result = RobustnessResult(**robustness_sweep(model, data, s.ns, s.betas, s.noise_stds, s.clip, s.seed,
                                                 s.batch_size, s.max_images, progress),
                              backbone=model.config.backbone)
    if s.select:
        stds = sorted(s.noise_stds)
        noise_std = stds[len(stds) // 2] if s.select_noise_std is None else float(s.select_noise_std)
        chosen = select_transform(model, valid if valid is not None else data, data, noise_std, s.ns, s.betas,
                                  s.clip, s.seed, s.batch_size, s.max_images, progress)
        chosen.update(n=chosen["n"].tolist(), beta=chosen["beta"].tolist())
        result.selection = chosen
    return result
