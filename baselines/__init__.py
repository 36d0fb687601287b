"""Baseline governors: Linux defaults, static settings (best static), the clairvoyant oracle, Ring-DVFS, zTT."""

from baselines.governors import (
    GOVERNOR_NAMES,
    LinuxGovernor,
    default,
    make_governor,
    nvhost_podgov,
    ondemand,
    performance,
    powersave,
    schedutil,
)
from baselines.oracle import ClairvoyantOracle
from baselines.ring_dvfs import RingDVFSAgent, RingDVFSConfig, RingDVFSPolicy
from baselines.static import BestStaticPolicy, StaticPolicy, StaticSweep, best_static, best_static_sweep, sweep_setup

__all__ = [
    "GOVERNOR_NAMES",
    "BestStaticPolicy",
    "ClairvoyantOracle",
    "LinuxGovernor",
    "RingDVFSAgent",
    "RingDVFSConfig",
    "RingDVFSPolicy",
    "StaticPolicy",
    "StaticSweep",
    "best_static",
    "best_static_sweep",
    "default",
    "make_governor",
    "nvhost_podgov",
    "ondemand",
    "performance",
    "powersave",
    "schedutil",
    "sweep_setup",
]
