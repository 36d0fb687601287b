"""One owner per board: a real backend locks its board; a second opener is refused, naming the owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_jetson import build_xavier_nx

from e4gym.errors import HardwareError
from e4gym.hardware.jetson import JetsonBackend
from e4gym.hardware.lock import LOCK_FILE, BoardLock


def _open(root: Path, **kw) -> JetsonBackend:
    return JetsonBackend(sysfs_root=root, power_source="sysfs", **kw)


def test_a_second_backend_on_one_board_is_refused_naming_the_owner(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    first = _open(board.root)
    assert (board.root / LOCK_FILE).read_text().strip() == str(os.getpid())
    with pytest.raises(HardwareError, match=rf"in use by process {os.getpid()} .*one controller per board"):
        _open(board.root)
    # Reading the board does not take it (and is not refused).
    _open(board.root, read_only=True).close()
    first.close()
    second = _open(board.root)  # released at close
    second.close()
    assert board.snapshot() == before


def test_the_lock_dies_with_its_owner_even_on_sigkill(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    code = textwrap.dedent(f"""
        import sys, time
        from e4gym.hardware.jetson import JetsonBackend
        b = JetsonBackend(sysfs_root={str(board.root)!r}, power_source="sysfs")
        print("ready", flush=True)
        time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "ready"
        with pytest.raises(HardwareError, match=f"in use by process {owner.pid}"):
            _open(board.root)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
    # The kernel dropped the dead owner's lock; the next owner finds its restore journal and restores from it.
    with pytest.warns(UserWarning, match=rf"process {owner.pid} ended without restoring the board"):
        second = _open(board.root)
    second.close()
    assert board.snapshot() == before


def test_an_unwritable_lock_place_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import e4gym.hardware.lock as lock_module

    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(lock_module.os, "open", denied)  # as for a user who may not write /run
    with pytest.raises(HardwareError, match=r"board\.lock \(Permission denied\); run as root, or .*read_only=True"):
        BoardLock(tmp_path)
