"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it into place.

A reader (or a second run after an interruption) sees either the old file or the complete new one, never a
partial file; a crash leaves at most a ``.tmp-*`` file, which the next write of the same target replaces.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

#: Marker in the names of temporary files (``<name>.tmp-XXXX``).
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
