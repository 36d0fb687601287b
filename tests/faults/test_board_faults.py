"""Killed runs leave no process behind and no board changed (issue 14, finding 2).

A bench killed by SIGKILL or SIGTERM, to its parent alone (as an OOM killer does) or to its whole process group,
leaves no process running: pool workers die with their parent (``prctl(PR_SET_PDEATHSIG)`` and a parent-pid
watch), restoring any board they drive. What a SIGKILL gave no time to restore is put back by ``e4gym restore``
from the journal the backend keeps beside the board lock. Benches run on fake Xavier NX trees
(``tests/hardware/fake_jetson.py``) while a thread plays the kernel (current clocks follow the written settings).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hardware"))  # the fake boards live there

from fake_jetson import FakeBoard, build_xavier_nx

from e4gym.cli import main
from e4gym.errors import HardwareError
from e4gym.hardware.jetson import JetsonBackend
from e4gym.hardware.lock import JOURNAL_FILE, LOCK_FILE
from e4gym.hardware.restore import unregister

#: Longest wait for processes to end, or for a bench to reach a state (s): generous, the machine may be busy.
TIMEOUT_S = 60.0


# ---------------------------------------------------------------------------------------------- helpers


def _group(pgid: int) -> list[int]:
    """The live processes (zombies excluded) of process group ``pgid``."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(name))
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen, log: Path) -> None:
    """Poll ``ready`` until it holds; fail (with the bench's output) if the bench ends or the time runs out."""
    deadline = time.monotonic() + TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the bench ended (status {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)


def _wait_no_process(pgid: int) -> float:
    """Wait until process group ``pgid`` has no live process; returns how long it took (s)."""
    t0 = time.monotonic()
    while (left := _group(pgid)) and time.monotonic() - t0 < TIMEOUT_S:
        time.sleep(0.05)
    assert not left, f"processes left running after the kill: {[(p, _cmdline(p)) for p in left]}"
    return time.monotonic() - t0


@contextmanager
def _started(cmd: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in a new session (its own process group); kill the whole group afterwards, whatever happened."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        _kill_group_and_reap(proc)


def _kill_group_and_reap(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group (if any of it is left) and wait for ``proc``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=TIMEOUT_S)


def _kill(proc: subprocess.Popen, sig: signal.Signals, target: str) -> None:
    """Send ``sig`` to the bench's parent alone or to its whole process group, then reap the parent."""
    if target == "parent":
        os.kill(proc.pid, sig)
    else:
        os.killpg(proc.pid, sig)
    proc.wait(timeout=TIMEOUT_S)


def _board_config(tmp_path: Path, frames: int = 200) -> Path:
    """A one-task experiment on the Xavier NX at 10 fps (``frames`` / 10 seconds on the board)."""
    config = tmp_path / "board.yaml"
    config.write_text(yaml.safe_dump({
        "name": "board", "env": {"episode_frames": frames},
        "matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [10]},
        "seeds": [0],
        "policies": [{"name": "static", "label": "low", "args": {"cpu_level": 2, "gpu_level": 1, "exit": 0}}],
    }))
    return config


def _bench_cmd(config: Path | str, out: Path, tree: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "e4gym.cli", "bench", "--config", str(config), "--out", str(out), "--quiet",
            "--backend", "jetson", "--sysfs-root", str(tree), "--runner-device", "cpu", *extra]


def _driving(board: FakeBoard) -> bool:
    """Whether the backend has taken the board over (its journal is on disk, the CPU runs ``userspace``)."""
    return (board.root / JOURNAL_FILE).is_file() and board.policy(0, "scaling_governor") == "userspace"


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    """Files that differ, but the current clocks (the fake kernel moves them to what the settings select)."""
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k) and "cur_freq" not in k)


def _restore(tree: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["restore", "--sysfs-root", str(tree)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ---------------------------------------------------------------------------------------------- e4gym restore


def test_restore_without_a_journal_has_nothing_to_restore(tmp_path: Path, capsys) -> None:
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    rc, out, err = _restore(board.root, capsys)
    assert rc == 0, err
    assert "nothing to restore" in out and str(board.root / JOURNAL_FILE) in out
    assert board.snapshot() == before


def test_restore_is_refused_while_a_live_process_owns_the_board(tmp_path: Path, capsys) -> None:
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    owner = JetsonBackend(sysfs_root=board.root, power_source="sysfs")
    try:
        owner.apply((2, 1, 0))
        journal = (board.root / JOURNAL_FILE).read_text()
        rc, out, err = _restore(board.root, capsys)
        assert rc == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert f"in use by process {os.getpid()}" in lines[0] and f"kill {os.getpid()}" in lines[0]
        assert "restore" in lines[0] and not out
        assert (board.root / JOURNAL_FILE).read_text() == journal  # untouched, and so is the board
        assert board.policy(0, "scaling_governor") == "userspace"
    finally:
        owner.close()
    assert not (board.root / JOURNAL_FILE).exists()  # a clean restore deletes it
    assert board.snapshot() == before


@pytest.mark.parametrize("text", ["{not json", '{"version": 1, "pid": 1, "time": 0, "entries": [{"paths": 3}]}',
                                  '["a list"]', ""])
def test_a_corrupt_journal_is_a_one_line_error_naming_the_file(tmp_path: Path, capsys, text: str) -> None:
    board = build_xavier_nx(tmp_path / "tree")
    path = board.root / JOURNAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    rc, out, err = _restore(board.root, capsys)
    assert rc == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "corrupt" in lines[0], err
    assert path.read_text() == text  # kept: the owner of the board decides
    # A backend refuses to take over a board whose journal it cannot read (it could not restore the originals).
    with pytest.raises(HardwareError, match="corrupt"):
        JetsonBackend(sysfs_root=board.root, power_source="sysfs")
    assert not (board.root / LOCK_FILE).read_text().strip()  # and released the lock


def test_restore_puts_back_what_a_sigkilled_owner_left(tmp_path: Path, capsys) -> None:
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    code = textwrap.dedent(f"""
        import time
        from e4gym.hardware.jetson import JetsonBackend
        b = JetsonBackend(sysfs_root={str(board.root)!r}, power_source="sysfs", cpu_online=4)
        b.apply((2, 1, 0))
        b.apply((5, 3, 1))
        print("ready", flush=True)
        time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        assert owner.stdout.readline().strip() == "ready"
        assert _changed(before, board.snapshot())  # the board is changed ...
        os.kill(owner.pid, signal.SIGKILL)  # ... and its owner gets no time to restore it
        owner.wait(timeout=TIMEOUT_S)
    finally:
        _kill_group_and_reap(owner)
        owner.stdout.close()
    data = json.loads((board.root / JOURNAL_FILE).read_text())
    assert data["pid"] == owner.pid
    # The journal holds the values found before the first write, once: the second apply() did not rewrite them.
    saved = {p: v for e in data["entries"] for p, v in zip(e["paths"], e["values"])}
    pol = board.policies[0]
    assert saved[f"{pol}/scaling_governor"] == "schedutil"
    assert saved[f"{pol}/scaling_min_freq"] == before[f"{pol.lstrip('/')}/scaling_min_freq"].decode().strip()
    assert saved["/sys/devices/system/cpu/cpu5/online"] == "1"
    rc, out, err = _restore(board.root, capsys)
    assert rc == 0, err
    assert f"left by process {owner.pid}" in out and f"restored {board.root}/{pol.lstrip('/')}/scaling_governor" in out
    assert "userspace -> schedutil" in out and "cpu5/online: 0 -> 1" in out
    assert not (board.root / JOURNAL_FILE).exists()
    assert _changed(before, board.snapshot()) == []
    rc, out, _ = _restore(board.root, capsys)  # a second run has nothing left to do
    assert rc == 0 and "nothing to restore" in out


def test_a_new_owner_keeps_the_originals_a_killed_one_recorded(tmp_path: Path) -> None:
    # A run after a SIGKILLed one (no `e4gym restore` between) must not take the changed board for the original.
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    first = JetsonBackend(sysfs_root=board.root, power_source="sysfs")
    first.apply((2, 1, 0))
    stale = (board.root / JOURNAL_FILE).read_text()
    # As if its process died: the kernel drops the lock, nothing is restored, nothing more is written.
    first._closed = first.io.sealed = True
    unregister(first._restorer)
    first._release_board()
    first._power.close()
    with pytest.warns(UserWarning, match="ended without restoring the board"):
        second = JetsonBackend(sysfs_root=board.root, power_source="sysfs")
    try:
        second.apply((7, 4, 1))
        data = json.loads((board.root / JOURNAL_FILE).read_text())
        assert data["pid"] == os.getpid() and data["time"] == json.loads(stale)["time"]
        saved = {p: v for e in data["entries"] for p, v in zip(e["paths"], e["values"])}
        assert saved[f"{board.policies[0]}/scaling_governor"] == "schedutil"
    finally:
        second.close()
    assert not (board.root / JOURNAL_FILE).exists()
    assert _changed(before, board.snapshot()) == []


# ---------------------------------------------------------------------------------------------- killed benches


@pytest.mark.slow
def test_quickstart_unchanged_on_a_fake_board_restores_every_file(tmp_path: Path, capsys) -> None:
    # Held-out check A: the quickstart config as shipped (two frames and one seed, to keep it short), default
    # --jobs, on a fake board: every file is restored and the journal is gone.
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    with board.kernel():
        rc = main(["bench", "--config", "quickstart", "--out", str(tmp_path / "out"), "--quiet", "--backend",
                   "jetson", "--sysfs-root", str(board.root), "--runner-device", "cpu", "--frames", "2",
                   "--seeds", "0"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())["rows"]) == 11
    assert not (board.root / JOURNAL_FILE).exists()
    assert _changed(before, board.snapshot()) == []


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "target"), [(signal.SIGKILL, "parent"), (signal.SIGTERM, "parent"),
                                             (signal.SIGTERM, "group"), (signal.SIGKILL, "group")],
                         ids=["SIGKILL-parent", "SIGTERM-parent", "SIGTERM-group", "SIGKILL-group"])
def test_a_killed_bench_leaves_no_process_and_restore_puts_the_board_back(
    tmp_path: Path, capsys, sig: signal.Signals, target: str
) -> None:
    # Held-out check B.
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    log = tmp_path / "bench.log"
    with board.kernel(), _started(_bench_cmd(_board_config(tmp_path), tmp_path / "out", board.root), log) as proc:
        _wait_for("the backend driving the board", lambda: _driving(board), proc, log)
        time.sleep(0.3)  # a few frames in
        _kill(proc, sig, target)
        _wait_no_process(proc.pid)
        rc, out, err = _restore(board.root, capsys)
    assert rc == 0, err
    if sig == signal.SIGTERM:  # the bench restored the board itself before it ended
        assert "nothing to restore" in out, out
    assert not (board.root / JOURNAL_FILE).exists()
    assert _changed(before, board.snapshot()) == [], log.read_text()[-3000:]


@pytest.mark.slow
def test_benches_killed_at_random_points_are_restored(tmp_path: Path, capsys) -> None:
    rng = random.Random(14)
    restored = []
    for round_ in range(4):
        board = build_xavier_nx(tmp_path / f"tree{round_}")
        before = board.snapshot()
        log = tmp_path / f"bench{round_}.log"
        cmd = _bench_cmd(_board_config(tmp_path, frames=40), tmp_path / f"out{round_}", board.root)
        with board.kernel(), _started(cmd, log) as proc:
            if round_ % 2:  # anywhere from start-up to the middle of the episode
                time.sleep(rng.uniform(0.0, 8.0))
            else:  # while the backend opens and takes the board over (recording, then the first writes)
                _wait_for("the restore journal", lambda b=board: (b.root / JOURNAL_FILE).is_file(), proc, log)
                time.sleep(rng.uniform(0.0, 0.3))
            _kill(proc, signal.SIGKILL, "parent")
            _wait_no_process(proc.pid)
            rc, out, err = _restore(board.root, capsys)
        assert rc == 0, err
        assert not (board.root / JOURNAL_FILE).exists()
        assert _changed(before, board.snapshot()) == [], f"round {round_}: {out}"
        restored.append("nothing to restore" not in out)
    assert any(restored)  # some kills left the board changed (the delays are seeded: the same on every run)


# ---------------------------------------------------------------------------------------------- pool workers


def _spawn_workers(proc: subprocess.Popen) -> list[int]:
    return [p for p in _group(proc.pid) if p != proc.pid and "spawn_main" in _cmdline(p)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_pool_workers_die_with_their_parent(tmp_path: Path, sig: signal.Signals) -> None:
    # Finding 2: killing only the parent of an emulated --jobs 2 bench left its spawn-pool workers waiting for
    # tasks forever.
    log = tmp_path / "bench.log"
    cmd = [sys.executable, "-m", "e4gym.cli", "bench", "--config", "quickstart", "--out", str(tmp_path / "out"),
           "--quiet", "--jobs", "2", "--frames", "300"]
    with _started(cmd, log) as proc:
        _wait_for("two pool workers", lambda: len(_spawn_workers(proc)) >= 2, proc, log)
        time.sleep(2.0)  # at work
        _kill(proc, sig, "parent")
        _wait_no_process(proc.pid)


@pytest.mark.slow
def test_a_pool_worker_driving_a_board_restores_it_when_its_parent_is_killed(tmp_path: Path) -> None:
    # A board task in a pool worker (as a bench runs it when a worker process holds the board): SIGKILL to the
    # parent alone; the kernel's SIGTERM (PR_SET_PDEATHSIG) reaches the worker, which restores the board and ends.
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    code = textwrap.dedent(f"""
        from pathlib import Path
        from e4gym.bench.config import load_experiment
        from e4gym.bench.runner import _run_pending, build_tasks
        exp = load_experiment({str(_board_config(tmp_path))!r}, backend={{"backend": "jetson", "backend_kwargs": {{
            "sysfs_root": {str(board.root)!r}, "runner_device": "cpu"}}}})
        _run_pending(build_tasks(exp), Path({str(tmp_path / "out")!r}), 2, True, "board")
    """)
    log = tmp_path / "bench.log"
    with board.kernel(), _started([sys.executable, "-c", code], log) as proc:
        _wait_for("the worker driving the board", lambda: _driving(board), proc, log)
        owner = int((board.root / LOCK_FILE).read_text())
        assert owner != proc.pid and owner in _spawn_workers(proc)  # a worker holds the board
        time.sleep(0.3)
        _kill(proc, signal.SIGKILL, "parent")
        _wait_no_process(proc.pid)
    assert not (board.root / JOURNAL_FILE).exists(), log.read_text()[-3000:]  # restored with no `e4gym restore`
    assert _changed(before, board.snapshot()) == [], log.read_text()[-3000:]
    assert "restoring the Jetson board" in log.read_text()
