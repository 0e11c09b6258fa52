"""Faults and hostile input (issue 19's cases, as they are fixed): each case failed before its fix."""

import pytest

from clihelp import one_line, run_cli
from hpnet.checks import SEED_MAX
from hpnet.errors import HPNetError
from hpnet.predictability import PredictabilitySettings

TINY = ["--dataset", "synthetic", "--image-size", "16", "--max-images", "64", "--attributes", "Smiling,Male",
        "--backbone", "strided", "--widths", "4,8", "--epochs", "1", "--quiet"]


@pytest.mark.parametrize("seed", [2 ** 63, 2 ** 64, SEED_MAX + 1])
def test_a_seed_beyond_the_generators_range_is_one_line_and_writes_nothing(tmp_path, capsys, seed):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", str(out), "--seed", str(seed), *TINY)
    one_line(code, err, r"--seed must be at most 2\^32-1")
    assert not out.exists()                              # no run.json left at "running"
    code, _, err = run_cli(capsys, "compare", "--out", str(tmp_path / "cmp"), "--heads", "linear",
                           "--seeds", f"0,{seed}", *TINY)
    one_line(code, err, r"--seeds must be at most 2\^32-1")
    assert not (tmp_path / "cmp").exists()


def test_the_largest_seed_is_accepted():
    assert PredictabilitySettings(seed=SEED_MAX).seed == SEED_MAX
    with pytest.raises(HPNetError, match="seed must be at most"):
        PredictabilitySettings(seed=SEED_MAX + 1)
