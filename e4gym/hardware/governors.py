"""Load-driven frequency governors, as the Linux kernel runs them on a Jetson, for the emulator.

On a shipped Jetson the CPU runs ``schedutil`` and the GPU ``nvhost_podgov`` (Dutt et al.: under DNN load
they sit at the top clock most of the time, CPU 89 % and GPU 83 % of samples). The emulator re-evaluates a
governor every ``governor_period_s`` of simulated time from the load it measured over that window, so
kernel-driven clocks can be compared with clocks set by a policy (``userspace``).

Each governor maps ``(current level, load in 0..1, level table, highest allowed level)`` to the next level.
The formulas follow the kernel sources where public; thresholds that are not public are **assumptions**
named in :data:`GOVERNOR_ASSUMPTIONS`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

#: Governor thresholds that are not published for Jetson kernels (assumptions, one place).
GOVERNOR_ASSUMPTIONS: dict[str, float] = {
    # schedutil: next_freq = 1.25 · max_freq · util / max (kernel/sched/cpufreq_schedutil.c, get_next_freq);
    # with frequency-invariant util this is 1.25 · cur_freq · busy fraction. 1.25 is the kernel's margin.
    "schedutil_margin": 1.25,
    # ondemand: jump to max above up_threshold (kernel default DEF_FREQUENCY_UP_THRESHOLD = 80 %),
    # otherwise frequency proportional to load.
    "ondemand_up_threshold": 0.80,
    # nvhost_podgov (NVIDIA's GPU devfreq governor; source not in mainline): ASSUMPTION — scale so load
    # approaches load_target, jump to max above load_max, and step down one level per window only.
    "podgov_load_target": 0.70,
    "podgov_load_max": 0.90,
    # simple_ondemand (mainline devfreq): upthreshold 90, downdifferential 5 (drivers/devfreq defaults).
    "simple_ondemand_up": 0.90,
    "simple_ondemand_down_diff": 0.05,
}

GovernorFn = Callable[[int, float, Sequence[float], int], int]


def _lowest_at_least(table: Sequence[float], target_hz: float, top: int) -> int:
    return min(bisect.bisect_left(table, target_hz * (1 - 1e-12)), top)


def performance(cur: int, load: float, table: Sequence[float], top: int) -> int:
    """Always the highest allowed level."""
    return top


def powersave(cur: int, load: float, table: Sequence[float], top: int) -> int:
    """Always the lowest level."""
    return 0


def schedutil(cur: int, load: float, table: Sequence[float], top: int) -> int:
    """Kernel schedutil: lowest level ≥ 1.25 · f_cur · load."""
    return _lowest_at_least(table, GOVERNOR_ASSUMPTIONS["schedutil_margin"] * table[cur] * load, top)


def ondemand(cur: int, load: float, table: Sequence[float], top: int) -> int:
    """Kernel ondemand: max above ``up_threshold``, else ``f_min + load · (f_max − f_min)``."""
    if load > GOVERNOR_ASSUMPTIONS["ondemand_up_threshold"]:
        return top
    lo, hi = table[0], table[top]
    return _lowest_at_least(table, lo + load * (hi - lo), top)


def nvhost_podgov(cur: int, load: float, table: Sequence[float], top: int) -> int:
    """NVIDIA's GPU governor (modelled): to max above load_max, else toward load_target, down one step."""
    if load >= GOVERNOR_ASSUMPTIONS["podgov_load_max"]:
        return top
    want = _lowest_at_least(table, table[cur] * load / GOVERNOR_ASSUMPTIONS["podgov_load_target"], top)
    return want if want >= cur else cur - 1


def simple_ondemand(cur: int, load: float, table: Sequence[float], top: int) -> int:
    """Mainline devfreq simple_ondemand: max above upthreshold, else proportional with a margin."""
    up = GOVERNOR_ASSUMPTIONS["simple_ondemand_up"]
    if load > up:
        return top
    target = table[cur] * load / (up - GOVERNOR_ASSUMPTIONS["simple_ondemand_down_diff"] / 2)
    return _lowest_at_least(table, target, top)


GOVERNORS: dict[str, GovernorFn] = {
    "performance": performance,
    "powersave": powersave,
    "schedutil": schedutil,
    "ondemand": ondemand,
    "nvhost_podgov": nvhost_podgov,
    "simple_ondemand": simple_ondemand,
}
