"""Frame streams: what each video frame looks like to the env and how each exit of the network fares on it.

- :mod:`e4gym.workload.base`: :data:`COMPLEXITY_FEATURES`, :class:`FrameRecord`, :class:`FrameBatch` and the
  :class:`FrameSource` interface.
- :mod:`e4gym.workload.synthetic`: :class:`SyntheticVideo`, a generated stream consistent with exit accuracies.
- :mod:`e4gym.workload.trace`: recorded traces (:func:`save_trace`, :func:`load_trace`) and :class:`TraceSource`.
"""

from e4gym.workload.base import COMPLEXITY_FEATURES, FrameBatch, FrameRecord, FrameSource
from e4gym.workload.synthetic import SyntheticVideo
from e4gym.workload.trace import TRACE_FORMAT, Trace, TraceSource, build_trace, load_trace, save_trace

__all__ = [
    "COMPLEXITY_FEATURES",
    "TRACE_FORMAT",
    "FrameBatch",
    "FrameRecord",
    "FrameSource",
    "SyntheticVideo",
    "Trace",
    "TraceSource",
    "build_trace",
    "load_trace",
    "save_trace",
]
