"""E4 (Zhang, Zhao, Liu; SenSys 2023 poster, AAAI 2025): attention-based early exit and a just-in-time
coordinate-descent DVFS profiler, as a policy for the e4gym envs.

- :mod:`agents.e4.cascade`: the attention cascade predicting each frame's earliest correct exit;
- :mod:`agents.e4.profiler`: the JIT profiler choosing CPU/GPU(/EMC) levels per frame or per layer;
- :mod:`agents.e4.policy`: :class:`E4Policy`, the governor combining them.

Importing this package imports torch (the cascade is a PyTorch module).
"""

from agents.e4.cascade import Cascade, CascadeNet, FeatureWindow, train_cascade
from agents.e4.policy import E4Policy
from agents.e4.profiler import JITProfiler, Plan, ProfilerStats

__all__ = ["Cascade", "CascadeNet", "E4Policy", "FeatureWindow", "JITProfiler", "Plan", "ProfilerStats",
           "train_cascade"]
