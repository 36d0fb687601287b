"""Exceptions raised by e4gym.

Every error says what is wrong and what to do about it, in the style of stable-baselines3's
checkers. They all derive from :class:`E4gymError` so callers can catch one type.
"""

from __future__ import annotations


class E4gymError(Exception):
    """Base class of every error e4gym raises on purpose."""


class ConfigError(E4gymError, ValueError):
    """A configuration file or argument is malformed: names the file, the field and what was expected."""


class UnknownNameError(E4gymError, KeyError):
    """A device, model, policy or field name is not known; the message lists the names that are."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message.
        return str(self.args[0]) if self.args else ""


class SettingError(E4gymError, ValueError):
    """A frequency setting (level index) is out of range for the device or its power mode."""


class HardwareError(E4gymError, RuntimeError):
    """A real board could not be read or driven (missing sysfs file, no permission, ...)."""


class UnknownArgumentError(UnknownNameError, TypeError):
    """An env constructor got a keyword argument it does not take. A ``TypeError`` worded as Python words it
    (``unexpected keyword argument 'x'``), as clients that probe optional arguments (TorchRL's ``frameskip``,
    SB3's ``render_mode``) expect, and an :class:`UnknownNameError` listing the arguments there are."""


class OverheatError(HardwareError):
    """The (emulated) board's temperature ran away: its cooling cannot hold it at this ambient temperature and
    these clocks (a real board would have shut down at its critical trip). The message names the temperature
    and the fix (lower ``ambient_c``, ``fan=True`` or lower clocks)."""
