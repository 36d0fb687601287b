"""Shared fixtures."""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from e4gym.paths import config_dir


@pytest.fixture
def device_data() -> dict:
    """The xavier-nx device YAML as a mutable dict (to build malformed variants)."""
    path = config_dir() / "devices" / "xavier-nx.yaml"
    from e4gym._yaml import load_yaml

    return copy.deepcopy(load_yaml(path))


@pytest.fixture
def write_yaml(tmp_path: Path):
    """Write a mapping (or raw text) to a YAML file in a temporary folder and return its path."""

    def _write(data: dict | str, name: str = "device.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    return _write


@pytest.fixture(scope="session", autouse=True)
def _no_sb3_log_folders_left_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """SB3 logs into ``$SB3_LOGDIR``, else into a new ``SB3-<date>`` folder of the system temp dir, whenever a model
    without its own logger (``set_logger``, ``tensorboard_log``) learns: every short ``PPO(...).learn(n)`` of the
    tests. Point ``SB3_LOGDIR`` at the session's temporary folder (pytest prunes it; spawned workers inherit it), and
    fail the session if it still left a new ``SB3-*`` folder in the system temp dir."""
    root = Path(tempfile.gettempdir())
    before = {p.name for p in root.glob("SB3-*")}
    old = os.environ.get("SB3_LOGDIR")
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3-logs"))
    yield
    if old is None:
        os.environ.pop("SB3_LOGDIR", None)
    else:
        os.environ["SB3_LOGDIR"] = old
    new = sorted(p.name for p in root.glob("SB3-*") if p.name not in before)
    if new:
        pytest.fail(f"the tests left {len(new)} SB3 log folder(s) in {root}: {new[:5]} (an SB3 logger configured "
                    "without a folder and with SB3_LOGDIR unset?)", pytrace=False)


@pytest.fixture(autouse=True)
def _torch_threads_unchanged(request: pytest.FixtureRequest):
    """A test that changes torch's thread count must restore it (later tests, and their timings, depend on it).
    Checked when torch is imported before the test (at collection, by any test module that imports it), which
    costs two calls; a test that imports torch first is not checked."""
    torch = sys.modules.get("torch")
    if not callable(getattr(torch, "get_num_threads", None)):  # not imported, or a stand-in a test left there
        yield
        return
    before = torch.get_num_threads()
    yield
    if (after := torch.get_num_threads()) != before:
        torch.set_num_threads(before)  # the next tests run as before
        pytest.fail(f"{request.node.nodeid} changed torch's thread count from {before} to {after} and did not "
                    "restore it", pytrace=False)
