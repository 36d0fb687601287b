"""Process-wide safety of the real backends: what they changed on the hardware is put back when the process ends,
and from the journal on disk when the process had no time to (``e4gym restore``).

Every real backend that changes something (a Jetson's clocks, governors and online cores; an NVIDIA GPU's
locked clocks) registers how to undo it with :func:`register` and unregisters once it has restored the
hardware itself (:func:`unregister`, from its ``close()``). While anything is registered:

* at interpreter exit (``atexit``), everything still registered is restored;
* on SIGINT / SIGTERM, everything is restored, then the previous handler runs (a Python handler is called; the
  default action is taken again, so SIGTERM still ends the process and SIGINT raises ``KeyboardInterrupt``).
  Handlers are installed from the main thread only (Python's rule); a signal the process ignores (``SIG_IGN``,
  e.g. SIGINT in a background job) stays ignored. With nothing left registered, the previous handlers are put
  back.

Restorers run in reverse order of registration, only in the process that registered them (a forked child does
not restore its parent's hardware); one that fails does not stop the others, and what it could not restore is
printed to stderr. A restorer unregisters itself when it runs, as the backends' do, so it runs once.

Worker processes die with their parent (:func:`die_with_parent`, called by ``e4gym bench``'s pool workers): on
Linux the kernel sends them SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``), and a thread that polls
the parent's pid every :data:`PARENT_POLL_S` does the same where prctl is missing; the SIGTERM goes through the
handler above, so a worker restores the board it drives, then ends. An orphan never keeps driving a board.

A SIGKILL (or an OOM kill, or a power cut) leaves no time to restore anything: the Jetson backend keeps its
journal (the original value of every file it may change, recorded before its first write) beside the board
lock, in ``<root>/run/e4gym-restore.json``, and deletes it after a clean restore. :func:`restore_board` (the
``e4gym restore`` command) puts the board back from a journal left there: it takes the board's lock first, so
it refuses while a live process owns the board (that process restores the board itself when it ends).
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PARENT_POLL_S", "BoardRestore", "Restorer", "die_with_parent", "register", "restore_board", "unregister"]

#: How often a worker's watch thread checks that its parent still lives (s).
PARENT_POLL_S = 0.5
#: How long the watch thread leaves the SIGTERM handler to restore and end the process before it restores the
#: hardware itself and exits (s): the handler waits for the main thread to come back to Python code.
PARENT_GONE_GRACE_S = 10.0
#: ``PR_SET_PDEATHSIG`` of ``<linux/prctl.h>``.
_PR_SET_PDEATHSIG = 1


@dataclass(eq=False)
class Restorer:
    """One registered undo (the handle :func:`register` returns).

    Attributes:
        restore: puts the hardware back; returns what it could not restore (empty or ``None``: all of it).
        what: what it restores, for the message printed when the registry runs it (e.g. ``"the Jetson board's
            clocks and governors (/)"``).
        pid: the process that registered it.
    """

    restore: Callable[[], Sequence[str] | None]
    what: str
    pid: int = field(default_factory=os.getpid)


_REGISTRY_LOCK = threading.RLock()  # re-entrant: a signal handler may run while the main thread holds it
_OPEN: list[Restorer] = []
_PREVIOUS_HANDLERS: dict[int, Any] = {}
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_atexit_installed = False


def register(restore: Callable[[], Sequence[str] | None], what: str) -> Restorer:
    """Run ``restore`` if the process exits or gets SIGINT / SIGTERM before :func:`unregister`.

    Installs the atexit hook (once) and, from the main thread, the signal handlers.

    Args:
        restore: puts the hardware back; returns what it could not restore. It may also be called by its owner
            (``close()``): it must then do nothing the second time.
        what: what it restores (printed when the registry runs it).

    Returns:
        The handle to pass to :func:`unregister`.
    """
    global _atexit_installed
    entry = Restorer(restore, what)
    with _REGISTRY_LOCK:
        _OPEN.append(entry)
        if not _atexit_installed:
            atexit.register(_restore_all, "the interpreter is exiting")
            _atexit_installed = True
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                current = signal.getsignal(sig)
                if current == signal.SIG_IGN:  # an ignored signal stays ignored: it must not restore anything
                    continue
                if current is not _on_signal:
                    _PREVIOUS_HANDLERS[sig] = current
                    signal.signal(sig, _on_signal)
    return entry


def unregister(entry: Restorer | None) -> None:
    """Forget a restorer (its owner restored the hardware); with none left, put the previous signal handlers back
    (main thread only). ``None`` and a restorer already forgotten are ignored."""
    with _REGISTRY_LOCK:
        if entry in _OPEN:
            _OPEN.remove(entry)
        if _OPEN or threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in list(_PREVIOUS_HANDLERS.items()):
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            del _PREVIOUS_HANDLERS[sig]


def _restore_all(reason: str) -> None:
    """Run every restorer this process registered and has not unregistered, newest first (atexit and signals)."""
    with _REGISTRY_LOCK:
        entries = [e for e in reversed(_OPEN) if e.pid == os.getpid()]
    for entry in entries:
        print(f"e4gym: {reason}: restoring {entry.what}", file=sys.stderr, flush=True)
        try:
            failures = list(entry.restore() or ())
        except Exception as exc:  # keep restoring the others
            failures = [str(exc)]
        if failures:
            print("e4gym: could not restore: " + "; ".join(failures), file=sys.stderr, flush=True)


_in_handler = False  # the main thread is in _on_signal (Python runs handlers there only)


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT / SIGTERM: restore the hardware, then do what the previous handler would have done.

    Not re-entered: a second signal while the first one's restore runs (a worker whose parent died gets the
    kernel's SIGTERM and its watch thread's) is dropped, since a nested handler would find the restorer already
    started, and kill the process halfway through the restore.
    """
    global _in_handler
    if _in_handler:
        return
    _in_handler = True
    try:
        previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
        _restore_all(f"{signal.Signals(signum).name} received")
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL (or a handler not installed from Python): die of the signal as the default action would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
    finally:
        _in_handler = False


# ---------------------------------------------------------------------------------------------- workers


def _set_pdeathsig(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux); returns whether it took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _parent_gone(parent_pid: int) -> None:
    """The parent died: SIGTERM this process's main thread (the handler restores the hardware, then the process
    ends; sent to the main thread so that a blocking call there is interrupted); if the process still runs after
    :data:`PARENT_GONE_GRACE_S`, restore here and exit."""
    if signal.getsignal(signal.SIGTERM) != signal.SIG_IGN:
        main = threading.main_thread().ident
        if main is not None and threading.main_thread().is_alive():
            signal.pthread_kill(main, signal.SIGTERM)
        else:
            os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(PARENT_GONE_GRACE_S)
    _restore_all(f"the parent process {parent_pid} died")
    os._exit(128 + signal.SIGTERM)


def _watch_parent(parent_pid: int, poll_s: float) -> None:
    """Poll the parent's pid until the parent is gone (the first check at once), then :func:`_parent_gone`."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # the kernel's SIGTERM goes to another thread
    while os.getppid() == parent_pid:
        threading.Event().wait(poll_s)
    _parent_gone(parent_pid)


def die_with_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> bool:
    """End this process, restoring what it registered, when process ``parent_pid`` (its parent) dies.

    Called in a worker process (``e4gym bench``'s pool initializer). On Linux ``prctl(PR_SET_PDEATHSIG,
    SIGTERM)`` makes the kernel send SIGTERM at the parent's death, however it died (SIGKILL and OOM kills
    included); a daemon thread also polls :func:`os.getppid` every ``poll_s`` seconds (where prctl is missing,
    and for a parent that died before prctl took effect). SIGTERM runs this module's handler while a backend is
    registered (it restores the board, then the process ends), else the default action ends the process.
    The process stays in its parent's process group.

    Args:
        parent_pid: the parent's pid, as the parent gave it (``os.getppid()`` here may already be another).
        poll_s: period of the watch thread (s).

    Returns:
        Whether the kernel will signal the parent's death (prctl took); the watch thread runs either way.
    """
    armed = _set_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect: the kernel will not signal it
        _parent_gone(parent_pid)
    watcher = threading.Thread(target=_watch_parent, args=(parent_pid, float(poll_s)), daemon=True,
                               name="e4gym-parent-watch")
    watcher.start()
    return armed


# ---------------------------------------------------------------------------------------------- e4gym restore


@dataclass
class BoardRestore:
    """What :func:`restore_board` did.

    Attributes:
        journal: the journal file. owner: the process that left it. started: when that process recorded its first
            original value (Unix s).
        written: ``(file, value before, value restored)`` of every file that did not hold its original value.
        checked: files the journal listed (those already at their original value were not written).
        failures: one message per file that could not be restored (names it and the value it should hold); the
            journal is kept when there is any.
    """

    journal: Path
    owner: int
    started: float
    written: list[tuple[str, str | None, str]]
    checked: int
    failures: list[str]


def restore_board(root: str | Path = "/") -> BoardRestore | None:
    """Put the board at ``root`` back from the restore journal a crashed owner left (``e4gym restore``).

    Takes the board's lock for the duration (so no run starts meanwhile), writes back every journaled file that
    does not hold its original value (in reverse order of recording, ``[min, max]`` pairs in the order that keeps
    ``min <= max``), and deletes the journal when all were restored.

    Returns:
        What it did, or ``None`` when there is no journal (nothing to restore).

    Raises:
        HardwareError: a live process holds the board's lock (names its pid and the fix); the journal is corrupt
            (names the file); the lock cannot be taken (names the fix).
    """
    from e4gym.errors import HardwareError
    from e4gym.hardware.lock import JOURNAL_FILE, BoardInUseError, BoardLock
    from e4gym.hardware.sysfs import Journal, Sysfs

    root = Path(root)
    try:
        lock = BoardLock(root)
    except BoardInUseError as exc:
        raise HardwareError(
            f"the board at {root} is in use by process {exc.owner} (lock {exc.path}), which restores it itself when "
            f"it ends: wait for it, or stop it (kill {exc.owner}), then run e4gym restore again"
        ) from None
    try:
        io = Sysfs(root)
        journal = Journal(io, root / JOURNAL_FILE)
        adopted = journal.adopted
        if adopted is None:
            return None
        written: list[tuple[str, str | None, str]] = []
        hook = io.on_write

        def on_write(path: Path, old: str | None, new: str) -> None:
            written.append((str(path), old, new))
            if hook is not None:
                hook(path, old, new)

        io.on_write = on_write
        failures = journal.restore()
        checked = sum(len(paths) for paths, _, _ in adopted.entries)
        return BoardRestore(adopted.path, adopted.pid, adopted.time, written, checked, failures)
    finally:
        lock.release()
