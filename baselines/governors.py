"""The Linux kernel's DVFS governors as baselines: the emulated board's own governor simulation sets the clocks.

A :class:`LinuxGovernor` asks the harness (through ``env_kwargs``) for an env whose CPU and GPU clock domains
are driven by kernel governors (:mod:`e4gym.hardware.governors`, re-evaluated every ``governor_period_s`` of
board time from the measured load); the env then ignores the level components of the action. The policy
only picks the exit (by default the last: the full network, as a stock deployment runs it).

Named baselines (:data:`GOVERNOR_NAMES`, :func:`make_governor`):

| name | CPU governor | GPU governor |
|---|---|---|
| ``performance`` | performance | performance |
| ``powersave`` | powersave | powersave |
| ``ondemand`` | ondemand | nvhost_podgov |
| ``schedutil`` | schedutil | nvhost_podgov |
| ``nvhost_podgov`` | schedutil | nvhost_podgov |
| ``simple_ondemand`` | schedutil | simple_ondemand |
| ``default`` | schedutil | nvhost_podgov |

``performance`` and ``powersave`` pin both domains (top / lowest allowed level). ``ondemand`` and
``schedutil`` are CPU governors: the GPU keeps the stock ``nvhost_podgov``. ``nvhost_podgov`` and
``simple_ondemand`` are GPU governors: the CPU keeps the stock ``schedutil``. ``default`` is what a shipped
Jetson runs (schedutil + nvhost_podgov); ``schedutil``, ``nvhost_podgov`` and ``default`` are the same
configuration under three names. The memory clock stays at its highest allowed level (the env holds it there
without ``control_memory``; on Jetson the EMC runs its own fixed governor).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from e4gym.envs.common import EnvSetup
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.hardware.spec import CPU_GOVERNORS, GPU_GOVERNORS
from e4gym.policy import FixedActionPolicy, PolicyContext

#: name -> (CPU governor, GPU governor) of the named baselines.
GOVERNOR_PAIRS: dict[str, tuple[str, str]] = {
    "performance": ("performance", "performance"),
    "powersave": ("powersave", "powersave"),
    "ondemand": ("ondemand", "nvhost_podgov"),
    "schedutil": ("schedutil", "nvhost_podgov"),
    "nvhost_podgov": ("schedutil", "nvhost_podgov"),
    "simple_ondemand": ("schedutil", "simple_ondemand"),
    "default": ("schedutil", "nvhost_podgov"),
}
#: The names :func:`make_governor` knows.
GOVERNOR_NAMES: tuple[str, ...] = tuple(GOVERNOR_PAIRS)


class LinuxGovernor(FixedActionPolicy):
    """Kernel governors drive the CPU and GPU clocks; the policy only chooses the exit.

    Args:
        cpu: CPU governor, one of :data:`e4gym.hardware.spec.CPU_GOVERNORS` except ``userspace``.
        gpu: GPU governor, one of :data:`e4gym.hardware.spec.GPU_GOVERNORS` except ``userspace``.
        exit: the exit every frame takes (0-based; ``-1``: the last, the full network).
        name: display name (default ``"linux(cpu/gpu)"``).

    ``env_kwargs = {"governors": {"cpu": cpu, "gpu": gpu}}``: the harness must build the env with it, otherwise
    the level components of the action (here the highest allowed levels) would set the clocks. :meth:`bind`
    checks that the env was built so.

    Raises:
        UnknownNameError: an unknown governor name (lists the allowed ones).
    """

    clairvoyant = False

    def __init__(self, cpu: str = "schedutil", gpu: str = "nvhost_podgov", exit: int = -1,
                 name: str | None = None) -> None:
        for dom, gov, allowed in (("cpu", cpu, CPU_GOVERNORS), ("gpu", gpu, GPU_GOVERNORS)):
            ok = [g for g in allowed if g != "userspace"]
            if gov not in ok:
                raise UnknownNameError(f"unknown {dom} governor {gov!r}; {dom} governors: {ok}")
        if isinstance(exit, bool) or not isinstance(exit, (int, np.integer)):
            raise ConfigError(f"exit must be an integer (-1: the last exit), got {exit!r}")
        self.cpu, self.gpu, self.exit = cpu, gpu, int(exit)
        self.name = name or f"linux({cpu}/{gpu})"
        self.env_kwargs: dict[str, Any] = {"governors": {"cpu": cpu, "gpu": gpu}}
        self._action: np.ndarray | None = None

    def check_setup(self, setup: EnvSetup) -> None:
        """Check an env's resolved setup runs this policy's governors and the model has its exit.

        The benchmark harness calls it for every scenario when it validates a config, before any task runs;
        :meth:`bind` calls it too.

        Raises:
            ConfigError: the env was not built with this policy's ``env_kwargs``, or the exit is out of range.
        """
        s = setup
        govs = s.governors
        if govs == "default":
            govs = dict(s.spec.governors)
        if not isinstance(govs, dict) or govs.get("cpu") != self.cpu or govs.get("gpu") != self.gpu:
            raise ConfigError(
                f"{self.name} needs an env built with governors={self.env_kwargs['governors']!r} "
                f"(pass policy.env_kwargs to gymnasium.make), got governors={s.governors!r}"
            )
        n = s.profile.n_exits
        if not -n <= self.exit < n:
            raise ConfigError(f"{self.name}: exit={self.exit} is outside 0..{n - 1} (or -1) of {s.profile.name}; "
                              "pass an exit in that range")

    def bind(self, context: PolicyContext) -> None:
        """Resolve the exit and the (ignored) level components; check the env runs the governors
        (:meth:`check_setup`).

        Raises:
            ConfigError: see :meth:`check_setup`.
        """
        s = context.setup
        self.check_setup(s)
        n = s.profile.n_exits
        # The governed domains ignore the levels; the highest allowed ones are always valid.
        vals = [self.exit % n, *s.max_levels[:2]] + ([s.max_levels[2]] if s.control_memory else [])
        self._action = np.array(vals, dtype=np.int64)

    def __repr__(self) -> str:
        return f"LinuxGovernor(cpu={self.cpu!r}, gpu={self.gpu!r}, exit={self.exit})"


def make_governor(name: str, exit: int = -1) -> LinuxGovernor:
    """The named governor baseline (see the module's table), taking exit ``exit``.

    Raises:
        UnknownNameError: ``name`` is not in :data:`GOVERNOR_NAMES` (lists them).
    """
    pair = GOVERNOR_PAIRS.get(name) if isinstance(name, str) else None
    if pair is None:
        raise UnknownNameError(f"unknown governor baseline {name!r}; baselines: {list(GOVERNOR_NAMES)}")
    return LinuxGovernor(pair[0], pair[1], exit=exit, name=name)


def performance(exit: int = -1) -> LinuxGovernor:
    """CPU and GPU at their highest allowed clocks (``performance`` governors)."""
    return make_governor("performance", exit)


def powersave(exit: int = -1) -> LinuxGovernor:
    """CPU and GPU at their lowest clocks (``powersave`` governors)."""
    return make_governor("powersave", exit)


def ondemand(exit: int = -1) -> LinuxGovernor:
    """CPU ``ondemand``, GPU ``nvhost_podgov``."""
    return make_governor("ondemand", exit)


def schedutil(exit: int = -1) -> LinuxGovernor:
    """CPU ``schedutil``, GPU ``nvhost_podgov`` (the stock configuration)."""
    return make_governor("schedutil", exit)


def nvhost_podgov(exit: int = -1) -> LinuxGovernor:
    """GPU ``nvhost_podgov``, CPU ``schedutil`` (the stock configuration)."""
    return make_governor("nvhost_podgov", exit)


def default(exit: int = -1) -> LinuxGovernor:
    """What a shipped Jetson runs: CPU ``schedutil``, GPU ``nvhost_podgov``."""
    return make_governor("default", exit)
