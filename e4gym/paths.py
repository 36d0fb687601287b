"""Where e4gym finds its configuration files.

The checked-in YAML files live in ``configs/`` at the repository root. ``E4GYM_CONFIG_DIR`` overrides
the location (for an installed copy, or a user's own catalogue).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def config_dir() -> Path:
    """Return the configuration root (``$E4GYM_CONFIG_DIR`` or ``<repo>/configs``)."""
    env = os.environ.get("E4GYM_CONFIG_DIR")
    return Path(env) if env else REPO_ROOT / "configs"
