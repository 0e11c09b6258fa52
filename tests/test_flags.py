"""The command line is built from the settings dataclasses: every flagged field round-trips from argv to
its dataclass, and a field added with its metadata gets its flag with no change to the command line."""
import argparse
import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

import hpnet.cli
import hpnet.cli.parser
import hpnet.commands
from hpnet.analysis.attention import AnalysisSettings
from hpnet.cli import build_parser, main
from hpnet.cli.flags import _kind, add_flags, default, given, settings
from hpnet.commands.compare import CompareSettings
from hpnet.commands.evaluate import EvalSettings
from hpnet.data import DataSpec
from hpnet.model import ModelConfig
from hpnet.ops.pruning import PruneSettings, ScanSettings
from hpnet.ops.robust import RobustSettings
from hpnet.predictability import PredictabilitySettings
from hpnet.train import TrainConfig

SETTINGS = [DataSpec, ModelConfig, TrainConfig, EvalSettings, PruneSettings, RobustSettings, AnalysisSettings,
            PredictabilitySettings, CompareSettings]
COMMANDS = ["train", "compare", "eval", "prune", "robust", "analyse", "predictability"]
# values the type alone cannot give (a device, a split, a path; heads among the --heads; a backbone
# that the sampled widths fit)
SAMPLES = {"device": "cpu", "split": "valid", "root": "data", "cache_dir": "none", "save": "small",
           "plain_run": "plain", "variant_heads": ["channel"], "backbone": "strided",
           "backbone_weights": "w.safetensors"}


def flagged(cls, at=None):
    """{namespace name: (declaring dataclass, field, type hint)} of every field of ``cls`` (and of its
    parts) that has a flag."""
    at, hints, found = at or cls.__name__, typing.get_type_hints(cls), {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("part"):
            found.update(flagged(hints[f.name], f"{at}.{f.name}"))
        elif "flag" in f.metadata:
            found[f"{at}.{f.name}"] = (cls, f, hints[f.name])
    return found


def sample(cls, f, hint):
    """A valid value of the field other than its default."""
    now = default(cls, f.name)
    if f.name in SAMPLES:
        return SAMPLES[f.name]
    if hint is bool:
        return not now
    kind, many = _kind(hint)
    choices = list(f.metadata.get("choices") or [])
    if choices:
        return choices[::-1] if many else next(c for c in reversed(choices) if c != now)
    if many:
        return {int: [1, 2], float: [0.25, 0.5], str: ["Smiling", "Male"]}[kind]
    if kind is int:
        return now + 1 if now is not None else 3
    return now / 2 if now else 0.25


def words(f, value) -> list[str]:
    if isinstance(value, bool):
        return [f.metadata["flag"]]
    return [f.metadata["flag"], ",".join(map(str, value)) if isinstance(value, list) else str(value)]


def build(cls, values: dict, at: str, **more):
    """``cls`` from the sampled values under ``at`` (parts built from theirs)."""
    kwargs = dict(more)
    for f in dataclasses.fields(cls):
        if f.metadata.get("part") and any(k.startswith(f"{at}.{f.name}.") for k in values):
            kwargs[f.name] = build(type(default(cls, f.name)), values, f"{at}.{f.name}")
        elif f"{at}.{f.name}" in values:
            kwargs[f.name] = values[f"{at}.{f.name}"]
    return cls(**kwargs)


def command_dests(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {a.dest for a in sub.choices[command]._actions}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_of_a_command_round_trips_to_its_dataclass(command):
    dests = command_dests(command)
    argv = [command, *(["r"] if "run" in dests else []), *(["--out", "o"] if "out" in dests else [])]
    shown = [cls for cls in SETTINGS if any(d.startswith(f"{cls.__name__}.") for d in dests)]
    values = {}
    for cls in shown:
        for name, (owner, f, hint) in flagged(cls).items():
            if name in dests:
                values[name] = sample(owner, f, hint)
                assert plain(values[name]) != plain(default(owner, f.name)), name
                argv += words(f, values[name])
    args = build_parser().parse_args(argv)
    for cls in shown:
        more = {"attribute_names": ["a"]} if cls is ModelConfig else {}
        assert settings(args, cls, **more) == build(cls, values, cls.__name__, **more)


def plain(value):
    return list(value) if isinstance(value, tuple) else value


def test_every_flagged_field_is_on_some_command():
    on_commands = set().union(*(command_dests(c) for c in COMMANDS))
    for cls in SETTINGS:
        assert set(flagged(cls)) <= on_commands, cls.__name__


def test_a_flag_left_out_leaves_the_default():
    args = build_parser().parse_args(["prune", "r", "--rule", "higher"])
    assert given(args, PruneSettings) == {"scan": ScanSettings(rule="higher")}
    assert settings(args, PruneSettings) == PruneSettings(scan=ScanSettings(rule="higher"))
    assert given(build_parser().parse_args(["prune", "r"]), PruneSettings) == {}


# ---------------------------------------------------------------------------- a new field gets its flag


@dataclass
class Loudness:
    volume: float = field(default=0.5, metadata={"flag": "--volume", "help": "how loud (default {default})"})


@dataclass
class Toy:
    count: int = field(default=2, metadata={"flag": "--count", "help": "how many (default {default}); 100%"})
    names: Sequence[str] = field(default=("a",), metadata={"flag": "--names"})
    colour: str = field(default="red", metadata={"flag": "--colour", "choices": ("red", "blue"), "help": "{choices}"})
    sizes: tuple[int, ...] = field(default=(1,), metadata={"flag": "--sizes", "smallest": 1})
    fast: bool = field(default=True, metadata={"flag": "--slow", "help": "not fast"})
    ratio: float | None = None                                     # no metadata: no flag
    sound: Loudness = field(default_factory=Loudness, metadata={"part": True})


def toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy", exit_on_error=False)
    add_flags(parser, Toy)
    return parser


def test_a_dataclass_field_with_metadata_gets_its_flag():
    parser = toy_parser()
    text = " ".join(parser.format_help().split())
    assert "--count COUNT how many (default 2); 100%" in text and "--colour {red,blue} red, blue" in text
    assert "--volume VOLUME how loud (default 0.5)" in text and "--slow not fast" in text
    assert "--ratio" not in text
    args = parser.parse_args(["--count", "5", "--names", "b,c", "--colour", "blue", "--sizes", "3,4", "--slow",
                              "--volume", "0.9"])
    assert settings(args, Toy) == Toy(count=5, names=["b", "c"], colour="blue", sizes=[3, 4], fast=False,
                                      sound=Loudness(0.9))
    assert settings(parser.parse_args([]), Toy) == Toy()


@pytest.mark.parametrize("argv, message", [(["--count", "x"], "invalid int value: 'x'"),
                                           (["--colour", "green"], "invalid choice: 'green'"),
                                           (["--sizes", "0"], "expected positive integers, got '0'"),
                                           (["--volume", "loud"], "invalid float value")])
def test_a_bad_value_is_refused_naming_its_flag(argv, message):
    with pytest.raises(argparse.ArgumentError, match=message) as refused:
        toy_parser().parse_args(argv)
    assert refused.value.argument_name == argv[0]


def test_a_field_added_to_a_commands_settings_is_on_the_command_line(monkeypatch, capsys):
    @dataclass
    class Extended(PredictabilitySettings):
        patches: Sequence[int] = field(default=(4, 8), metadata={
            "flag": "--patches", "help": "permutation patch sizes (default {default})"})

    class Called(Exception):
        pass

    def predictability_run(run, settings, **kwargs):
        raise Called(settings)

    monkeypatch.setattr(hpnet.cli.parser, "PredictabilitySettings", Extended)  # as if the class had the field
    monkeypatch.setattr(hpnet.cli, "PredictabilitySettings", Extended)
    monkeypatch.setattr(hpnet.commands, "predictability_run", predictability_run)
    with pytest.raises(Called) as called:
        main(["predictability", "r", "--patches", "2,16", "--boot", "9"])
    assert called.value.args[0] == Extended(patches=[2, 16], n_boot=9)
    assert main(["predictability", "--help"]) == 0
    assert "--patches PATCHES permutation patch sizes (default 4,8)" in " ".join(capsys.readouterr().out.split())
