"""zTT (:mod:`baselines.ztt`) as an ``e4gym train`` algorithm: zTT's DQN on :class:`~baselines.ztt.ZTTEnv`, trained
by :func:`agents.algos_sb3.learn_with_callbacks`, saved as its ``.zip``, served by :class:`~baselines.ztt.ZTTPolicy`.

The config's keys (``configs/agents/ztt.yaml``) override :data:`baselines.ztt.ZTT_DQN_KWARGS`; the config's
``wrapper`` is not used (zTT acts through its own state, grid and rules). A resumed model takes new
hyper-parameters (``--override-hyperparams``) except ``net_arch`` and ``buffer_size``, which shape its network
and memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.algos import AlgoSpec, HyperparameterError, check_spaces, register_algo
from agents.algos_sb3 import learn_with_callbacks
from e4gym.errors import ConfigError


def _build(env: gym.Env, hyperparameters: dict[str, Any], seed: int) -> Any:
    from baselines.ztt import make_ztt_model

    hp = dict(hyperparameters)
    policy = hp.pop("policy", "MlpPolicy")
    if policy != "MlpPolicy":
        raise ConfigError(f"zTT's DQN is an MLP: its config's policy must be MlpPolicy, got {policy!r}")
    return make_ztt_model(env, seed=seed, **hp)


#: zTT hyper-parameters that shape the network and the replay memory: a checkpoint keeps them.
_ZTT_FIXED = ("net_arch", "buffer_size")


def _load(path: Path, env: gym.Env | None) -> Any:
    from baselines.ztt import ZTTDQN

    if env is not None:  # zTT's own check compares the state's shape only, not its bounds (the device's tables)
        bare = ZTTDQN.load(path)
        check_spaces(path, bare.observation_space, bare.action_space, env)
    return ZTTDQN.load(path, env=env)


def _load_override(path: Path, env: gym.Env | None, hyperparameters: dict[str, Any],
                   changed: frozenset[str]) -> Any:
    """A checkpoint with new hyper-parameters (:data:`baselines.ztt.ZTT_DQN_KWARGS` with the config's over them):
    the learning rate (applied to the optimiser), batch size, warm-up, ε schedule and highlighting."""
    from baselines.ztt import ZTT_DQN_KWARGS, ZTTDQN

    hp = dict(hyperparameters)
    if hp.pop("policy", "MlpPolicy") != "MlpPolicy":
        raise HyperparameterError("zTT's DQN is an MLP: its config's policy must be MlpPolicy")
    model = _load(path, env)
    try:
        new = ZTTDQN(None, observation_space=model.observation_space, action_space=model.action_space,
                     **{**ZTT_DQN_KWARGS, **hp}).hyperparameters  # checks the values
    except ConfigError as exc:
        raise HyperparameterError(f"--override-hyperparams: {exc}") from None
    fixed = sorted(k for k in _ZTT_FIXED if new[k] != model.hyperparameters[k])
    if fixed:
        raise HyperparameterError(f"--override-hyperparams cannot change {fixed} of checkpoint {path}: they shape "
                                  "zTT's network and memory; resume with the checkpoint's values, or train anew "
                                  "into another --out")
    model.hyperparameters = new
    model.learning_starts, model.batch_size, model.highlight_copies = (
        new["learning_starts"], new["batch_size"], new["highlight_copies"])
    for group in model.optimizer.param_groups:
        group["lr"] = new["learning_rate"]
    return model


def _policy(path: Path, name: str, meta: Mapping[str, Any]) -> Any:
    from baselines.ztt import ZTTPolicy

    return ZTTPolicy(path=path, name=name)


def _wrap(env: gym.Env, wrapper: Any) -> gym.Env:
    from baselines.ztt import ZTTEnv

    return ZTTEnv(env)


register_algo(AlgoSpec(name="ztt", build=_build, load=_load, train=learn_with_callbacks, policy=_policy,
                       wrap_env=_wrap, load_override=_load_override, summary="zTT's DQN (Kim et al., MobiSys 2021)"))
