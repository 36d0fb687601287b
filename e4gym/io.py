"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it into place.

A reader (or a second run after an interruption) sees either the old file or the complete new one, never a
partial file; a crash leaves at most a ``.tmp-*`` file, which the next write of the same target replaces.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

#: Marker in the names of temporary files (``<name>.tmp-<random>``).
TMP_MARK = ".tmp-"


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Create ``path`` by calling ``write`` on a binary temporary file, then moving it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + TMP_MARK, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON (NaN written as ``NaN``, as Python's json reads it back)."""
    write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write ``arrays`` as a compressed ``.npz``."""
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


#: Marker in the names of a folder's previous version while :func:`staged_dir` swaps in the new one.
OLD_MARK = ".old-"


def _remove(path: Path) -> None:
    """Delete ``path`` (a folder tree, a file or a link) if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def staged_dir(path: Path) -> Iterator[Path]:
    """Build a folder beside ``path`` and swap it in for ``path`` only when the block completes.

    Yields a new empty folder ``<name>.tmp-<random>`` in ``path``'s parent (created if missing). When the block
    returns, the previous ``path`` (if any) is renamed to ``<name>.old-<random>``, the new folder renamed to
    ``path``, and the previous version deleted. When the block raises (KeyboardInterrupt included), the new
    folder is deleted and ``path`` is left exactly as it was: a reader never sees a half-written folder.

    Leftovers of an earlier swap of the same ``path`` by a killed process (``<name>.tmp-*``, ``<name>.old-*``)
    are deleted first: one writer per folder at a time. Between the two renames ``path`` is missing for an
    instant; a process killed there leaves the previous version at ``<name>.old-<random>``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.iterdir():
        if stale.name.startswith((path.name + TMP_MARK, path.name + OLD_MARK)):
            _remove(stale)
    while True:  # not mkdtemp: its folders are private (0700), the swapped-in folder keeps the umask's mode
        tmp = path.parent / f"{path.name}{TMP_MARK}{os.urandom(4).hex()}"
        try:
            tmp.mkdir()
            break
        except FileExistsError:
            continue
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.lexists(path):
        old = Path(tempfile.mkdtemp(prefix=path.name + OLD_MARK, dir=path.parent))
        os.replace(path, old / path.name)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old / path.name, path)
            _remove(old)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        _remove(old)


def output_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot take output files, or ``None`` when it can.

    It can when it is a folder in which a file can be created, or when it does not exist and its nearest
    existing ancestor is such a folder (so ``mkdir -p`` will work). Checked by creating and deleting a
    temporary file (permissions, read-only file systems and root's rights all count as they will).
    Returns a phrase such as ``"/x/out is a file, not a folder"``.
    """
    path = Path(path)
    probe = path
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        if probe == path:
            return f"{path} is not a folder ({'a broken link' if path.is_symlink() else 'a file'})"
        return f"{path} cannot be created: {probe} is a file, not a folder"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".e4gym-write-check" + TMP_MARK, dir=probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if probe == path:
            return f"{path} is not writable ({reason})"
        return f"{path} cannot be created: {probe} is not writable ({reason})"
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)
    return None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) for writers that take a file name, not a file: write it
    inside the ``with`` block; on a normal exit it is synced and moved into place with ``os.replace``, on an
    exception removed (``path`` is left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + TMP_MARK, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
