"""The residual backbones ``resnet18`` and ``resnet34``: torchvision's ResNet without its classifier.

The modules and their names are torchvision's (``conv1``, ``bn1``, ``layer1`` .. ``layer4`` of
:class:`BasicBlock` with ``conv1``, ``bn1``, ``conv2``, ``bn2`` and ``downsample.0`` / ``.1``), so
a torchvision or timm ResNet state dict loads into :class:`ResNetExtractor` as it is
(:mod:`hpnet.model.weights`); ``fc`` is the classifier, which hpnet's heads replace. z is the last
block's output (C = the last stage's width, 512 for torchvision's widths).

Stems (``ModelConfig.stem``): ``torchvision`` is conv1 7x7 stride 2 and a 3x3 max pool of stride 2
(z is 1/32 of the image: 2x2 at 64x64), so its weights load; ``small`` is conv1 3x3 stride 1 and
no max pool (CIFAR's ResNets; z is 1/8 of the image: 8x8 at 64x64, 16 times the work), whose
conv1 a torchvision state dict does not fit.

Physical pruning removes channels of z from the last block only: its ``conv2`` filters, its
``bn2`` entries, and, on the residual connection, the same channels of what the block adds back
(``identity_index``, a buffer of the last block: the channels of the identity that are kept). The
blocks before it keep the whole residual stream, so the pruned network equals the masked one,
whose channels are zeroed after the last block.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import HPNetError
from .custom import conv_macs

BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
RESNET_WIDTHS = (64, 128, 256, 512)
STEMS = ("torchvision", "small")


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + identity), identity =
    ``downsample(x)`` when the width or stride changes, else x; ``identity_index`` (the last block
    only) picks the identity's channels that z keeps."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, last: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        if last:
            self.register_buffer("identity_index", torch.arange(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        index = getattr(self, "identity_index", None)
        if index is not None and index.numel() != identity.shape[1]:    # pruned: the kept channels only
            identity = identity.index_select(1, index)
        return self.relu(out + identity)

    def keep_outputs(self, n: int) -> None:
        """Make the block's output ``n`` channels wide (the shapes of a pruned block; its weights are
        loaded after)."""
        c_mid = self.conv2.in_channels
        self.conv2 = nn.Conv2d(c_mid, n, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(n)
        self.identity_index = torch.arange(n)


class ResNetExtractor(nn.Module):
    """f_f: torchvision's ResNet of ``config.backbone`` up to its last block, with ``config.widths``
    the widths of the four stages and ``config.stem`` its stem."""

    def __init__(self, config):
        super().__init__()
        blocks = BLOCKS[config.backbone]
        widths = check_resnet(config)
        w0 = widths[0]
        if config.stem == "torchvision":
            self.conv1 = nn.Conv2d(3, w0, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, w0, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU(inplace=True)
        c_in = w0
        for stage, (n, width) in enumerate(zip(blocks, widths)):
            stride = 1 if stage == 0 else 2
            last = stage == len(blocks) - 1
            layer = [BasicBlock(c_in if i == 0 else width, width, stride if i == 0 else 1, last and i == n - 1)
                     for i in range(n)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
            c_in = width
        for m in self.modules():           # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if config.pruned_to:
            self.layer4[-1].keep_outputs(config.pruned_to)

    def with_previous(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, the third stage's output): what context heads read, never pruned."""
        u = self.layer3(self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))))
        return self.layer4(u), u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.with_previous(x)[0]

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.layer4[-1].conv2

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self.layer4[-1].bn2

    @property
    def channel_dims(self) -> dict[str, tuple[int, ...]]:
        """Its parameters and buffers indexed by the channels of z, and their dimensions."""
        last = f"layer4.{len(self.layer4) - 1}"
        dims = {f"{last}.conv2.weight": (0,), f"{last}.identity_index": (0,)}
        dims.update({f"{last}.bn2.{name}": (0,) for name in ("weight", "bias", "running_mean", "running_var")})
        return dims

    def macs(self, image_size: int) -> tuple[int, int]:
        """(multiply-accumulates at ``image_size``, side of the output map)."""
        return conv_macs(self, image_size)


def check_resnet(config) -> tuple[int, ...]:
    """The four stage widths, or one line saying what the config lacks."""
    if len(config.widths) != 4:
        raise HPNetError(f"--backbone {config.backbone} has 4 stages: --widths must give 4 widths "
                         f"(torchvision's are {','.join(map(str, RESNET_WIDTHS))}), got {list(config.widths)}")
    if config.stem not in STEMS:
        raise HPNetError(f"--stem must be one of {', '.join(STEMS)}, got {config.stem!r}")
    return config.widths
