"""Property-based tests of faults: folders written by several writers at once, and damaged trial logs.

Same budget rules as test_fuzz.py: derandomised draws, HPNET_FUZZ_EXAMPLES raises the budget.
"""
import json
import math
import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpnet.folders import LOCK_FILE, FolderTaken, claimed, is_empty, staged
from hpnet.predictability.human import read_trials, score_trial_log, score_trials

EXAMPLES = int(os.environ.get("HPNET_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


# ---------------------------------------------------------------------------- folders written at once

class Refused(Exception):
    """A claiming writer found the folder holding another writer's files (as training refuses a finished run)."""


def write_claimed(folder: Path, files: list[str], holders: list[int], most: list[int]) -> None:
    """What `hpnet train` and `hpnet compare` do: claim, refuse a folder holding files, write over time."""
    with claimed(folder):
        holders.append(1)
        most.append(len(holders))
        try:
            if not is_empty(folder):
                raise Refused(folder)
            for name in files:
                (folder / name).write_text(files[0])
        finally:
            holders.pop()


def write_staged(folder: Path, files: list[str]) -> None:
    """What an export and `prune --save` do: write beside the folder, rename into place."""
    with staged(folder, lambda p: FolderTaken(f"{p} taken")) as staging:
        for name in files:
            (staging / name).write_text(files[0])


@FUZZ
@given(kinds=st.lists(st.sampled_from(["claim", "stage"]), min_size=2, max_size=6),
       files=st.integers(1, 5), exists=st.booleans())
def test_writers_racing_for_one_folder_never_mix_it(tmp_path_factory, kinds, files, exists):
    folder = tmp_path_factory.mktemp("race") / "out"
    if exists:
        folder.mkdir()                                       # an empty folder a person made first
    sets = [[f"w{i}_{j}" for j in range(files)] for i in range(len(kinds))]
    start, holders, most, outcome = threading.Barrier(len(kinds)), [], [], {}

    def writer(i: int) -> None:
        start.wait()
        try:
            if kinds[i] == "claim":
                write_claimed(folder, sets[i], holders, most)
            else:
                write_staged(folder, sets[i])
            outcome[i] = "wrote"
        except (FolderTaken, Refused) as e:
            outcome[i] = type(e).__name__
        except Exception as e:                               # named in the assertion below
            outcome[i] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(kinds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    landed = sorted(p.name for p in folder.iterdir())
    winners = [i for i, o in outcome.items() if o == "wrote"]
    seen = (kinds, outcome, landed, most)
    assert len(outcome) == len(kinds) and max(most, default=1) == 1, seen    # every writer ended; one holder at a time
    assert len(winners) == 1 and landed == sorted(sets[winners[0]]), seen    # exactly one writer's whole set
    assert all((folder / name).read_text() == sets[winners[0]][0] for name in landed)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["out"]         # no staging folder or lock left behind
    assert not (folder / LOCK_FILE).exists()


# ---------------------------------------------------------------------------- damaged trial logs

def good_trial(i: int, rng_values: list[float]) -> dict:
    v = rng_values
    return {"version": 2, "trial": f"t{i}", "network": ["n (attention)", "n/plain (linear)"][i % 2],
            "attributes": ["A", "B", "C"], "person": [int(3 * math.tanh(x)) for x in v[:3]],
            "formula": v[1:4], "measured": v[2:5], "confidence": 0.5}


HOSTILE_VALUES = ["9" * 400, "1e308", "-1e308", "NaN", "Infinity", "\"x\"", "true", "null", "[]",
                  "[" * 50000 + "]" * 50000, "{}"]


@st.composite
def damage(draw):
    """(kind, argument): how one line of the log is spoiled."""
    kind = draw(st.sampled_from(["cut", "value", "type", "bytes", "not json", "nested line"]))
    if kind == "cut":
        return kind, draw(st.floats(0.02, 0.98))
    if kind == "value":
        return kind, (draw(st.sampled_from(["person", "formula", "measured"])), draw(st.sampled_from(HOSTILE_VALUES)))
    if kind == "type":
        return kind, draw(st.sampled_from(['"attributes": "A"', '"attributes": []', '"network": 3',
                                           '"person": [1, 2]', '"measured": "big"']))
    return kind, None


def spoil(line: str, how) -> bytes:
    kind, arg = how
    if kind == "cut":
        return line[:max(1, int(len(line) * arg))].encode()
    if kind == "value":
        key, value = arg
        record = json.loads(line)
        head, _, _ = line.partition(f'"{key}":')
        rest = line[len(head) + len(key) + 3:]
        return (head + f'"{key}":[{value},' + rest[rest.index(",") + 1:]).encode() if record[key] else line.encode()
    if kind == "type":
        key = arg.split(":")[0].strip('"')
        record = {k: v for k, v in json.loads(line).items() if k != key}
        return (json.dumps(record)[:-1] + ", " + arg + "}").encode()
    if kind == "bytes":
        return line.replace('"t', '"\xff\xfe', 1).encode("latin-1")
    if kind == "nested line":
        return ("[" * 200000 + "]" * 200000).encode()
    return b"trials.jsonl was here"


@FUZZ
@given(values=st.lists(st.floats(-5, 5, allow_nan=False), min_size=5, max_size=5),
       plan=st.lists(st.one_of(st.none(), damage()), min_size=1, max_size=12), trailing=st.booleans())
def test_a_damaged_log_loses_only_its_damaged_lines(tmp_path_factory, values, plan, trailing):
    log = tmp_path_factory.mktemp("log") / "trials.jsonl"
    lines, good, damaged = [], [], []
    for number, how in enumerate(plan, 1):
        line = json.dumps(good_trial(number, [v + 0.1 * number for v in values]))
        if how is None:
            lines.append(line.encode())
            good.append(f"t{number}")
        else:
            lines.append(spoil(line, how))
            damaged.append(number)
    log.write_bytes(b"\n".join(lines) + (b"\n" if trailing else b""))
    trials, warnings = read_trials(log)
    assert [t["trial"] for t in trials] == good                               # every undamaged line, in order
    assert [int(w.split("line ")[1].split()[0]) for w in warnings] == damaged  # one warning per damaged line, named
    assert all(str(log) in w and "\n" not in w for w in warnings)
    scores = score_trials(trials, n_boot=20)
    for predictor in ("person", "formula", "no_change"):
        for key in ("score", "ci_low", "ci_high"):
            value = scores[predictor][key]
            assert math.isnan(value) or -1.0 <= value <= 1.0
    result = score_trial_log(log, n_boot=20)
    assert result.trials == len(good) and len(result.warnings) == len(damaged)
    assert json.loads(json.dumps(result.to_json(), allow_nan=True))["trials"] == len(good)


def test_the_damage_generator_spoils_every_kind():
    line = json.dumps(good_trial(1, [0.1, 0.2, 0.3, 0.4, 0.5]))
    for how in [("cut", 0.5), ("value", ("person", "1e308")), ("type", '"network": 3'), ("bytes", None),
                ("nested line", None), ("not json", None)]:
        spoiled = spoil(line, how)
        assert spoiled != line.encode(), how
        with pytest.raises(Exception):
            record = json.loads(spoiled)
            assert isinstance(record["network"], str) and abs(record["person"][0]) <= 1e6
