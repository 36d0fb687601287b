"""RLlib's PPO on every e4gym env family, run by ``.venv-rllib``'s interpreter (``make rllib-env``).

Not a test module: ``tests/rllib/test_rllib.py`` runs this script with that interpreter in a subprocess (RLlib pins
a Gymnasium older than the main environment's) and checks what it writes::

    .venv-rllib/bin/python tests/rllib/rllib_checks.py OUT.json

One Ray instance (2 CPUs, no dashboard, its own short temporary folder under /tmp, removed at the end) runs the
cases of :data:`CASES` through ``examples/rllib_ppo.py`` (the documented example), each with one remote EnvRunner,
and then the un-prefixed id with a remote EnvRunner, which must fail with Gymnasium's ``NamespaceNotFound``. The
JSON written has, per case, the training history (env steps sampled so far and the mean episode return per
iteration), the wall time (s), and the versions and files of the packages that ran.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: ``name: (ppo_config keyword arguments, iterations)``; episodes short enough to finish within an iteration.
CASES: dict[str, tuple[dict[str, Any], int]] = {
    "frame": ({"env": "frame", "episode_length": 50}, 2),
    "frame-native-vector": ({"env": "frame", "episode_length": 50, "envs_per_runner": 2, "native_vector": True}, 1),
    "block": ({"env": "block", "episode_length": 10}, 1),
    "edge-cloud": ({"env": "edge-cloud", "episode_length": 50}, 1),
    "batching": ({"env": "batching", "episode_length": 20}, 1),
}
#: Env steps per training iteration in these checks.
BATCH = 128


def load_example() -> Any:
    """``examples/rllib_ppo.py`` as a module."""
    spec = importlib.util.spec_from_file_location("rllib_ppo", ROOT / "examples" / "rllib_ppo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unprefixed_failure(example: Any) -> str:
    """The error of building PPO on ``e4gym/EarlyExitDVFS-v1`` (no ``e4gym:`` prefix) with a remote EnvRunner, as
    ``TypeName: message`` of the innermost cause found ('' when it built)."""
    config = example.ppo_config("frame", episode_length=50, batch_size=BATCH)
    config.environment(example.ENVS["frame"][0].split(":", 1)[1])
    try:
        algo = config.build_algo()
    except Exception as exc:  # Ray wraps the runner's error: report the whole chain's text
        return "".join(traceback.format_exception_only(type(exc), exc)) + repr(exc.__cause__)
    algo.stop()
    return ""


def main(out: str) -> int:
    """Run every case; write the JSON report to ``out``. Returns 0 (failures are in the report)."""
    import gymnasium
    import ray

    import e4gym  # the driver has the ids registered; the remote EnvRunners must import e4gym themselves

    example = load_example()
    report: dict[str, Any] = {"versions": {"gymnasium": gymnasium.__version__, "ray": ray.__version__},
                              "files": {"gymnasium": gymnasium.__file__, "e4gym": e4gym.__file__}, "cases": {}}
    temp = tempfile.mkdtemp(prefix="e4rl", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, logging_level="ERROR", log_to_driver=False)
    report["ray_start_s"] = time.perf_counter() - t0
    try:
        for name, (kwargs, iterations) in CASES.items():
            t = time.perf_counter()
            try:
                history = example.train(example.ppo_config(batch_size=BATCH, **kwargs), iterations, verbose=False)
                report["cases"][name] = {"history": history, "wall_s": time.perf_counter() - t}
            except Exception:
                report["cases"][name] = {"error": traceback.format_exc(), "wall_s": time.perf_counter() - t}
        t = time.perf_counter()
        report["unprefixed"] = {"error": unprefixed_failure(example), "wall_s": time.perf_counter() - t}
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        report["temp_left"] = Path(temp).exists()
        Path(out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
