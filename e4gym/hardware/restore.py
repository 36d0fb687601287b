"""Process-wide safety of the real backends: what they changed on the hardware is put back when the process ends.

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
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Restorer", "register", "unregister"]


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


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT / SIGTERM: restore the hardware, then do what the previous handler would have done."""
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    _restore_all(f"{signal.Signals(signum).name} received")
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or a handler not installed from Python): die of the signal as the default action would
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
