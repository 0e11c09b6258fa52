"""Folders that two writers never mix: written whole, or claimed while they are written.

- A folder written in one go (an export of the page, a pruned ``--save``) is built under a
  temporary name beside its place and renamed there (:func:`staged`): a reader never sees half of
  it, and of two writers racing for one name exactly one lands; the other is told the name is taken.
- A folder written over a long time (a run while it trains, a comparison) is *claimed*
  (:func:`claimed`): an exclusive lock on ``FOLDER/.hpnet.lock`` (``flock``) held as long as the
  command writes there. A second writer gets one line naming the holder (command, process, host,
  since when). The operating system drops the lock when its process dies, so a killed command never
  leaves a folder locked; the lock file is removed when the claim ends.
- :func:`clear` empties a folder hpnet wrote (one holding ``run.json``, ``compare.json`` or a
  comparison's ``CONFIG/seedN/run.json``) for a
  command asked to replace it (``--overwrite``); it never deletes a folder it cannot tell is hpnet's.

On systems without ``fcntl`` (Windows) claims are not enforced; staged folders still are.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import HPNetError

try:
    import fcntl
except ImportError:                                   # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".hpnet.lock"
MARKERS = ("run.json", "compare.json", "*/seed*/run.json")   # a folder holding one was written by hpnet
_UMASK = os.umask(0)
os.umask(_UMASK)


class FolderTaken(HPNetError):
    """Another writer holds the folder, or landed a folder of that name first."""


@contextmanager
def claimed(folder: str | Path, flag: str = "--out", by: str = "hpnet") -> Iterator[Path]:
    """Hold ``folder`` (created when missing) for this process while the block writes it; ``by``
    names the holder to a refused writer (e.g. "hpnet train"), with its process, host and start.

    Raises :class:`FolderTaken` naming the holder when another process holds it. A folder this call
    created and left empty is removed again, so a refused command leaves nothing behind.
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]     # removed again if left empty
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HPNetError(f"{flag} {folder}: cannot create the folder ({e.strerror or e})") from None
    fd = _lock(folder / LOCK_FILE, folder, flag, by) if fcntl is not None else None
    try:
        yield folder
    finally:
        if fd is not None:
            (folder / LOCK_FILE).unlink(missing_ok=True)
            os.close(fd)
        for made in created:                                # innermost first; only empty ones: nothing was written
            try:
                made.rmdir()
            except OSError:
                break


def _lock(path: Path, folder: Path, flag: str, by: str) -> int:
    """An open descriptor of ``path`` holding its exclusive lock (the file, if another claim ended
    and removed it meanwhile, is opened again: the lock must be on the file the path names)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        except OSError as e:
            raise HPNetError(f"{flag} {folder}: cannot be written ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise HPNetError(f"{flag} {folder}: cannot be locked ({e.strerror or e})") from None
            raise FolderTaken(f"{folder}: is being written by {holder}; wait for it to finish, or choose "
                              f"another {flag}") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    holder = (f"{by} (process {os.getpid()} on {socket.gethostname()}, since "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())})")
    os.ftruncate(fd, 0)
    os.write(fd, holder.encode())
    return fd


def _holder(fd: int) -> str:
    """What the holder of the lock on ``fd`` wrote about itself (it writes just after locking)."""
    for _ in range(20):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 300).decode("utf-8", "replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "another process"


@contextmanager
def staged(out: str | Path, taken: Callable[[Path], Exception]) -> Iterator[Path]:
    """A temporary folder beside ``out`` for the block to write; renamed to ``out`` when the block
    ends without error (``out`` may exist only as an empty folder). When another folder landed at
    ``out`` first, ``taken(out)`` is raised; the temporary folder never stays behind."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".staging", dir=out.parent))
    except OSError as e:
        raise HPNetError(f"{out}: cannot be written ({e.strerror or e})") from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_UMASK)          # mkdtemp makes 0700; give the folder the usual permissions
        try:
            os.rename(staging, out)                 # fails when a folder with files landed there first
        except OSError:
            raise taken(out) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_empty(folder: Path) -> bool:
    """True for a missing folder or one with nothing in it but a claim's lock file."""
    return not folder.is_dir() or all(p.name == LOCK_FILE for p in folder.iterdir())


def clear(folder: str | Path, flag: str = "--out") -> None:
    """Delete everything in ``folder`` (a claim's lock file stays) when hpnet wrote it; one line
    otherwise. A missing or empty folder is left as it is."""
    folder = Path(folder)
    if is_empty(folder):
        return
    if not any(path.is_file() for marker in MARKERS for path in folder.glob(marker)):
        raise HPNetError(f"{flag} {folder}: holds files but no run.json or compare.json, so it was not written "
                         f"by hpnet; it is not cleared: delete it yourself or choose another {flag}")
    for entry in folder.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
