"""Test helper: a real Ctrl-C (SIGINT) to an ``e4gym`` command once its first result file is written."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The command runs with Ctrl-C's handler set explicitly: a process started with SIGINT ignored (a background job)
#: passes that on to its children.
CODE = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from e4gym.cli import main; sys.exit(main(sys.argv[1:]))")


def interrupt_after_first_result(args: Sequence[str], out: Path, env: Mapping[str, str] | None = None,
                                 timeout_s: float = 120.0) -> tuple[int, str]:
    """Run ``e4gym ARGS`` in a subprocess, send it SIGINT once ``out/runs`` holds a task's JSON, and return its exit
    status and stderr (the process is killed if it outlives the test)."""
    import signal

    proc = subprocess.Popen([sys.executable, "-c", CODE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=None if env is None else dict(env))
    try:
        deadline = time.monotonic() + timeout_s
        while not list((out / "runs").rglob("seed*.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no task finished within {timeout_s:g} s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err
