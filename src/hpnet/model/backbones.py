"""Feature extractors f_f, one registry entry each: ``hpnet train --backbone NAME`` lists them.

A backbone is a plain stack of conv blocks (3x3 conv -> BatchNorm -> LeakyReLU(0.01), padding =
dilation, Table 1), described by a function from the model config to its layers. The last block's
conv and BatchNorm produce the C channels of z that the heads read and pruning removes
(:attr:`FeatureExtractor.last_conv`, :attr:`FeatureExtractor.last_norm`).

To add a backbone: one function from the config to its layers here, registered as
``BACKBONES.register("name")(Backbone(layers, help))``, plus its test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch.nn as nn

from ..errors import HPNetError
from ..registry import Registry

PAPER_WIDTHS = (32, 64, 64, 128)
PAPER_DILATIONS = (1, 2, 3, 2)


class BackboneConfig(Protocol):
    """What a backbone reads of the model's configuration."""

    backbone: str
    widths: tuple[int, ...]
    dilations: tuple[int, ...]


@dataclass(frozen=True)
class ConvSpec:
    c_in: int
    c_out: int
    stride: int = 1
    dilation: int = 1


@dataclass(frozen=True)
class Backbone:
    """``layers(config)`` gives the conv blocks (and raises HPNetError on a config it cannot build);
    ``defaults(widths)`` fills settings that depend on the depth when the user gave only widths."""

    layers: Callable[[BackboneConfig], list[ConvSpec]]
    help: str
    defaults: Callable[[tuple[int, ...]], dict] = lambda widths: {}


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


BACKBONES.register("paper")(Backbone(
    _paper, "Table 1: stride 1, dilations, no downsampling (receptive field 17 px)",
    lambda widths: {"dilations": tuple(PAPER_DILATIONS[i % len(PAPER_DILATIONS)] for i in range(len(widths)))}))
BACKBONES.register("strided")(Backbone(
    _strided, "the same widths, 3x3 convs, the last three with stride 2 (masks on an S/8 map)"))


def conv_block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 conv -> BatchNorm -> LeakyReLU(0.01), padding keeping the size (Table 1)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.01),
    )


class FeatureExtractor(nn.Sequential):
    """f_f: the config's backbone as a stack of conv blocks."""

    def __init__(self, config: BackboneConfig):
        layers = BACKBONES.get(config.backbone).layers(config)
        super().__init__(*(conv_block(s.c_in, s.c_out, s.stride, s.dilation) for s in layers))

    def with_previous(self, x):
        """(the output z, the previous block's output u): u is what context heads read."""
        u = x
        for block in list(self)[:-1]:
            u = block(u)
        return self[-1](u), u

    @property
    def last_conv(self) -> nn.Conv2d:
        return self[-1][0]

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self[-1][1]


def extractor_macs(config: BackboneConfig, image_size: int) -> tuple[int, int]:
    """(multiply-accumulates of the extractor at ``image_size``, side of its output map)."""
    macs, size = 0, image_size
    for s in BACKBONES.get(config.backbone).layers(config):
        size = (size - 1) // s.stride + 1          # 3x3, padding = dilation
        macs += s.c_in * s.c_out * 9 * size * size
    return macs, size
