"""Benchmark experiment configs (``configs/experiments/*.yaml``): reading and validating them.

The format::

    name: quickstart                 # optional; default: the file name without .yaml
    description: one line            # optional, printed in the report
    env:                             # optional: env arguments every scenario shares
      episode_frames: 1000
    matrix:                          # env arguments to vary; scenarios = every combination of the lists (or a
      device: [xavier-nx]            # list of such mappings: the union of their scenarios)
      model: [efficientnet_b0]
      fps: [30]
      deadline_ms: [null]            # null: the frame period
    seeds: [0, 1]                    # env seeds; every policy sees the same frame stream for a seed
    policies:
      - performance                  # a registered name (entry points of the e4gym.policies group)
      - {name: static, label: static-mid, args: {cpu_level: 10, gpu_level: 5}}
      - {policy: sb3, label: ppo, args: {path: runs/ppo.zip, algo: ppo}}
      - my_pkg.policies:MyPolicy     # or any importable callable (module.path:Attr)

``env`` and ``matrix`` take the arguments of ``gymnasium.make("e4gym/EarlyExitDVFS-v1", ...)``
(:data:`ENV_FIELDS`: device, model, workload, workload_kwargs, fps, deadline_ms, reward_weights,
control_memory, power_mode, episode_frames, fan, ambient_c, initial_temp_c, governors, runtime); ``device`` and
``model`` must be given in one of them, and a field may not be in both. A policy entry is a name or a mapping
with ``name`` (or ``policy``), an optional ``label`` (unique; default: the name) and optional ``args`` (keyword
arguments of the policy's factory). See :mod:`e4gym.bench.policies` for the names a policy can have.

Two symbolic values place a scenario relative to what its network needs on its board (``L``: the full network's
latency at the power mode's top clocks, noise-free, ``EnvSetup.latency_ref_s``): ``fps: auto`` is the highest
whole frame rate whose period is at least :data:`AUTO_FPS_HEADROOM` × ``L`` (the full network fits with headroom,
so the governors are not forced to the top clocks), and ``deadline_ms: tight`` is :data:`TIGHT_DEADLINE_FACTOR` ×
``L`` (little room for slower clocks: savings must come from early exits). Both are assumptions
(docs/assumptions.md). The scenario's title shows the numbers they resolved to.

:func:`load_experiment` checks everything before any episode runs: unknown fields (named, with the allowed
ones), unknown devices, models, power modes or governors (the loaders' messages list the known names),
unknown policies (the registered names are listed), policy arguments (each policy is built once, and a
policy with a ``check_setup(setup)`` method checks its settings against every scenario's resolved setup: a
static policy's level indices against the device's level tables), duplicate labels or seeds, and empty
``matrix``, ``seeds`` or ``policies``. Env arguments are checked by
:func:`~e4gym.envs.common.resolve_setup` (types, ranges); the YAML loader refuses duplicate keys. Every
error is a :class:`ConfigError` (or :class:`UnknownNameError`) that names the file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e4gym._yaml import load_yaml
from e4gym.bench.metrics import env_family
from e4gym.envs.batching import BatchConcurrencyOptions
from e4gym.envs.common import resolve_setup
from e4gym.envs.core import EnvConfig
from e4gym.errors import ConfigError, E4gymError, UnknownNameError
from e4gym.paths import config_dir

#: Top-level fields of an experiment config.
TOP_FIELDS = ("name", "description", "env", "matrix", "seeds", "policies")
#: Fields of a policy entry given as a mapping.
POLICY_FIELDS = ("name", "policy", "label", "args")
#: The env arguments ``env`` and ``matrix`` may set (the keyword arguments of the e4gym envs).
#: (A reward callable and rendering are not scenario settings: a config names data, not code.)
ENV_FIELDS: tuple[str, ...] = tuple(n for n in EnvConfig.names() if n not in ("reward", "render_mode"))
#: Env arguments that choose the backend, not the scenario's setup.
BACKEND_FIELDS = ("backend", "backend_kwargs")
#: The env arguments ``env`` and ``matrix`` may set for the serving env (the batching env's options; not the
#: utility callable or rendering).
SERVING_FIELDS: tuple[str, ...] = tuple(n for n in BatchConcurrencyOptions.names() if n not in ("utility",
                                                                                                 "render_mode"))
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def experiments_dir() -> Path:
    """Where bare config names are looked up: ``<configs>/experiments``."""
    return config_dir() / "experiments"


def available_experiments() -> list[str]:
    """The config names under :func:`experiments_dir`."""
    d = experiments_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def resolve_config_path(config: str | Path) -> Path:
    """``config`` as a file: a path that exists, or a bare name under ``configs/experiments/``.

    Raises:
        UnknownNameError: neither (the message lists the available names).
    """
    path = Path(config)
    if path.is_file():
        return path
    text = str(config)
    if "/" not in text and "\\" not in text:
        cand = experiments_dir() / (text if text.endswith((".yaml", ".yml")) else f"{text}.yaml")
        if cand.is_file():
            return cand
    raise UnknownNameError(
        f"no experiment config '{config}': not a file, and not a name under {experiments_dir()}; "
        f"available: {available_experiments()}"
    )


@dataclass(frozen=True)
class PolicyEntry:
    """One policy of an experiment, resolved and checked.

    Attributes:
        name: how the config names it (registered name, ``sb3``, ``module:Attr`` or ``.zip`` path).
        label: its unique label in the experiment (file names, tables, plot legends).
        args: keyword arguments of its factory.
        display: the built policy's ``name`` attribute (or the label).
        env_id: the env it runs on. env_kwargs: env arguments it needs (override the scenario's).
        clairvoyant: it reads the future (reported as a bound).
        fingerprint: content hash of a saved model file it loads (sb3), else ``None``.
    """

    name: str
    label: str
    args: dict[str, Any]
    display: str
    env_id: str
    env_kwargs: dict[str, Any]
    clairvoyant: bool
    fingerprint: str | None = None


@dataclass(frozen=True)
class Scenario:
    """One combination of the matrix.

    Attributes:
        name: a file-name-safe id (``xavier-nx_efficientnet_b0_30fps_dl-period``).
        params: the matrix values of this combination.
        env_kwargs: the env arguments (``env`` merged with ``params``; ``--frames`` applied).
        title: human-readable description (device, model, frame rate, deadline).
        device / model: the resolved device and model names.
        fps: stream frame rate (frames/s). deadline_ms: the per-frame deadline (ms), resolved.
    """

    name: str
    params: dict[str, Any]
    env_kwargs: dict[str, Any]
    title: str
    device: str
    model: str
    fps: float
    deadline_ms: float


@dataclass(frozen=True)
class Experiment:
    """A validated experiment: scenarios × policies × seeds.

    Attributes:
        name / description: from the config. source: the file it came from (or ``"<dict>"``).
        matrix_keys: the varied env arguments, in config order. seeds: env seeds.
        scenarios / policies: resolved entries, in config order.
        episode_frames: the ``--frames`` override, if any.
        sha256: the config's content hash (of the file's bytes, or of the mapping's canonical JSON): results name
            the exact config they came from (``results.json``, ``report.md``).
    """

    name: str
    description: str
    source: str
    matrix_keys: tuple[str, ...]
    seeds: tuple[int, ...]
    scenarios: tuple[Scenario, ...]
    policies: tuple[PolicyEntry, ...]
    episode_frames: int | None = None
    sha256: str = ""

    @property
    def family(self) -> str:
        """The env family its policies run on (:func:`e4gym.bench.metrics.env_family`): ``"frame"`` or
        ``"serving"`` (one per experiment)."""
        return env_family(self.policies[0].env_id) if self.policies else "frame"

    @property
    def n_tasks(self) -> int:
        """Number of (scenario, policy, seed) tasks."""
        return len(self.scenarios) * len(self.policies) * len(self.seeds)


# ---------------------------------------------------------------------------------------------- helpers


def _fail(src: str, msg: str) -> ConfigError:
    return ConfigError(f"{src}: {msg}")


def _rewrap(exc: E4gymError, prefix: str) -> E4gymError:
    """``exc`` with ``prefix`` in front of its message, keeping UnknownNameError's type."""
    cls = UnknownNameError if isinstance(exc, UnknownNameError) else ConfigError
    return cls(f"{prefix}: {exc}")


def _check_known(data: Mapping[str, Any], allowed: Sequence[str], src: str, where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise _fail(src, f"unknown field(s) {unknown} {where}; allowed: {sorted(allowed)}")


def _piece(key: str, value: Any) -> str:
    """The part of a scenario name for one matrix value."""
    if key in ("device", "model") and isinstance(value, str):
        text = Path(value).stem if value.endswith((".yaml", ".yml")) else value
    elif key == "fps" and isinstance(value, (int, float)):
        text = f"{value:g}fps"
    elif key == "deadline_ms":
        text = "dl-period" if value is None else f"dl{value:g}ms" if isinstance(value, (int, float)) else f"dl{value}"
    else:
        shown = json.dumps(value, sort_keys=True, separators=(",", "=")) if isinstance(value, (dict, list)) else value
        text = f"{key}-{shown}"
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(text)).strip("-") or key


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(value: Any) -> str:
    """Deterministic JSON of ``value`` (sorted keys; non-JSON values as their ``repr``), for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


# ---------------------------------------------------------------------------------------------- parsing


def _parse_policy(item: Any, i: int, src: str) -> tuple[str, str, dict[str, Any]]:
    """``(name, label, args)`` of policy entry ``i``."""
    from e4gym.bench.policies import default_label

    where = f"policies[{i}]"
    if isinstance(item, str):
        name, label, args = item, None, {}
    elif isinstance(item, Mapping):
        _check_known(item, POLICY_FIELDS, src, f"in '{where}'")
        if ("name" in item) == ("policy" in item):
            raise _fail(src, f"'{where}' needs exactly one of 'name' or 'policy' (the policy to run), got {dict(item)}")
        name = item.get("name", item.get("policy"))
        label = item.get("label")
        args = item.get("args") or {}
        if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
            raise _fail(src, f"'{where}.args' must be a mapping of keyword arguments, got {args!r}")
        args = dict(args)
    else:
        raise _fail(src, f"'{where}' must be a policy name or a mapping with name/label/args, got {item!r}")
    if not isinstance(name, str) or not name:
        raise _fail(src, f"'{where}': the policy name must be a non-empty string, got {name!r}")
    if label is None:
        label = re.sub(r"[^A-Za-z0-9_.+-]+", "-", default_label(name, args)).strip("-") or f"policy{i}"
    elif not isinstance(label, str) or not _LABEL_RE.match(label):
        raise _fail(src, f"'{where}.label' must be letters, digits and _ . + - (starting with a letter or digit), "
                         f"got {label!r}")
    return name, label, args


def env_options(env_id: str) -> tuple[str, ...]:
    """The arguments an env takes besides the shared :class:`~e4gym.envs.core.EnvConfig` fields (its class's
    ``OPTIONS``, e.g. the edge-cloud env's ``uplink``); a policy may ask for them, a scenario may not."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    try:
        creator = load_env_creator(gym.spec(env_id).entry_point)  # type: ignore[arg-type]
    except (gym.error.Error, ImportError, AttributeError, ValueError):  # reported where the id is checked
        return ()
    return tuple(getattr(creator, "OPTIONS", ()))


def _build_policy_entry(name: str, label: str, args: dict[str, Any], src: str) -> tuple[PolicyEntry, Any]:
    """Build the policy once to check its arguments and read what it needs from the env; returns the entry and
    the built policy (for :func:`_check_policy_setup`)."""
    from e4gym.bench.policies import SB3, make_policy, policy_env_id, policy_env_kwargs

    try:
        policy = make_policy(name, args)
        env_id = policy_env_id(policy)
        env_kwargs = policy_env_kwargs(policy)
    except E4gymError as exc:
        raise _rewrap(exc, f"{src}: policy '{label}'") from exc
    own = env_options(env_id)
    bad = sorted(k for k in env_kwargs if k not in ENV_FIELDS and k not in own)
    if bad:
        raise _fail(src, f"policy '{label}' asks for unknown env argument(s) {bad}; env arguments: "
                    f"{[*ENV_FIELDS, *own]}")
    fingerprint = None
    model_path = args.get("path") if name == SB3 else name if name.endswith(".zip") else None
    if model_path is not None:
        fingerprint = _sha256_file(Path(str(model_path)))
    entry = PolicyEntry(
        name=name, label=label, args=args, display=str(getattr(policy, "name", label)), env_id=env_id,
        env_kwargs=env_kwargs, clairvoyant=bool(getattr(policy, "clairvoyant", False)), fingerprint=fingerprint,
    )
    return entry, policy


def _check_policy_setup(policy: Any, setup: Any, src: str, label: str, scenario: str) -> None:
    """Let a policy check its settings against a scenario's resolved setup before any task runs.

    A policy with a ``check_setup(setup)`` method (e.g. a static policy's level indices against the device's
    level tables and power mode) is called with each scenario's :class:`~e4gym.envs.common.EnvSetup`; an
    e4gym error it raises becomes a ConfigError naming the file, the policy and the scenario.
    """
    check = getattr(policy, "check_setup", None)
    if not callable(check):
        return
    try:
        check(setup)
    except E4gymError as exc:
        raise _rewrap(exc, f"{src}: policy '{label}' on scenario {scenario}") from exc


def _serving_setup(kwargs: Mapping[str, Any]) -> Any:
    """A serving scenario's :class:`~e4gym.envs.batching.BatchSetup`, by building its env once (every argument
    checked as the env checks it; with ``backend="triton"`` the server is not started here)."""
    from e4gym.envs.batching import BatchConcurrencyEnv

    return BatchConcurrencyEnv(**{**kwargs, "backend": "emulated", "backend_kwargs": None}).setup


def _check_backend(kwargs: Mapping[str, Any]) -> None:
    """An unknown backend name or a backend_kwargs that is not a mapping fails at config time."""
    from e4gym.envs.common import BACKENDS

    name = kwargs.get("backend", "emulated")
    if name not in BACKENDS:
        raise UnknownNameError(f"unknown backend {name!r}; backends: {list(BACKENDS)}")
    if not isinstance(kwargs.get("backend_kwargs", {}), Mapping):
        raise ConfigError(f"backend_kwargs must be a mapping, got {kwargs['backend_kwargs']!r}")


#: ``fps: auto``: the frame period is at least this multiple of the full network's latency at the top clocks.
AUTO_FPS_HEADROOM = 1.5
#: ``deadline_ms: tight``: this multiple of the full network's latency at the top clocks.
TIGHT_DEADLINE_FACTOR = 1.15


def _symbolic(kwargs: dict[str, Any], setup_of: Any, where: str, src: str) -> dict[str, Any]:
    """``kwargs`` with ``fps: auto`` and ``deadline_ms: tight`` resolved to numbers (see the module docstring)."""
    fps, deadline = kwargs.get("fps"), kwargs.get("deadline_ms")
    if fps != "auto" and deadline != "tight":
        return kwargs
    for key, value, word in (("fps", fps, "auto"), ("deadline_ms", deadline, "tight")):
        if isinstance(value, str) and value != word:
            raise _fail(src, f"{where}: {key} must be a number, null or '{word}', got {value!r}")
    base = setup_of({k: v for k, v in kwargs.items() if k not in ("fps", "deadline_ms")}, where)
    lat = float(base.latency_ref_s)
    out = dict(kwargs)
    if fps == "auto":
        if kwargs.get("workload", "synthetic") != "synthetic":
            raise _fail(src, f"{where}: fps: auto needs the synthetic workload (a trace has its own frame rate)")
        out["fps"] = float(max(1, math.floor(1.0 / (AUTO_FPS_HEADROOM * lat))))
    if deadline == "tight":
        out["deadline_ms"] = round(TIGHT_DEADLINE_FACTOR * lat * 1e3, 2)
    return out


def load_experiment(config: str | Path | Mapping[str, Any], frames: int | None = None,
                    backend: Mapping[str, Any] | None = None, seeds: Any = None) -> Experiment:
    """Read and validate an experiment config (a path, a name under ``configs/experiments/``, or a mapping).

    Args:
        config: the config. frames: override every scenario's ``episode_frames`` (frames per episode).
        backend: env arguments ``backend`` / ``backend_kwargs`` set on every scenario (``e4gym bench --backend
            jetson --sysfs-root TREE``).
        seeds: override the config's ``seeds`` (``e4gym bench --seeds 0 1``), e.g. for a smoke run.

    Raises:
        ConfigError / UnknownNameError: anything wrong with the config (see the module docstring); nothing
            is run or written.
    """
    import gymnasium as gym

    import e4gym

    if isinstance(config, Mapping):
        data, src, stem = dict(config), "<dict>", "experiment"
        sha = hashlib.sha256(canonical_json(data).encode()).hexdigest()
    else:
        path = resolve_config_path(config)
        data, src, stem = load_yaml(path), str(path), path.stem
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    _check_known(data, TOP_FIELDS, src, "at the top level")
    name = data.get("name", stem)
    if not isinstance(name, str) or not name:
        raise _fail(src, f"field 'name' must be a non-empty string, got {name!r}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise _fail(src, f"field 'description' must be a string, got {description!r}")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise ConfigError(f"--frames must be an integer >= 1, got {frames!r}")

    # The policies first: the env family they run on decides what a scenario is.
    items = data.get("policies")
    if not isinstance(items, list) or not items:
        raise _fail(src, f"field 'policies' must be a non-empty list of policies, got {items!r}")
    parsed = [_parse_policy(item, i, src) for i, item in enumerate(items)]
    labels = [p[1] for p in parsed]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise _fail(src, f"duplicate policy label(s) {dup}; give each entry a unique 'label'")
    built = [_build_policy_entry(n, lab, a, src) for n, lab, a in parsed]
    for p, _ in built:
        if p.env_id not in gym.registry:
            raise UnknownNameError(f"{src}: policy '{p.label}' runs on env '{p.env_id}', which is not registered; "
                                   f"e4gym envs: {list(e4gym.ENV_IDS)}")
    families = {env_family(p.env_id) for p, _ in built}
    if len(families) > 1:
        raise _fail(src, "the policies run on envs of different families (frame envs and the serving env "
                         f"{list(e4gym.SERVING_ENV_IDS)}); benchmark them in separate configs")
    serving = families == {"serving"}
    fields = SERVING_FIELDS if serving else ENV_FIELDS

    env = data.get("env") or {}
    if not isinstance(env, Mapping):
        raise _fail(src, f"field 'env' must be a mapping of env arguments, got {env!r}")
    _check_known(env, fields, src, "in 'env'")

    if "matrix" not in data:
        raise _fail(src, f"missing field 'matrix' (env arguments to vary, e.g. device: [xavier-nx]); "
                         f"allowed keys: {list(ENV_FIELDS)}")
    # One matrix, or a list of them: the scenarios are the union of their products (e.g. the synthetic workload
    # for two networks and a real-video trace for a third).
    raw_matrix = data["matrix"]
    matrices = raw_matrix if isinstance(raw_matrix, list) and raw_matrix else [raw_matrix]
    for m_i, matrix in enumerate(matrices):
        where = "'matrix'" if len(matrices) == 1 else f"'matrix[{m_i}]'"
        if not isinstance(matrix, Mapping) or not matrix:
            raise _fail(src, f"field {where} must be a non-empty mapping of env arguments to lists of values (or "
                             f"'matrix' a list of such mappings), got {matrix!r}")
        _check_known(matrix, fields, src, f"in {where}")
        for key, values in matrix.items():
            if not isinstance(values, list) or not values:
                raise _fail(src, f"field '{where[1:-1]}.{key}' must be a non-empty list of values, got {values!r}")
            if key in env:
                raise _fail(src, f"'{key}' is both in 'env' and in {where}; give it in one of them")
        for req in () if serving else ("device", "model"):
            if req not in env and req not in matrix:
                raise _fail(src, f"no '{req}' in {where}: give it there (e.g. {req}: [...]) or in 'env'")

    seeds = data.get("seeds") if seeds is None else list(seeds)
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise _fail(src, f"field 'seeds' must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _fail(src, f"field 'seeds' repeats {sorted({s for s in seeds if seeds.count(s) > 1})}")

    # Scenarios: resolve each once (unknown device/model/power mode, bad numbers), before building policies.
    keys = tuple(dict.fromkeys(k for m in matrices for k in m))
    scenarios: list[Scenario] = []
    setups: dict[str, Any] = {}

    def setup_of(kwargs: dict[str, Any], where: str) -> Any:
        key = canonical_json(kwargs)
        if key not in setups:
            try:
                if serving:
                    setups[key] = _serving_setup(kwargs)
                else:
                    setups[key] = resolve_setup(**{k: v for k, v in kwargs.items() if k not in BACKEND_FIELDS})
                    _check_backend(kwargs)
            except E4gymError as exc:
                raise _rewrap(exc, f"{src}: {where}") from exc
            except TypeError as exc:
                raise _fail(src, f"{where}: {exc}") from exc
        return setups[key]

    combos = [dict(zip(tuple(m), combo)) for m in matrices for combo in itertools.product(*m.values())]
    if serving and backend:
        raise ConfigError(f"{src}: --backend applies to the frame envs; the serving env takes backend='triton' in "
                          "its config's env arguments")
    for params in combos:
        kwargs = {**env, **params}
        if frames is not None:
            kwargs["episode_intervals" if serving else "episode_frames"] = frames
        if backend:
            kwargs.update(backend)
        sname = "_".join(_piece(k, v) for k, v in params.items())
        if serving:
            s = setup_of(kwargs, f"scenario {sname}")
            models = "+".join(s.models)
            extra = [f"{k}={v}" for k, v in params.items() if k != "device"]
            title = " · ".join([s.spec.name, models, f"{s.interval_s * 1e3:g} ms intervals", *extra])
            scenarios.append(Scenario(sname, params, kwargs, title, s.spec.name, models, math.nan, math.nan))
            continue
        kwargs = _symbolic(kwargs, setup_of, f"scenario {sname}", src)
        s = setup_of(kwargs, f"scenario {sname}")
        extra = [f"{k}={v}" for k, v in params.items() if k not in ("device", "model", "fps", "deadline_ms")]
        title = " · ".join([s.spec.name, s.profile.name, f"{s.fps:g} fps", f"deadline {s.deadline_s * 1e3:.1f} ms",
                            *extra])
        scenarios.append(Scenario(sname, params, kwargs, title, s.spec.name, s.profile.name, float(s.fps),
                                  float(s.deadline_s * 1e3)))
    names = [s.name for s in scenarios]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise _fail(src, f"the matrix gives several scenarios the same name {dup}; remove repeated values")

    policies = tuple(entry for entry, _ in built)
    for p, policy in built:
        for sc in scenarios:
            shared = {k: v for k, v in p.env_kwargs.items() if k in fields}  # the env's own options: at make
            setup = setup_of({**sc.env_kwargs, **shared}, f"scenario {sc.name} with policy '{p.label}'")
            _check_policy_setup(policy, setup, src, p.label, sc.name)
    return Experiment(
        name=name, description=description, source=src, matrix_keys=keys, seeds=tuple(seeds),
        scenarios=tuple(scenarios), policies=policies, episode_frames=frames, sha256=sha,
    )
