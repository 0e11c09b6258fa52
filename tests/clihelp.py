"""Running the ``hpnet`` command in-process and checking its one-line errors (a helper module, not a
test module; ``from clihelp import run_cli, one_line, tree``; ``hpnet_process`` for a real process)."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from hpnet.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``hpnet ARGS`` in this process (arguments turned into strings): (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def hpnet_process(*args, **kw) -> subprocess.Popen:
    """``python -m hpnet ARGS`` in a real process (one thread), stdout and stderr piped as text."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hpnet", *(str(a) for a in args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def error_lines(err: str) -> list[str]:
    """The non-blank lines of stderr."""
    return [line for line in err.splitlines() if line.strip()]


def one_line(code: int, err: str, pattern: str | None = None, naming: str | None = None) -> str:
    """Assert a refusal: exit code 2, no traceback, exactly one non-blank line on stderr, which matches
    the regular expression ``pattern`` and contains the text ``naming`` (either may be left out).
    Returns the line."""
    lines = error_lines(err)
    assert "Traceback" not in err, err
    assert code == 2, err
    assert len(lines) == 1, err
    if pattern is not None:
        assert re.search(pattern, lines[0]), lines[0]
    if naming is not None:
        assert naming in lines[0], (naming, lines[0])
    return lines[0]


def tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` with the hash of its bytes (to assert that nothing was written)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(path).rglob("*")) if p.is_file()}
