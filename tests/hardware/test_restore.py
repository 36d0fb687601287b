"""The restore registry shared by the real backends: order, failures, forks, signal handlers."""

from __future__ import annotations

import os
import signal

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
