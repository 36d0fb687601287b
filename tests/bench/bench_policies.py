"""Policies the harness tests name as ``bench_policies:Attr`` (importable in spawned workers too: pytest puts this
folder on ``sys.path`` and worker processes inherit it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.policy import PolicyContext


class _Top:
    """Full network at the highest allowed CPU/GPU levels (frame env action)."""

    name = "top"

    def bind(self, context: PolicyContext) -> None:
        s = context.setup
        vals = [s.profile.n_exits - 1, *s.max_levels[:2]] + ([s.max_levels[2]] if s.control_memory else [])
        self._action = np.array(vals, dtype=np.int64)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        return self._action.copy(), state

    def reset(self) -> None:
        pass


class Flaky(_Top):
    """Raises in ``predict`` while the file ``flag`` exists."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        if Path(self.flag).exists():
            raise RuntimeError(f"flaky policy: flag file {self.flag} exists")
        return super().predict(observation, state)


class Profiled(_Top):
    """Reports ``stats()`` like a policy with a profiler: one evaluation every ``every`` decisions."""

    def __init__(self, every: int = 4) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        self.calls += 1
        return super().predict(observation, state)

    def stats(self) -> dict[str, float]:
        evals = (self.calls + self.every - 1) // self.every
        return {"profiler_evaluations": evals, "profiler_share": evals / max(self.calls, 1)}


class BlockTop:
    """Block env: never exits early, highest CPU/GPU levels before every block."""

    name = "block-top"
    env_id = "e4gym/EarlyExitDVFSBlock-v1"

    def bind(self, context: PolicyContext) -> None:
        s = context.setup
        self._action = np.array([0, *s.max_levels[:2]], dtype=np.int64)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        return self._action.copy(), state

    def reset(self) -> None:
        pass


class Slow(_Top):
    """Takes ``ms`` milliseconds (sleeping) to decide each frame."""

    def __init__(self, ms: float = 2.0) -> None:
        self.ms = float(ms)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        time.sleep(self.ms / 1e3)
        return super().predict(observation, state)


class TrainedOn(_Top):
    """Declares the frame streams it trained on (``streams``: stream keys as lists)."""

    name = "trained-on"

    def __init__(self, streams: list[list]) -> None:
        self.streams = {tuple(s) for s in streams}

    def training_streams(self) -> set[tuple]:
        return set(self.streams)


class TorchThreads(_Top):
    """Reports the torch thread count it decided with (``stats()``: ``torch_threads``)."""

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self.threads = -1

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        self.threads = self._torch.get_num_threads()
        return super().predict(observation, state)

    def stats(self) -> dict[str, float]:
        return {"torch_threads": self.threads}
