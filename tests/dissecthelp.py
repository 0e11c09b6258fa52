"""Roles for tiny networks, and a hand-set extractor whose channels fire where we say (a helper
module, not a test module).

The networks the hitl and page tests train (16 x 16 images, 8 channels, one epoch) seldom have a
channel whose region passes the dissection's IoU threshold, so no channel has a face part and the role
operation does not apply. Inside :func:`every_channel_named`, views name every channel by its best
part (threshold 0), so that those tests exercise the role operation like the others.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import pytest
import torch

from hpnet.analysis.dissect import DissectSettings
from hpnet.data.synthetic import PARTS, SyntheticFaces, generate
from hpnet.model import HPNet, ModelConfig

NAMES = ["Smiling", "Mouth_Slightly_Open", "Eyeglasses"]


@dataclasses.dataclass
class BestPart(DissectSettings):
    threshold: float = 0.0


@contextmanager
def every_channel_named():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("hpnet.operations.view.DissectSettings", BestPart)
        yield


def handset(size: int = 32, n: int = 64):
    """Synthetic faces whose red channel shows only the mouth (graded inside it), green pixel noise, blue
    only the background; an extractor whose four channels are red, a constant, green and blue."""
    ds = generate(n, image_size=size, seed=0, attributes=NAMES)
    parts = ds.part_masks()
    gen = torch.Generator().manual_seed(1)
    grade = lambda: 0.5 + 0.5 * torch.rand(n, size, size, generator=gen)  # noqa: E731
    rgb = torch.stack([parts[:, PARTS.index("mouth")] * grade(), torch.rand(n, size, size, generator=gen),
                       parts[:, PARTS.index("background")] * grade()], 1)
    data = SyntheticFaces((rgb * 255).round().to(torch.uint8), ds.targets, NAMES, ds.geometry, ds.part_info)
    model = HPNet(ModelConfig(NAMES, backbone="paper", widths=(4,), dilations=(1,), head="attention")).eval()
    conv, norm = model.extractor[0][0], model.extractor[0][1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = conv.weight[2, 1, 1, 1] = conv.weight[3, 2, 1, 1] = 1.0
        norm.running_mean.zero_(), norm.running_var.fill_(1 - norm.eps), norm.weight.fill_(1), norm.bias.zero_()
        norm.bias[1] = 1.0                                                 # channel 1: constant 1
    return model, data
