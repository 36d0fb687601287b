"""One owner per board: an exclusive lock a real backend holds on its board for its whole life.

Two controllers on one board clobber each other: the second records the first one's settings as the board's
originals (and restores those), and every measurement of both is wrong. A backend that writes to a board takes
:class:`BoardLock` first: ``flock`` on ``<root>/run/e4gym-board.lock`` (``/run/e4gym-board.lock`` on a board;
inside the tree for a fake one), with the owner's pid written in it for the error message. The kernel drops
the lock when the owner's file descriptor closes, so a crashed or SIGKILLed owner never leaves the board
locked.

Beside the lock lies the owner's restore journal (:data:`JOURNAL_FILE`, ``<root>/run/e4gym-restore.json``: the
original value of every file the owner may change, see :class:`e4gym.hardware.sysfs.Journal`), from which
``e4gym restore`` puts the board back after a crash that left no time to restore it (SIGKILL, an OOM kill).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from e4gym.errors import HardwareError

#: Where the lock file lives, relative to the board's root.
LOCK_FILE = Path("run") / "e4gym-board.lock"
#: Where the lock's owner keeps its restore journal, relative to the board's root.
JOURNAL_FILE = Path("run") / "e4gym-restore.json"


class BoardInUseError(HardwareError):
    """Another process (or another backend of this process) holds the board's lock.

    Attributes:
        owner: the owner's pid as its lock file says (``"unknown"`` when it wrote none).
        path: the lock file.
    """

    def __init__(self, message: str, owner: str, path: Path) -> None:
        super().__init__(message)
        self.owner = owner
        self.path = path


class BoardLock:
    """An exclusive, non-blocking lock on the board at ``root`` (its ``/``), held until :meth:`release`.

    Raises:
        BoardInUseError: another process (or another backend of this process) holds it: names the owner's pid.
        HardwareError: the lock file cannot be created (names the path and the fix).
    """

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / LOCK_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HardwareError(f"cannot create the board lock {self.path} ({exc.strerror}); run as root, or open "
                                "the backend with read_only=True to only read the board") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            raise BoardInUseError(
                f"the board at {Path(root)} is in use by process {owner} (lock {self.path}); one controller per "
                "board: wait for that process to end or stop it (two would clobber each other's settings)",
                owner, self.path,
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Give the board up (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
