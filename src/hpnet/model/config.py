"""The model's configuration: everything needed to rebuild it, saved as JSON beside the weights."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .. import checks
from ..errors import HPNetError
from .backbones import BACKBONES, PAPER_DILATIONS
from .heads import HEAD_IMPLS, HEADS
from .resnet import STEMS

L1_NORMS = ("position_mean", "mean", "sum")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; saved as JSON beside the weights.

    backbone: a name of :data:`hpnet.model.backbones.BACKBONES`: "paper" (Table 1: stride 1,
        dilations, no downsampling), "strided" (same widths, 3x3 convs, the last three with
        stride 2, so masks live on an S/8 map), "resnet18", "resnet34" (torchvision's, ``stem``)
        or "module" (your own module: ``module``, ``module_kwargs``; see ``HPNet.from_backbone``).
    widths: the layers' (ResNets: the four stages') widths; empty: the backbone's default.
    pruned_to: the channels of z after physical pruning, for backbones whose last width stays (the
        ResNets, modules); 0: not pruned (C = widths[-1]).
    head: a name of :data:`hpnet.model.heads.HEADS`: "attention" (the paper's per-attribute channel
        attention) or "linear" (GAP + linear: the plain-CNN baseline, no masks).
    l1_norm: how ||M||_1 of Eq. 10 is normalised. "position_mean" (default) sums over attributes
        and channels and averages over positions and images; "mean" averages over every element;
        "sum" sums over k, c, h, w (the paper's literal form, which at lambda = 1e-5 swamps the BCE).
    head_impl: "fused" (tiled, never holds the whole mask tensor, recomputed in backward; see
        hpnet.model.fused) or "naive" (the whole (B, K, C, H, W) tensor: the reference it is tested
        against).
    head_chunk_mb: size in MB of one tile's mask in the fused path; 0 picks the device's default
        (a few MB on CPU, where tiles must stay in cache; hundreds of MB on CUDA). The channel
        heads' compiled CPU loops hold one strip of rows per thread and do not read it.
    """

    attribute_names: list[str]
    backbone: str = field(default="paper", metadata={"flag": "--backbone", "choices": BACKBONES, "help": "{choices}"})
    # "smallest": refused as the command line reads them; the config itself is built once the data are loaded
    widths: tuple[int, ...] = field(default=(), metadata={
        "flag": "--widths", "help": "channel widths, e.g. 32,64,64,128 (default: the backbone's)", "smallest": 1})
    dilations: tuple[int, ...] = field(default=PAPER_DILATIONS, metadata={
        "flag": "--dilations", "help": "paper backbone dilations, e.g. 1,2,3,2", "smallest": 1})
    head: str = field(default="attention", metadata={"flag": "--head", "choices": HEADS, "help": "{choices}"})
    l1_norm: str = field(default="position_mean", metadata={
        "flag": "--l1-norm", "choices": L1_NORMS, "help": "normalisation of ||M||_1 (see README)"})
    stem: str = field(default="torchvision", metadata={
        "flag": "--stem", "choices": STEMS,
        "help": "the ResNets' first layers: torchvision (7x7 conv stride 2 + max pool; its weights load) or "
                "small (3x3 conv stride 1, no pool: z at 1/8 of the image)"})
    pruned_to: int = 0
    module: str = ""
    module_kwargs: dict = field(default_factory=dict)
    head_impl: str = "fused"
    head_chunk_mb: float = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.attribute_names, str) or not isinstance(self.attribute_names, (list, tuple)) \
                or not all(isinstance(a, str) and a for a in self.attribute_names):
            raise HPNetError(f"model config: attribute_names must be a list of names, got {self.attribute_names!r}")
        self.attribute_names = list(self.attribute_names)
        self.widths = _ints(self.widths, "--widths")
        self.dilations = _ints(self.dilations, "--dilations")
        if not self.attribute_names:
            raise HPNetError("model config: at least one attribute is needed")
        if len(set(self.attribute_names)) != len(self.attribute_names):
            raise HPNetError(f"model config: duplicate attribute names in {self.attribute_names}")
        backbone = BACKBONES.get(self.backbone)
        self.widths = self.widths or backbone.widths
        heads = HEADS.get(self.head)
        checks.choice(self.l1_norm, "l1_norm", L1_NORMS)
        checks.choice(self.head_impl, "head_impl", HEAD_IMPLS)
        checks.choice(self.stem, "--stem", STEMS)
        checks.count(self.pruned_to, "pruned_to", smallest=0)
        for name in ("extra", "module_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise HPNetError(f"model config: {name} must be a JSON object, got {getattr(self, name)!r}")
        if not isinstance(self.module, str):
            raise HPNetError(f"model config: module must be \"package.module:Class\", got {self.module!r}")
        if not self.widths or not all(isinstance(w, int) and w >= 1 for w in self.widths):
            raise HPNetError(f"--widths must be positive integers, got {self.widths}")
        checks.counts(self.dilations, "--dilations")
        checks.number(self.head_chunk_mb, "head_chunk_mb", 0)
        if self.pruned_to and (backbone.layers is not None or self.pruned_to > self.widths[-1]):
            raise HPNetError(f"model config: pruned_to {self.pruned_to} needs a ResNet or module backbone and at most "
                             f"the last width {self.widths[-1]} (a plain stack's pruned width is its last width)")
        backbone.validate(self)  # raises on a config the backbone cannot build
        heads.check(self)

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    @property
    def channels(self) -> int:
        """C, the channels of z."""
        return self.pruned_to or self.widths[-1]

    def pruned(self, channels: int) -> "ModelConfig":
        """This config for the network physically pruned to ``channels`` channels of z."""
        changes = BACKBONES.get(self.backbone).pruned(self, channels)
        return ModelConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["dilations"] = list(self.widths), list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "model config") -> "ModelConfig":
        """The config saved as ``d`` (``source`` names the file in errors)."""
        return checks.from_dict(cls, d, source)


def _ints(values, name: str) -> tuple[int, ...]:
    """Integers from JSON or Python (2 and 2.0 both), refusing 2.5, "2", booleans and non-lists."""
    if not isinstance(values, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v == int(v)
            for v in values):
        raise HPNetError(f"{name} must be integers, got {values!r}")
    return tuple(int(v) for v in values)
