"""Files written atomically (temporary name, then rename) and read with one-line errors."""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import HPNetError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: Path, write) -> None:
    path = Path(path)
    if path.is_dir():
        raise HPNetError(f"{path}: is a folder, cannot write a file there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise HPNetError(f"{path}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output(path: str | Path, name: str, folder: bool) -> Path:
    """An output path that can be written: a folder (``folder``) or a file, or nothing yet, with no
    file in the way among its parents. One line naming ``name`` (e.g. "--out") otherwise; called
    before the work that would write there."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise HPNetError(f"{name} {path}: exists and is {'a file' if folder else 'a folder'}, not "
                         f"{'a folder' if folder else 'a file'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HPNetError(f"{name} {path}: {parent} is a file, not a folder")
            break
    return path


def atomic_write_text(text: str, path: str | Path) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    _atomic(Path(path), write)


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    _atomic(Path(path), write)


def atomic_write_json(obj: Any, path: str | Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2) + "\n", path)


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: str | Path,
                        metadata: dict[str, str] | None = None) -> None:
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(flat, tmp, metadata=metadata))


MAX_JSON_DEPTH = 32            # request bodies nest far less; deeper is hostile
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def parse_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from untrusted text: invalid JSON, nesting deeper than ``max_depth`` (which would
    exhaust the recursion of the parser or of whoever walks the value) and NaN or infinities
    become one-line HPNetErrors."""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    level = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):      # brackets outside strings, in order
        level += 1 if bracket in "[{" else -1
        if level > max_depth:
            raise HPNetError(f"nested more than {max_depth} levels deep")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise HPNetError(f"not valid JSON ({str(e)[:80]})") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise HPNetError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HPNetError(f"{path}: not valid JSON ({e})") from None


def load_tensors(path: str | Path, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise HPNetError(f"{path}: file not found")
    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise HPNetError(f"{path}: not a readable safetensors file ({e})") from None


def read_metadata(path: str | Path) -> dict[str, str]:
    """The JSON-string metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise HPNetError(f"{path}: not a readable safetensors file ({e})") from None
