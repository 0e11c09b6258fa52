"""Shared fixtures. Each fixture is self-contained: it builds its own data in its own temp folder.

Helper modules beside this file (plain functions, imported by the test modules): ``fakes`` writes fake
data sets in the real formats; ``clihelp`` runs the ``hpnet`` command (``run_cli(capsys, *args)``,
``hpnet_process(*args)`` for a real process) and checks its refusals (``one_line(code, err, pattern,
naming=...)``: exit 2, no traceback, one line) and that nothing was written (``tree(path)``)."""
from pathlib import Path

import pytest

from fakes import make_fake_celeba, make_fake_csv_dataset


@pytest.fixture
def fake_celeba(tmp_path: Path) -> Path:
    """A fake CelebA (torchvision txt layout, 24 images, 16/4/4); the ``celeba/`` folder."""
    return make_fake_celeba(tmp_path / "fake_celeba_txt")


@pytest.fixture
def fake_celeba_csv(tmp_path: Path) -> Path:
    """The same fake CelebA in the CSV layout; the ``celeba/`` folder."""
    return make_fake_celeba(tmp_path / "fake_celeba_csv", layout="csv")


@pytest.fixture
def fake_csv(tmp_path: Path) -> Path:
    """A generic multi-label CSV (image, Smiling, Male, Young, split); the CSV file."""
    return make_fake_csv_dataset(tmp_path / "fake_csv")


@pytest.fixture
def celeba_sample() -> Path:
    """The real CelebA sample (the folder holding ``celeba/``); skips when absent."""
    path = Path(__file__).resolve().parents[2] / "shared" / "celeba-sample"
    if not (path / "celeba").is_dir():
        pytest.skip(f"CelebA sample not found at {path}")
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny tensors: one thread is faster than two threads fighting over a small, shared machine."""
    import torch
    torch.set_num_threads(1)
