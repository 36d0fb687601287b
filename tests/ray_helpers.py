"""Checks shared by the Ray tests (the Ray executor, the two-node cluster, `e4gym tune`): what a Ray run of this
test process left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def ray_processes() -> list[str]:
    """Ray's processes (raylet, gcs_server, workers) descending from this process, as ``pid name``."""
    table = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,comm="], capture_output=True, text=True, check=True)
    children: dict[int, list[tuple[int, str]]] = {}
    for line in table.stdout.splitlines():
        pid, ppid, comm = line.split(None, 2)
        children.setdefault(int(ppid), []).append((int(pid), comm))
    found, todo = [], [os.getpid()]
    while todo:
        for pid, comm in children.get(todo.pop(), []):
            todo.append(pid)
            if any(k in comm.lower() for k in ("raylet", "gcs_server", "ray::")):
                found.append(f"{pid} {comm}")
    return found


def ray_session_folders() -> set[str]:
    """This process's session folders in Ray's default temporary folder (/tmp/ray): Ray names each
    ``session_<date>_<time>_<pid of the driver that started it>`` (other processes may start their own)."""
    root = Path("/tmp/ray")
    return {p.name for p in root.glob(f"session_*_{os.getpid()}")} if root.is_dir() else set()
