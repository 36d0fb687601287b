"""zTT (:mod:`baselines.ztt`) as an ``e4gym train`` algorithm: zTT's DQN on :class:`~baselines.ztt.ZTTEnv`, trained
by :func:`agents.algos_sb3.learn_with_callbacks`, saved as its ``.zip``, served by :class:`~baselines.ztt.ZTTPolicy`.

The config's keys (``configs/agents/ztt.yaml``) override :data:`baselines.ztt.ZTT_DQN_KWARGS`; the config's
``wrapper`` is not used (zTT acts through its own state, grid and rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.algos import AlgoSpec, register_algo
from agents.algos_sb3 import learn_with_callbacks
from e4gym.errors import ConfigError


def _build(env: gym.Env, hyperparameters: dict[str, Any], seed: int) -> Any:
    from baselines.ztt import make_ztt_model

    hp = dict(hyperparameters)
    policy = hp.pop("policy", "MlpPolicy")
    if policy != "MlpPolicy":
        raise ConfigError(f"zTT's DQN is an MLP: its config's policy must be MlpPolicy, got {policy!r}")
    return make_ztt_model(env, seed=seed, **hp)


def _load(path: Path, env: gym.Env | None) -> Any:
    from baselines.ztt import ZTTDQN

    return ZTTDQN.load(path, env=env)


def _policy(path: Path, name: str, meta: Mapping[str, Any]) -> Any:
    from baselines.ztt import ZTTPolicy

    return ZTTPolicy(path=path, name=name)


def _wrap(env: gym.Env, wrapper: Any) -> gym.Env:
    from baselines.ztt import ZTTEnv

    return ZTTEnv(env)


register_algo(AlgoSpec(name="ztt", build=_build, load=_load, train=learn_with_callbacks, policy=_policy,
                       wrap_env=_wrap, summary="zTT's DQN (Kim et al., MobiSys 2021)"))
