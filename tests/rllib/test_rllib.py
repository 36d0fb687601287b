"""RLlib's PPO (new API stack) trains on every e4gym env family (issue 20; docs/ray.md, "RLlib").

RLlib pins an older Gymnasium than the main environment's, so it runs in its own environment, ``.venv-rllib``
(``make rllib-env``; ``make test`` builds it): ``tests/rllib/rllib_checks.py`` runs there in a subprocess, once for
the module (one Ray instance, about 35 s on 2 cores), through the documented example ``examples/rllib_ppo.py``,
and these tests check what it reports. Where that environment is missing the tests skip, saying so, except in CI
(``CI`` set), where ``make test`` has built it and its absence is a failure.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.rllib.rllib_checks import BATCH, CASES

ROOT = Path(__file__).resolve().parents[2]
#: The RLlib environment's interpreter (``make rllib-env``); ``E4GYM_RLLIB_PYTHON`` names another.
RLLIB_PYTHON = Path(os.environ.get("E4GYM_RLLIB_PYTHON") or ROOT / ".venv-rllib" / "bin" / "python")
#: Seconds the checks may take before the subprocess is killed (they take about 35 s on 2 cores).
TIMEOUT_S = 300

pytestmark = pytest.mark.slow


def _ray_sessions() -> set[str]:
    """The session folders in Ray's default temporary folder (/tmp/ray)."""
    root = Path("/tmp/ray")
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


@pytest.fixture(scope="module")
def checks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run ``rllib_checks.py`` with the RLlib environment's interpreter; its JSON report, plus its ``stderr``."""
    if not RLLIB_PYTHON.is_file():
        message = f"no RLlib environment ({RLLIB_PYTHON} is missing): run `make rllib-env` (`make test` does)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI runs `make test`, which builds it")
        pytest.skip(message)
    out = tmp_path_factory.mktemp("rllib") / "report.json"
    before = _ray_sessions()
    proc = subprocess.run([str(RLLIB_PYTHON), str(ROOT / "tests" / "rllib" / "rllib_checks.py"), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    report["stderr"] = proc.stderr
    report["new_ray_sessions"] = sorted(_ray_sessions() - before)
    return report


def test_the_rllib_environment_runs_rllibs_gymnasium_and_this_e4gym(checks) -> None:
    assert Path(checks["files"]["gymnasium"]).is_relative_to(RLLIB_PYTHON.parents[1])  # its own, not .venv's
    assert checks["versions"]["gymnasium"].startswith("1."), checks["versions"]
    assert Path(checks["files"]["e4gym"]) == ROOT / "e4gym" / "__init__.py"
    assert not checks["temp_left"] and checks["new_ray_sessions"] == []  # nothing left in /tmp


@pytest.mark.parametrize("case", list(CASES))
def test_ppo_trains(checks, case: str) -> None:
    got = checks["cases"][case]
    assert "error" not in got, got.get("error")
    iterations = CASES[case][1]
    history = got["history"]
    assert len(history) == iterations
    # every iteration sampled its batch of env steps, and finished episodes with a finite return
    assert [h["steps"] for h in history] == [BATCH * (i + 1) for i in range(iterations)]
    assert all(math.isfinite(h["return"]) for h in history), history


def test_the_id_without_the_package_prefix_fails_in_a_remote_env_runner(checks) -> None:
    assert checks["unprefixed"]["error"], "PPO built on the un-prefixed id with a remote EnvRunner"
    assert "NamespaceNotFound: Namespace e4gym not found" in checks["stderr"]
