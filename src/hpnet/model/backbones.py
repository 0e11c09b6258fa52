"""Feature extractors f_f, one registry entry each: ``hpnet train --backbone NAME`` lists them.

- ``paper`` and ``strided``: plain stacks of conv blocks (3x3 conv -> BatchNorm -> LeakyReLU(0.01),
  padding = dilation, Table 1), each described by a function from the model config to its layers;
- ``resnet18`` and ``resnet34``: torchvision's ResNets without the classifier (:mod:`.resnet`);
- ``module``: your own ``nn.Module`` (:mod:`.custom`, through ``HPNet.from_backbone``).

Every extractor is an ``nn.Module`` with ``forward(x)`` -> z (B, C, H, W); ``last_conv`` and
``last_norm``, the conv and BatchNorm producing the C channels of z that the heads read and
pruning removes (None where a module backbone declares none); ``channel_dims``, its parameters and
buffers indexed by those channels (what physical pruning cuts); ``macs(image_size)``; and, for the
context heads, ``with_previous(x)`` -> (z, the features before the last block or stage).

To add a plain backbone: one function from the config to its layers here, registered as
``BACKBONES.register("name")(Backbone(layers, help))``, plus its test; any other extractor is a
``build`` function from the config to the module, with ``check`` refusing configs it cannot build.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import HPNetError
from ..registry import Registry
from .custom import MODULE, ModuleExtractor, check_module
from .resnet import BLOCKS, RESNET_WIDTHS, ResNetExtractor, check_resnet

PAPER_WIDTHS = (32, 64, 64, 128)
PAPER_DILATIONS = (1, 2, 3, 2)


class BackboneConfig(Protocol):
    """What a backbone reads of the model's configuration."""

    backbone: str
    widths: tuple[int, ...]
    dilations: tuple[int, ...]
    stem: str                       # the ResNets'
    pruned_to: int                  # ResNets and modules: z's channels after physical pruning (0: widths[-1])
    module: str                     # a module backbone's "package.module:Class" and its keywords
    module_kwargs: dict
    head: str


@dataclass(frozen=True)
class ConvSpec:
    c_in: int
    c_out: int
    stride: int = 1
    dilation: int = 1


@dataclass(frozen=True)
class Backbone:
    """A plain stack's ``layers(config)`` gives its conv blocks (and raises HPNetError on a config it
    cannot build); any other extractor is ``build(config)``, ``check(config)`` raising on a config it
    cannot build. ``defaults(widths)`` fills settings that depend on the depth when the user gave
    only widths; ``widths`` are those used when none are given; ``pruned(config, n)`` gives the
    config changes of the network physically pruned to n channels of z."""

    layers: Callable[[BackboneConfig], list[ConvSpec]] | None
    help: str
    defaults: Callable[[tuple[int, ...]], dict] = lambda widths: {}
    build: Callable[[BackboneConfig], nn.Module] | None = None
    check: Callable[[BackboneConfig], object] | None = None
    widths: tuple[int, ...] = PAPER_WIDTHS
    pruned: Callable[[BackboneConfig, int], dict] = lambda config, n: {"widths": config.widths[:-1] + (n,)}

    def make(self, config: BackboneConfig) -> nn.Module:
        """The extractor of ``config``."""
        return self.build(config) if self.build is not None else FeatureExtractor(config)

    def validate(self, config: BackboneConfig) -> None:
        """Raise HPNetError when the backbone cannot be built from ``config``."""
        (self.check or self.layers)(config)


BACKBONES: Registry[Backbone] = Registry("--backbone")


def _paper(config: BackboneConfig) -> list[ConvSpec]:
    if len(config.dilations) != len(config.widths):
        raise HPNetError(f"--widths has {len(config.widths)} layers but dilations has "
                         f"{len(config.dilations)}; give one dilation per layer")
    c_in = (3,) + config.widths[:-1]
    return [ConvSpec(i, o, 1, d) for i, o, d in zip(c_in, config.widths, config.dilations)]


def _strided(config: BackboneConfig) -> list[ConvSpec]:
    c_in = (3,) + config.widths[:-1]
    return [ConvSpec(i, o, 1 if n == 0 else 2) for n, (i, o) in enumerate(zip(c_in, config.widths))]


def _hooked(block: nn.Sequential) -> bool:
    """Whether a forward hook would see this block or one of its modules run."""
    glob = nn.modules.module
    return bool(glob._global_forward_hooks or glob._global_forward_pre_hooks) or any(
        m._forward_hooks or m._forward_pre_hooks for m in block.modules())


def _folded(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A conv block of :func:`conv_block` in eval mode, its BatchNorm folded into the convolution."""
    conv, norm, act = block
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    y = F.conv2d(x, conv.weight * scale.view(-1, 1, 1, 1), norm.bias - norm.running_mean * scale,
                 conv.stride, conv.padding, conv.dilation)
    return F.leaky_relu(y, act.negative_slope, inplace=True)


def conv_block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 conv -> BatchNorm -> LeakyReLU(0.01), padding keeping the size (Table 1)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.01),
    )


class FeatureExtractor(nn.Sequential):
    """f_f: the config's backbone as a stack of conv blocks.

    For CPU inference (eval mode, no gradients) each block runs as one convolution with its
    BatchNorm folded into the weights and a bias, then the activation in place: the same function
    (to float rounding), without the BatchNorm's pass over the activations (the paper's extractor
    at 64x64: 0.56 ms of 4.7 per image). A block with forward hooks runs as modules, so that the
    hooks see their calls."""

    def __init__(self, config: BackboneConfig):
        self.specs = BACKBONES.get(config.backbone).layers(config)
        super().__init__(*(conv_block(s.c_in, s.c_out, s.stride, s.dilation) for s in self.specs))

    def forward(self, x):
        return self.with_previous(x)[0]

    def with_previous(self, x):
        """(the output z, the previous block's output u): u is what context heads read."""
        fold = x.device.type == "cpu" and not self.training and not torch.is_grad_enabled()
        u = x
        for block in list(self)[:-1]:
            u = _folded(block, u) if fold and not _hooked(block) else block(u)
        return (_folded(self[-1], u) if fold and not _hooked(self[-1]) else self[-1](u)), u

    @property
    def last_conv(self) -> nn.Conv2d:
        return self[-1][0]

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self[-1][1]

    @property
    def channel_dims(self) -> dict[str, tuple[int, ...]]:
        """Its parameters and buffers indexed by the channels of z, and their dimensions."""
        last = len(self) - 1
        dims = {f"{last}.0.weight": (0,)}
        dims.update({f"{last}.1.{name}": (0,) for name in ("weight", "bias", "running_mean", "running_var")})
        return dims

    def macs(self, image_size: int) -> tuple[int, int]:
        """(multiply-accumulates at ``image_size``, side of the output map)."""
        macs, size = 0, image_size
        for s in self.specs:
            size = (size - 1) // s.stride + 1          # 3x3, padding = dilation
            macs += s.c_in * s.c_out * 9 * size * size
        return macs, size


BACKBONES.register("paper")(Backbone(
    _paper, "Table 1: stride 1, dilations, no downsampling (receptive field 17 px)",
    lambda widths: {"dilations": tuple(PAPER_DILATIONS[i % len(PAPER_DILATIONS)] for i in range(len(widths)))}))
BACKBONES.register("strided")(Backbone(
    _strided, "the same widths, 3x3 convs, the last three with stride 2 (masks on an S/8 map)"))
for _name, _blocks in BLOCKS.items():
    BACKBONES.register(_name)(Backbone(
        None, f"torchvision's {_name} (basic blocks {'-'.join(map(str, _blocks))}, BatchNorm; --stem, "
              f"--backbone-weights; default widths {','.join(map(str, RESNET_WIDTHS))})",
        build=ResNetExtractor, check=check_resnet, widths=RESNET_WIDTHS, pruned=lambda config, n: {"pruned_to": n}))
BACKBONES.register(MODULE)(Backbone(
    None, "your own nn.Module (Python: HPNet.from_backbone)", build=ModuleExtractor, check=check_module,
    widths=(), pruned=lambda config, n: {"pruned_to": n}))
