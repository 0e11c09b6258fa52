"""Roles for tiny networks (a helper module, not a test module).

The networks the hitl and page tests train (16 x 16 images, 8 channels, one epoch) seldom have a
channel whose region passes the dissection's IoU threshold, so no channel has a face part and the role
operation does not apply. Inside :func:`every_channel_named`, views name every channel by its best
part (threshold 0), so that those tests exercise the role operation like the others.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import pytest

from hpnet.analysis.dissect import DissectSettings


@dataclasses.dataclass
class BestPart(DissectSettings):
    threshold: float = 0.0


@contextmanager
def every_channel_named():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("hpnet.operations.view.DissectSettings", BestPart)
        yield
