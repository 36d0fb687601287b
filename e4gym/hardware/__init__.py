"""Hardware: device catalogue, the Backend protocol, the emulator, real boards (Jetson sysfs, NVML GPUs), the
torch work runner, measured profiles and the measured cost model policies plan on. Importing it does not import
torch or jetson-stats."""

from e4gym.hardware.backend import Backend, Cooling, Measurement, SensorReading, Setting, rail_dict
from e4gym.hardware.costmodel import CostModelView, MeasuredCostModel, OfflineWork, emulated_cost_model
from e4gym.hardware.emulator import RAIL_NAMES, BatchedEmulator, EmulatedBackend, MeasurementBatch
from e4gym.hardware.jetson import JetsonBackend, ThermalLimitError
from e4gym.hardware.measured import MeasuredProfile, profile_device
from e4gym.hardware.nvml import NvmlBackend
from e4gym.hardware.runner import TorchRunner
from e4gym.hardware.spec import DeviceSpec, PowerMode, available_devices, load_device
from e4gym.hardware.work import Work

__all__ = [
    "RAIL_NAMES",
    "Backend",
    "BatchedEmulator",
    "Cooling",
    "CostModelView",
    "DeviceSpec",
    "EmulatedBackend",
    "JetsonBackend",
    "MeasuredCostModel",
    "MeasuredProfile",
    "Measurement",
    "MeasurementBatch",
    "NvmlBackend",
    "OfflineWork",
    "PowerMode",
    "SensorReading",
    "Setting",
    "ThermalLimitError",
    "TorchRunner",
    "Work",
    "available_devices",
    "emulated_cost_model",
    "load_device",
    "profile_device",
    "rail_dict",
]
