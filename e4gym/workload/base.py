"""Frame streams: the per-frame records a :class:`FrameSource` yields and the source interface.

An episode of the env is a stream of video frames. Per frame a source gives the *pre-inference* complexity
features (:data:`COMPLEXITY_FEATURES`, from the frame's pixels and the previous frame's) and, per exit of the
multi-exit network, the *post-inference* figures: whether that exit's top-1 prediction is correct, its
confidence and its ``feature_change``. Two sources exist: :class:`~e4gym.workload.synthetic.SyntheticVideo`
(generated) and :class:`~e4gym.workload.trace.TraceSource` (replays a recorded trace). Both yield the same
:class:`FrameRecord` type with the same dtypes and shapes, so the env cannot tell them apart.

**Causality.** A controller picks frame t's exit before frame t runs. It may see frame t's
:data:`COMPLEXITY_FEATURES` (its pixels are there) and the post-inference figures of frame t−1 at the exit
frame t−1 left at (:data:`POST_INFERENCE_FIGURES`), never frame t's own ``correct``, ``confidence`` or
``feature_change``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from e4gym.errors import ConfigError

#: The *pre-inference* per-frame complexity features, in the order of ``FrameRecord.features``: computable
#: from the frame's pixels and the previous frame's pixels before the network runs. Each is normalised to
#: roughly [0, 1]. For a real video:
#:
#: - ``edge_density``: fraction of pixels whose gradient magnitude is strong (e.g. Sobel magnitude above a
#:   fixed threshold); cluttered, textured frames score high.
#: - ``motion``: mean absolute difference of the (grey, [0, 1]-scaled) pixels to the previous frame (high at
#:   scene cuts).
#: - ``contrast``: standard deviation of the (grey, [0, 1]-scaled) pixels, rescaled so typical frames span [0, 1].
#:
#: The backbone's ``feature_change`` is *not* one of them: it needs the network's pass over the frame, so it is
#: a post-inference figure (``FrameRecord.feature_change``, one value per exit).
COMPLEXITY_FEATURES: tuple[str, ...] = ("edge_density", "motion", "contrast")
N_FEATURES = len(COMPLEXITY_FEATURES)

#: Names of the *post-inference* figures an observation may carry about the **previous** frame (documentation
#: only; the env builds the fields): the exit it left at, that exit's confidence and that exit's
#: ``feature_change`` (``FrameBatch.feature_change[t - 1, exit_{t-1}]`` at step t). They are known once frame
#: t−1 ran, so a controller has them before deciding frame t.
POST_INFERENCE_FIGURES: tuple[str, ...] = ("last_exit", "last_confidence", "last_feature_change")


@dataclass(frozen=True)
class FrameRecord:
    """One frame of a stream.

    Attributes:
        index: number of frames the source served before this one since its last ``reset`` (0-based).
        scene: id of the scene the frame belongs to (changes at scene cuts).
        features: float32, shape ``(3,)``: the pre-inference complexity features, in the order of
            :data:`COMPLEXITY_FEATURES`.
        correct: bool, shape ``(n_exits,)``: whether each exit's top-1 prediction is correct.
        confidence: float32, shape ``(n_exits,)``, in [0, 1]: each exit's confidence (e.g. top softmax).
        feature_change: float32, shape ``(n_exits,)``, in [0, 1]: per exit e, 1 − cosine similarity of the
            pooled features at exit e's branch point between this frame and the previous frame of the stream
            (0 for the first frame; high at scene cuts). Post-inference: known only after the frame ran to exit e.
        difficulty: in [0, 1], the hidden ground truth that only a clairvoyant oracle may read (NaN if unknown).
    """

    index: int
    scene: int
    features: np.ndarray
    correct: np.ndarray
    confidence: np.ndarray
    feature_change: np.ndarray
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
        features: float32, ``(T, 3)``: pre-inference complexity features (:data:`COMPLEXITY_FEATURES`).
        correct: bool, ``(T, n_exits)``.
        confidence: float32, ``(T, n_exits)``, in [0, 1].
        feature_change: float32, ``(T, n_exits)``, in [0, 1]: post-inference, see :class:`FrameRecord`.
        difficulty: float64, ``(T,)``, in [0, 1] (NaN where unknown).
    """

    index: np.ndarray
    scene: np.ndarray
    features: np.ndarray
    correct: np.ndarray
    confidence: np.ndarray
    feature_change: np.ndarray
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
            feature_change=self.feature_change[i].copy(),
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
            feature_change=self.feature_change[lo:hi],
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
            feature_change=self.feature_change.copy(),
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
            feature_change=np.zeros((0, n_exits), np.float32),
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
            feature_change=np.concatenate([p.feature_change for p in parts]),
            difficulty=np.concatenate([p.difficulty for p in parts]),
        )


@dataclass(frozen=True)
class StackedFrames:
    """``T`` consecutive frames of each of ``S`` streams: :class:`FrameBatch` arrays with a leading streams axis.

    Row ``s`` of every array is stream ``s``'s :class:`FrameBatch` (see :meth:`stream`); built by
    :meth:`~e4gym.workload.synthetic.SyntheticVideo.batch_many`.

    Attributes:
        index: int64, ``(S, T)``: frame indices since each source's last ``reset``.
        scene: int64, ``(S, T)``: scene ids.
        features: float32, ``(S, T, 3)``: pre-inference complexity features (:data:`COMPLEXITY_FEATURES`).
        correct: bool, ``(S, T, n_exits)``.
        confidence: float32, ``(S, T, n_exits)``, in [0, 1].
        feature_change: float32, ``(S, T, n_exits)``, in [0, 1].
        difficulty: float64, ``(S, T)``, in [0, 1] (NaN where unknown).
    """

    index: np.ndarray
    scene: np.ndarray
    features: np.ndarray
    correct: np.ndarray
    confidence: np.ndarray
    feature_change: np.ndarray
    difficulty: np.ndarray

    @property
    def n_streams(self) -> int:
        """Number of streams ``S``."""
        return int(self.index.shape[0])

    @property
    def frames(self) -> int:
        """Frames per stream ``T``."""
        return int(self.index.shape[1])

    @property
    def n_exits(self) -> int:
        """Number of exits."""
        return int(self.correct.shape[2])

    def stream(self, s: int) -> FrameBatch:
        """Stream ``s``'s frames as a :class:`FrameBatch` (views, not copies)."""
        return FrameBatch(
            index=self.index[s],
            scene=self.scene[s],
            features=self.features[s],
            correct=self.correct[s],
            confidence=self.confidence[s],
            feature_change=self.feature_change[s],
            difficulty=self.difficulty[s],
        )

    @staticmethod
    def empty(n_streams: int, frames: int, n_exits: int) -> StackedFrames:
        """Uninitialised arrays of the right dtypes and shapes (e.g. the ``out`` of ``batch_many``, reused)."""
        s, t, e = n_streams, frames, n_exits
        return StackedFrames(
            index=np.empty((s, t), np.int64),
            scene=np.empty((s, t), np.int64),
            features=np.empty((s, t, N_FEATURES), np.float32),
            correct=np.empty((s, t, e), bool),
            confidence=np.empty((s, t, e), np.float32),
            feature_change=np.empty((s, t, e), np.float32),
            difficulty=np.empty((s, t), np.float64),
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

    Two optional methods let a harness keep training and evaluation apart: :meth:`spawn` (a new, independent
    source with the same configuration) and :meth:`stream_key` (a hashable identity of the stream served since
    the last ``reset``). The defaults raise :class:`~e4gym.errors.ConfigError`; a custom source implements them.
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

    def spawn(self, seed: int | None = None) -> FrameSource:
        """A new, independent source with the same configuration, ``reset(seed)``.

        The copy has its own cursor and its own random generator: advancing either source does not move the
        other, and two spawns with the same int ``seed`` serve the same stream.

        The default is a deep copy of this source, then ``reset(seed)``: right for sources whose state lives in
        their attributes; override it for sources that hold files, sockets or shared buffers.

        Raises:
            ConfigError: the source cannot be deep-copied (implement ``spawn`` for it).
        """
        import copy

        try:
            twin = copy.deepcopy(self)
        except Exception as exc:  # deepcopy raises whatever the attributes raise
            raise ConfigError(
                f"{type(self).__name__} cannot be copied ({type(exc).__name__}: {exc}): implement "
                f"spawn(seed) returning a new, independent {type(self).__name__} with the same configuration"
            ) from None
        twin.reset(seed)
        return twin

    def stream_key(self) -> tuple:
        """A hashable identity of the stream served since the last ``reset``.

        Two sources serve the same frames exactly when their keys are equal (e.g. ``("synthetic", params_sha,
        seed)`` or ``("trace", content_sha, start, stop)``); a harness compares the key of the stream a policy
        was trained on with the key of the stream it is scored on.

        Raises:
            ConfigError: this source does not implement it (the default).
        """
        raise ConfigError(
            f"{type(self).__name__} has no stream identity: FrameSource.stream_key is not implemented for it; "
            f"implement stream_key() returning a hashable tuple that is equal for equal streams"
        )
