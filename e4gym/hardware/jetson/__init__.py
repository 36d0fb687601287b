"""Real Jetson boards: detection, sysfs layout, power rails and the backend that drives them.

:class:`JetsonBackend` satisfies :class:`~e4gym.hardware.backend.Backend` on a real board (L4T 32 to 36: Nano,
TX2, Xavier NX, AGX Xavier, Orin Nano / NX, AGX Orin): it drives CPU, GPU and EMC clocks through sysfs,
measures power and temperature, and restores what it changed on every exit path.

One job per module, as Zeus splits ``zeus/device/``:

===========  ==========================================================================================
``paths``    where things are: the board's sysfs, debugfs and procfs paths (and their units)
``detect``   which board this is: model, SoC, L4T release, e4gym device spec (:func:`detect_board`)
``layout``   what the board exposes: cpufreq policies, cores, GPU devfreq, EMC control, INA3221 rails,
             thermal zones (:class:`JetsonLayout`)
``power``    board power and rails: INA3221 through sysfs, or jetson-stats; canonical rail names
``backend``  :class:`JetsonBackend`: clocks, governors, measuring, the thermal guard, restoring
===========  ==========================================================================================

Shared with the other real backends: the power monitor (:mod:`e4gym.hardware.monitor`), the restore registry
(:mod:`e4gym.hardware.restore`), guarded sysfs writes and their journal (:mod:`e4gym.hardware.sysfs`) and the
:class:`WorkRunner` protocol (:mod:`e4gym.hardware.runner`). Everything importable from the former
``e4gym.hardware.jetson`` module is importable from here.
"""

from e4gym.hardware.jetson.backend import (
    PINNED_GOVERNORS,
    PLAUSIBLE_TEMP_C,
    THERMAL_CHECK_PERIOD_S,
    JetsonBackend,
    ThermalLimitError,
)
from e4gym.hardware.jetson.detect import DEVICE_RULES, BoardInfo, detect_board
from e4gym.hardware.jetson.layout import (
    EXCLUDED_ZONES,
    CpuPolicy,
    EmcClock,
    GpuDevfreq,
    JetsonLayout,
    Rail,
    ThermalZone,
)
from e4gym.hardware.jetson.paths import (
    COMPATIBLE_FILES,
    CPU_DIR,
    DEVFREQ_CLASS,
    DPKG_STATUS,
    EMC_BPMP_DIR,
    EMC_CAP_FILES,
    EMC_T210_DIR,
    GPU_DEVFREQ_DIRS,
    GPU_DEVFREQ_NAMES,
    GPU_LOAD_FILES,
    INA3221_HWMON_DRIVER,
    INA3221_IIO_DRIVER,
    MODEL_FILES,
    NV_TEGRA_RELEASE,
    THERMAL_DIRS,
)
from e4gym.hardware.jetson.power import (
    CANONICAL_RAILS,
    JTOP_INTERVAL_S,
    SHARED_RAILS,
    TOTAL_RAILS,
    canonical_rail_names,
)
from e4gym.hardware.runner import WorkRunner
from e4gym.hardware.sysfs import SysfsPermissionError

__all__ = [
    "CANONICAL_RAILS",
    "COMPATIBLE_FILES",
    "CPU_DIR",
    "DEVFREQ_CLASS",
    "DEVICE_RULES",
    "DPKG_STATUS",
    "EMC_BPMP_DIR",
    "EMC_CAP_FILES",
    "EMC_T210_DIR",
    "EXCLUDED_ZONES",
    "GPU_DEVFREQ_DIRS",
    "GPU_DEVFREQ_NAMES",
    "GPU_LOAD_FILES",
    "INA3221_HWMON_DRIVER",
    "INA3221_IIO_DRIVER",
    "JTOP_INTERVAL_S",
    "MODEL_FILES",
    "NV_TEGRA_RELEASE",
    "PINNED_GOVERNORS",
    "PLAUSIBLE_TEMP_C",
    "SHARED_RAILS",
    "THERMAL_CHECK_PERIOD_S",
    "THERMAL_DIRS",
    "TOTAL_RAILS",
    "BoardInfo",
    "CpuPolicy",
    "EmcClock",
    "GpuDevfreq",
    "JetsonBackend",
    "JetsonLayout",
    "Rail",
    "SysfsPermissionError",
    "ThermalLimitError",
    "ThermalZone",
    "WorkRunner",
    "canonical_rail_names",
    "detect_board",
]

