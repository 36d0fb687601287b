"""Shared fixtures."""

from __future__ import annotations

import copy
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
