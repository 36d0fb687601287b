"""Where things are on a Jetson board: the sysfs, debugfs and procfs paths the backend reads and writes.

Board paths (absolute on the board; :meth:`e4gym.hardware.sysfs.Sysfs.path` puts them under a fake tree in
tests). The sources are CALIBRATION.md §3 unless said otherwise:

===============  =====================================================================================
board, L4T       ``/proc/device-tree/model`` and ``compatible`` (NUL-separated), ``/etc/nv_tegra_release``
                 (``# R32 (release), REVISION: 7.1, ...``), else the ``nvidia-l4t-core`` version in
                 ``/var/lib/dpkg/status`` (JetPack 6) [jetson-stats ``jetson_variables.py``; jetson_clocks]
CPU              ``/sys/devices/system/cpu/cpufreq/policyN/`` (else ``cpuN/cpufreq/``): ``scaling_governor``,
                 ``scaling_setspeed``, ``scaling_min_freq``, ``scaling_max_freq``,
                 ``scaling_available_frequencies``, ``scaling_cur_freq`` (**kHz**); cores ``cpuN/online``
GPU              devfreq (**Hz**): ``min_freq``, ``max_freq``, ``cur_freq``, ``governor``,
                 ``available_frequencies``, ``userspace/set_freq``; found by scanning ``/sys/class/devfreq/*``
                 for a GPU (``57000000.gpu`` Nano, ``17000000.gp10b`` TX2, ``17000000.gv11b`` Xavier,
                 ``17000000.ga10b`` Orin JetPack 5, ``17000000.gpu`` Orin JetPack 6), else the known device
                 paths; load in ``<devfreq>/device/load`` or ``/sys/devices/gpu.0/load`` (tenths of a percent)
EMC              t186/t194/t234 ``/sys/kernel/debug/bpmp/debug/clk/emc/``: write 1 to ``mrq_rate_locked``
                 (and ``state``), then the rate (**Hz**) to ``rate``; t210 ``/sys/kernel/debug/clk/override.emc/``:
                 rate (Hz) to ``clk_update_rate``, then 1 to ``clk_state``, read ``clk_rate`` [jetson_clocks];
                 never above ``/sys/kernel/nvpmodel_emc_cap/emc_iso_cap`` or the maximum rate [jetson_clocks]
power            INA3221: L4T <= 32 ``/sys/bus/i2c/drivers/ina3221x/*/iio:device*/`` ``rail_name_N``,
                 ``in_power{N}_input`` (**mW**); L4T >= 34 ``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/``
                 ``inN_label``, ``inN_input`` (**mV**), ``currN_input`` (**mA**), channel 7 and ``NC`` skipped.
                 Board power = the input rail (``VDD_IN``, ``POM_5V_IN``, ``VIN``) when present, else the sum of
                 the rails [jetson-stats ``power.py`` ``total_power``]; or jetson-stats' ``jetson.power['tot']``.
                 Every rail is polled with it; a rail that feeds one domain alone gets a canonical name
                 (``cpu``, ``gpu``, ``soc``: :data:`~e4gym.hardware.jetson.power.CANONICAL_RAILS`), the others
                 keep the board's label
temperature      ``/sys/class/thermal/thermal_zone*/{type,temp}`` (= ``/sys/devices/virtual/thermal``, **m°C**);
                 the hottest zone, without ``PMIC-Die`` (a fixed reading on t210/t186, which jetson-stats also
                 skips), the virtual ``thermal-fan-est`` and offline zones (−256 °C)
===============  =====================================================================================
"""

__all__ = [
    "COMPATIBLE_FILES",
    "CPU_DIR",
    "DEVFREQ_CLASS",
    "DPKG_STATUS",
    "EMC_BPMP_DIR",
    "EMC_CAP_FILES",
    "EMC_T210_DIR",
    "GPU_DEVFREQ_DIRS",
    "GPU_DEVFREQ_NAMES",
    "GPU_LOAD_FILES",
    "INA3221_HWMON_DRIVER",
    "INA3221_IIO_DRIVER",
    "MODEL_FILES",
    "NV_TEGRA_RELEASE",
    "THERMAL_DIRS",
]

#: Board model string (device-tree ``model``) [jetson-stats ``jetson_variables.py``; jetson_clocks].
MODEL_FILES = ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model")
#: Device-tree ``compatible`` (NUL-separated; names the module part number and the SoC, e.g. ``nvidia,tegra194``).
COMPATIBLE_FILES = ("/proc/device-tree/compatible", "/sys/firmware/devicetree/base/compatible")
#: L4T release (``# R35 (release), REVISION: 4.1, ...``) [jetson-stats ``get_nvidia_l4t``].
NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
#: dpkg's package database: the version of ``nvidia-l4t-core`` is the L4T release where the file above is absent.
DPKG_STATUS = "/var/lib/dpkg/status"
#: CPU cores, cpufreq policies (kHz) [CALIBRATION.md §3].
CPU_DIR = "/sys/devices/system/cpu"
#: devfreq devices (the GPU among them) [jetson-stats ``gpu.py``; jetson_clocks ``detect_igpu_devfreq``].
DEVFREQ_CLASS = "/sys/class/devfreq"
#: devfreq names of Jetson GPUs (the part after the unit address) [jetson-stats ``KNOWN_GPU_DEVICE_NAMES``].
GPU_DEVFREQ_NAMES = ("gpu", "gp10b", "gv11b", "ga10b", "gb10b")
#: Known GPU devfreq folders, tried when ``/sys/class/devfreq`` names none [CALIBRATION.md §3].
GPU_DEVFREQ_DIRS = (
    "/sys/devices/gpu.0/devfreq/57000000.gpu",  # Nano
    "/sys/devices/57000000.gpu/devfreq/57000000.gpu",  # Nano (the same node under its unit address)
    "/sys/devices/17000000.gp10b/devfreq/17000000.gp10b",  # TX2
    "/sys/devices/17000000.gv11b/devfreq/17000000.gv11b",  # Xavier NX, AGX Xavier
    "/sys/devices/17000000.ga10b/devfreq/17000000.ga10b",  # Orin, JetPack 5
    "/sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu",  # Orin, JetPack 6
)
#: GPU load (tenths of a percent) when ``<devfreq>/device/load`` is absent [CALIBRATION.md §3].
GPU_LOAD_FILES = ("/sys/devices/gpu.0/load",)
#: EMC on t186/t194/t234 (BPMP debugfs, Hz) [CALIBRATION.md §3; jetson_clocks].
EMC_BPMP_DIR = "/sys/kernel/debug/bpmp/debug/clk/emc"
#: EMC on t210 (clock override debugfs, Hz) [CALIBRATION.md §3; jetson_clocks: clk_rate, clk_update_rate, clk_state].
EMC_T210_DIR = "/sys/kernel/debug/clk/override.emc"
#: EMC caps: nvpmodel's ISO cap (t186/t194/t234, 0 = none) and BPMP's / tegra_bwmgr's maximum rate (Hz)
#: [jetson_clocks ``do_emc``; jetson-stats ``read_emc``].
EMC_CAP_FILES = (
    "/sys/kernel/nvpmodel_emc_cap/emc_iso_cap",
    "/sys/kernel/debug/bpmp/debug/clk/emc/max_rate",
    "/sys/kernel/debug/tegra_bwmgr/emc_max_rate",
)
#: Thermal zones (m°C) [CALIBRATION.md §3; /sys/class/thermal links into /sys/devices/virtual/thermal].
THERMAL_DIRS = ("/sys/class/thermal", "/sys/devices/virtual/thermal")
#: INA3221 on L4T <= 32: iio driver ``ina3221x``, power in mW [CALIBRATION.md §3].
INA3221_IIO_DRIVER = "/sys/bus/i2c/drivers/ina3221x"
#: INA3221 on L4T >= 34: hwmon driver ``ina3221``, mV and mA [CALIBRATION.md §3].
INA3221_HWMON_DRIVER = "/sys/bus/i2c/drivers/ina3221"
