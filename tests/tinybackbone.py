"""Tiny user backbones for the tests (a helper module, importable by name as ``HPNet.from_backbone``
records them: "tinybackbone:TinyNet")."""
from __future__ import annotations

import torch.nn as nn


class TinyNet(nn.Module):
    """conv stride 2 -> ReLU -> conv -> BatchNorm -> ReLU: (B, width, S/2, S/2), declaring its last conv."""

    def __init__(self, width: int = 8, hidden: int = 6):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, hidden, 3, 2, 1), nn.ReLU(), nn.Conv2d(hidden, width, 3, 1, 1),
                                  nn.BatchNorm2d(width), nn.ReLU())

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.body[2]

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self.body[3]

    def forward(self, x):
        return self.body(x)


class Undeclared(nn.Module):
    """The same shape of network, declaring nothing: its channels can only be pruned masked."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, 2, 1)
        self.b = nn.Conv2d(6, width, 3, 1, 1)

    def forward(self, x):
        return self.b(self.a(x).relu()).relu()
