"""The edge-cloud env (DVFO, issue 18): spaces and checkers, determinism, the split's physics, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import e4gym
from e4gym.dnn.offload import (
    FEATURE_BYTES_PER_ELEMENT,
    QUANTISATION_LOSS,
    SplitPlan,
    default_split,
    split_accuracy_loss,
)
from e4gym.dnn.profile import load_model_profile
from e4gym.envs.edge_cloud import (
    CLOUD_MS,
    EDGE_CLOUD_INFO_KEYS,
    RADIO_ENERGY_J,
    TRANSFER_MS,
    TX_BYTES,
    EdgeCloudDVFSEnv,
)
from e4gym.errors import ConfigError, SettingError, UnknownNameError
from e4gym.hardware.link import constant_bandwidth
from e4gym.hardware.spec import available_devices, load_server

ID = e4gym.EDGE_CLOUD_ENV_ID


def _top(env: EdgeCloudDVFSEnv, share: int) -> np.ndarray:
    mx = env.setup.max_levels
    return np.array([share, mx[0], mx[1], mx[2]])


def _run(env: gym.Env, actions: list, seed: int = 0) -> list[dict]:
    env.reset(seed=seed)
    return [env.step(a)[4] for a in actions]


@pytest.mark.parametrize("device", available_devices())
def test_passes_gymnasiums_checker_on_every_board(device: str) -> None:
    env = gym.make(ID, device=device, episode_frames=50)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(EDGE_CLOUD_INFO_KEYS) <= set(info)
    for _ in range(5):
        obs, r, _, _, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(r)
        assert all(isinstance(v, np.generic) for v in info.values())


@pytest.mark.parametrize("device", available_devices())
def test_passes_sb3_checker_on_every_board(device: str) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check

    sb3_check(gym.make(ID, device=device, episode_frames=20).unwrapped, warn=False)


def test_same_seed_same_trajectory_and_seeds_differ() -> None:
    env = gym.make(ID, device="orin-nx")
    env.action_space.seed(3)
    actions = [env.action_space.sample() for _ in range(60)]
    a, b = _run(env, actions, seed=7), _run(gym.make(ID, device="orin-nx"), actions, seed=7)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(x[k] == y[k] for k in x)
    c = _run(env, actions, seed=8)
    assert any(x["latency_ms"] != y["latency_ms"] for x, y in zip(a, c))


def test_share_zero_is_the_frame_env_at_the_last_exit() -> None:
    """Edge-only runs the whole network on the board: the same run as the frame env's last exit, same seed."""
    ec = gym.make(ID, device="xavier-nx", control_memory=True).unwrapped
    fe = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", control_memory=True).unwrapped
    mx = ec.setup.max_levels
    ec.reset(seed=4)
    fe.reset(seed=4)
    for lv in [(mx[0], mx[1], mx[2]), (10, 6, 3), (mx[0], 2, mx[2])] * 5:
        i1 = ec.step(np.array([0, *lv]))[4]
        i2 = fe.step(np.array([fe.profile.n_exits - 1, *lv]))[4]
        shared = set(i1) & set(i2)
        assert {"latency_ms", "energy_j", "run_ms", "temp_c", "correct", "power_cpu_w"} <= shared
        for key in shared:
            assert i1[key] == i2[key], key
        assert i1[TX_BYTES] == 0 and i1[TRANSFER_MS] == 0 and i1[RADIO_ENERGY_J] == 0


def test_offloading_sends_the_share_and_waits_for_the_link() -> None:
    mbps = 4.0
    env = gym.make(ID, device="agx-orin", uplink=mbps, fps=5).unwrapped
    plan = env.plan
    env.reset(seed=0)
    info = env.step(_top(env, 5))[4]
    elements = float(np.prod(plan.split_shape))
    assert info[TX_BYTES] == pytest.approx(0.5 * elements * FEATURE_BYTES_PER_ELEMENT)
    # At 5 fps nothing queues: serialisation at 4 Mbit/s plus half the 20 ms RTT.
    assert info[TRANSFER_MS] == pytest.approx(info[TX_BYTES] * 8 / (mbps * 1e6) * 1e3 + 10.0, rel=1e-9)
    assert info[CLOUD_MS] > 0 and info[RADIO_ENERGY_J] > 0
    # End to end: the later of the edge's run and the cloud's answer (sent after the head; RTT/2 back).
    assert info["latency_ms"] >= info[TRANSFER_MS] + info[CLOUD_MS] + 10.0


def test_a_slow_uplink_queues_offloaded_frames_and_misses() -> None:
    env = gym.make(ID, device="agx-orin", uplink=0.5, fps=30).unwrapped
    env.reset(seed=0)
    lat = [env.step(_top(env, len(env.shares) - 1))[4]["latency_ms"] for _ in range(30)]
    assert lat[-1] > 5 * lat[0] > 0  # each frame waits for the ones before it on the link
    env.reset(seed=0)
    edge = [env.step(_top(env, 0))[4] for _ in range(30)]
    assert not any(i["deadline_missed"] for i in edge)


def test_more_offload_less_edge_work() -> None:
    env = gym.make(ID, device="jetson-nano", uplink=8.0, fps=2).unwrapped
    runs = []
    for share in (0, 5, len(env.shares) - 1):
        infos = _run(env, [_top(env, share)] * 20, seed=1)
        runs.append(np.mean([i["run_ms"] for i in infos]))
    assert runs[0] > runs[1] > runs[2]


def test_accuracy_model_anchored_at_both_ends() -> None:
    assert split_accuracy_loss(0.0, 0.0) == 0.0
    assert split_accuracy_loss(1.0, 1.0) == QUANTISATION_LOSS
    assert 0 < split_accuracy_loss(0.5, 0.5) <= 0.015
    env = gym.make(ID, device="orin-nx", uplink=8.0, fps=2, episode_frames=2000).unwrapped
    edge = _run(env, [_top(env, 0)] * 2000, seed=2)
    cloud = _run(env, [_top(env, len(env.shares) - 1)] * 2000, seed=2)
    acc_e, acc_c = (np.mean([i["correct"] for i in x]) for x in (edge, cloud))
    # Same frames: cloud-only can only lose, by about the quantisation loss.
    assert all(c["correct"] <= e["correct"] for e, c in zip(edge, cloud))
    assert 0.0 <= acc_e - acc_c <= 3 * QUANTISATION_LOSS + 0.01


def test_concurrent_applies_each_action_one_frame_later() -> None:
    env = gym.make(ID, device="xavier-nx", concurrent=True, uplink=8.0).unwrapped
    obs, _ = env.reset(seed=0)
    names = env.obs_names
    assert {"pending_share", "pending_cpu", "decision_latency"} <= set(names)
    assert obs[names.index("pending_share")] == 0.0
    low = np.array([len(env.shares) - 1, 3, 2, 1])
    first = env.step(low)[4]
    assert first[TX_BYTES] == 0.0  # the first frame runs the pending edge-only action
    obs, _, _, _, second = env.step(_top(env, 0))
    assert second[TX_BYTES] > 0 and second["cpu_hz"] == env.device_spec.cpu_freqs_hz[3]
    assert obs[names.index("pending_share")] == 0.0


def test_decision_time_delays_frames_unless_concurrent() -> None:
    def mean_latency(**kw: object) -> float:
        env = gym.make(ID, device="xavier-nx", uplink=8.0, fps=10, **kw).unwrapped
        return float(np.mean([i["latency_ms"] for i in _run(env, [_top(env, 0)] * 30)]))

    base = mean_latency()
    assert mean_latency(decision_ms=5.0) == pytest.approx(base + 5.0, abs=0.5)
    assert mean_latency(decision_ms=5.0, concurrent=True) == pytest.approx(base, abs=0.5)


def test_the_uplink_estimate_is_measured_not_the_future() -> None:
    trace = constant_bandwidth(2.0, rtt_ms=20.0)
    env = gym.make(ID, device="agx-orin", uplink=trace, fps=5).unwrapped
    env.reset(seed=0)
    i0 = env.step(_top(env, 0))[4]
    assert i0["uplink_estimate_mbps"] == pytest.approx(2.0)  # the prior: nothing measured yet
    infos = [env.step(_top(env, 4))[4] for _ in range(5)]
    assert infos[-1]["uplink_estimate_mbps"] == pytest.approx(2.0, rel=1e-6)  # what the transfers measured


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"shares": [0.0, 0.5, 1.5]}, r"offload shares must lie in \[0, 1\]"),
    ({"shares": [0.0, 0.5]}, "increase strictly from 0 to 1"),
    ({"shares": "abc"}, "list of numbers"),
    ({"split_block": 99}, "split_block must be in -1"),
    ({"split_block": 1.5}, "split_block must be an int"),
    ({"uplink": -3.0}, "must be > 0 Mbit/s"),
    ({"uplink": [1, 2]}, "uplink must be"),
    ({"radio": "5g"}, "radio must be one of"),
    ({"concurrent": "yes"}, "concurrent must be True or False"),
    ({"decision_ms": -1.0}, "decision_ms must be"),
])
def test_bad_arguments_are_one_line_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        gym.make(ID, device="xavier-nx", **kwargs)
    assert "\n" not in str(err.value)


def test_bad_uplink_csv_and_unknown_server(tmp_path) -> None:
    bad = tmp_path / "bw.csv"
    bad.write_text("time_s,bandwidth_mbps\n0,2\n1,-1\n")
    with pytest.raises(ConfigError, match=r"bw\.csv"):
        gym.make(ID, device="xavier-nx", uplink=str(bad))
    with pytest.raises(UnknownNameError, match="rtx-3080"):
        gym.make(ID, device="xavier-nx", cloud="h100")


def test_an_action_outside_the_space_is_a_setting_error() -> None:
    env = gym.make(ID, device="xavier-nx").unwrapped
    env.reset(seed=0)
    with pytest.raises(SettingError, match="offload_share"):
        env.step(np.array([11, 0, 0, 0]))


def test_cloud_only_sends_the_input() -> None:
    env = gym.make(ID, device="jetson-tx2", split_block=-1, uplink=8.0, fps=2).unwrapped
    assert env.shares == (0.0, 1.0)
    info = _run(env, [_top(env, 1)] * 3)[-1]
    assert info["run_ms"] < 5.0  # the board only encodes the frame
    assert info[TX_BYTES] == pytest.approx(0.1 * 3 * 224 * 224)


def test_split_plan_and_default_split() -> None:
    prof = load_model_profile("efficientnet_b0")
    j = default_split(prof)
    assert prof.blocks[j].output_shape == (80, 14, 14)  # the smallest map within the first 60 % of the FLOPs
    plan = SplitPlan(prof, j, (0.0, 0.5, 1.0))
    assert plan.cloud[0] is None and plan.tx_bytes[0] == 0.0 and plan.to_send[0] is None
    # The send starts after the head, the attention and the quantisation: a prefix of the edge's work.
    assert plan.to_send[1].names == plan.edge[1].names[:j + 3] and plan.to_send[2].names == plan.edge[2].names
    assert plan.edge[2].total_flops < plan.edge[1].total_flops < plan.edge[0].total_flops + 1e6
    assert plan.cloud[1].total_flops == pytest.approx(plan.cloud[2].total_flops / 2)


def test_the_server_is_a_desktop_gpu_faster_than_any_board() -> None:
    server = load_server("rtx-3080")
    assert server.cuda_cores == 8704 and server.dram_bw_bytes_per_s == pytest.approx(760e9)
    env = gym.make(ID, device="agx-orin").unwrapped
    assert 0 < max(env._cloud_s) < 0.01


# ------------------------------------------------------------------------------ recorded importance (issue 18)


def _clip_env(workload: object = "clip:bikes", frames: int = 300, **kwargs: object) -> EdgeCloudDVFSEnv:
    return gym.make(ID, device="xavier-nx", model="efficientnet_lite0", workload=workload, episode_frames=frames,
                    **kwargs).unwrapped


def _offloading(env: EdgeCloudDVFSEnv, frames: int) -> list[np.ndarray]:
    """Every share but 0 in turn (so every frame's importance is in its info), top clocks."""
    return [_top(env, 1 + k % (len(env.shares) - 1)) for k in range(frames)]


def test_a_trace_with_recorded_beta_replaces_the_draw() -> None:
    """On ``clip:bikes`` (recorded with importance_beta) a frame's offloaded importance is ``s**beta`` of the
    frame the trace replays, across the source's 256-frame chunks and the 125-frame trace's wrap-around."""
    from e4gym.envs.edge_cloud import IMPORTANCE_OFFLOADED, SHARE
    from e4gym.workload.trace import load_trace

    beta = load_trace("clip:bikes").importance_beta
    assert beta is not None
    for seed in (0, 7):
        env = _clip_env()
        infos = _run(env, _offloading(env, 300), seed=seed)
        rows = [int(env.source._rows(k)) for k in range(300)]
        got = np.array([float(i[IMPORTANCE_OFFLOADED]) for i in infos])
        want = np.array([float(i[SHARE]) ** float(beta[r]) for i, r in zip(infos, rows)])
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert float(infos[0][SHARE]) == 0.1 and np.unique(got[::10]).size > 20  # frame to frame, not one beta


def test_recorded_beta_keeps_the_env_deterministic_and_the_draws_in_step() -> None:
    """Same seed, same episode; the log-normal draw is still made (and discarded), so everything but the
    importance and the accuracy draw's outcome matches a replay of the same trace without importance_beta."""
    import dataclasses

    from e4gym.envs.edge_cloud import IMPORTANCE_OFFLOADED, TRANSFER_MS
    from e4gym.workload.trace import load_trace

    a, b = _clip_env(), _clip_env()
    ia, ib = _run(a, _offloading(a, 300), seed=3), _run(b, _offloading(b, 300), seed=3)
    assert ia == ib
    ic = _run(a, _offloading(a, 300), seed=4)
    assert [i[IMPORTANCE_OFFLOADED] for i in ic] != [i[IMPORTANCE_OFFLOADED] for i in ia]  # another start frame

    plain = dataclasses.replace(load_trace("clip:bikes"), importance_beta=None)
    c = _clip_env(workload=plain)  # synthetic uplink: its seed is drawn after the frames' draws
    id_ = _run(c, _offloading(c, 300), seed=3)
    a.reset(seed=3)
    assert c.source.first_row == a.source.first_row  # the same frames
    for x, y in zip(ia, id_):
        assert x[TRANSFER_MS] == y[TRANSFER_MS] and x["run_ms"] == y["run_ms"]
    drawn = np.array([float(i[IMPORTANCE_OFFLOADED]) for i in id_])
    recorded = np.array([float(i[IMPORTANCE_OFFLOADED]) for i in ia])
    assert not np.array_equal(drawn, recorded)
    share = np.array([float(i["offload_share"]) for i in id_])
    part = share < 1.0  # all channels hold all the importance, whatever beta
    fitted = np.log(drawn[part]) / np.log(share[part])  # the drawn beta: log-normal around the fit
    assert abs(np.median(fitted) - 2.07) < 0.02 and np.std(np.log(fitted)) < 0.05
