"""Hardware: device catalogue, the Backend protocol, the emulator, and (later) real-board backends."""

from e4gym.hardware.backend import Backend, Cooling, Measurement, SensorReading, Setting
from e4gym.hardware.emulator import BatchedEmulator, EmulatedBackend, MeasurementBatch
from e4gym.hardware.spec import DeviceSpec, PowerMode, available_devices, load_device
from e4gym.hardware.work import Work

__all__ = [
    "Backend",
    "BatchedEmulator",
    "Cooling",
    "DeviceSpec",
    "EmulatedBackend",
    "Measurement",
    "MeasurementBatch",
    "PowerMode",
    "SensorReading",
    "Setting",
    "Work",
    "available_devices",
    "load_device",
]
