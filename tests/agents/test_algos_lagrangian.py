"""PPO-Lagrangian (agents/algos_lagrangian.py, issue 21): the multiplier update, its training loop on envs whose
costs the test controls, saving and restoring, TensorBoard, the CLI and one-line errors."""

from __future__ import annotations

import itertools
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import e4gym  # noqa: F401
from agents.algos import get_algo
from agents.algos_lagrangian import initial_state, pid_update, rollout_mean_costs
from agents.train import TrainedPolicy
from e4gym.cli import main
from e4gym.envs import COST_KEYS, Constraints, DeadlineFeasibleActions
from e4gym.errors import ConfigError
from e4gym.policy import run_episode

torch.set_num_threads(1)

MISS, ACC = COST_KEYS


class CostEnv(gym.Env):
    """One-dimensional observation, two actions. Action 1 pays reward 1 and costs 1 (``cost_miss``), action 0
    pays 0 and costs 0 — unless ``forced`` fixes every step's ``cost_miss``. ``frame_every``: a frame finishes
    every that many steps (``info["frame_done"]``, costs only then), as in the block env."""

    forced: float | None = None

    def __init__(self, frame_every: int = 1, episode: int = 32) -> None:
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.frame_every, self.episode, self.t = frame_every, episode, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.array([5.0], np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        done = self.t % self.frame_every == 0
        cost = float(action) if CostEnv.forced is None else CostEnv.forced
        info = {MISS: cost if done else 0.0, ACC: 0.0, "frame_done": done}
        return np.array([5.0 + self.t % 3], np.float32), float(action), False, self.t >= self.episode, info


def lagrangian(env: gym.Env, **kw) -> object:
    from agents.algos_lagrangian import PPOLagrangian

    hp = {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "constraints": {"max_miss_rate": 0.5}, "lambda_lr": 1.0,
          **kw}
    return PPOLagrangian("MlpPolicy", env, seed=0, device="cpu", **hp)


@pytest.fixture(autouse=True)
def _free_costs():
    CostEnv.forced = None
    yield
    CostEnv.forced = None


# ---------------------------------------------------------------------------------------------- the update rule


def test_the_update_rule_rises_on_violation_falls_to_zero_when_met_and_is_pid() -> None:
    limits = {MISS: 0.05, ACC: 0.01}
    state = initial_state(COST_KEYS)
    history = []
    for j in [0.25] * 3 + [0.0] * 20:  # violated three rollouts, then met
        state = pid_update(state, {MISS: j, ACC: 0.0}, limits, ki=0.5)
        history.append(state[MISS]["lambda"])
    assert history[:3] == pytest.approx([0.1, 0.2, 0.3])  # λ ← λ + K_I (J − d)
    assert history[3:5] == pytest.approx([0.275, 0.25])
    assert all(b < a for a, b in itertools.pairwise(history[2:]) if a > 0)  # falls while the constraint holds
    assert history[-1] == 0.0 and state[ACC]["lambda"] == 0.0  # projected on λ >= 0
    # PID: the P term answers at once, the D term only to a rising cost; λ_max caps λ and the integral.
    s = pid_update(initial_state(COST_KEYS), {MISS: 0.3}, limits, ki=0.0, kp=2.0)
    assert s[MISS]["lambda"] == pytest.approx(0.5) and s[ACC] == initial_state(COST_KEYS)[ACC]  # no cost: kept
    s = pid_update(s, {MISS: 0.5}, limits, ki=0.0, kp=0.0, kd=1.0)
    assert s[MISS]["lambda"] == pytest.approx(0.2)
    capped = initial_state(COST_KEYS, lambda_init=0.9)
    for _ in range(5):
        capped = pid_update(capped, {MISS: 1.0, ACC: 1.0}, limits, ki=1.0, lambda_max=1.5)
    assert capped[MISS]["lambda"] == capped[MISS]["integral"] == 1.5


def test_per_frame_means_divide_by_the_frames_that_finished() -> None:
    costs = np.zeros((4, 2, 2))
    costs[1, :, 0] = 1.0  # both envs missed the frame that finished at step 1
    frames = np.array([[0, 0], [1, 1], [0, 0], [1, 1]])
    means, n = rollout_mean_costs(costs, frames, COST_KEYS)
    assert n == 4 and means == {MISS: 0.5, ACC: 0.0}
    assert rollout_mean_costs(costs, np.zeros((4, 2)), COST_KEYS) == ({}, 0)


# ---------------------------------------------------------------------------------------------- training


def test_multipliers_rise_while_violated_and_fall_to_zero_once_met_in_training() -> None:
    model = lagrangian(CostEnv())
    CostEnv.forced = 1.0  # every frame violates the 50 % bound
    up = []
    for _ in range(4):
        model.learn(64, reset_num_timesteps=False)
        up.append(model.multipliers[MISS])
    assert up == pytest.approx([0.5, 1.0, 1.5, 2.0]) and model.multipliers[ACC] == 0.0
    CostEnv.forced = 0.0  # the constraint now holds
    down = []
    for _ in range(5):
        model.learn(64, reset_num_timesteps=False)
        down.append(model.multipliers[MISS])
    assert down == pytest.approx([1.5, 1.0, 0.5, 0.0, 0.0])


def test_block_env_costs_are_averaged_per_frame_and_vector_envs_work() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    CostEnv.forced = 1.0
    venv = DummyVecEnv([lambda: CostEnv(frame_every=4)] * 2)
    model = lagrangian(venv, n_steps=32, constraints={"max_miss_rate": 0.25}, normalize=True)
    model.learn(64, reset_num_timesteps=False)  # one rollout of 32 steps × 2 envs: 16 frames, every one missed
    assert model.multipliers[MISS] == pytest.approx(0.75)  # 1 − 0.25, not the per-step mean 0.25 − 0.25


@pytest.mark.slow
def test_the_lagrangian_reward_steers_the_policy_off_the_costly_action() -> None:
    # Action 1 pays 1 and costs 1; the bound allows it on at most 20 % of the frames. With λ frozen at 0 (plain
    # PPO) the agent takes it nearly always; with the multiplier, at most half the time.
    obs = np.array([[5.0], [6.0], [7.0]], np.float32)
    taken = {}
    for lr in (0.0, 4.0):
        model = lagrangian(CostEnv(), constraints={"max_miss_rate": 0.2}, lambda_lr=lr, n_epochs=4,
                           learning_rate=3e-3)
        model.learn(64 * 40)
        taken[lr] = np.mean([model.predict(obs, deterministic=False)[0].mean() for _ in range(50)])
    assert taken[4.0] < 0.5 < 0.9 < taken[0.0]  # (λ itself may be back at 0 by then: the constraint holds)


# ---------------------------------------------------------------------------------------------- saving


def test_multipliers_and_normalisation_are_saved_and_restored(tmp_path) -> None:
    CostEnv.forced = 1.0
    model = lagrangian(CostEnv(), normalize=True, lambda_kp=0.1)
    model.learn(128)
    spec = get_algo("ppo-lagrangian")
    spec.save(model, tmp_path / "m.zip")
    loaded = spec.load(tmp_path / "m.zip", None)
    assert loaded.lagrangian_state == model.lagrangian_state and loaded.multipliers[MISS] > 1.0
    assert loaded.lambda_kp == 0.1 and loaded.limits == {MISS: 0.5, ACC: 0.01}
    np.testing.assert_array_equal(loaded.normalization.obs_rms.mean, model.normalization.obs_rms.mean)
    obs = np.array([6.0], np.float32)  # a raw observation: both normalise it with the same (frozen) statistics
    assert loaded.predict(obs, deterministic=True)[0] == model.predict(obs, deterministic=True)[0]
    before = loaded.normalization.obs_rms.count
    for _ in range(3):
        loaded.predict(obs)
    assert loaded.normalization.obs_rms.count == before  # serving does not update them
    # Training on from the file continues from the saved multipliers and statistics.
    resumed = spec.load(tmp_path / "m.zip", CostEnv())
    resumed.learn(64, reset_num_timesteps=False)
    assert resumed.multipliers[MISS] == pytest.approx(model.multipliers[MISS] + 0.5)  # one more rollout at 1 > 0.5
    assert resumed.normalization.obs_rms.count > before


# ---------------------------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_train_from_the_cli_logs_the_multipliers_and_serves_the_harness(tmp_path, capsys) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "--algo", "ppo-lagrangian", "--out", str(out), "--steps", "1024", "--quiet",
                 "--env-kwargs", "episode_frames=128", "--checkpoint-freq", "512", "--eval-freq", "1024",
                 "--eval-episodes", "1"]) == 0
    assert "ppo-lagrangian" in capsys.readouterr().out
    meta = json.loads((out / "train.json").read_text())
    assert meta["algo"] == "ppo-lagrangian" and meta["wrapper"] == "feasible"  # configs/agents/ppo-lagrangian.yaml
    assert set(meta["hyperparameters"]["constraints"]) == {"max_miss_rate", "max_accuracy_loss"}
    ea = EventAccumulator(str(out / "tb"))
    ea.Reload()
    for key in COST_KEYS:
        lam = ea.Scalars(f"lagrangian/lambda_{key}")
        assert [e.step for e in lam] == [512, 1024]  # one per rollout (n_steps 512)
        assert len(ea.Scalars(f"lagrangian/mean_{key}")) == 2
    assert ea.Scalars("lagrangian/lambda_cost_accuracy")[-1].value > 0  # a fresh policy exits early: λ rose
    # The checkpoint carries the multipliers; the harness serves the model on raw observations.
    ckpt = get_algo("ppo-lagrangian").load(out / "checkpoints" / "ckpt_512_steps.zip", None)
    assert ckpt.multipliers[ACC] == pytest.approx(ea.Scalars("lagrangian/lambda_cost_accuracy")[0].value)
    pol = TrainedPolicy(out)
    infos = run_episode(pol, gym.make(pol.env_id, device="xavier-nx", episode_frames=20), seed=3)
    assert len(infos) == 20
    # The served actions go through the run's deadline mask: even a barely trained policy rarely misses.
    assert isinstance(pol._inner._wrapper, DeadlineFeasibleActions)
    assert np.mean([i["cost_miss"] for i in infos]) <= 0.1


def test_bad_constraints_and_envs_without_costs_are_one_line_errors(tmp_path, capsys) -> None:
    for bad, says in (({"max_miss_rate": 2}, "must be a number in [0, 1]"),
                      ({"max_misses": 0.1}, "unknown constraint(s) ['max_misses']")):
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(json.dumps({"e4gym/EarlyExitDVFS-v1": {"policy": "MlpPolicy", "constraints": bad}}))
        assert main(["train", "--algo", "ppo-lagrangian", "--config", str(cfg), "--out", str(tmp_path / "o"),
                     "--steps", "64", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError, match="lambda_lr must be a number >= 0"):
        lagrangian(CostEnv(), lambda_lr=-1)
    with pytest.raises(ConfigError, match="normalize takes"):
        lagrangian(CostEnv(), normalize={"norm_obs": True, "scale": 2})
    with pytest.raises(ConfigError, match="gives no 'cost_miss'"):
        lagrangian(gym.make("CartPole-v1")).learn(64)
    assert Constraints.from_arg(None).limits == {MISS: 0.01, ACC: 0.01}
