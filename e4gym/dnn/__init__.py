"""Multi-exit networks and their cost profiles.

Importing this package does not import torch: the profiles (:mod:`e4gym.dnn.profile`) are plain data.
The PyTorch networks live in :mod:`e4gym.dnn.nets` and :mod:`e4gym.dnn.multiexit`.
"""

from e4gym.dnn.profile import BlockCost, ExitSpec, ModelProfile, available_models, load_model_profile

__all__ = ["BlockCost", "ExitSpec", "ModelProfile", "available_models", "load_model_profile"]
