"""The network: feature extractor, channel keep-mask and heads, with save/load (safetensors + JSON)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import checks
from ..errors import HPNetError
from ..io import atomic_save_tensors, atomic_write_json, load_tensors, read_json
from .backbones import BACKBONES
from .config import ModelConfig
from .custom import MODULE, ModuleExtractor, import_path
from .heads import build_heads


class Output(NamedTuple):
    logits: torch.Tensor                 # (B, K)
    mask_l1: torch.Tensor                # scalar, ||M||_1 normalised as config.l1_norm says
    masks: torch.Tensor | None = None    # (B, K, C, H, W) raw masks, only when asked for


class OperationState(NamedTuple):
    """What operations change on a trained network without retraining (copies, not views)."""

    keep: torch.Tensor                   # (C,) channel keep-mask: 1 kept, 0 pruned, other values scale
    n: torch.Tensor | None               # (K,) tone curve exponent per attribute (None: no masks)
    beta: torch.Tensor | None            # (K,) tone curve offset per attribute


# inference on CPU: bytes of the features z of one extractor call (a core's L2 cache holds its
# activations); the paper's extractor at 64x64 (2 MB of z per image), 2 threads: 10.0 ms per image
# at 32 images per call, 7.0 at 8, 5.3 at 4, 5.1 at 2, 5.7 at 1
EXTRACT_CHUNK_BYTES = 4 << 20


class HPNet(nn.Module):
    """Feature extractor + K attention-masked binary classifiers, with operation state.

    ``channel_keep`` (C,) is 1 for kept channels and 0 for pruned ones (semantic pruning sets it);
    the per-attribute transformation lives in ``heads.transform_n`` / ``heads.transform_beta``.
    """

    def __init__(self, config: ModelConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = config
        C = config.channels
        if backbone is not None and config.backbone != MODULE:
            raise HPNetError(f"a backbone module is given, but the config's backbone is {config.backbone!r}; "
                             f"use HPNet.from_backbone")
        self.extractor = ModuleExtractor(config, backbone) if backbone is not None \
            else BACKBONES.get(config.backbone).make(config)
        self.heads = build_heads(config)
        self.register_buffer("channel_keep", torch.ones(C))

    @classmethod
    def from_backbone(cls, module: nn.Module, channels: int, attributes: list[str], head: str = "attention",
                      kwargs: dict | None = None, **settings) -> "HPNet":
        """An HPNet on your own backbone: ``module`` (an ``nn.Module`` mapping images (B, 3, S, S) to
        features (B, ``channels``, H, W); used itself, with its weights), ``attributes`` the names
        of the K attributes, ``head`` a head family, ``settings`` more ModelConfig fields.

        The config records the module's class as "package.module:Class" and ``kwargs``, the JSON
        keywords that rebuild it as ``Class(**kwargs)``, so a saved model or run folder reopens where
        that class is importable. Physical pruning needs the module to declare ``last_conv`` (see
        :mod:`hpnet.model.custom`); without it channels are pruned masked.
        """
        if not isinstance(module, nn.Module):
            raise HPNetError(f"from_backbone needs an nn.Module, got {type(module).__name__}")
        checks.count(channels, "channels")
        config = ModelConfig(attributes, backbone=MODULE, widths=(channels,), head=head, module=import_path(module),
                             module_kwargs=dict(kwargs or {}), **settings)
        return cls(config, module)

    @property
    def attribute_names(self) -> list[str]:
        return self.config.attribute_names

    @property
    def has_masks(self) -> bool:
        return self.heads.has_masks

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """z = f_f(x) with pruned channels zeroed: (B, C, H, W).

        On CPU the convolutions run on channels-last input (oneDNN's fast layout; about 30% more
        training throughput for the strided backbone), so z may be channels-last too.
        """
        return self.encode(x)[0]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z, context): the features and, for heads that read them (``heads.needs_context``), the
        previous block's output average-pooled to z's size (None otherwise). Pruning never removes
        a context channel. Every head call takes both: ``model.heads(z, context)``.

        For inference on CPU (eval mode, no gradients) the extractor runs on chunks of images whose
        features take about EXTRACT_CHUNK_BYTES (where the widest layer at full resolution could
        exceed it, the first image alone sets the size): the same features (BatchNorm uses its
        running statistics), the paper's extractor at 64x64 and a batch of 32 about 1.5x as fast
        as in one call."""
        parts = list(self._encoded(x))
        if len(parts) == 1:
            return parts[0]
        z = torch.cat([p[0] for p in parts])
        return z, None if parts[0][1] is None else torch.cat([p[1] for p in parts])

    def _encoded(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(z, context) of ``x`` in one piece or, for CPU inference, of each chunk of images in turn
        (see :meth:`encode`)."""
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        most = max(self.config.widths) * x.shape[-2] * x.shape[-1] * x.element_size() * x.shape[0]
        if (x.device.type != "cpu" or x.shape[0] < 2 or torch.is_grad_enabled() or self.extractor.training
                or most <= EXTRACT_CHUNK_BYTES):
            yield self._encode(x)
            return
        first = self._encode(x[:1])
        yield first
        chunk = max(1, EXTRACT_CHUNK_BYTES // first[0].nbytes)
        for i in range(1, x.shape[0], chunk):
            yield self._encode(x[i:i + chunk])

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.heads.needs_context:
            return self._kept(self.extractor(x)), None
        z, u = self.extractor.with_previous(x)
        z = self._kept(z)
        if u.shape[-2:] != z.shape[-2:]:
            u = F.adaptive_avg_pool2d(u, z.shape[-2:])
        return z, u

    def _kept(self, z: torch.Tensor) -> torch.Tensor:
        """z with pruned channels zeroed (times the keep-mask; on CPU skipped when it is all ones,
        a pass over z saved)."""
        keep = self.channel_keep
        if z.device.type == "cpu" and not bool((keep != 1).any()):
            return z
        return z * keep.view(1, -1, 1, 1)

    def masks(self, z: torch.Tensor, transformed: bool = False, context: torch.Tensor | None = None) -> torch.Tensor:
        """The attention masks of features z (and context): (B, K, C, H, W); for small batches."""
        if not self.has_masks:
            raise HPNetError("this model has linear heads (plain CNN): it has no attention masks")
        return self.heads.masks(z, transformed, context)

    def forward(self, x: torch.Tensor, return_masks: bool = False) -> Output:
        """Logits, the L1 term of the masks and (``return_masks``) the masks. For CPU inference heads
        that gain from it (``reads_chunks``) run on each chunk of images the extractor runs on
        (:meth:`encode`), so the features of the whole batch are never put together."""
        if return_masks or not getattr(self.heads, "reads_chunks", False):
            z, context = self.encode(x)
            logits, m_sum = self.heads(z, context)
        else:
            outputs = []
            for z, context in self._encoded(x):
                outputs.append(self.heads(z, context))
            logits, m_sum = (torch.cat([o[i] for o in outputs]) if len(outputs) > 1 else outputs[0][i]
                             for i in range(2))
        B, C, H, W = x.shape[0], *z.shape[1:]
        K = self.config.num_attributes
        scale = {"position_mean": H * W, "mean": K * C * H * W, "sum": 1}[self.config.l1_norm]
        mask_l1 = m_sum.mean() / scale
        masks = self.masks(z, context=context) if return_masks else None
        return Output(logits, mask_l1, masks)

    def set_transform(self, n: float | torch.Tensor = 1.0, beta: float | torch.Tensor = 0.0) -> None:
        """Set g(M; n, beta) for every attribute (numbers) or per attribute (tensors of shape (K,))."""
        if not self.has_masks:
            raise HPNetError("mask transformation needs attention heads; this model has linear heads")
        self.heads.transform_n.copy_(torch.as_tensor(n, dtype=torch.float32).expand_as(self.heads.transform_n))
        self.heads.transform_beta.copy_(
            torch.as_tensor(beta, dtype=torch.float32).expand_as(self.heads.transform_beta))

    def operation_state(self) -> OperationState:
        """The channel keep-mask and the tone curve as they are now (copies)."""
        heads = self.heads
        return OperationState(self.channel_keep.detach().clone(),
                              heads.transform_n.detach().clone() if self.has_masks else None,
                              heads.transform_beta.detach().clone() if self.has_masks else None)

    def set_operation_state(self, state: OperationState) -> None:
        self.set_channel_keep(state.keep)
        if self.has_masks:
            self.set_transform(state.n, state.beta)

    @contextmanager
    def perturbed(self, keep: torch.Tensor | None = None, n: float | torch.Tensor | None = None,
                  beta: float | torch.Tensor | None = None) -> Iterator["HPNet"]:
        """``with model.perturbed(keep=..., n=..., beta=...):`` the model with that state, put back
        as it was on leaving (also when the block raises or changes the state itself). Values not
        given stay as they are; the tone curve needs masks."""
        saved = self.operation_state()
        try:
            if keep is not None:
                self.set_channel_keep(keep)
            if n is not None or beta is not None:
                self.set_transform(saved.n if n is None else n, saved.beta if beta is None else beta)
            yield self
        finally:
            self.set_operation_state(saved)

    @torch.no_grad()
    def init_bias_from_prior(self, positive_rate: list[float]) -> None:
        """Start each classifier at its attribute's training log-odds, so training starts at the
        majority-class answer instead of at 50% (shorter runs, same optimum)."""
        p = torch.as_tensor(positive_rate, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
        self.heads.bias.copy_(torch.log(p / (1 - p)))

    def set_channel_keep(self, keep: torch.Tensor) -> None:
        """Keep-mask over the C feature channels (1 = kept, 0 = pruned; another value scales the channel)."""
        self.channel_keep.copy_(torch.as_tensor(keep, dtype=torch.float32))

    # -- persistence: safetensors weights + JSON config, no pickle ---------------------------

    def save(self, directory: str | Path, name: str = "model") -> None:
        """Write ``name.safetensors`` and ``name.json`` into ``directory`` (atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_save_tensors(self.state_dict(), directory / f"{name}.safetensors")
        atomic_write_json(self.config.to_dict(), directory / f"{name}.json")

    @classmethod
    def load(cls, directory: str | Path, name: str = "model", map_location: str = "cpu") -> "HPNet":
        """Rebuild a model saved by :meth:`save`; raises HPNetError on a missing or mismatched file."""
        directory = Path(directory)
        config = ModelConfig.from_dict(read_json(directory / f"{name}.json"), str(directory / f"{name}.json"))
        model = cls(config)
        model.load_tensors(load_tensors(directory / f"{name}.safetensors", map_location),
                           directory / f"{name}.safetensors")
        return model.eval()

    def load_tensors(self, state: dict[str, torch.Tensor], source: str | Path) -> None:
        """load_state_dict with a one-line error naming the file when the shapes or keys differ."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
        if missing or unexpected or wrong:
            detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                      else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, "
                           f"this config needs {tuple(own[wrong[0]].shape)}")
            raise HPNetError(f"{source}: checkpoint does not match the model config ({detail})")
        self.load_state_dict(state)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: HPNet, image_size: int) -> int:
    """Multiply-accumulates of one forward pass at ``image_size`` (convs and heads)."""
    macs, size = model.extractor.macs(image_size)
    return macs + model.heads.macs(size * size)
