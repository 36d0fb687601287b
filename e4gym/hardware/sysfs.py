"""Sysfs file access for real boards: reads, guarded writes, dry runs, and a journal that restores the board.

Everything a real backend changes goes through :class:`Sysfs` (one object per board, rooted at the board's
``/`` or at a fake tree in tests) and is recorded by :class:`Journal` before the first write:

* a write opens the file without creating it (a missing attribute is an error naming the file, never a new
  file), truncates it (as the shell's ``>`` does) and writes the value and a newline;
* ``read_only`` refuses every write; ``dry_run`` prints each write it would do (path, old → new value, units)
  and writes nothing;
* errors say which file, what went wrong and what to do (a refused write needs root: run under sudo, or open
  the backend read-only);
* :meth:`Journal.transaction` undoes, in reverse order, the writes of a block that raised, so a failed
  ``apply()`` leaves the tree as it was; :meth:`Journal.restore` puts back every value the backend changed,
  in reverse order of recording, writing ``[min, max]`` pairs in the order that keeps ``min <= max`` at every
  step (cpufreq and devfreq reject, or silently clamp, an inverted range);
* a journal given a ``file`` (the backend's, beside the board lock: ``<root>/run/e4gym-restore.json``) writes it
  atomically each time it records a file (pid, time, and every original value, read before the first write of
  the run and never rewritten), and deletes it after a clean :meth:`Journal.restore`, so ``e4gym restore`` can
  put the board back after a crash that left no time to restore it (SIGKILL, an OOM kill). A journal whose file
  a dead owner left adopts its entries: their values stay the originals and are restored with its own.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from e4gym.errors import HardwareError, SettingError
from e4gym.io import TMP_MARK, write_json

__all__ = ["ROOT_HINT", "Journal", "JournalFile", "Sysfs", "SysfsPermissionError", "UndoFailedError", "read_journal",
           "write_range"]

#: Version of the journal file's format.
JOURNAL_VERSION = 1

#: ``os.open`` as this module calls it for writes. Tests replace it to make one path refuse writes when they
#: run as root (root ignores ``chmod 0o444``).
_os_open: Callable[..., int] = os.open
#: ``os.access`` as :meth:`Sysfs.writable` calls it (tests replace it to play a user without root).
_os_access: Callable[..., bool] = os.access

_NO_FILE = "no such file (this board or kernel does not expose it)"
#: What to do when a write is refused.
ROOT_HINT = (
    "changing clocks needs root: run under sudo, or open the backend with read_only=True to measure without "
    "changing anything (dry_run=True prints the writes it would do)"
)


class SysfsPermissionError(HardwareError, PermissionError):
    """Writing a sysfs or debugfs file was refused (permission denied): changing clocks needs root."""


class UndoFailedError(HardwareError):
    """A block of writes failed and undoing its earlier writes failed too: the message names the files left changed."""


class Sysfs:
    """Reads and writes the files of a sysfs tree rooted at ``root``.

    Args:
        root: the board's ``/`` (``"/"`` on the board itself, a temporary folder in tests). Board paths such as
            ``/sys/devices/system/cpu`` are resolved under it by :meth:`path`.
        read_only: refuse every write (:class:`~e4gym.errors.SettingError`).
        dry_run: print every write it would do (path, old → new value, units) to ``out`` and write nothing.
        out: where dry-run lines go (default: ``sys.stdout`` at the time of the write).

    Attributes:
        sealed: set once the backend has restored the board: later writes are refused, so nothing changes the
            board after a restore (e.g. an ``apply()`` interrupted by a signal that restored the board).
        on_write: called as ``on_write(path, old, new)`` after each real write (the journal's hook); ``old`` is
            ``None`` when the file could not be read first.
    """

    def __init__(
        self, root: str | Path = "/", *, read_only: bool = False, dry_run: bool = False, out: TextIO | None = None
    ) -> None:
        self.root = Path(root)
        self.read_only = bool(read_only)
        self.dry_run = bool(dry_run)
        self._out = out
        self.sealed = False
        self.on_write: Callable[[Path, str | None, str], None] | None = None

    def __repr__(self) -> str:
        return f"Sysfs(root={str(self.root)!r}, read_only={self.read_only}, dry_run={self.dry_run})"

    # ------------------------------------------------------------------------------------------ paths and reads

    def path(self, board_path: str | Path) -> Path:
        """The file of board path ``board_path`` (e.g. ``/sys/class/devfreq``) under :attr:`root`."""
        return self.root / str(board_path).lstrip("/")

    def read(self, path: Path) -> str:
        """The text of ``path``, NUL bytes as spaces, stripped.

        Raises:
            HardwareError: the file is missing or unreadable (names the file).
        """
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise HardwareError(f"{path}: {_NO_FILE}") from None
        except PermissionError:
            raise SysfsPermissionError(f"{path}: permission denied reading it; {ROOT_HINT}") from None
        except OSError as exc:
            raise HardwareError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        return raw.decode("utf-8", errors="replace").replace("\0", " ").strip()

    def read_opt(self, path: Path) -> str | None:
        """:meth:`read`, or ``None`` when the file is missing or unreadable."""
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            return None
        return raw.decode("utf-8", errors="replace").replace("\0", " ").strip()

    def read_int(self, path: Path) -> int:
        """The integer in ``path`` (units as the file has them).

        Raises:
            HardwareError: missing, unreadable, or not an integer (names the file and what it held).
        """
        text = self.read(path)
        try:
            return int(text.split()[0])
        except (ValueError, IndexError):
            raise HardwareError(f"{path}: expected an integer, found {text!r}") from None

    def read_int_opt(self, path: Path) -> int | None:
        """:meth:`read_int`, or ``None`` when the file is missing, unreadable or not an integer."""
        text = self.read_opt(path)
        if not text:
            return None
        try:
            return int(text.split()[0])
        except ValueError:
            return None

    def writable(self, path: Path) -> bool:
        """Whether this process may write ``path`` (an existing file); always ``True`` for root."""
        return _os_access(path, os.W_OK)

    # ------------------------------------------------------------------------------------------ writes

    def write(self, path: Path, value: object, *, unit: str = "") -> bool:
        """Write ``value`` to the existing file ``path``; returns whether it wrote (or, dry, would write).

        A value equal to the file's current text is not written again.

        Args:
            path: the file (from :meth:`path`).
            value: written as ``str(value)`` followed by a newline.
            unit: units of the value, for dry-run lines (``kHz``, ``Hz``).

        Raises:
            SettingError: the backend is read-only.
            SysfsPermissionError: permission denied (needs root).
            HardwareError: the file is missing, is not a file, the kernel rejected the value, or the board was
                already restored (each names the file).
        """
        new = str(value)
        if self.read_only:
            raise SettingError(f"read-only: refusing to write {new!r} to {path}")
        if self.sealed:
            raise HardwareError(f"refusing to write {path}: the board was already restored and the backend closed")
        old = self.read_opt(path)
        if old == new:
            return False
        if self.dry_run:
            if old is None and not path.is_file():
                raise HardwareError(f"cannot write {path}: {_NO_FILE}")
            units = f" {unit}" if unit else ""
            print(f"[e4gym dry-run] {path}: {old if old is not None else '?'} → {new}{units}",
                  file=self._out or sys.stdout, flush=True)
            return True
        self._raw_write(path, new)
        if self.on_write is not None:
            self.on_write(path, old, new)
        return True

    @staticmethod
    def _raw_write(path: Path, text: str) -> None:
        try:
            fd = _os_open(str(path), os.O_WRONLY | os.O_TRUNC)  # never O_CREAT: a missing attribute is an error
        except FileNotFoundError:
            raise HardwareError(f"cannot write {path}: {_NO_FILE}") from None
        except PermissionError:
            raise SysfsPermissionError(f"cannot write {path}: permission denied; {ROOT_HINT}") from None
        except IsADirectoryError:
            raise HardwareError(f"cannot write {path}: it is a directory, not a sysfs attribute") from None
        except OSError as exc:
            raise HardwareError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            os.write(fd, (text + "\n").encode())
        except PermissionError:
            raise SysfsPermissionError(f"cannot write {path}: permission denied; {ROOT_HINT}") from None
        except OSError as exc:
            raise HardwareError(f"the kernel rejected {text!r} for {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)


def write_range(io: Sysfs, min_path: Path, max_path: Path, new_min: int, new_max: int, *, unit: str) -> None:
    """Set a ``[min, max]`` pair of files so that ``min <= max`` holds after every single write.

    Raising the range above the current maximum writes the maximum first; otherwise the minimum goes first.

    Raises:
        ValueError: ``new_min > new_max``.
        HardwareError / SysfsPermissionError / SettingError: as :meth:`Sysfs.write`.
    """
    if new_min > new_max:
        raise ValueError(f"inverted range for {min_path} / {max_path}: {new_min} > {new_max} {unit}")
    cur_max = io.read_int_opt(max_path)
    if cur_max is not None and new_min > cur_max:
        io.write(max_path, new_max, unit=unit)
        io.write(min_path, new_min, unit=unit)
    else:
        io.write(min_path, new_min, unit=unit)
        io.write(max_path, new_max, unit=unit)


@dataclass
class _Saved:
    """Original value(s) of one file, or of a ``(min, max)`` pair of files."""

    paths: tuple[Path, ...]
    values: tuple[str, ...]
    unit: str
    touched: bool = False


@dataclass(frozen=True)
class JournalFile:
    """What a journal file holds (:func:`read_journal`).

    Attributes:
        path: the file. pid: the process that wrote it last. time: when the run that recorded its first entry
            opened the board (Unix s).
        entries: ``(board paths, original values, unit)`` per record, in recording order.
    """

    path: Path
    pid: int
    time: float
    entries: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...]


def _corrupt(path: Path, why: str) -> HardwareError:
    return HardwareError(
        f"the board's restore journal {path} is corrupt ({why}); it cannot put the board back: set the clocks and "
        f"governors by hand (or reboot the board), then delete {path}"
    )


def read_journal(path: Path) -> JournalFile | None:
    """The journal file at ``path``, or ``None`` when there is none.

    Raises:
        HardwareError: the file cannot be read or is not a journal (one line naming the file and the fix).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"unreadable: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _corrupt(path, f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != JOURNAL_VERSION or not isinstance(data.get("entries"),
                                                                                               list):
        raise _corrupt(path, f"not an e4gym journal of version {JOURNAL_VERSION}")
    entries = []
    for i, e in enumerate(data["entries"]):
        paths = e.get("paths") if isinstance(e, dict) else None
        values = e.get("values") if isinstance(e, dict) else None
        unit = e.get("unit", "") if isinstance(e, dict) else None
        if (not isinstance(paths, list) or not isinstance(values, list) or len(paths) != len(values)
                or len(paths) not in (1, 2) or not all(isinstance(x, str) and x.startswith("/") for x in paths)
                or not all(isinstance(x, str) for x in values) or not isinstance(unit, str)):
            raise _corrupt(path, f"entry {i} is not a list of board paths with their values")
        if len(paths) == 2 and not all(v.lstrip("-").isdigit() for v in values):
            raise _corrupt(path, f"entry {i}: a (min, max) pair of non-integers {values}")
        entries.append((tuple(paths), tuple(values), unit))
    pid, when = data.get("pid"), data.get("time")
    if isinstance(pid, bool) or not isinstance(pid, int) or isinstance(when, bool) or not isinstance(when,
                                                                                                     (int, float)):
        raise _corrupt(path, "no owner pid or time")
    return JournalFile(path, pid, float(when), tuple(entries))


class Journal:
    """The original value of every file a backend may change, and the means to put them back.

    Record files (:meth:`record`, :meth:`record_range`) before any write; :meth:`restore` then writes back, in
    reverse order of recording, every recorded file the backend actually changed. Writes inside
    :meth:`transaction` are undone if the block raises.

    Args:
        io: the board's :class:`Sysfs`; the journal installs itself as its ``on_write`` hook.
        file: where to keep the journal on disk (only for the holder of the board's lock): written atomically
            after each record, deleted after a clean :meth:`restore`. A file already there (left by an owner that
            died before restoring the board) is adopted: its values are the originals (a later record of one of
            its files keeps them) and all of them are restored by :meth:`restore`.

    Attributes:
        adopted: the journal file adopted at creation (``None`` when there was none).

    Raises:
        HardwareError: ``file`` exists but is corrupt (names it and the fix).
    """

    def __init__(self, io: Sysfs, file: str | Path | None = None) -> None:
        self.io = io
        self._entries: list[_Saved] = []
        self._by_path: dict[Path, _Saved] = {}
        self._undo: list[tuple[Path, str]] | None = None
        self.lock = threading.RLock()
        self.file = None if file is None else Path(file)
        self._started = time.time()
        self._removed = False
        self.adopted: JournalFile | None = None
        if self.file is not None:
            self.adopted = read_journal(self.file)
            if self.adopted is not None:
                self._started = self.adopted.time
                for paths, values, unit in self.adopted.entries:  # restored whatever this run writes
                    self._add(_Saved(tuple(io.path(p) for p in paths), values, unit, touched=True), persist=False)
        io.on_write = self._on_write

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def saved(self) -> list[tuple[str, str]]:
        """``(path, original value)`` of every recorded file, in recording order."""
        return [(str(p), v) for e in self._entries for p, v in zip(e.paths, e.values)]

    def record(self, path: Path, *, unit: str = "", numeric: bool = False) -> bool:
        """Save the current value of ``path`` (once; later calls keep the first value).

        Args:
            unit: units of the value (for dry-run lines when it is restored).
            numeric: save only an integer value (``scaling_setspeed`` reads ``<unsupported>`` unless the
                governor is ``userspace``); returns ``False`` when it is not one.

        Raises:
            HardwareError: the file is missing or unreadable (names it).
        """
        if path in self._by_path:
            return True
        value = self.io.read(path)
        if numeric and not value.lstrip("-").isdigit():
            return False
        self._add(_Saved((path,), (value,), unit))
        return True

    def record_range(self, min_path: Path, max_path: Path, *, unit: str) -> None:
        """Save a ``(min, max)`` pair, restored together in the order that keeps ``min <= max``.

        Raises:
            HardwareError: a file is missing, unreadable or not an integer.
        """
        if min_path in self._by_path:
            return
        lo, hi = self.io.read_int(min_path), self.io.read_int(max_path)
        self._add(_Saved((min_path, max_path), (str(lo), str(hi)), unit))

    def original(self, path: Path) -> str | None:
        """The saved value of ``path`` (``None`` when it was not recorded)."""
        entry = self._by_path.get(path)
        return None if entry is None else entry.values[entry.paths.index(path)]

    def _add(self, entry: _Saved, *, persist: bool = True) -> None:
        self._entries.append(entry)
        for p in entry.paths:
            self._by_path[p] = entry
        if persist:
            self._persist()

    def _board_path(self, path: Path) -> str:
        """``path`` as a board path (``/sys/...``), relative to the io's root."""
        try:
            return "/" + str(path.relative_to(self.io.root))
        except ValueError:
            return str(path)

    def _persist(self) -> None:
        """Write the journal file (atomically; every original value as first recorded)."""
        if self.file is None:
            return
        with self.lock:
            entries = [{"paths": [self._board_path(p) for p in e.paths], "values": list(e.values), "unit": e.unit}
                       for e in self._entries]
            data = {"version": JOURNAL_VERSION, "pid": os.getpid(), "time": self._started,
                    "root": str(self.io.root), "entries": entries}
            try:
                write_json(self.file, data)
            except OSError as exc:
                raise HardwareError(f"cannot write the board's restore journal {self.file} "
                                    f"({exc.strerror or exc}); {ROOT_HINT}") from None
            if self._removed:  # restored meanwhile (a signal handler ran during the write): nothing to keep
                self._remove_file()

    def _remove_file(self) -> None:
        """Delete the journal file, and what a write of it killed midway left (``<name>.tmp-*``)."""
        if self.file is None:
            return
        self._removed = True
        self.file.unlink(missing_ok=True)
        for stale in self.file.parent.glob(self.file.name + TMP_MARK + "*"):
            stale.unlink(missing_ok=True)

    def _on_write(self, path: Path, old: str | None, new: str) -> None:
        entry = self._by_path.get(path)
        if entry is not None:
            entry.touched = True
        if self._undo is not None and old is not None:
            self._undo.append((path, old))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Undo the block's writes, newest first, if it raises an :class:`Exception`.

        The exception propagates; when undoing also fails, :class:`UndoFailedError` names the files left changed
        (with their values before the block) and chains the original error.
        """
        with self.lock:
            self._undo = []
            touched = [e.touched for e in self._entries]
            try:
                yield
            except Exception as exc:
                undo, self._undo = self._undo, None
                failures = []
                for path, old in reversed(undo):
                    try:
                        self.io.write(path, old)
                    except (HardwareError, SettingError, OSError) as err:
                        failures.append(f"{path} (was {old!r}: {err})")
                if failures:
                    raise UndoFailedError(
                        f"{exc}; undoing the writes made before the failure also failed, these files are left "
                        f"changed: {'; '.join(failures)}"
                    ) from exc
                for entry, was in zip(self._entries, touched):  # fully undone: nothing new to restore
                    entry.touched = was
                raise
            finally:
                self._undo = None

    def restore(self) -> list[str]:
        """Write back every changed file, newest recording first; returns one message per file that failed.

        Files never written are left alone (so a read-only or dry-run backend restores nothing). Each failure
        names the file and the value it should hold, so it can be fixed by hand. With no failure the journal file
        (if any) is deleted; otherwise it stays, for ``e4gym restore``.
        """
        failures: list[str] = []
        with self.lock:
            for entry in reversed(self._entries):
                if not entry.touched:
                    continue
                try:
                    if len(entry.paths) == 2:
                        write_range(self.io, entry.paths[0], entry.paths[1], int(entry.values[0]),
                                    int(entry.values[1]), unit=entry.unit)
                    else:
                        self.io.write(entry.paths[0], entry.values[0], unit=entry.unit)
                    entry.touched = False
                except (HardwareError, SettingError, OSError, ValueError) as exc:
                    want = ", ".join(f"{p} = {v}" for p, v in zip(entry.paths, entry.values))
                    failures.append(f"{want} ({exc})")
            if not failures:
                self._remove_file()
        return failures
