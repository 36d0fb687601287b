"""DVFO (Zhang et al., IEEE TMC 2024, arXiv 2306.01811) as an ``e4gym train`` algorithm (``--algo dvfo``).

DVFO learns the CPU, GPU and memory levels and the offload share with a DQN-style agent over a *concurrent* MDP
(after Xiao et al., "Thinking While Moving", ICLR 2020): the next action is chosen while the current frame
runs, and the state carries the pending action and the decision latency. Here that is stable-baselines3's DQN on
``e4gym/EdgeCloudDVFS-v0`` with ``concurrent=True`` (the env applies each action one frame later and puts the
pending action and the decision time in the observation), its ``MultiDiscrete`` action flattened by the config's
``discrete`` wrapper (every offload share, K levels of each clock). The paper's state, reward, network and
hyper-parameters are not public (CALIBRATION.md): the env's observation and default reward stand in for them and
``configs/agents/dvfo.yaml`` holds the rest, each an assumption (docs/assumptions.md, "DVFO agent").

DVFO minimises a weighted sum of the edge's energy and the end-to-end latency under an accuracy constraint; its
weights are not public. The agent learns through :class:`DVFOReward`, that objective as a reward over the env's
info: ``r = −η·E/E_ref − (1 − η)·min(L/D, 10) − w_D·missed − w_A·(1 − correct)`` with ``η = 0.5`` and
``w_D = w_A = 1`` (assumptions). Its latency term is continuous: with the env's 0/1 deadline term alone, a queue
formed while exploring makes every action equally bad (every frame misses) and DQN learns nothing about draining
it; the deadline term keeps the deadline a constraint (the latency term alone settles at the deadline).

Trained, saved, resumed and served exactly as the SB3 algorithms (:func:`agents.algos_sb3.sb3_algo`); DVFO
without its concurrent decisions is the same algorithm with ``env_kwargs: {concurrent: false}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym

from agents.algos import register_algo, wrap_env
from agents.algos_sb3 import sb3_algo
from e4gym.errors import ConfigError

#: The algorithm name (``e4gym train --algo dvfo``; ``configs/agents/dvfo.yaml``).
DVFO = "dvfo"

#: DVFO's energy weight η in its reward (ASSUMPTION: energy and latency weighed equally).
ENERGY_WEIGHT = 0.5
#: Weights of a missed deadline and of a wrong prediction (ASSUMPTION: as the env's default reward).
DEADLINE_WEIGHT = 1.0
ACCURACY_WEIGHT = 1.0
#: Latency over deadline is clipped here in the reward (the observation's bound).
LATENCY_CAP = 10.0


class DVFOReward(gym.Wrapper):
    """DVFO's objective as the reward: ``−η·E/E_ref − (1 − η)·min(L/D, 10) − w_D·missed − w_A·(1 − correct)`` (see
    the module docstring), from the step's ``info`` (``energy_j``, ``latency_ms``, ``deadline_missed``,
    ``correct``); the env's own reward is kept in ``info["env_reward"]``."""

    def __init__(self, env: gym.Env, energy_weight: float = ENERGY_WEIGHT, deadline_weight: float = DEADLINE_WEIGHT,
                 accuracy_weight: float = ACCURACY_WEIGHT) -> None:
        super().__init__(env)
        if not 0.0 <= energy_weight <= 1.0:
            raise ConfigError(f"DVFOReward energy_weight must be in [0, 1], got {energy_weight!r}")
        setup = env.unwrapped.setup  # type: ignore[attr-defined]
        self._k_e = energy_weight / setup.energy_ref_j
        self._k_l = (1.0 - energy_weight) / (setup.deadline_s * 1e3)
        self._k_d = deadline_weight
        self._k_a = accuracy_weight
        self._cap = (1.0 - energy_weight) * LATENCY_CAP

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env and replace its reward by DVFO's."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["env_reward"] = reward
        r = -(self._k_e * float(info["energy_j"]) + min(self._k_l * float(info["latency_ms"]), self._cap)
              + self._k_d * float(info["deadline_missed"]) + self._k_a * (1.0 - float(info["correct"])))
        return obs, r, terminated, truncated, info


def _wrap(env: gym.Env, wrapper: Any) -> gym.Env:
    """DVFO's reward, then the config's action wrapper (the discrete grid)."""
    return wrap_env(DVFOReward(env), wrapper)


register_algo(dataclasses.replace(
    sb3_algo(DVFO, "DQN"), wrap_env=_wrap,
    summary="DVFO: stable-baselines3 DQN over the concurrent edge-cloud MDP (e4gym/EdgeCloudDVFS-v0, concurrent=True)"))
