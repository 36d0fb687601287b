"""e4gym: Gymnasium environments for DVFS and early-exit research on (emulated) NVIDIA Jetson boards.

The emulator is the default backend and needs no hardware::

    from e4gym.hardware import EmulatedBackend, load_device
    from e4gym.dnn import load_model_profile
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
