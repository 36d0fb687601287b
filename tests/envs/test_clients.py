"""The envs work with the clients people use: stable-baselines3, Gymnasium's vector envs and checkers, TorchRL.

Issue 13. What each client needs from the envs:

- stable-baselines3's ``make_vec_env`` passes ``render_mode="rgb_array"``: an unsupported render mode must warn
  (as ``gymnasium.make`` does for Gymnasium's own envs) and the env goes on, ``render()`` returning None; its
  ``SubprocVecEnv`` workers under ``spawn`` only know the env through the ``"e4gym:"`` id prefix.
- Gymnasium 1.x vector semantics in the native vector env: the same results as ``SyncVectorEnv`` and
  ``AsyncVectorEnv`` in both autoreset modes, ``reset(options={"reset_mask": mask})``, ``ResetNeeded``.
- TorchRL reads info values as NumPy scalars: ``np.float64``, ``np.int64``, ``np.bool_``.
- Both of Gymnasium's env checkers pass.
"""

from __future__ import annotations

import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.utils.passive_env_checker import env_render_passive_checker
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.common import PassiveEnvChecker
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import e4gym  # noqa: F401  (registers the envs)
from e4gym.envs import INFO_KEYS, EarlyExitDVFSBlockEnv, EarlyExitDVFSEnv, EarlyExitDVFSVectorEnv

FRAME_ID, BLOCK_ID = "e4gym/EarlyExitDVFS-v1", "e4gym/EarlyExitDVFSBlock-v1"
#: The id a fresh interpreter (a spawned worker) can make: ``gym.make`` imports ``e4gym`` first.
FRAME_MODULE_ID = "e4gym:" + FRAME_ID
ENV_CLASSES = {FRAME_ID: EarlyExitDVFSEnv, BLOCK_ID: EarlyExitDVFSBlockEnv}
#: Short episodes, so that every rollout below crosses episode boundaries (autoresets happen).
FRAMES = 5
NUM_ENVS = 3

#: The NumPy scalar type each info key's value must have (every key not listed: ``np.float64``).
INT_INFO_KEYS = frozenset({"exit", "dvfs_switches", "frame", "profiling_runs", "block"})
BOOL_INFO_KEYS = frozenset({"correct", "deadline_missed", "throttled", "frame_done"})


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: threads only add overhead on 2 cores
    yield
    torch.set_num_threads(threads)


def _gym_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Messages of the warnings Gymnasium's logger raised (the checkers report through it: ``WARN: ...``)."""
    return [str(w.message) for w in caught if "WARN:" in str(w.message)]


def _close(a: object, b: object) -> bool:
    """Equal, floats up to 1e-9 relative (the native env's vectorised math rounds differently)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object or b.dtype == object:  # e.g. np.bool_ values batched by SyncVectorEnv into object arrays
        a, b = np.asarray(a.tolist()), np.asarray(b.tolist())
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=1e-9, atol=1e-12))
    return bool(np.array_equal(a, b))


def _assert_infos_match(got: dict, want: dict, where: str) -> None:
    """Gymnasium's vector info layout: the same keys and masks, and the same values where the mask is set."""
    assert sorted(got) == sorted(want), f"{where}: info keys differ: {sorted(set(got) ^ set(want))}"
    for key, value in want.items():
        if key.startswith("_"):
            assert np.array_equal(got[key], value), f"{where}: mask {key}: {got[key]} != {value}"
            continue
        if isinstance(value, dict):
            assert isinstance(got[key], dict), f"{where}: info[{key!r}] must be a dict, got {type(got[key])}"
            _assert_infos_match(got[key], value, f"{where}[{key!r}]")
            continue
        mask = np.asarray(want.get("_" + key, np.ones(len(value), bool)))
        assert len(got[key]) == len(value), f"{where}: info[{key!r}] has {len(got[key])} rows, want {len(value)}"
        for i in np.flatnonzero(mask):
            assert _close(got[key][i], value[i]), f"{where}: info[{key!r}][{i}]: {got[key][i]!r} != {value[i]!r}"


def _make_venvs(mode: AutoresetMode, num_envs: int = NUM_ENVS) -> dict[str, gym.vector.VectorEnv]:
    kw = {"episode_frames": FRAMES}
    return {
        "native": gym.make_vec(FRAME_ID, num_envs, vectorization_mode="vector_entry_point", autoreset_mode=mode, **kw),
        "sync": gym.make_vec(FRAME_ID, num_envs, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode},
                             **kw),
        "async": gym.make_vec(FRAME_ID, num_envs, vectorization_mode="async",
                              vector_kwargs={"autoreset_mode": mode}, **kw),
    }


def _actions(space: gym.spaces.MultiDiscrete, steps: int, seed: int = 0, num_envs: int | None = None) -> list:
    """``steps`` random actions of the single ``space``, or batches of ``num_envs`` of them."""
    rng = np.random.default_rng(seed)
    shape = space.nvec.shape if num_envs is None else (num_envs, *space.nvec.shape)
    return [rng.integers(0, space.nvec, size=shape) for _ in range(steps)]


def _assert_steps_match(got: tuple, want: tuple, where: str) -> None:
    for name, g, w in zip(("obs", "reward", "terminated", "truncated"), got[:4], want[:4]):
        assert _close(g, w), f"{where}: {name}: {g} != {w}"
    _assert_infos_match(got[4], want[4], where)


# ---------------------------------------------------------------------------------------------- render_mode


@pytest.mark.parametrize("env_id", [FRAME_ID, BLOCK_ID])
def test_unsupported_render_mode_warns_and_the_env_goes_on(env_id: str) -> None:
    with pytest.warns(UserWarning, match="rgb_array"):
        env = ENV_CLASSES[env_id](render_mode="rgb_array", episode_frames=FRAMES)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render() is None


@pytest.mark.parametrize("env_id", [FRAME_ID, BLOCK_ID])
def test_unsupported_render_mode_through_gym_make_renders_none_past_the_passive_checker(env_id: str) -> None:
    # What SB3's make_vec_env does; its DummyVecEnv.get_images() then calls render() through the passive checker.
    with pytest.warns(UserWarning, match="rgb_array"):
        env = gym.make(env_id, render_mode="rgb_array", episode_frames=FRAMES)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render() is None
    # The passive checker's first render() asserts this (gymnasium.utils.passive_env_checker), so an env that keeps
    # an unsupported mode in render_mode fails there: the env must fall back to None.
    assert env.unwrapped.render_mode in (None, *env.metadata["render_modes"]), env.unwrapped.render_mode


def test_native_vector_env_warns_on_an_unsupported_render_mode() -> None:
    with pytest.warns(UserWarning, match="rgb_array"):
        venv = EarlyExitDVFSVectorEnv(num_envs=2, render_mode="rgb_array", episode_frames=FRAMES)
    venv.reset(seed=0)
    obs, *_ = venv.step(np.zeros((2, 3), np.int64))
    assert obs.shape == (2, *venv.single_observation_space.shape)


# ---------------------------------------------------------------------------------------------- stable-baselines3


def _sb3_rollout(vec_env, steps: int = 2 * FRAMES + 2) -> list[tuple]:
    """Reset, then step with seeded random actions (the same in every sub-env); checks SB3's episode-end infos."""
    out = [(vec_env.reset(), None, None, None)]
    for a in _actions(vec_env.action_space, steps, seed=1):
        actions = np.tile(a, (vec_env.num_envs, 1))
        obs, rewards, dones, infos = vec_env.step(actions)
        for i in np.flatnonzero(dones):
            assert "terminal_observation" in infos[i] and infos[i]["TimeLimit.truncated"], infos[i].keys()
            assert infos[i]["episode"]["l"] == FRAMES, infos[i]["episode"]  # Monitor's episode record
        out.append((obs, rewards, dones, [infos[i]["energy_j"] for i in range(vec_env.num_envs)]))
    vec_env.close()
    return out


@pytest.mark.filterwarnings("ignore:.*render_mode")
def test_sb3_make_vec_env_with_dummy_vec_env() -> None:
    vec_env = make_vec_env(FRAME_ID, n_envs=2, seed=0, env_kwargs={"episode_frames": FRAMES})
    assert isinstance(vec_env, DummyVecEnv)
    records = _sb3_rollout(vec_env)
    # vec_env.seed(0) seeds sub-env i with 0 + i at the next reset, as gym.make(...).reset(seed=i).
    for i in range(2):
        assert np.array_equal(records[0][0][i], gym.make(FRAME_ID, episode_frames=FRAMES).reset(seed=i)[0])
    dones = np.array([r[2] for r in records[1:]])
    assert dones[FRAMES - 1].all() and dones[2 * FRAMES - 1].all() and dones.sum() == 4


@pytest.mark.parametrize(
    ("start_method", "env_id"),
    [
        ("fork", FRAME_ID),
        pytest.param("spawn", FRAME_MODULE_ID, marks=pytest.mark.slow),  # each worker imports torch (SB3)
    ],
)
@pytest.mark.filterwarnings("ignore:.*render_mode")
def test_sb3_make_vec_env_with_subproc_vec_env_matches_dummy_vec_env(start_method: str, env_id: str) -> None:
    kw = {"n_envs": 2, "seed": 0, "env_kwargs": {"episode_frames": FRAMES}}
    sub = make_vec_env(env_id, vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": start_method}, **kw)
    got = _sb3_rollout(sub)
    want = _sb3_rollout(make_vec_env(FRAME_ID, **kw))
    for t, (g, w) in enumerate(zip(got, want)):
        for k, name in ((0, "obs"), (2, "dones"), (3, "energy_j")):
            assert _close(g[k], w[k]), f"step {t}: {name}: {g[k]} != {w[k]}"
        # DummyVecEnv keeps rewards in a float32 buffer, SubprocVecEnv stacks the workers' float64 ones.
        assert g[1] is None or np.allclose(g[1], w[1], rtol=1e-6), f"step {t}: rewards: {g[1]} != {w[1]}"


@pytest.mark.slow  # 3-5 s on 2 cores (the first PPO update)
@pytest.mark.filterwarnings("ignore:.*render_mode")
def test_sb3_ppo_learns_on_make_vec_env() -> None:
    vec_env = make_vec_env(FRAME_ID, n_envs=2, seed=0, env_kwargs={"episode_frames": 16})
    model = PPO("MlpPolicy", vec_env, n_steps=16, batch_size=32, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [16]}, device="cpu").learn(64)
    assert model.num_timesteps == 64
    action, _ = model.predict(vec_env.reset(), deterministic=True)
    assert action.shape == (2, 3) and all(vec_env.action_space.contains(a) for a in action)
    vec_env.close()


# ---------------------------------------------------------------------------------------------- Gymnasium vector


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=lambda m: m.value)
def test_native_sync_and_async_vector_envs_agree_across_autoresets(mode: AutoresetMode) -> None:
    venvs = _make_venvs(mode)
    assert venvs["native"].metadata["autoreset_mode"] == mode
    actions = _actions(venvs["sync"].single_action_space, 2 * FRAMES + 3, num_envs=NUM_ENVS)
    runs = {}
    for name, venv in venvs.items():
        obs, info = venv.reset(seed=7)
        steps = [venv.step(a) for a in actions]
        runs[name] = (obs, info, steps)
        venv.close()
    want_obs, want_info, want_steps = runs["sync"]
    truncs = np.array([s[3] for s in want_steps])
    assert truncs.any(axis=0).all(), "every sub-env must finish an episode in this rollout"
    if mode == AutoresetMode.SAME_STEP:
        assert any("final_info" in s[4] for s in want_steps)
    for name in ("native", "async"):
        obs, info, steps = runs[name]
        assert _close(obs, want_obs), f"{name}: reset obs"
        _assert_infos_match(info, want_info, f"{name} reset")
        for t, (got, want) in enumerate(zip(steps, want_steps)):
            _assert_steps_match(got, want, f"{name} step {t}")


def test_same_step_autoreset_puts_the_reset_info_on_top_and_the_finished_step_in_final_info() -> None:
    venv = gym.make_vec(FRAME_ID, NUM_ENVS, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP, episode_frames=FRAMES)
    venv.reset(seed=0)
    for _ in range(FRAMES - 1):
        _, _, _, trunc, info = venv.step(np.zeros((NUM_ENVS, 3), np.int64))
        assert not trunc.any() and "final_info" not in info and "final_obs" not in info
    _, _, _, trunc, info = venv.step(np.zeros((NUM_ENVS, 3), np.int64))
    assert trunc.all()
    # Top level: the reset info of the new episode (SyncVectorEnv's layout in SAME_STEP mode).
    assert (info["frame"] == -1).all() and (info["exit"] == -1).all() and (info["energy_j"] == 0).all()
    # final_info: the step that finished the episode, with its own masks.
    assert info["_final_info"].all() and info["_final_obs"].all()
    assert (info["final_info"]["frame"] == FRAMES - 1).all() and (info["final_info"]["energy_j"] > 0).all()
    assert info["final_info"]["_energy_j"].all()


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=lambda m: m.value)
def test_reset_mask_resets_only_the_masked_sub_envs_as_sync_vector_env_does(mode: AutoresetMode) -> None:
    venvs = _make_venvs(mode)
    del venvs["async"]  # AsyncVectorEnv follows SyncVectorEnv (test above); one reference is enough here
    masks = [np.array([True, False, True]), np.array([True, False, False])]
    actions = _actions(venvs["sync"].single_action_space, 3 * FRAMES, seed=3, num_envs=NUM_ENVS)
    runs = {}
    for name, venv in venvs.items():
        rec = [venv.reset(seed=11)]
        for t, a in enumerate(actions):
            if t == 2:  # mid-episode, with a seed: masked sub-env i gets 50 + i
                rec.append(venv.reset(seed=50, options={"reset_mask": masks[0].copy()}))
            if t == FRAMES + 2:  # sub-envs 0 and 2 finished at the step before (NEXT_STEP: their autoreset pending)
                rec.append(venv.reset(options={"reset_mask": masks[1].copy()}))
            rec.append(venv.step(a))
        runs[name] = rec
        venv.close()
    frames = []
    for t, (got, want) in enumerate(zip(runs["native"], runs["sync"])):
        if len(want) == 2:  # a reset
            assert _close(got[0], want[0]), f"record {t}: reset obs"
            _assert_infos_match(got[1], want[1], f"record {t} reset")
        else:
            _assert_steps_match(got, want, f"record {t}")
            frames.append(np.asarray(got[4]["frame"]))
    # The masked reset restarted sub-envs 0 and 2 only: sub-env 1 kept counting frames.
    assert frames[2][1] == 2 and frames[2][0] == frames[2][2] == 0, frames[2]


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=lambda m: m.value)
def test_native_vector_env_never_changes_what_it_returned(mode: AutoresetMode) -> None:
    # SyncVectorEnv hands out fresh arrays every call; a client may keep them (replay buffers, TorchRL's tensordicts).
    venv = EarlyExitDVFSVectorEnv(num_envs=NUM_ENVS, episode_frames=FRAMES, autoreset_mode=mode)
    returned = [venv.reset(seed=0)]
    kept = [copy.deepcopy(returned[-1])]
    for t, a in enumerate(_actions(venv.single_action_space, 2 * FRAMES + 2, num_envs=NUM_ENVS)):
        if t == 3:
            returned.append(venv.reset(options={"reset_mask": np.array([True, False, False])}))
            kept.append(copy.deepcopy(returned[-1]))
        returned.append(venv.step(a))
        kept.append(copy.deepcopy(returned[-1]))
    returned.append(venv.reset(seed=1))
    kept.append(copy.deepcopy(returned[-1]))
    for t, (got, want) in enumerate(zip(returned, kept)):
        for k, (g, w) in enumerate(zip(got[:-1], want[:-1])):
            assert np.array_equal(g, w), f"call {t}: item {k} changed after it was returned"
        _assert_infos_match(got[-1], want[-1], f"call {t} (changed after it was returned)")


def test_masked_reset_returns_the_unmasked_sub_envs_current_observations() -> None:
    venv = EarlyExitDVFSVectorEnv(num_envs=NUM_ENVS, episode_frames=50)
    venv.reset(seed=0)
    obs, *_ = venv.step(np.tile([1, 10, 5], (NUM_ENVS, 1)))
    mask = np.array([False, True, False])
    new_obs, info = venv.reset(seed=[None, 4, None], options={"reset_mask": mask})
    assert np.array_equal(new_obs[~mask], obs[~mask])
    assert np.array_equal(new_obs[1], EarlyExitDVFSEnv(episode_frames=50).reset(seed=4)[0])
    assert np.array_equal(info["_frame"], mask) and info["frame"][1] == -1


def test_native_vector_env_raises_reset_needed_when_stepped_before_reset() -> None:
    venv = gym.make_vec(FRAME_ID, num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(gym.error.ResetNeeded):
        venv.step(np.zeros((2, 3), np.int64))


@pytest.mark.parametrize("env_id", [FRAME_ID, BLOCK_ID])
def test_single_envs_raise_reset_needed_when_stepped_before_reset(env_id: str) -> None:
    env = ENV_CLASSES[env_id]()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())


# ---------------------------------------------------------------------------------------------- info values


def _expected_type(key: str) -> type:
    return np.int64 if key in INT_INFO_KEYS else np.bool_ if key in BOOL_INFO_KEYS else np.float64


@pytest.mark.parametrize("env_id", [FRAME_ID, BLOCK_ID])
def test_info_values_are_numpy_scalars_in_reset_and_step_infos(env_id: str) -> None:
    env = gym.make(env_id, episode_frames=2)
    rail_keys = env.unwrapped.rail_keys
    assert rail_keys, "the emulator's power monitor has rails"
    env.action_space.seed(0)
    infos = [("reset", env.reset(seed=0)[1])]
    truncated = False
    while not truncated:
        *_, truncated, info = env.step(env.action_space.sample())
        infos.append((f"step {len(infos)}", info))
    infos.append(("reset again", env.reset()[1]))
    for where, info in infos:
        missing = {*INFO_KEYS, *rail_keys} - set(info)
        assert not missing, f"{where}: missing info keys {sorted(missing)}"
        wrong = {k: type(v).__name__ for k, v in info.items() if type(v) is not _expected_type(k)}
        assert not wrong, f"{where}: info values that are not the expected NumPy scalars: {wrong}"


@pytest.mark.parametrize("env_id", [FRAME_ID, BLOCK_ID])
def test_an_unknown_argument_raises_python_s_type_error(env_id: str) -> None:
    # TorchRL's GymEnv passes frameskip= and retries without it only on this TypeError message (torchrl.envs.libs.gym
    # ACCEPTED_TYPE_ERRORS); SB3's make_vec_env retries without render_mode on a TypeError.
    with pytest.raises(TypeError, match="unexpected keyword argument 'frameskip'"):
        gym.make(env_id, frameskip=1)


@pytest.mark.slow  # importing TorchRL takes seconds
@pytest.mark.parametrize("env_id", [FRAME_MODULE_ID, "e4gym:" + BLOCK_ID])
def test_torchrl_gym_env_reads_the_info_values(env_id: str) -> None:
    # Runs where TorchRL is installed (it is not a dependency); the snippet of docs/clients.md.
    torchrl_envs = pytest.importorskip("torchrl.envs")
    from torchrl.envs.gym_like import default_info_dict_reader

    env = torchrl_envs.GymEnv(env_id, episode_frames=FRAMES)
    env.set_info_dict_reader(default_info_dict_reader(["energy_j", "deadline_missed", "exit"]))
    env.set_seed(0)
    td = env.rollout(4)
    assert td.batch_size == torch.Size([4])
    assert td["next", "energy_j"].dtype == torch.float64 and (td["next", "energy_j"] > 0).all()
    assert td["next", "deadline_missed"].dtype == torch.bool and td["next", "exit"].dtype == torch.int64


# ---------------------------------------------------------------------------------------------- checkers


@pytest.mark.parametrize("env_id", [FRAME_ID, BLOCK_ID])
def test_gymnasium_check_env_passes_without_warnings(env_id: str) -> None:
    env = gym.make(env_id, episode_frames=FRAMES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert not _gym_warnings(caught), _gym_warnings(caught)


@pytest.mark.parametrize("env_id", [FRAME_ID, BLOCK_ID])
@pytest.mark.parametrize("render_mode", [None, "ansi"])
def test_passive_env_checker_of_gym_make_is_silent(env_id: str, render_mode: str | None) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(env_id, episode_frames=2, render_mode=render_mode)
        wrappers, e = [], env
        while e is not e.unwrapped:
            wrappers.append(type(e))
            e = e.env
        assert PassiveEnvChecker in wrappers, wrappers
        env.action_space.seed(0)
        env.reset(seed=0)
        out = env.render()
        truncated = False
        while not truncated:
            *_, truncated, _ = env.step(env.action_space.sample())
        env.reset()
        env_render_passive_checker(env.unwrapped)
        env.close()
    assert not _gym_warnings(caught), _gym_warnings(caught)
    assert (out is None) if render_mode is None else isinstance(out, str)
