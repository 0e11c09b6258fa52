"""The human-predictable network (paper Tables 1-2, Eq. 8-13).

x (B, 3, S, S) in [0, 1]
  -> feature extractor f_f            z (B, C, H, W)           Table 1 (or a strided variant)
  -> channel keep-mask                z * keep                 semantic channel pruning
  -> K attention masks                M_k = sigmoid(A_k z + a_k) in (0, 1)^(C x H x W)
  -> mask transformation              g(M_k; n_k, beta_k)      Eq. 11-12, identity by default
  -> K binary classifiers             logit_k = w_k . GAP(g(M_k) * z) + b_k      Eq. 9, 13

The K heads are one batched matrix product over all heads, never a loop over attributes. The full
mask tensor (B, K, C, H, W) is 5.4 GB at B = 32, 64x64, K = 40, C = 128, so by default the heads are
computed in cache-sized tiles with a hand-written backward that recomputes each tile
(``head_impl="fused"``, see hpnet.fused); ``"naive"`` keeps the whole tensor and is the reference
the fused path is tested against.

Analyses use three named stages: ``features(x)``, ``masks(z)`` and ``heads(z)``.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import HPNetError
from .fused import fused_heads, fused_pooled_many
from .ops.transform import mask_transform

PAPER_WIDTHS = (32, 64, 64, 128)
PAPER_DILATIONS = (1, 2, 3, 2)
L1_NORMS = ("position_mean", "mean", "sum")


# ----------------------------------------------------------------------------------------------
# config


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; saved as JSON beside the weights.

    backbone: "paper" (Table 1: stride 1, dilations, no downsampling) or "strided" (same widths,
        3x3 convs, the last three with stride 2, so masks live on an S/8 map).
    head: "attention" (the paper's per-attribute channel attention) or "linear" (GAP + linear:
        the plain-CNN baseline, no masks).
    l1_norm: how ||M||_1 of Eq. 10 is normalised. "position_mean" (default) sums over attributes
        and channels and averages over positions and images; "mean" averages over every element;
        "sum" sums over k, c, h, w (the paper's literal form, which at lambda = 1e-5 swamps the BCE).
    head_impl: "fused" (tiled, never holds the whole mask tensor, recomputed in backward; see
        hpnet.fused) or "naive" (the whole (B, K, C, H, W) tensor: the reference it is tested against).
    head_chunk_mb: size in MB of one tile's mask in the fused path; 0 picks the device's default
        (a few MB on CPU, where tiles must stay in cache; hundreds of MB on CUDA).
    """

    attribute_names: list[str]
    backbone: str = "paper"
    widths: tuple[int, ...] = PAPER_WIDTHS
    dilations: tuple[int, ...] = PAPER_DILATIONS
    head: str = "attention"
    l1_norm: str = "position_mean"
    head_impl: str = "fused"
    head_chunk_mb: float = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.attribute_names = list(self.attribute_names)
        self.widths = tuple(int(w) for w in self.widths)
        self.dilations = tuple(int(d) for d in self.dilations)
        if not self.attribute_names:
            raise HPNetError("model config: at least one attribute is needed")
        if len(set(self.attribute_names)) != len(self.attribute_names):
            raise HPNetError(f"model config: duplicate attribute names in {self.attribute_names}")
        if self.backbone not in ("paper", "strided"):
            raise HPNetError(f"--backbone must be 'paper' or 'strided', got {self.backbone!r}")
        if self.head not in ("attention", "linear"):
            raise HPNetError(f"head must be 'attention' or 'linear', got {self.head!r}")
        if self.l1_norm not in L1_NORMS:
            raise HPNetError(f"l1_norm must be one of {', '.join(L1_NORMS)}, got {self.l1_norm!r}")
        if self.head_impl not in ("fused", "naive"):
            raise HPNetError(f"head_impl must be 'fused' or 'naive', got {self.head_impl!r}")
        if len(self.widths) < 1 or min(self.widths) < 1:
            raise HPNetError(f"--widths must be positive integers, got {self.widths}")
        if self.backbone == "paper" and len(self.dilations) != len(self.widths):
            raise HPNetError(f"--widths has {len(self.widths)} layers but dilations has "
                             f"{len(self.dilations)}; give one dilation per layer")

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    @property
    def channels(self) -> int:
        return self.widths[-1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["dilations"] = list(self.widths), list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# ----------------------------------------------------------------------------------------------
# feature extractor


def conv_block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 conv -> BatchNorm -> LeakyReLU(0.01), padding keeping the size (Table 1)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.01),
    )


class FeatureExtractor(nn.Sequential):
    """f_f: Table 1 for backbone "paper"; stride-2 convs after the first for "strided"."""

    def __init__(self, config: ModelConfig):
        layers, c_in = [], 3
        for i, c_out in enumerate(config.widths):
            if config.backbone == "paper":
                layers.append(conv_block(c_in, c_out, dilation=config.dilations[i]))
            else:
                layers.append(conv_block(c_in, c_out, stride=1 if i == 0 else 2))
            c_in = c_out
        super().__init__(*layers)

    @property
    def last_conv(self) -> nn.Conv2d:
        return self[-1][0]

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self[-1][1]


# ----------------------------------------------------------------------------------------------
# attention heads


def _head_chunk(z: torch.Tensor, mask_w: torch.Tensor, mask_b: torch.Tensor, n: torch.Tensor,
                beta: torch.Tensor, transform: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive reference: pooled features and mask sums through the whole (B, k, C, HW) masks.

    z (B, C, HW); mask_w (k, C, C); mask_b (k, C); n, beta (k,). hpnet.fused computes the same
    without the full tensor and is tested against this.
    Returns pooled (B, k, C) = mean_hw(g(M) * z) and the sum of M over (C, HW), shape (B, k).
    """
    B, C, HW = z.shape
    k = mask_w.shape[0]
    m = torch.sigmoid(_mask_logits(z, mask_w, mask_b))              # (B, k, C, HW)
    m_sum = m.sum(dim=(2, 3))                                       # (B, k)
    if transform:
        m = mask_transform(m, n.view(1, k, 1, 1), beta.view(1, k, 1, 1))
    pooled = torch.einsum("bkcp,bcp->bkc", m, z) / HW               # (B, k, C)
    return pooled, m_sum


def _mask_logits(z: torch.Tensor, mask_w: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """A_k z + a_k for a chunk of heads as one matrix product: (B, k, C, HW)."""
    B, C, HW = z.shape
    k = mask_w.shape[0]
    out = torch.matmul(mask_w.reshape(k * C, C), z)                 # (B, k*C, HW)
    return out.view(B, k, C, HW) + mask_b.view(1, k, C, 1)


class AttentionHeads(nn.Module):
    """K binary classifiers, each with its own C-channel attention mask (Table 2, Eq. 9).

    Parameters: ``mask_weight`` (K, C, C) and ``mask_bias`` (K, C) are the K 1x1 convs A_k, a_k;
    ``weight`` (K, C) and ``bias`` (K,) the K linear classifiers w_k, b_k.
    Buffers (model state changed by operations, saved with the weights): ``transform_n`` and
    ``transform_beta`` (K,), the per-attribute mask transformation (identity: n = 1, beta = 0).
    """

    def __init__(self, num_attributes: int, channels: int, impl: str = "fused", chunk_mb: float = 0):
        super().__init__()
        K, C = num_attributes, channels
        bound = 1.0 / math.sqrt(C)
        self.mask_weight = nn.Parameter(torch.empty(K, C, C).uniform_(-bound, bound))
        self.mask_bias = nn.Parameter(torch.zeros(K, C))
        self.weight = nn.Parameter(torch.empty(K, C).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(K))
        self.register_buffer("transform_n", torch.ones(K))
        self.register_buffer("transform_beta", torch.zeros(K))
        self.impl = impl
        self.chunk_mb = chunk_mb

    @property
    def transform_active(self) -> bool:
        return bool((self.transform_n != 1).any() or (self.transform_beta != 0).any())

    def masks(self, z: torch.Tensor, transformed: bool = False) -> torch.Tensor:
        """Attention masks (B, K, C, H, W) in (0, 1); small batches only (this is the full tensor)."""
        B, C, H, W = z.shape
        m = torch.sigmoid(_mask_logits(z.reshape(B, C, H * W), self.mask_weight, self.mask_bias))
        if transformed:
            K = m.shape[1]
            m = mask_transform(m, self.transform_n.view(1, K, 1, 1), self.transform_beta.view(1, K, 1, 1))
        return m.view(B, -1, C, H, W)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K) and the per-image mask sum over (k, c, h, w), shape (B,)."""
        B, C, H, W = z.shape
        zf = z.reshape(B, C, H * W)
        pooled, m_sum = self._pooled(zf)                            # (B, K, C), (B, K)
        logits = (pooled * self.weight).sum(-1) + self.bias         # (B, K)
        return logits, m_sum.sum(1)

    def pooled(self, z: torch.Tensor) -> torch.Tensor:
        """What each classifier reads: mean_hw(g(M^k) * z), shape (B, K, C); logit = pooled . w_k + b_k."""
        B, C, H, W = z.shape
        return self._pooled(z.reshape(B, C, H * W))[0]

    def logits_under(self, z: torch.Tensor, n: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Logits (T, B, K) under T mask transformations at once: row t of ``n`` and ``beta`` (T, K)
        is one (n, beta) per attribute. For inference (no gradients); each mask is formed once."""
        B, C, H, W = z.shape
        zf = z.reshape(B, C, H * W)
        n = n.to(zf.device, torch.float32).reshape(-1, self.weight.shape[0])
        beta = beta.to(zf.device, torch.float32).reshape(n.shape)
        if self.impl == "naive":
            with torch.no_grad():
                pooled = torch.stack([_head_chunk(zf, self.mask_weight, self.mask_bias, nt, bt, True)[0]
                                      for nt, bt in zip(n, beta)])
        else:
            pooled = fused_pooled_many(zf, self.mask_weight, self.mask_bias, n, beta, chunk_mb=self.chunk_mb)
        return (pooled * self.weight).sum(-1) + self.bias

    def _pooled(self, zf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        transform = self.transform_active
        if self.impl == "naive":
            return _head_chunk(zf, self.mask_weight, self.mask_bias, self.transform_n,
                               self.transform_beta, transform)
        return fused_heads(zf, self.mask_weight, self.mask_bias, self.transform_n, self.transform_beta,
                           transform, chunk_mb=self.chunk_mb)


class LinearHeads(nn.Module):
    """The plain-CNN baseline: logit_k = w_k . GAP(z) + b_k, no masks."""

    def __init__(self, num_attributes: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(channels, num_attributes)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(z.mean(dim=(2, 3))), z.new_zeros(z.shape[0])

    def pooled(self, z: torch.Tensor) -> torch.Tensor:
        """What each classifier reads: GAP(z) for every attribute, (B, K, C) (a broadcast view)."""
        K, C = self.linear.weight.shape
        return z.mean(dim=(2, 3))[:, None, :].expand(z.shape[0], K, C)

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias


# ----------------------------------------------------------------------------------------------
# the network


class Output(NamedTuple):
    logits: torch.Tensor                 # (B, K)
    mask_l1: torch.Tensor                # scalar, ||M||_1 normalised as config.l1_norm says
    masks: torch.Tensor | None = None    # (B, K, C, H, W) raw masks, only when asked for


class HPNet(nn.Module):
    """Feature extractor + K attention-masked binary classifiers, with operation state.

    ``channel_keep`` (C,) is 1 for kept channels and 0 for pruned ones (semantic pruning sets it);
    the per-attribute transformation lives in ``heads.transform_n`` / ``heads.transform_beta``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        K, C = config.num_attributes, config.channels
        self.extractor = FeatureExtractor(config)
        if config.head == "attention":
            self.heads = AttentionHeads(K, C, config.head_impl, config.head_chunk_mb)
        else:
            self.heads = LinearHeads(K, C)
        self.register_buffer("channel_keep", torch.ones(C))

    @property
    def attribute_names(self) -> list[str]:
        return self.config.attribute_names

    @property
    def has_masks(self) -> bool:
        return self.config.head == "attention"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """z = f_f(x) with pruned channels zeroed: (B, C, H, W).

        On CPU the convolutions run on channels-last input (oneDNN's fast layout; about 30% more
        training throughput for the strided backbone), so z may be channels-last too.
        """
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.extractor(x) * self.channel_keep.view(1, -1, 1, 1)

    def masks(self, z: torch.Tensor, transformed: bool = False) -> torch.Tensor:
        """The attention masks of features z: (B, K, C, H, W); for small batches."""
        if not self.has_masks:
            raise HPNetError("this model has linear heads (plain CNN): it has no attention masks")
        return self.heads.masks(z, transformed)

    def forward(self, x: torch.Tensor, return_masks: bool = False) -> Output:
        z = self.features(x)
        logits, m_sum = self.heads(z)
        B, C, H, W = z.shape
        K = self.config.num_attributes
        scale = {"position_mean": H * W, "mean": K * C * H * W, "sum": 1}[self.config.l1_norm]
        mask_l1 = m_sum.mean() / scale
        masks = self.masks(z) if return_masks else None
        return Output(logits, mask_l1, masks)

    def set_transform(self, n: float | torch.Tensor = 1.0, beta: float | torch.Tensor = 0.0) -> None:
        """Set g(M; n, beta) for every attribute (numbers) or per attribute (tensors of shape (K,))."""
        if not self.has_masks:
            raise HPNetError("mask transformation needs attention heads; this model has linear heads")
        self.heads.transform_n.copy_(torch.as_tensor(n, dtype=torch.float32).expand_as(self.heads.transform_n))
        self.heads.transform_beta.copy_(
            torch.as_tensor(beta, dtype=torch.float32).expand_as(self.heads.transform_beta))

    @torch.no_grad()
    def init_bias_from_prior(self, positive_rate: list[float]) -> None:
        """Start each classifier at its attribute's training log-odds, so training starts at the
        majority-class answer instead of at 50% (shorter runs, same optimum)."""
        p = torch.as_tensor(positive_rate, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
        self.heads.bias.copy_(torch.log(p / (1 - p)))

    def set_channel_keep(self, keep: torch.Tensor) -> None:
        """Keep-mask over the C feature channels (1 = kept, 0 = pruned)."""
        self.channel_keep.copy_(torch.as_tensor(keep, dtype=torch.float32))

    # -- persistence: safetensors weights + JSON config, no pickle ---------------------------

    def save(self, directory: str | Path, name: str = "model") -> None:
        """Write ``name.safetensors`` and ``name.json`` into ``directory`` (atomically)."""
        from .io import atomic_write_json, atomic_save_tensors
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_save_tensors(self.state_dict(), directory / f"{name}.safetensors")
        atomic_write_json(self.config.to_dict(), directory / f"{name}.json")

    @classmethod
    def load(cls, directory: str | Path, name: str = "model", map_location: str = "cpu") -> "HPNet":
        """Rebuild a model saved by :meth:`save`; raises HPNetError on a missing or mismatched file."""
        from .io import load_tensors, read_json
        directory = Path(directory)
        config = ModelConfig.from_dict(read_json(directory / f"{name}.json"))
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
    macs, size, c_in = 0, image_size, 3
    for i, c_out in enumerate(model.config.widths):
        if model.config.backbone == "strided" and i > 0:
            size = (size + 1) // 2
        macs += c_in * c_out * 9 * size * size
        c_in = c_out
    K, C = model.config.num_attributes, model.config.channels
    if model.has_masks:
        macs += K * C * C * size * size + 2 * K * C * size * size
    macs += K * C
    return macs
