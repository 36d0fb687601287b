"""The restore registry shared by the real backends: order, failures, forks, signal handlers, and workers that
end (restoring what they hold) when their parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from e4gym.hardware import restore


@pytest.fixture
def registry():
    """The registry as a test leaves it: everything it registered forgotten, the handlers put back."""
    entries: list[restore.Restorer] = []
    yield entries
    for entry in entries:
        restore.unregister(entry)


def test_restores_newest_first_and_keeps_going_after_a_failure(registry, capsys) -> None:
    done: list[str] = []

    def fails() -> list[str]:
        done.append("b")
        raise OSError("file gone")

    registry.append(restore.register(lambda: done.append("a") or [], "board A"))
    registry.append(restore.register(fails, "board B"))
    registry.append(restore.register(lambda: done.append("c") or ["x = 1"], "board C"))
    restore._restore_all("a test")
    assert done == ["c", "b", "a"]
    err = capsys.readouterr().err
    assert "e4gym: a test: restoring board C" in err and "restoring board A" in err
    assert "could not restore: x = 1" in err and "could not restore: file gone" in err


def test_a_forked_child_does_not_restore_its_parents_hardware(registry) -> None:
    done: list[str] = []
    entry = restore.register(lambda: done.append("parent") or [], "the parent's board")
    registry.append(entry)
    entry.pid = os.getpid() + 1  # as a child sees its parent's entry
    restore._restore_all("a test")
    assert done == []


def test_signal_handlers_installed_while_registered_then_put_back(registry) -> None:
    def mine(signum, frame) -> None:
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        first = restore.register(lambda: [], "one")
        second = restore.register(lambda: [], "two")
        registry += [first, second]
        assert signal.getsignal(signal.SIGTERM) is restore._on_signal
        restore.unregister(first)
        assert signal.getsignal(signal.SIGTERM) is restore._on_signal  # one is still registered
        restore.unregister(second)
        restore.unregister(second)  # forgetting twice is harmless
        restore.unregister(None)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


def test_a_signal_restores_then_calls_the_previous_handler(registry) -> None:
    calls: list[str] = []

    def mine(signum, frame) -> None:
        calls.append("previous")

    old = signal.signal(signal.SIGTERM, mine)
    try:
        entry = restore.register(lambda: calls.append("restored") or restore.unregister(entry), "a board")
        registry.append(entry)
        signal.raise_signal(signal.SIGTERM)
        assert calls == ["restored", "previous"]
        assert signal.getsignal(signal.SIGTERM) is mine  # the restorer unregistered: nothing left
    finally:
        signal.signal(signal.SIGTERM, old)


def test_a_second_signal_during_the_restore_does_not_cut_it_short(registry) -> None:
    # A worker whose parent died gets two SIGTERMs (the kernel's and its watch thread's); a nested handler would
    # find the restorer started and end the process halfway through the restore (seen once in CI).
    calls: list[str] = []

    def mine(signum, frame) -> None:
        calls.append("previous")

    def slow_restore() -> list[str]:
        calls.append("restore started")
        signal.raise_signal(signal.SIGTERM)  # arrives while restoring
        calls.append("restore finished")
        restore.unregister(entry)
        return []

    old = signal.signal(signal.SIGTERM, mine)
    try:
        entry = restore.register(slow_restore, "a board")
        registry.append(entry)
        signal.raise_signal(signal.SIGTERM)
        assert calls == ["restore started", "restore finished", "previous"]
        assert restore._in_handler is False
    finally:
        signal.signal(signal.SIGTERM, old)


# ---------------------------------------------------------------------------------------------- die_with_parent

_CHILD = """
import os, pathlib, sys, time
from e4gym.hardware import restore
marker, mode, parent = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if mode == "poll":  # as where prctl is missing: the watch thread alone
    restore._set_pdeathsig = lambda sig: False
restore.register(lambda: marker.write_text(f"restored by {os.getpid()}") and [], "a test board")
armed = restore.die_with_parent(parent, poll_s=0.1)
print(os.getpid(), armed, flush=True)
time.sleep(60)
"""
_MIDDLE = """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3], str(os.getpid())])
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mode", ["prctl", "poll"])
def test_a_worker_restores_and_ends_when_its_parent_is_sigkilled(tmp_path, mode) -> None:
    marker = tmp_path / "marker"
    middle = subprocess.Popen([sys.executable, "-c", _MIDDLE, _CHILD, str(marker), mode], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        pid, armed = middle.stdout.readline().split()
        assert armed == ("True" if mode == "prctl" else "False")
        os.kill(middle.pid, signal.SIGKILL)  # the parent alone, as an OOM killer would
        middle.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(int(pid)), "the worker outlived its parent"
        assert marker.read_text() == f"restored by {pid}"
    finally:
        try:
            os.killpg(middle.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        middle.wait(timeout=30)
        middle.stdout.close()


def test_a_worker_whose_parent_is_already_gone_ends_at_once() -> None:
    code = "from e4gym.hardware import restore; restore.die_with_parent(-1); import time; time.sleep(60)"
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == -signal.SIGTERM
