"""Head reconstruction: the K classifiers of a pruned model refitted to the original logits.

A redundant channel's partner can only stand in for it if the classifier weights may change.
:class:`HeadFit` accumulates, over batches, the least-squares normal equations of
``logit_k ~ pooled_k . w + b`` (float64, a tiny ridge) against the original model's logits: no
labels, no gradient steps, the extractor and the masks untouched.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ...core.stream import inference, model_device, stream
from ...data.base import MultiLabelDataset
from ...errors import HPNetError
from ...model import HPNet
from .apply import keep_index, prune_physical


class PrunedHeads:
    """The heads of ``model`` with the channels ``pruned`` removed, and their classifiers.

    ``pooled(z)`` gives what the K classifiers read, (B, K, C') over the C' kept channels of the
    full z; ``classifiers`` lists (w (K, C'), b (K,)) pairs: the original weights at the kept
    channels first, then the reconstructed ones once :func:`reconstruct_all` added them.
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

    def pooled(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.index.numel() == 0:     # no channel left: the logits are the biases
            return z.new_zeros(z.shape[0], self.model.config.num_attributes, 0)
        if self.all:
            return self.model.heads.pooled(z, context)
        if self.small is not None:
            return self.small.heads.pooled(z.index_select(1, self.index), context)
        return self.model.heads.pooled(z * self.keep.view(1, -1, 1, 1), context).index_select(2, self.index)

    def logits(self, z: torch.Tensor, context: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Logits (B, K) under every classifier pair; the heads run once."""
        pooled = self.pooled(z, context)
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


def reconstruct_all(model: HPNet, heads: list[PrunedHeads], fit: MultiLabelDataset, batch_size: int,
                     fit_images: int | None, progress: bool) -> None:
    """Add to every pruned head set the classifiers refitted on ``fit`` (one extractor pass)."""
    device = model_device(model)
    K = model.config.num_attributes
    todo = [h for h in heads if not h.all]      # nothing pruned: the original classifiers stay
    fits = [HeadFit(K, h.index.numel(), device=device) for h in todo]
    if todo:
        with inference(model):
            for x, _ in stream(fit, batch_size, device, fit_images, progress, "reconstructing heads"):
                z, context = model.encode(x)
                target = model.heads(z, context)[0]
                for h, f in zip(todo, fits):
                    f.add(h.pooled(z, context), target)
    for h, f in zip(todo, fits):
        h.classifiers.append(f.solve())
    for h in heads:
        if h.all:
            h.classifiers.append(h.classifiers[0])


def reconstruct_heads(small: HPNet, model: HPNet, kept: Sequence[int], data: MultiLabelDataset,
                      batch_size: int = 64, max_images: int | None = 1000, progress: bool = False) -> HPNet:
    """Refit the classifiers (w_k, b_k) of ``small`` (``model`` pruned physically to ``kept``) in
    place, so its logits match ``model``'s on ``data`` in the least-squares sense; returns ``small``."""
    index = keep_index(kept, model.config.channels).tolist()
    heads = PrunedHeads(model, tuple(sorted(set(range(model.config.channels)) - set(index))), physical=True)
    reconstruct_all(model, [heads], data, batch_size, max_images, progress)
    weight, bias = heads.classifiers[-1]
    with torch.no_grad():
        small.heads.weight.copy_(weight)
        small.heads.bias.copy_(bias)
    return small
