"""Frame streams: what each video frame looks like to the env and how each exit of the network fares on it.

- :mod:`e4gym.workload.base`: :data:`COMPLEXITY_FEATURES` (pre-inference), :data:`POST_INFERENCE_FIGURES`,
  :class:`FrameRecord`, :class:`FrameBatch` and the :class:`FrameSource` interface (``spawn``, ``stream_key``).
- :mod:`e4gym.workload.synthetic`: :class:`SyntheticVideo`, a generated stream consistent with exit accuracies.
- :mod:`e4gym.workload.trace`: recorded traces (:func:`save_trace`, :func:`load_trace`) and :class:`TraceSource`.
- :mod:`e4gym.workload.record`: ``e4gym record``, a trace from a video through a multi-exit network (imports
  torch and PyAV; not imported here).
"""

from e4gym.workload.base import (
    COMPLEXITY_FEATURES,
    N_FEATURES,
    POST_INFERENCE_FIGURES,
    FrameBatch,
    FrameRecord,
    FrameSource,
)
from e4gym.workload.synthetic import SyntheticVideo
from e4gym.workload.trace import (
    TRACE_FORMAT,
    TRACE_FORMAT_V1,
    Trace,
    TraceSource,
    build_trace,
    load_trace,
    save_trace,
)

__all__ = [
    "COMPLEXITY_FEATURES",
    "N_FEATURES",
    "POST_INFERENCE_FIGURES",
    "TRACE_FORMAT",
    "TRACE_FORMAT_V1",
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
