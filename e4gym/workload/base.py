"""Frame streams: the per-frame records a :class:`FrameSource` yields and the source interface.

An episode of the env is a stream of video frames. Per frame a source gives the observable complexity
features (:data:`COMPLEXITY_FEATURES`) and, per exit of the multi-exit network, whether that exit's top-1
prediction is correct and its confidence. Two sources exist: :class:`~e4gym.workload.synthetic.SyntheticVideo`
(generated) and :class:`~e4gym.workload.trace.TraceSource` (replays a recorded trace). Both yield the same
:class:`FrameRecord` type with the same dtypes and shapes, so the env cannot tell them apart.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from e4gym.errors import ConfigError

#: The observable per-frame complexity features, in the order of ``FrameRecord.features``. Each is
#: normalised to roughly [0, 1]. For a real video:
#:
#: - ``edge_density``: fraction of pixels whose gradient magnitude is strong (e.g. Sobel magnitude above a
#:   fixed threshold); cluttered, textured frames score high.
#: - ``motion``: mean absolute difference of the (grey, [0, 1]-scaled) pixels to the previous frame.
#: - ``contrast``: standard deviation of the (grey, [0, 1]-scaled) pixels, rescaled so typical frames span [0, 1].
#: - ``feature_change``: 1 − cosine similarity of the pooled backbone features of this frame with the previous
#:   frame's (0: same content; high at scene cuts).
COMPLEXITY_FEATURES: tuple[str, ...] = ("edge_density", "motion", "contrast", "feature_change")
N_FEATURES = len(COMPLEXITY_FEATURES)


@dataclass(frozen=True)
class FrameRecord:
    """One frame of a stream.

    Attributes:
        index: number of frames the source served before this one since its last ``reset`` (0-based).
        scene: id of the scene the frame belongs to (changes at scene cuts).
        features: float32, shape ``(4,)``: the complexity features, in the order of :data:`COMPLEXITY_FEATURES`.
        correct: bool, shape ``(n_exits,)``: whether each exit's top-1 prediction is correct.
        confidence: float32, shape ``(n_exits,)``, in [0, 1]: each exit's confidence (e.g. top softmax).
        difficulty: in [0, 1], the hidden ground truth that only a clairvoyant oracle may read (NaN if unknown).
    """

    index: int
    scene: int
    features: np.ndarray
    correct: np.ndarray
    confidence: np.ndarray
    difficulty: float

    @property
    def n_exits(self) -> int:
        """Number of exits."""
        return int(self.correct.shape[0])

    @property
    def earliest_correct(self) -> int:
        """Index of the first exit whose prediction is correct; ``n_exits`` if none is."""
        hits = np.flatnonzero(self.correct)
        return int(hits[0]) if hits.size else self.n_exits


@dataclass(frozen=True)
class FrameBatch:
    """``T`` consecutive frames of a stream as arrays (the vectorised counterpart of :class:`FrameRecord`).

    Attributes:
        index: int64, ``(T,)``: frame indices since the source's last ``reset``.
        scene: int64, ``(T,)``: scene ids.
        features: float32, ``(T, 4)``: complexity features (:data:`COMPLEXITY_FEATURES`).
        correct: bool, ``(T, n_exits)``.
        confidence: float32, ``(T, n_exits)``, in [0, 1].
        difficulty: float64, ``(T,)``, in [0, 1] (NaN where unknown).
    """

    index: np.ndarray
    scene: np.ndarray
    features: np.ndarray
    correct: np.ndarray
    confidence: np.ndarray
    difficulty: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def n_exits(self) -> int:
        """Number of exits."""
        return int(self.correct.shape[1])

    @property
    def earliest_correct(self) -> np.ndarray:
        """int64, ``(T,)``: per frame the first correct exit, ``n_exits`` where none is."""
        any_hit = self.correct.any(axis=1)
        return np.where(any_hit, self.correct.argmax(axis=1), self.n_exits).astype(np.int64)

    def record(self, i: int) -> FrameRecord:
        """Frame ``i`` of the batch as a :class:`FrameRecord` (arrays copied)."""
        return FrameRecord(
            index=int(self.index[i]),
            scene=int(self.scene[i]),
            features=self.features[i].copy(),
            correct=self.correct[i].copy(),
            confidence=self.confidence[i].copy(),
            difficulty=float(self.difficulty[i]),
        )

    def slice(self, lo: int, hi: int) -> FrameBatch:
        """Frames ``lo:hi`` (views, not copies)."""
        return FrameBatch(
            index=self.index[lo:hi],
            scene=self.scene[lo:hi],
            features=self.features[lo:hi],
            correct=self.correct[lo:hi],
            confidence=self.confidence[lo:hi],
            difficulty=self.difficulty[lo:hi],
        )

    def copy(self) -> FrameBatch:
        """A batch with copies of the arrays."""
        return FrameBatch(
            index=self.index.copy(),
            scene=self.scene.copy(),
            features=self.features.copy(),
            correct=self.correct.copy(),
            confidence=self.confidence.copy(),
            difficulty=self.difficulty.copy(),
        )

    @staticmethod
    def empty(n_exits: int) -> FrameBatch:
        """A batch of no frames with the right dtypes and trailing shapes."""
        return FrameBatch(
            index=np.zeros(0, np.int64),
            scene=np.zeros(0, np.int64),
            features=np.zeros((0, N_FEATURES), np.float32),
            correct=np.zeros((0, n_exits), bool),
            confidence=np.zeros((0, n_exits), np.float32),
            difficulty=np.zeros(0, np.float64),
        )

    @staticmethod
    def concatenate(parts: list[FrameBatch]) -> FrameBatch:
        """Join batches in order (always new arrays)."""
        return FrameBatch(
            index=np.concatenate([p.index for p in parts]),
            scene=np.concatenate([p.scene for p in parts]),
            features=np.concatenate([p.features for p in parts]),
            correct=np.concatenate([p.correct for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            difficulty=np.concatenate([p.difficulty for p in parts]),
        )


def check_seed(seed: object, where: str) -> int | None:
    """Return ``seed`` if it is ``None`` or a non-negative int, else raise :class:`ConfigError`."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"{where}: seed must be None or a non-negative integer, got {seed!r}")
    return int(seed)


def check_frames(frames: object, where: str) -> int:
    """Return ``frames`` if it is a non-negative int, else raise :class:`ConfigError`."""
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 0:
        raise ConfigError(f"{where}: frames must be a non-negative integer, got {frames!r}")
    return int(frames)


class FrameSource(abc.ABC):
    """A stream of frames for one episode after another.

    Attributes:
        n_exits: number of exits of the multi-exit network the stream is for.
        fps: frame rate of the stream (frames per second).
        length: number of distinct frames for a finite source (a recorded trace), ``None`` for an
            infinite one (synthetic video).

    ``next()`` never raises ``StopIteration``: a finite source wraps around to its first frame after its last
    one (the frame ``index`` keeps counting). ``len(source)`` is ``length``; it raises ``TypeError`` for an
    infinite source.
    """

    n_exits: int
    fps: float
    length: int | None

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> None:
        """Start a new stream (frame index 0). An int ``seed`` makes the stream reproducible."""

    @abc.abstractmethod
    def next(self) -> FrameRecord:
        """The next frame of the stream."""

    @abc.abstractmethod
    def batch(self, frames: int) -> FrameBatch:
        """The next ``frames`` frames as arrays; the stream advances as if ``next()`` were called that often."""

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError(f"{type(self).__name__} is an infinite frame source (length is None)")
        return self.length

    def __bool__(self) -> bool:  # do not fall back on __len__, which raises for infinite sources
        return True
