"""Finding the policies a benchmark config names, and building them.

A config's policy entry names its policy in one of four ways:

* a registered name: an entry point of the ``e4gym.policies`` group (pyproject.toml declares the baselines
  and ``e4``; other installed packages can add their own). Each entry is a callable taking the config's
  ``args`` as keyword arguments and returning a policy. An entry point is only imported when a config uses
  it, so a missing or broken one fails only those configs;
* ``sb3``: a saved stable-baselines3 model, ``args: {path: model.zip, algo: ppo}`` (``algo``: ``a2c``,
  ``ddpg``, ``dqn``, ``ppo``, ``sac`` or ``td3``; optional ``env_id`` and ``env_kwargs``, the env the model
  was trained on). stable-baselines3 and torch are imported only then;
* ``"module.path:Attr"``: any importable callable (a class or a factory);
* a path ending in ``.zip``: short for ``{policy: sb3, args: {path: PATH}}`` (PPO).

:func:`make_policy` builds the policy; the errors it raises say which name or argument is wrong.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.errors import ConfigError, E4gymError, UnknownNameError

#: The entry-point group the harness reads policy names from.
ENTRY_POINT_GROUP = "e4gym.policies"
#: The built-in name of saved stable-baselines3 models.
SB3 = "sb3"
#: The stable-baselines3 algorithms an ``sb3`` policy can load (lower-case name -> class name).
SB3_ALGOS: dict[str, str] = {"a2c": "A2C", "ddpg": "DDPG", "dqn": "DQN", "ppo": "PPO", "sac": "SAC", "td3": "TD3"}
#: The env a policy runs on when it does not say (``env_id`` attribute).
DEFAULT_ENV_ID = "e4gym/EarlyExitDVFS-v1"


def _entry_points() -> dict[str, md.EntryPoint]:
    """The ``e4gym.policies`` entry points by name (not loaded)."""
    return {ep.name: ep for ep in md.entry_points(group=ENTRY_POINT_GROUP)}


def registered_policies() -> list[str]:
    """The policy names a config can use (the entry points, plus ``sb3``), sorted."""
    return sorted({*_entry_points(), SB3})


def is_module_spec(name: str) -> bool:
    """``name`` has the ``module.path:Attr`` form."""
    mod, sep, attr = name.partition(":")
    return bool(sep and mod and attr) and all(p.isidentifier() for p in (*mod.split("."), *attr.split(".")))


def default_label(name: str, args: Mapping[str, Any]) -> str:
    """The label a policy entry gets when the config gives none: the name, the attribute of a
    ``module:Attr`` spec, or ``sb3-<file stem>`` for a saved model."""
    if name == SB3:
        path = args.get("path")
        return f"sb3-{Path(str(path)).stem}" if path else SB3
    if name.endswith(".zip"):
        return f"sb3-{Path(name).stem}"
    if is_module_spec(name):
        return name.partition(":")[2].rsplit(".", 1)[-1]
    return name


def resolve_factory(name: str) -> Callable[..., Any]:
    """The callable that builds policy ``name`` (see the module docstring for the forms a name takes).

    Raises:
        UnknownNameError: not a registered name, nor an importable ``module:Attr``, nor a ``.zip`` path
            (the message lists the registered names).
        ConfigError: a registered entry point that cannot be imported, or an attribute that is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a policy name must be a non-empty string, got {name!r}")
    if name == SB3:
        return SB3Policy
    eps = _entry_points()
    if name in eps:
        ep = eps[name]
        try:
            factory = ep.load()
        except Exception as exc:  # an installed entry point whose module is missing or broken
            raise ConfigError(
                f"policy '{name}' is registered ({ep.value}) but cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
    elif is_module_spec(name):
        mod_name, _, attr = name.partition(":")
        try:
            obj: Any = importlib.import_module(mod_name)
        except ImportError as exc:
            raise UnknownNameError(f"policy '{name}': cannot import module '{mod_name}' ({exc})") from exc
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError as exc:
            raise UnknownNameError(f"policy '{name}': module '{mod_name}' has no attribute '{attr}'") from exc
        factory = obj
    elif name.endswith(".zip"):
        return lambda **kw: SB3Policy(path=name, **kw)
    else:
        raise UnknownNameError(
            f"unknown policy '{name}'; registered policies: {registered_policies()} "
            "(or 'module.path:Attr', or a path to a saved stable-baselines3 model .zip)"
        )
    if not callable(factory):
        raise ConfigError(f"policy '{name}' resolves to {factory!r}, which is not callable")
    return factory


def make_policy(name: str, args: Mapping[str, Any] | None = None) -> Any:
    """Build policy ``name`` with keyword arguments ``args`` and check it has ``predict``.

    Raises:
        UnknownNameError / ConfigError: see :func:`resolve_factory`; also arguments the factory does not
            take or rejects (the message names the policy and its accepted arguments), and a result
            without ``predict``.
    """
    factory = resolve_factory(name)
    kwargs = dict(args or {})
    try:
        policy = factory(**kwargs)
    except TypeError as exc:
        try:
            accepted = [p for p in inspect.signature(factory).parameters if p not in ("self", "args", "kwargs")]
        except (TypeError, ValueError):
            accepted = []
        hint = f"; it accepts {accepted}" if accepted else ""
        raise ConfigError(f"policy '{name}': bad args {kwargs}: {exc}{hint}") from exc
    except (E4gymError, ValueError, KeyError) as exc:
        raise ConfigError(f"policy '{name}': bad args {kwargs}: {exc}") from exc
    if not callable(getattr(policy, "predict", None)):
        raise ConfigError(
            f"policy '{name}' built {policy!r}, which is not a policy: it needs predict(observation, state, "
            "episode_start, deterministic) -> (action, state)"
        )
    return policy


def policy_env_id(policy: Any) -> str:
    """The env id a policy runs on (its ``env_id`` attribute, default :data:`DEFAULT_ENV_ID`).

    Raises:
        ConfigError: ``env_id`` is not a non-empty string.
    """
    env_id = getattr(policy, "env_id", None)
    if env_id is None:
        return DEFAULT_ENV_ID
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"{policy!r}: env_id must be a registered env id like {DEFAULT_ENV_ID!r}, got {env_id!r}")
    return env_id


def policy_env_kwargs(policy: Any) -> dict[str, Any]:
    """The env arguments a policy needs (its ``env_kwargs`` attribute, default none).

    Raises:
        ConfigError: ``env_kwargs`` is not a mapping with string keys.
    """
    kw = getattr(policy, "env_kwargs", None)
    if kw is None:
        return {}
    if not isinstance(kw, Mapping) or not all(isinstance(k, str) for k in kw):
        raise ConfigError(f"{policy!r}: env_kwargs must be a dict of env arguments, got {kw!r}")
    return dict(kw)


class SB3Policy:
    """A saved stable-baselines3 model as a harness policy (``predict`` is the model's own).

    Args:
        path: the ``.zip`` written by ``model.save(path)``.
        algo: the algorithm that saved it (a key of :data:`SB3_ALGOS`).
        env_id: the env the model acts in (default :data:`DEFAULT_ENV_ID`); its action space must be the
            env's own (no action wrapper).
        env_kwargs: env arguments the model needs beyond the scenario's (e.g. ``{"control_memory": true}``).
        device: torch device to load on (default ``"cpu"``).

    Raises:
        ConfigError: the file is missing, ``algo`` is unknown, or the file is not a model of that algorithm.
    """

    clairvoyant = False

    def __init__(self, path: str, algo: str = "ppo", env_id: str | None = None,
                 env_kwargs: Mapping[str, Any] | None = None, device: str = "cpu") -> None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"sb3: no saved model at '{path}' (args.path must be a file written by model.save)")
        cls_name = SB3_ALGOS.get(str(algo).lower())
        if cls_name is None:
            raise ConfigError(f"sb3: unknown algo {algo!r}; algos: {sorted(SB3_ALGOS)}")
        import stable_baselines3

        try:
            self.model = getattr(stable_baselines3, cls_name).load(str(file), device=device)
        except Exception as exc:
            raise ConfigError(f"sb3: cannot load '{path}' as a {cls_name} model: {type(exc).__name__}: {exc}") from exc
        self.path = str(file)
        self.algo = str(algo).lower()
        self.name = f"sb3-{self.algo}({file.stem})"
        self.env_id = env_id or DEFAULT_ENV_ID
        self.env_kwargs = dict(env_kwargs or {})

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The model's action for ``observation`` (and its recurrent state)."""
        return self.model.predict(observation, state=state, episode_start=episode_start, deterministic=deterministic)

    def reset(self) -> None:
        """Nothing to forget: a recurrent model's state restarts with ``episode_start``."""

    def __repr__(self) -> str:
        return f"SB3Policy(path={self.path!r}, algo={self.algo!r})"
