"""What the commands write into a run folder: one dataclass per result, knowing its file and its JSON.

Writers build these (the operations and analyses return them, the commands add where the data came
from) and :class:`hpnet.run.Run` writes them; readers (the report, the CLI, a user's notebook) get
them back through ``Run.read``, never through a file name of their own. ``to_json`` gives exactly
the keys of the file (optional fields that are None are left out; NaN and infinities become null,
which JSON can hold); ``from_json`` checks that the required keys are there and says which file
lacks one.

Nested parts (curves, per-attribute tables, scores) stay plain JSON-ready lists and dicts.
"""
from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from .errors import HPNetError

R = TypeVar("R", bound="Result")


def optional(default: Any = None) -> Any:
    """A field that is left out of the JSON while it is None."""
    return field(default=default, metadata={"optional": True})


def json_ready(obj: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN); tuples become lists."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


@dataclass
class Result:
    """Base of every result: ``FILE`` is its file name in the run folder, ``KIND`` what it is."""

    FILE: ClassVar[str]
    KIND: ClassVar[str]

    @classmethod
    def file_for(cls, **key: Any) -> str:
        """The file name of the result identified by ``key`` (most results have one file per run)."""
        return cls.FILE

    @property
    def file_name(self) -> str:
        return self.file_for()

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional"):
                continue
            out[f.name] = value
        return json_ready(out)

    @classmethod
    def from_json(cls: type[R], data: Any, source: str = "") -> R:
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise HPNetError(f"{where}not a {cls.KIND} result (expected a JSON object)")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise HPNetError(f"{where}not a {cls.KIND} result: missing {', '.join(missing)}")
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name in data and not _has_type(data[f.name], hints[f.name]):
                raise HPNetError(f"{where}not a {cls.KIND} result: {f.name} is {str(data[f.name])[:60]!r}")
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _has_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from JSON) is of the outer type of ``hint`` (a float may be an int or null:
    JSON's NaN)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_has_type(value, h) for h in typing.get_args(hint))
    outer = typing.get_origin(hint) or hint
    if outer is type(None):
        return value is None
    if outer is float:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    if outer is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, outer)


@dataclass
class EvaluationResult(Result):
    """``hpnet eval``: per-attribute accuracy against the majority class of the training labels."""

    FILE: ClassVar[str] = "eval_{split}.json"
    PATTERN: ClassVar[str] = "eval_*.json"
    KIND: ClassVar[str] = "evaluation"

    mean_accuracy: float
    mean_majority_baseline: float
    images: int
    per_attribute: list[dict]          # {"name", "accuracy", "majority_baseline", "positives"}
    split: str
    dataset: str | None = None
    backbone: str | None = None
    run: str | None = None

    @classmethod
    def file_for(cls, split: str = "test", **key: Any) -> str:
        return cls.FILE.format(split=split.replace(",", "+"))

    @property
    def file_name(self) -> str:
        return self.file_for(self.split)


@dataclass
class AnalysisResult(Result):
    """``hpnet analyse``: Fig. 4, 5, 6 and Table 4 (the figures themselves are PNG files beside it)."""

    FILE: ClassVar[str] = "analysis.json"
    KIND: ClassVar[str] = "mask analysis"

    attribute_names: list[str]
    channels: int
    mean_mask_grid: list[list[float]]          # (K, C), Fig. 5
    channel_correlation: list[list[float]]     # (C, C), Fig. 6
    cluster_order: list[int]
    attribute_table: list[dict]                # Table 4
    top_channels: dict[str, list[int]]
    fig4_attributes: list[str]
    run: str | None = None
    backbone: str | None = None
    images: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    pruned_channels: list[int] = field(default_factory=list)
    attribute_correlation: list[list[float]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)   # name -> path relative to the run


@dataclass
class PruningResult(Result):
    """``hpnet prune``: Fig. 7 curves of every method, and the physically pruned model's numbers."""

    FILE: ClassVar[str] = "pruning.json"
    KIND: ClassVar[str] = "pruning"

    methods: dict[str, list[list[float]]]      # [[P, accuracy]] or [[P, mean, std]]; reconstructed when so
    channels: int | None = None
    grid: list[int] = field(default_factory=list)
    per_attribute: dict[str, list[list[float]]] = field(default_factory=dict)
    images: int | None = None
    attributes: list[str] = field(default_factory=list)
    configurations: int | None = None
    reconstructed: bool = False
    orders: dict[str, list] = field(default_factory=dict)
    fit_images: int | None = optional()
    methods_heads_unchanged: dict[str, list[list[float]]] | None = optional()
    rule: str | None = None
    use_abs: bool = False
    correlation: str | None = None
    split: str | None = None
    run: str | None = None
    backbone: str | None = None
    correlation_split: str | None = None
    correlation_images: int | None = None
    random_seeds: int | None = None
    filter_l1: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    majority_baseline: float | None = None
    skipped: dict[str, str] | None = optional()
    physical: dict | None = optional()


@dataclass
class RobustnessResult(Result):
    """``hpnet robust``: Fig. 8, accuracy for every (n, beta, noise std), and the selection."""

    FILE: ClassVar[str] = "robustness.json"
    KIND: ClassVar[str] = "robustness"

    results: list[dict]                        # {"n", "beta", "noise_std", "accuracy", "per_attribute"}
    ns: list[float] = field(default_factory=list)
    betas: list[float] = field(default_factory=list)
    noise_stds: list[float] = field(default_factory=list)
    clip: bool = False
    seed: int = 0
    images: int | None = None
    attributes: list[str] = field(default_factory=list)
    split: str | None = None
    run: str | None = None
    backbone: str | None = None
    majority_baseline: float | None = None
    selection: dict | None = optional()


@dataclass
class PredictabilityResult(Result):
    """``hpnet predictability``: each operation's score with its interval, for the run's network and its
    plain-CNN baseline. Networks are named as every result and log names them (``Run.network_name``:
    e.g. "demo (attention)", "demo/plain (linear)")."""

    FILE: ClassVar[str] = "predictability.json"
    KIND: ClassVar[str] = "predictability"

    operations: dict                           # {operation: {network: {"score", "ci_low", "ci_high", ...}}}
    networks: dict                             # {network: {"head", "masks", "run", "role"}}, the run's first
    accuracy: dict                             # {network: {"mean_accuracy", ...}}
    localisation: dict = field(default_factory=dict)      # {network: {method: {score...}, "chance"} or {"skipped"}}
    regression: dict[str, float | None] = field(default_factory=dict)
    regression_detail: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    definition: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class DissectResult(Result):
    """``hpnet dissect``: the face part where each feature channel fires (network dissection), how the
    roles match the attributes' evidence, and the Fig. 4 comparison of Smiling and Mouth_Slightly_Open."""

    FILE: ClassVar[str] = "dissect.json"
    KIND: ClassVar[str] = "dissection"

    parts: list[str]
    channels: list[dict]             # {"channel", "part" (or "none"), "best_part", "iou", "iou_ci_low", "iou_ci_high", "area"}
    consistency: dict                # {"score", "chance", "p_value", "attributes", "left_out", "per_attribute"}
    fig4: dict                       # {"attributes", "top", "k", "shared", "mouth"} or {"skipped"}
    iou: list[list[float]] = field(default_factory=list)      # (C, P): every channel with every part
    images: int | None = None
    attribute_names: list[str] = field(default_factory=list)
    part_source: str | None = None
    settings: dict = field(default_factory=dict)
    split: str | None = None
    dataset: str | None = None
    run: str | None = None
    figures: dict[str, str] = field(default_factory=dict)

    def roles(self) -> dict[str, list[int]]:
        """part -> its channels (parts without channels left out; "none" last)."""
        out: dict[str, list[int]] = {}
        for part in [*self.parts, "none"]:
            chosen = [c["channel"] for c in self.channels if c["part"] == part]
            if chosen:
                out[part] = chosen
        return out


@dataclass
class CompareResult(Result):
    """``hpnet compare``: configurations trained and scored over several seeds, each metric with a
    95% Student-t interval over the seeds (in the comparison's own folder, not a run's)."""

    FILE: ClassVar[str] = "compare.json"
    KIND: ClassVar[str] = "comparison"

    configs: list[dict]              # {"name", "head", "l1_lambda", "train_noise", "seeds", "runs", "metrics"}
    settings: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class TrialScoreResult(Result):
    """``hpnet hitl-score``: the score of the people's predictions logged by ``hpnet serve``
    (RUN/hitl/trials.jsonl), the formula's and the no-change baseline's on the same trials, overall
    and per network, and the log it was computed from: ``log`` is ``{"file", "bytes", "sha256",
    "modified"}`` of the log as it was read, so that a reader can tell that the log has changed since
    (:func:`hpnet.predictability.human.score_is_current`)."""

    FILE: ClassVar[str] = "hitl/score.json"
    KIND: ClassVar[str] = "trial score"

    trials: int
    pairs: int
    person: dict                     # {"score", "ci_low", "ci_high", "n", "direction_agreement"}
    formula: dict
    no_change: dict
    log: dict                        # {"file", "bytes", "sha256", "modified" (ISO time, UTC)}
    by_network: dict[str, dict] = field(default_factory=dict)   # network -> {"trials", "pairs", "person", ...}
    warnings: list[str] = field(default_factory=list)           # the log's skipped lines
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95


@dataclass
class StudyScoreResult(Result):
    """``hpnet study score``: the people's predictions in a study (STUDY/study.sqlite) against the
    measured changes, per blind network label, with intervals from a bootstrap over participants and
    items jointly (see :mod:`hpnet.study.score`)."""

    FILE: ClassVar[str] = "score.json"
    KIND: ClassVar[str] = "study score"

    participants: int                # joined
    consented: int
    finished: int
    included: int                    # answered and not excluded
    excluded: dict[str, str]         # participant id -> why
    answers: int
    scored_answers: int              # test items, no attention checks, included participants
    pairs: int                       # scored (answer, attribute) pairs
    exclusion: dict                  # {"rule", "checks_answered", "pass_rate"}
    networks: dict[str, dict]        # label -> {"identity", "head", "items", "pairs", "person", "formula",
                                     #   "no_change", "by_condition", "by_operation", "rating"}
    paired: list[dict] = field(default_factory=list)          # {"a", "b", "score_difference", "ci_low", ...}
    learning_curve: list[dict] = field(default_factory=list)  # {"position", "phase", "mean", "ci_low", ...}
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95


# the results of the pipeline's commands on a run; not TrialScoreResult (it needs people's trials)
# nor CompareResult (written outside a run folder)
RESULTS: tuple[type[Result], ...] = (EvaluationResult, AnalysisResult, PruningResult, RobustnessResult,
                                     PredictabilityResult, DissectResult)
