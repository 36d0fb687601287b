"""Hardware: device catalogue, the Backend protocol, the emulator, real boards (Jetson sysfs, NVML GPUs), the
torch work runner and measured profiles. Importing it does not import torch or jetson-stats."""

from e4gym.hardware.backend import Backend, Cooling, Measurement, SensorReading, Setting
from e4gym.hardware.emulator import BatchedEmulator, EmulatedBackend, MeasurementBatch
from e4gym.hardware.jetson import JetsonBackend, ThermalLimitError
from e4gym.hardware.measured import MeasuredProfile, profile_device
from e4gym.hardware.nvml import NvmlBackend
from e4gym.hardware.runner import TorchRunner
from e4gym.hardware.spec import DeviceSpec, PowerMode, available_devices, load_device
from e4gym.hardware.work import Work

__all__ = [
    "Backend",
    "BatchedEmulator",
    "Cooling",
    "DeviceSpec",
    "EmulatedBackend",
    "JetsonBackend",
    "MeasuredProfile",
    "Measurement",
    "MeasurementBatch",
    "NvmlBackend",
    "PowerMode",
    "SensorReading",
    "Setting",
    "ThermalLimitError",
    "TorchRunner",
    "Work",
    "available_devices",
    "load_device",
    "profile_device",
]
