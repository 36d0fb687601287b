"""Hardware: device catalogue, the Backend protocol, the emulator, real boards (Jetson sysfs, NVML GPUs), the
torch work runner, the power monitor and restore registry real boards share, streaming time, measured profiles
and the measured cost model policies plan on. Importing it does not import
torch or jetson-stats."""

from e4gym.dnn.work import Work
from e4gym.hardware.backend import Backend, Cooling, Measurement, SensorReading, Setting, rail_dict
from e4gym.hardware.cloud import CloudClient, CloudReply, quantise_int8
from e4gym.hardware.costmodel import CostModelView, MeasuredCostModel, OfflineWork, emulated_cost_model
from e4gym.hardware.emulator import RAIL_NAMES, BatchedEmulator, EmulatedBackend, MeasurementBatch
from e4gym.hardware.jetson import JetsonBackend, ThermalLimitError
from e4gym.hardware.link import BandwidthTrace, RadioPower, Uplink, load_bandwidth_trace, synthetic_bandwidth
from e4gym.hardware.measured import MeasuredProfile, profile_device
from e4gym.hardware.monitor import PowerMonitor
from e4gym.hardware.nvml import NvmlBackend
from e4gym.hardware.runner import TorchRunner, WorkRunner
from e4gym.hardware.spec import DeviceSpec, PowerMode, available_devices, available_servers, load_device, load_server
from e4gym.hardware.stream import StreamClock, stream

__all__ = [
    "RAIL_NAMES",
    "Backend",
    "BandwidthTrace",
    "BatchedEmulator",
    "CloudClient",
    "CloudReply",
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
    "PowerMonitor",
    "RadioPower",
    "SensorReading",
    "Setting",
    "StreamClock",
    "ThermalLimitError",
    "TorchRunner",
    "Uplink",
    "Work",
    "WorkRunner",
    "available_devices",
    "available_servers",
    "emulated_cost_model",
    "load_bandwidth_trace",
    "load_device",
    "load_server",
    "profile_device",
    "quantise_int8",
    "rail_dict",
    "stream",
    "synthetic_bandwidth",
]
