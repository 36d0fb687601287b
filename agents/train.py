"""``e4gym train``: train any stable-baselines3 agent, zTT or Ring-DVFS on an e4gym env, with TensorBoard.

Hyper-parameters come from ``configs/agents/<algo>.yaml`` (or ``--config FILE``), keyed by env id as in
rl-baselines3-zoo::

    e4gym/EarlyExitDVFS-v1:
      n_timesteps: 20000          # default of --steps
      policy: MlpPolicy
      env_kwargs: {device: xavier-nx, episode_frames: 500}   # --env-kwargs k=v override these
      wrapper: discrete           # optional: discrete (with `levels: K` per level component) or continuous
      learning_rate: 0.0003       # everything else goes to the algorithm's constructor
      n_steps: 512

A run writes into ``--out DIR``: ``tb/`` (TensorBoard: SB3's own scalars, the episode figures of
:class:`~e4gym.envs.wrappers.EpisodeStats` under ``e4gym/...``, evaluation under ``eval/...`` and the
hyper-parameters), ``checkpoints/`` (every ``--checkpoint-freq`` steps, with the replay buffer of off-policy
algorithms), ``eval/`` (evaluation episodes on a separately seeded env; ``best_model.zip``), and at the end
``model.zip`` (``model.npz`` for Ring-DVFS) and ``train.json`` (what was trained, on which env, with which
wrapper), which :class:`TrainedPolicy` and ``e4gym bench`` load. ``--resume`` continues from the newest
checkpoint: the step counter, the network and optimiser state and the replay buffer are restored.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import e4gym  # noqa: F401  (registers the envs)
from e4gym._yaml import load_yaml
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.paths import config_dir

#: SB3 algorithms ``e4gym train`` knows (``--algo``), besides zTT and Ring-DVFS.
SB3_ALGOS = ("ppo", "a2c", "dqn", "sac", "td3")
#: Every ``--algo``.
ALGOS = (*SB3_ALGOS, "ztt", "ring-dvfs")
#: Keys of an agent config section that are not the algorithm's constructor arguments.
_SECTION_KEYS = ("n_timesteps", "policy", "env_kwargs", "wrapper", "eval_freq", "eval_episodes", "checkpoint_freq")
_CKPT_RE = re.compile(r"^ckpt_(\d+)_steps\.(zip|npz)$")
#: Ring-DVFS callback figures of the last frame alone (not logged: the episode figures are).
_RING_FRAME_KEYS = ("reward", "level", "energy_j", "missed", "reliability")
#: Offset of the evaluation env's seed from the training seed (so the two never share a stream).
EVAL_SEED_OFFSET = 10_000
#: Offset of the training env's seed from the training seed: episodes seeded 0, 1, 2, ... (a benchmark's seeds)
#: never start a training stream. Every stream an agent trains or is selected on is logged (:class:`StreamLog`).
TRAIN_SEED_OFFSET = 1_000_000
#: The run folder's log of the frame streams the agent trained and was evaluated on (one JSON key per line).
STREAMS_FILE = "streams.jsonl"


class StreamLog(gym.Wrapper):
    """Offsets the seeds of ``reset`` by ``offset`` and appends every episode's stream key
    (``env.unwrapped.stream_key()``) to ``path`` (JSON lines): the streams an agent trained on, which
    :meth:`TrainedPolicy.training_streams` gives the harness so it never scores the agent on one of them."""

    def __init__(self, env: gym.Env, path: Path | None, offset: int = 0) -> None:
        super().__init__(env)
        self._path, self._offset = path, int(offset)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Reset with ``seed + offset`` and log the stream key."""
        out = self.env.reset(seed=None if seed is None else seed + self._offset, options=options)
        if self._path is not None:
            key = getattr(self.env.unwrapped, "stream_key", None)
            if callable(key):
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with open(self._path, "a") as f:
                    f.write(json.dumps(list(key())) + "\n")
        return out


# ---------------------------------------------------------------------------------------------- configs


def load_agent_config(algo: str, env_id: str, path: str | Path | None = None) -> dict[str, Any]:
    """The hyper-parameter section for ``env_id`` in ``configs/agents/<algo>.yaml`` (or ``path``).

    Raises:
        UnknownNameError: an unknown algorithm, or no section for ``env_id`` (lists the sections there are).
        ConfigError: the file is missing or is not a mapping of env ids to mappings.
    """
    if algo not in ALGOS:
        raise UnknownNameError(f"unknown algorithm {algo!r}; --algo takes {list(ALGOS)}")
    file = Path(path) if path is not None else config_dir() / "agents" / f"{algo}.yaml"
    if not file.is_file():
        raise ConfigError(f"agent config {file} does not exist (give --config FILE or add configs/agents/{algo}.yaml)")
    data = load_yaml(file)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{file}: expected a mapping of env ids to hyper-parameter mappings")
    if env_id not in data:
        raise UnknownNameError(f"{file} has no section for {env_id!r}; it has {sorted(data)}")
    return dict(data[env_id])


def parse_env_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``["k=v", ...]`` into a dict; values are read as YAML scalars (``30`` → 30, ``true`` → True).

    Raises:
        ConfigError: an item without ``=``.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env-kwargs takes key=value items, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


# ---------------------------------------------------------------------------------------------- envs


def _level_grid(env: gym.Env, levels: int) -> dict[str, list[int]]:
    """``levels`` evenly spaced values of each clock-level component (all values of the exit component)."""
    base = env.unwrapped
    nvec = env.action_space.nvec
    return {name: sorted({round(float(v)) for v in np.linspace(0, int(n) - 1, levels)})
            for name, n in zip(base.action_names, nvec) if name.endswith("_level")}


def wrap_env(env: gym.Env, wrapper: Any) -> gym.Env:
    """Apply the config's action ``wrapper`` (None, ``discrete``, ``{discrete: {levels: K}}``, ``continuous``).

    Raises:
        ConfigError: an unknown wrapper.
    """
    from e4gym.envs.wrappers import ContinuousActions, DiscreteActions

    if wrapper is None:
        return env
    name, kw = (wrapper, {}) if isinstance(wrapper, str) else next(iter(dict(wrapper).items()), (None, {}))
    if name == "discrete":
        return DiscreteActions(env, _level_grid(env, int((kw or {}).get("levels", 3))))
    if name == "continuous":
        return ContinuousActions(env)
    raise ConfigError(f"unknown wrapper {wrapper!r}; use discrete (optionally {{discrete: {{levels: K}}}}) or "
                      "continuous")


def make_env(algo: str, env_id: str, env_kwargs: Mapping[str, Any], wrapper: Any = None,
             monitor: bool = True, streams: Path | None = None, seed_offset: int = 0) -> gym.Env:
    """The env an agent trains on: the e4gym env, the algorithm's wrapper (zTT's state and reward for
    ``ztt``), :class:`EpisodeStats` and SB3's ``Monitor`` (with the episode figures as info keywords).
    ``streams`` / ``seed_offset``: a :class:`StreamLog` under everything (log file, seed offset)."""
    from stable_baselines3.common.monitor import Monitor

    from e4gym.envs.wrappers import EPISODE_STAT_KEYS, EpisodeStats

    env = gym.make(env_id, **dict(env_kwargs))
    if streams is not None or seed_offset:
        env = StreamLog(env, streams, seed_offset)
    if algo == "ztt":
        from baselines.ztt import ZTTEnv

        env = ZTTEnv(env)
    else:
        env = wrap_env(env, wrapper)
    env = EpisodeStats(env)
    return Monitor(env, info_keywords=EPISODE_STAT_KEYS) if monitor else env


# ---------------------------------------------------------------------------------------------- training


def _checkpoints(out: Path) -> list[tuple[int, Path]]:
    ck = out / "checkpoints"
    found = [(int(m.group(1)), p) for p in ck.glob("ckpt_*") if (m := _CKPT_RE.match(p.name))]
    return sorted(found)


def _algo_class(algo: str) -> Any:
    import stable_baselines3 as sb3

    if algo == "ztt":
        from baselines.ztt import ZTTDQN

        return ZTTDQN
    return {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN, "sac": sb3.SAC, "td3": sb3.TD3}[algo]


def _load_model(algo: str, path: Path, env: gym.Env) -> Any:
    """Load an SB3 checkpoint; ConfigError naming the file when it cannot be read."""
    cls = _algo_class(algo)
    try:
        return cls.load(path, env=env, device="cpu")
    except Exception as exc:  # zip, pickle and torch errors all mean: not a usable checkpoint
        raise ConfigError(f"checkpoint {path} is corrupt or not a {algo} model ({type(exc).__name__}: {exc}); "
                          "delete it to resume from an earlier one, or train again without --resume") from None


def train(
    algo: str,
    env_id: str = "e4gym/EarlyExitDVFS-v1",
    out: str | Path = "runs/train",
    env_kwargs: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    eval_freq: int | None = None,
    eval_episodes: int | None = None,
    checkpoint_freq: int | None = None,
    progress: bool = True,
) -> Path:
    """Train ``algo`` on ``env_id`` and write the run into ``out`` (see the module docstring).

    Args:
        algo: one of :data:`ALGOS`. env_id: an e4gym env id. env_kwargs: env arguments (over the config's).
        config: agent config file (default ``configs/agents/<algo>.yaml``). steps: environment steps in total
            (default the config's ``n_timesteps``). seed: training seed (the evaluation env uses
            ``seed + EVAL_SEED_OFFSET``). resume: continue from the newest checkpoint in ``out``.
        eval_freq / eval_episodes / checkpoint_freq: steps between evaluations, episodes per evaluation,
            steps between checkpoints (defaults from the config, else ``steps // 5``, 2 and ``steps // 4``).
        progress: show a progress bar (stderr).

    Returns:
        The path of the final model (``out/model.zip``, or ``out/model.npz`` for Ring-DVFS).

    Raises:
        UnknownNameError / ConfigError: a bad algorithm, env id, config or argument; ``out`` already holds a
            finished run (without ``resume``); ``--resume`` without a checkpoint, or a corrupt one.
    """
    section = load_agent_config(algo, env_id, config)
    kw = {**dict(section.get("env_kwargs") or {}), **dict(env_kwargs or {})}
    total = int(steps if steps is not None else section.get("n_timesteps", 20_000))
    if total < 1:
        raise ConfigError(f"steps must be >= 1, got {total}")
    freq_eval = int(eval_freq or section.get("eval_freq") or max(total // 5, 1))
    n_eval = int(eval_episodes or section.get("eval_episodes") or 2)
    freq_ckpt = int(checkpoint_freq or section.get("checkpoint_freq") or max(total // 4, 1))
    out = Path(out)
    final = out / ("model.npz" if algo == "ring-dvfs" else "model.zip")
    if final.exists() and not resume:
        raise ConfigError(f"{out} already holds a trained model ({final.name}); use another --out, or --resume")
    out.mkdir(parents=True, exist_ok=True)
    meta = {"algo": algo, "env_id": env_id, "env_kwargs": kw, "wrapper": section.get("wrapper"), "seed": seed,
            "steps": total, "hyperparameters": {k: v for k, v in section.items() if k not in ("env_kwargs",)}}
    if algo == "ring-dvfs":
        _train_ring(out, env_id, kw, total, seed, resume, freq_eval, n_eval, freq_ckpt, progress)
    else:
        _train_sb3(algo, section, out, env_id, kw, total, seed, resume, freq_eval, n_eval, freq_ckpt, progress)
    from e4gym.bench._io import write_json

    write_json(out / "train.json", meta)
    return final


def _hparams(section: Mapping[str, Any], total: int, seed: int) -> dict[str, Any]:
    flat = {k: v for k, v in section.items() if isinstance(v, (int, float, str, bool)) and k != "env_kwargs"}
    return {**flat, "n_timesteps": total, "seed": seed}


def _train_sb3(algo: str, section: Mapping[str, Any], out: Path, env_id: str, kw: dict[str, Any], total: int,
               seed: int, resume: bool, freq_eval: int, n_eval: int, freq_ckpt: int, progress: bool) -> None:
    from stable_baselines3.common.callbacks import CallbackList, EvalCallback
    from stable_baselines3.common.logger import HParam

    from e4gym.envs.callbacks import EpisodeStatsCallback

    log = out / STREAMS_FILE
    env = make_env(algo, env_id, kw, section.get("wrapper"), streams=log, seed_offset=TRAIN_SEED_OFFSET)
    eval_env = make_env(algo, env_id, kw, section.get("wrapper"), streams=log)
    eval_env.reset(seed=seed + EVAL_SEED_OFFSET)
    algo_kw = {k: v for k, v in section.items() if k not in _SECTION_KEYS}
    if algo == "ztt":
        from baselines.ztt import ZTT_DQN_KWARGS

        algo_kw = {**ZTT_DQN_KWARGS, **algo_kw}
    cls = _algo_class(algo)
    if resume:
        ckpts = _checkpoints(out)
        if not ckpts:
            raise ConfigError(f"--resume: no checkpoint in {out / 'checkpoints'} (ckpt_<steps>_steps.zip)")
        _, path = ckpts[-1]
        model = _load_model(algo, path, env)
        buffer = path.with_name(path.stem.replace("ckpt_", "ckpt_replay_buffer_") + ".pkl")
        if hasattr(model, "replay_buffer") and buffer.exists():
            model.load_replay_buffer(buffer)
        model.set_logger(_logger(out, model))
    else:
        model = cls(section.get("policy", "MlpPolicy"), env, seed=seed, device="cpu", verbose=0,
                    tensorboard_log=None, **algo_kw)
        model.set_logger(_logger(out, model))
    callbacks: list[Any] = [
        EpisodeStatsCallback(),
        _EpisodeReward(),
        _HParamCallback(HParam, _hparams(section, total, seed)),
        EvalCallback(eval_env, n_eval_episodes=n_eval, eval_freq=freq_eval, best_model_save_path=str(out / "eval"),
                     log_path=str(out / "eval"), deterministic=True, verbose=0),
        _Checkpoint(freq_ckpt, out),
    ]
    if algo == "ztt":
        from baselines.ztt import ZTTExploration

        callbacks.append(ZTTExploration())
    if progress:
        callbacks.append(_ProgressBar(total))
    remaining = total - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=False, log_interval=1)
    model.save(out / "model.zip")
    env.close()
    eval_env.close()


def _logger(out: Path, model: Any) -> Any:
    from stable_baselines3.common.logger import configure

    return configure(str(out / "tb"), ["tensorboard", "csv"])


def _HParamCallback(hparam_cls: Any, hparams: dict[str, Any]) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class HParamCallback(BaseCallback):
        """Write the hyper-parameters to TensorBoard at the start of training."""

        def _on_training_start(self) -> None:
            metrics = {"rollout/ep_rew_mean": 0.0, "eval/mean_reward": 0.0}
            self.logger.record("hparams", hparam_cls(hparams, metrics), exclude=("stdout", "log", "json", "csv"))

        def _on_step(self) -> bool:
            return True

    return HParamCallback()


def _EpisodeReward() -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeReward(BaseCallback):
        """Log ``e4gym/episode_reward``: the mean return of the episodes that ended since the last dump (SB3's
        ``rollout/ep_rew_mean`` averages the last 100 episodes, which hides progress in short runs)."""

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                ep = info.get("episode")
                if ep is not None:
                    self.logger.record_mean("e4gym/episode_reward", float(ep["r"]))
            return True

    return EpisodeReward()


def _Checkpoint(freq: int, out: Path) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class Checkpoint(BaseCallback):
        """Save ``checkpoints/ckpt_<steps>_steps.zip`` (and the replay buffer) every ``freq`` steps.

        Saved when a rollout starts, i.e. after the update of the previous one, so a checkpoint holds the
        networks and optimiser exactly as training continues from them (SB3's CheckpointCallback saves
        mid-rollout, before PPO's update of the steps it counts).
        """

        def _on_training_start(self) -> None:
            self.last = self.model.num_timesteps // freq

        def _save(self) -> None:
            n = self.model.num_timesteps
            ck = out / "checkpoints"
            ck.mkdir(parents=True, exist_ok=True)
            from e4gym.bench._io import atomic_write

            atomic_write(ck / f"ckpt_{n}_steps.zip", lambda f: self.model.save(f))
            if getattr(self.model, "replay_buffer", None) is not None:
                self.model.save_replay_buffer(ck / f"ckpt_replay_buffer_{n}_steps.pkl")

        def _on_rollout_start(self) -> None:
            if self.model.num_timesteps // freq > self.last:
                self.last = self.model.num_timesteps // freq
                self._save()

        def _on_training_end(self) -> None:
            if self.model.num_timesteps // freq > self.last:
                self._save()

        def _on_step(self) -> bool:
            return True

    return Checkpoint()


def _ProgressBar(total: int) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class ProgressBar(BaseCallback):
        """A tqdm bar over environment steps (SB3's own bar needs ``rich``)."""

        def _on_training_start(self) -> None:
            self.bar = tqdm(total=total, initial=self.model.num_timesteps, unit="step", desc="train",
                            file=sys.stderr, dynamic_ncols=True)

        def _on_step(self) -> bool:
            self.bar.update(self.model.num_timesteps - self.bar.n)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return ProgressBar()


def _train_ring(out: Path, env_id: str, kw: dict[str, Any], total: int, seed: int, resume: bool, freq_eval: int,
                n_eval: int, freq_ckpt: int, progress: bool) -> None:
    from stable_baselines3.common.logger import configure
    from tqdm import tqdm

    from baselines.ring_dvfs import RingDVFSAgent, RingDVFSPolicy
    from e4gym.policy import run_episode

    log = out / STREAMS_FILE
    env = StreamLog(gym.make(env_id, **kw), log, TRAIN_SEED_OFFSET)
    if resume:
        ckpts = _checkpoints(out)
        if not ckpts:
            raise ConfigError(f"--resume: no checkpoint in {out / 'checkpoints'} (ckpt_<steps>_steps.npz)")
        agent = RingDVFSAgent.load(ckpts[-1][1])
    else:
        agent = RingDVFSAgent(seed=seed)
    logger = configure(str(out / "tb"), ["tensorboard", "csv"])
    bar = tqdm(total=total, initial=agent.num_timesteps, unit="step", desc="train", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)

    def callback(step: int, stats: dict[str, float]) -> bool:
        bar.update(step - bar.n)
        if "episode_reward" in stats:
            for k, v in stats.items():
                if math.isfinite(v) and k not in _RING_FRAME_KEYS:
                    logger.record(f"e4gym/{k}", v)
            logger.dump(step)
        if step % freq_ckpt == 0:
            agent.save(out / "checkpoints" / f"ckpt_{step}_steps.npz")
        if step % freq_eval == 0:
            pol = RingDVFSPolicy(agent=agent)
            rewards = []
            for i in range(n_eval):
                ev = StreamLog(gym.make(env_id, **kw), log)
                rewards.append(sum(x["reward"] for x in run_episode(pol, ev, seed=seed + EVAL_SEED_OFFSET + i)))
                ev.close()
            logger.record("eval/mean_reward", float(np.mean(rewards)))
            logger.dump(step)
        return True

    remaining = total - agent.num_timesteps
    if remaining > 0:
        agent.learn(env, remaining, callback=callback)
    bar.close()
    agent.save(out / "model.npz")
    env.close()


# ---------------------------------------------------------------------------------------------- policy


class TrainedPolicy:
    """A model trained by ``e4gym train``, as a policy for the harness (entry point ``trained``).

    Args:
        path: the run folder (with ``train.json``) or its model file. ``None``: train one first, at
            :meth:`bind`, for the scenario of the env it is bound to (``algo``, ``env_id``, ``steps``, ``seed``),
            into a cache folder (``$E4GYM_CACHE_DIR/trained``, default ``~/.cache/e4gym/trained``) keyed by all
            of them, so each scenario is trained once and later benchmarks reuse it.
        algo / env_id / steps / seed: what to train when ``path`` is ``None`` (steps default: the config's).
        name: display name (default ``trained-<algo>``).

    For SB3 models the config's action wrapper maps the model's action to the env's (e.g. a ``Discrete``
    index back to ``[exit, cpu, gpu]``); zTT and Ring-DVFS models are served by their own policies
    (:class:`baselines.ztt.ZTTPolicy`, :class:`baselines.ring_dvfs.RingDVFSPolicy`). ``env_id`` and
    ``env_kwargs`` are the training env's (the harness builds the env with them; the scenario's device, model,
    fps and deadline win).

    Raises:
        ConfigError: no ``train.json`` beside the model, or a model that cannot be read.
    """

    clairvoyant = False

    def __init__(self, path: str | Path | None = None, algo: str | None = None,
                 env_id: str = "e4gym/EarlyExitDVFS-v1", steps: int | None = None, seed: int = 0,
                 name: str | None = None) -> None:
        if path is None:
            if algo not in ALGOS:
                raise ConfigError(f"TrainedPolicy needs a path, or an algo to train (one of {list(ALGOS)}), "
                                  f"got algo={algo!r}")
            load_agent_config(algo, env_id)  # fail now on a missing config section
            self.algo, self.env_id, self.meta = algo, env_id, {}
            self._to_train = {"steps": steps, "seed": seed}
            self.name = name or algo
            self.env_kwargs: dict[str, Any] = {}
            self._inner: Any = None
            self._wrapper: Any = None
            self._model: Any = None
            return
        self._to_train = None
        self._load_meta(Path(path), name)

    def _load_meta(self, p: Path, name: str | None) -> None:
        run = p if p.is_dir() else p.parent
        meta_file = run / "train.json"
        if not meta_file.is_file():
            raise ConfigError(f"{run} has no train.json: give the folder `e4gym train --out` wrote")
        try:
            self.meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{meta_file} is not readable JSON ({exc})") from None
        self.algo = str(self.meta.get("algo"))
        if self.algo not in ALGOS:
            raise ConfigError(f"{meta_file}: unknown algo {self.algo!r}")
        self.model_path = p if p.is_file() else run / ("model.npz" if self.algo == "ring-dvfs" else "model.zip")
        if not self.model_path.is_file():
            raise ConfigError(f"{self.model_path} does not exist: the run in {run} did not finish")
        self.name = name or getattr(self, "name", None) or f"trained-{self.algo}"
        self.env_id = str(self.meta.get("env_id", "e4gym/EarlyExitDVFS-v1"))
        self.env_kwargs = {}
        self._inner = None
        self._wrapper = None
        self._model = None

    def _train_for(self, setup: Any) -> Path:
        """Train (or reuse) a model for ``setup``'s scenario in the cache; returns the run folder."""
        import fcntl
        import hashlib
        import os

        assert self._to_train is not None and self.algo is not None
        section = load_agent_config(self.algo, self.env_id)
        kw = {**dict(section.get("env_kwargs") or {}), "device": setup.spec.name, "model": setup.profile.name,
              "fps": setup.fps, "deadline_ms": setup.deadline_s * 1e3, "power_mode": setup.power_mode,
              "control_memory": setup.control_memory}
        key = json.dumps({"algo": self.algo, "env_id": self.env_id, "env_kwargs": kw, "section": section,
                          **self._to_train}, sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        root = Path(os.environ.get("E4GYM_CACHE_DIR", Path.home() / ".cache" / "e4gym")) / "trained"
        run = root / f"{self.algo}-{setup.spec.name}-{setup.profile.name}-{digest}"
        (root / ".locks").mkdir(parents=True, exist_ok=True)
        with open(root / ".locks" / f"{run.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel bench workers train a scenario once
            if not (run / "train.json").is_file():
                train(self.algo, self.env_id, run, kw, steps=self._to_train["steps"], seed=self._to_train["seed"],
                      resume=bool(list((run / "checkpoints").glob("ckpt_*"))) if run.exists() else False,
                      progress=False)
        return run

    def training_streams(self) -> set[tuple]:
        """The stream keys the agent trained and was evaluated on (the run's ``streams.jsonl``; empty for a run
        written before it existed). The harness refuses to score the agent on one of them."""
        run = getattr(self, "model_path", None)
        log = None if run is None else Path(run).parent / STREAMS_FILE
        if log is None or not log.is_file():
            return set()
        keys = set()
        for line in log.read_text().splitlines():
            try:
                keys.add(tuple(json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                raise ConfigError(f"{log} is corrupt (a line is not a JSON stream key): delete it or retrain") \
                    from None
        return keys

    def bind(self, context: Any) -> None:
        """Load the model (training it first when no path was given) and build the env's action mapping."""
        if self._to_train is not None and self._model is None and self._inner is None:
            self._load_meta(self._train_for(context.setup), self.name)
        if self.algo == "ztt":
            from baselines.ztt import ZTTPolicy

            self._inner = ZTTPolicy(path=self.model_path, name=self.name)
        elif self.algo == "ring-dvfs":
            from baselines.ring_dvfs import RingDVFSPolicy

            self._inner = RingDVFSPolicy(path=self.model_path, name=self.name)
        if self._inner is not None:
            self._inner.bind(context)
            return
        setup = context.setup
        probe = gym.make(self.env_id, device=setup.spec, model=setup.profile, fps=setup.fps,
                         deadline_ms=setup.deadline_s * 1e3, control_memory=setup.control_memory,
                         power_mode=setup.power_mode, episode_frames=2)
        self._wrapper = wrap_env(probe, self.meta.get("wrapper"))
        cls = _algo_class(self.algo)
        try:
            self._model = cls.load(self.model_path, device="cpu")
        except Exception as exc:
            raise ConfigError(f"{self.model_path} is not a readable {self.algo} model ({type(exc).__name__}: {exc})") \
                from None
        if self._model.observation_space.shape != probe.observation_space.shape:
            raise ConfigError(f"{self.name} was trained on observations of shape "
                              f"{self._model.observation_space.shape}; this env has {probe.observation_space.shape}")

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The env's action for ``observation`` (the model's action through the training wrapper)."""
        if self._inner is not None:
            return self._inner.predict(observation, state, episode_start, deterministic)
        if self._model is None:
            raise ConfigError(f"{self.name} is not bound to an env: call e4gym.policy.bind_policy(policy, env)")
        action, state = self._model.predict(observation, state=state, episode_start=episode_start,
                                            deterministic=deterministic)
        if self._wrapper is not None and isinstance(self._wrapper, gym.ActionWrapper):
            action = self._wrapper.action(action)
        return np.asarray(action, dtype=np.int64), state

    def reset(self) -> None:
        """Forget the episode (delegates to zTT / Ring-DVFS policies; SB3 MLP policies are stateless)."""
        if self._inner is not None:
            self._inner.reset()


# ---------------------------------------------------------------------------------------------- CLI


def cmd_train(args: argparse.Namespace) -> int:
    """The ``train`` verb."""
    path = train(args.algo, args.env, args.out, parse_env_kwargs(args.env_kwargs or []), args.config, args.steps,
                 args.seed, args.resume, args.eval_freq, args.eval_episodes, args.checkpoint_freq,
                 progress=not args.quiet)
    print(f"trained {args.algo} on {args.env}: {path} (TensorBoard: tensorboard --logdir {Path(args.out) / 'tb'})")
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``train`` verb."""
    p = sub.add_parser("train", help="train an SB3 agent, zTT or Ring-DVFS on an e4gym env (TensorBoard)")
    p.add_argument("--algo", required=True, choices=ALGOS)
    p.add_argument("--env", default="e4gym/EarlyExitDVFS-v1", help="env id (default: the frame env)")
    p.add_argument("--env-kwargs", nargs="*", metavar="K=V", help="env arguments, e.g. device=xavier-nx fps=30")
    p.add_argument("--config", default=None, help="agent config (default: configs/agents/ALGO.yaml)")
    p.add_argument("--out", required=True, help="run folder (TensorBoard, checkpoints, model)")
    p.add_argument("--steps", type=int, default=None, help="environment steps (default: the config's n_timesteps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--eval-freq", type=int, default=None, help="steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--checkpoint-freq", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


__all__ = ["ALGOS", "SB3_ALGOS", "TrainedPolicy", "add_train_parser", "load_agent_config", "make_env",
           "parse_env_kwargs", "train", "wrap_env"]
