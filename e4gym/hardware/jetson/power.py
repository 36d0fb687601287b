"""Board power on a Jetson: the INA3221 rails read through sysfs, or jetson-stats, and the rails' names.

Rails per board (``JetsonBackend.rail_names``, in ``Measurement.rails_w`` order; labels from the INA3221
``rail_name_N`` / ``inN_label`` files): Nano ``POM_5V_IN`` (input), ``gpu`` (``POM_5V_GPU``), ``cpu``
(``POM_5V_CPU``); TX2 ``VDD_IN``, ``gpu``, ``cpu``, ``soc``, ``VDD_SYS_DDR``, ... (``VDD_SYS_*``); Xavier NX and
Orin Nano / NX ``VDD_IN``, ``VDD_CPU_GPU_CV``, ``soc`` (``VDD_SOC``): **the CPU and the GPU share one rail**
(with the CV engines), so these boards have no separate ``cpu`` / ``gpu`` rails; AGX Orin ``VDD_GPU_SOC`` (GPU and
SoC), ``VDD_CPU_CV`` (CPU and CV), ``VIN_SYS_5V0``, ``VDDQ_VDD2_1V8AO``: no single-domain rail either
(:data:`SHARED_RAILS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e4gym.errors import HardwareError
from e4gym.hardware.jetson.layout import Rail
from e4gym.hardware.jetson.paths import INA3221_HWMON_DRIVER, INA3221_IIO_DRIVER
from e4gym.hardware.sysfs import Sysfs

__all__ = [
    "CANONICAL_RAILS",
    "JTOP_INTERVAL_S",
    "SHARED_RAILS",
    "TOTAL_RAILS",
    "JtopPower",
    "SysfsPower",
    "canonical_rail_names",
    "open_power",
    "start_jtop",
]

#: Rails that measure the whole module's input: board power when present [jetson-stats ``total_power``].
TOTAL_RAILS = ("VIN", "POM_5V_IN", "VDD_IN")
#: INA3221 labels of rails that feed one clock domain alone, and the canonical name ``rail_names`` gives them
#: (L4T 32 ``POM_5V_*`` on Nano, ``VDD_SYS_*`` on TX2, the bare names of AGX Xavier, ``VDD_*`` on L4T >= 34).
CANONICAL_RAILS: dict[str, str] = {
    "POM_5V_CPU": "cpu", "VDD_SYS_CPU": "cpu", "VDD_CPU": "cpu", "CPU": "cpu",
    "POM_5V_GPU": "gpu", "VDD_SYS_GPU": "gpu", "VDD_GPU": "gpu", "GPU": "gpu",
    "VDD_SYS_SOC": "soc", "VDD_SOC": "soc", "SOC": "soc",
}
#: Rails that feed several domains together (they keep the board's label): no per-domain split exists there.
SHARED_RAILS: dict[str, tuple[str, ...]] = {
    "VDD_CPU_GPU_CV": ("cpu", "gpu", "cv"),  # Xavier NX, Orin Nano, Orin NX
    "VDD_GPU_SOC": ("gpu", "soc"),  # AGX Orin
    "VDD_CPU_CV": ("cpu", "cv"),  # AGX Orin
}
#: jetson-stats service interval asked for when this backend starts its own client (s).
JTOP_INTERVAL_S = 0.5


def canonical_rail_names(labels: Sequence[str]) -> tuple[str, ...]:
    """``rail_names`` of INA3221 rails labelled ``labels``: :data:`CANONICAL_RAILS`' name where a rail feeds one
    domain alone (the first such rail; a second keeps its label), the board's label otherwise."""
    names: list[str] = []
    for label in labels:
        name = CANONICAL_RAILS.get(label.upper(), label)
        names.append(label if name in names else name)
    return tuple(names)


class SysfsPower:
    """Board power from the INA3221 rails (W)."""

    name = "sysfs"

    def __init__(self, io: Sysfs, rails: list[Rail]) -> None:
        self.io, self.rails = io, rails
        self.total = next((r for t in TOTAL_RAILS for r in rails if r.name == t), None)
        #: Rail labels, in :meth:`read_all` order.
        self.labels: tuple[str, ...] = tuple(r.name for r in rails)
        self._total_index = None if self.total is None else rails.index(self.total)

    def read_all(self) -> tuple[float, tuple[float, ...]]:
        """``(board power, every rail)`` (W), each rail read once."""
        rails = tuple(r.read_w(self.io) for r in self.rails)
        return (rails[self._total_index] if self._total_index is not None else sum(rails)), rails

    def rails_w(self) -> dict[str, float]:
        """Every rail's power now (W), by label."""
        return {r.name: r.read_w(self.io) for r in self.rails}

    def describe(self) -> str:
        """Where board power comes from, in one line."""
        how = f"input rail {self.total.name}" if self.total else "sum of the rails"
        kinds = sorted({r.kind for r in self.rails})
        return f"INA3221 ({'/'.join(kinds)}): {', '.join(r.name for r in self.rails)}; board power = {how}"

    def close(self) -> None:
        """Nothing to release: the rails are plain files."""


class JtopPower:
    """Board power through a jetson-stats client: ``jetson.power['tot']['power']`` (mW)."""

    name = "jtop"

    def __init__(self, client: Any, owned: bool) -> None:
        self.client, self.owned = client, owned
        try:
            names = tuple(self._rails(self.client.power or {}))
        except Exception:  # a client without data yet: no rails
            names = ()
        #: Rail names jetson-stats reported at open (the input rail included), in :meth:`read_all` order.
        self.labels: tuple[str, ...] = names

    def _check(self) -> None:
        if not self.client.ok(spin=True):
            raise HardwareError("the jetson-stats (jtop) client has stopped; restart the jtop service and the backend")

    @staticmethod
    def _rails(power: dict[str, Any]) -> dict[str, float]:
        rails = {name: float(v.get("power", 0)) / 1e3 for name, v in (power.get("rail") or {}).items()}
        tot = power.get("tot") or {}
        if "name" in tot:  # jetson-stats moves the input rail out of 'rail' into 'tot'
            rails[tot["name"]] = float(tot.get("power", 0)) / 1e3
        return rails

    def rails_w(self) -> dict[str, float]:
        """Every rail jetson-stats reports now (W), by name, the input rail included."""
        self._check()
        return self._rails(self.client.power or {})

    def read_all(self) -> tuple[float, tuple[float, ...]]:
        """``(board power, the rails of :attr:`labels`)`` (W) from one ``jetson.power`` (NaN: a rail gone)."""
        self._check()
        power = self.client.power or {}
        tot = power.get("tot") or {}
        if "power" not in tot:
            raise HardwareError(f"jetson-stats reports no board power (jetson.power = {power!r})")
        rails = self._rails(power)
        return float(tot["power"]) / 1e3, tuple(rails.get(n, math.nan) for n in self.labels)

    def describe(self) -> str:
        """Where board power comes from, in one line."""
        return f"jetson-stats client ({'started by the backend' if self.owned else 'given'}): power['tot']"

    def close(self) -> None:
        """Stop the client if the backend started it (a given client is the caller's to close)."""
        if self.owned:
            try:
                self.client.close()
            except Exception:  # the service may already be gone; nothing to restore here
                pass


def start_jtop() -> Any:
    """A started jetson-stats client, or :class:`HardwareError` saying why not."""
    try:
        from jtop import JtopException, jtop
    except ImportError as exc:
        raise HardwareError(f"jetson-stats is not importable ({exc}); pip install jetson-stats") from None
    client = jtop(interval=JTOP_INTERVAL_S)
    try:
        client.start()
    except (JtopException, OSError) as exc:
        raise HardwareError(f"the jetson-stats service is not available: {exc}") from None
    return client


def open_power(io: Sysfs, rails: list[Rail], source: str, client: Any, notes: list[str]) -> SysfsPower | JtopPower:
    """The board power reader for ``power_source=source`` (see :class:`~e4gym.hardware.jetson.JetsonBackend`).

    ``"jtop"``, or ``"auto"`` with a ``client``: jetson-stats (the given client, else one started here);
    ``"auto"`` on the board itself (``io.root`` is ``/``): the jetson-stats service when it runs (why not is
    added to ``notes``), else the rails; ``"sysfs"``: the rails.

    Raises:
        HardwareError: jetson-stats asked for and not available, or no rail to read (names where it looked).
    """
    where = f"{io.path(INA3221_IIO_DRIVER)}/*/iio:device*, {io.path(INA3221_HWMON_DRIVER)}/*/hwmon/hwmon*"
    if source == "jtop" or (source == "auto" and client is not None):
        if client is not None:
            return JtopPower(client, owned=False)
        return JtopPower(start_jtop(), owned=True)
    if source == "auto" and io.root == Path("/"):
        try:
            return JtopPower(start_jtop(), owned=True)
        except HardwareError as exc:
            notes.append(f"jetson-stats not used: {exc}")
    if not rails:
        raise HardwareError(
            f"no INA3221 power rail found (looked in {where}); use power_source='jtop' with the jetson-stats "
            "service running, or check that the ina3221 driver is loaded"
        )
    return SysfsPower(io, rails)
