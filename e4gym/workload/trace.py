"""Recorded frame traces: the file format, atomic writing, validated loading and replay.

A trace is what running a real multi-exit network over a video gives, frame by frame. File format: a NumPy
``.npz`` archive (no pickled objects) with keys

==============  ===================  ==========================================================================
key             dtype, shape         meaning
==============  ===================  ==========================================================================
``format``      str (0-d)            ``"e4gym-trace-v1"``
``model``       str (0-d)            name of the model profile the trace was recorded with
``fps``         float (0-d)          frame rate of the video (frames per second), > 0
``features``    float32 (T, 4)       complexity features, see :data:`~e4gym.workload.base.COMPLEXITY_FEATURES`
``pooled``      float32 (T, D)       pooled backbone features per frame; ``(T, 0)`` when not recorded
``predictions`` int64 (T, E)         top-1 class of each exit
``confidence``  float32 (T, E)       confidence of each exit, in [0, 1]
``correct``     bool (T, E)          whether each exit's top-1 class is right
``labels``      int64 (T,)           ground-truth class, −1 when unknown
``scene``       int64 (T,)           scene id, ≥ 0 (0 everywhere when unknown)
==============  ===================  ==========================================================================

:func:`save_trace` writes it atomically, :func:`load_trace` validates it, :class:`TraceSource` replays it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from e4gym.errors import ConfigError
from e4gym.workload.base import N_FEATURES, FrameBatch, FrameRecord, FrameSource, check_frames, check_seed

TRACE_FORMAT = "e4gym-trace-v1"
TRACE_KEYS: tuple[str, ...] = (
    "format",
    "model",
    "fps",
    "features",
    "pooled",
    "predictions",
    "confidence",
    "correct",
    "labels",
    "scene",
)
_FIX = "re-record it with `e4gym record` (or write it with e4gym.workload.save_trace)"


@dataclass(frozen=True, eq=False)
class Trace:
    """A recorded trace (arrays read-only; see the module docstring for the fields' meaning and shapes)."""

    model: str
    fps: float
    features: np.ndarray
    pooled: np.ndarray
    predictions: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray
    labels: np.ndarray
    scene: np.ndarray

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.features.shape[0])

    @property
    def n_exits(self) -> int:
        """Number of exits E."""
        return int(self.correct.shape[1])

    def equals(self, other: Trace) -> bool:
        """True when every field of ``other`` is equal (arrays: same dtype, shape and values)."""
        if self.model != other.model or self.fps != other.fps:
            return False
        for name in ("features", "pooled", "predictions", "confidence", "correct", "labels", "scene"):
            a, b = getattr(self, name), getattr(other, name)
            if a.dtype != b.dtype or not np.array_equal(a, b):
                return False
        return True


class _Checker:
    """Validates and converts the trace arrays; errors name ``where`` and end with ``hint``."""

    def __init__(self, where: str, hint: str) -> None:
        self.where, self.hint = where, hint

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: {message}{'; ' + self.hint if self.hint else ''}")

    def array(self, name: str, value: object, ndim: int, kinds: str, what: str) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # ragged lists and the like
            raise self.fail(f"{name} must be {what}, got an unconvertible {type(value).__name__} ({exc})") from None
        if arr.ndim != ndim:
            raise self.fail(f"{name} must be {what}, got shape {arr.shape}")
        if arr.dtype.kind not in kinds:
            raise self.fail(f"{name} must be {what}, got dtype {arr.dtype}")
        return arr

    def finite(self, name: str, arr: np.ndarray) -> None:
        if arr.size and not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            kind = "NaN" if np.isnan(arr[tuple(bad)]) else "an infinite value"
            raise self.fail(f"{name} contains {kind} (first at frame {int(bad[0])})")

    def rows(self, name: str, arr: np.ndarray, t: int) -> None:
        if arr.shape[0] != t:
            raise self.fail(f"{name} has {arr.shape[0]} frames but features has {t} (all arrays need the same T)")


def build_trace(
    *,
    model: object,
    fps: object,
    features: object,
    pooled: object,
    predictions: object,
    confidence: object,
    correct: object,
    labels: object = None,
    scene: object = None,
    where: str = "Trace",
    hint: str = "",
) -> Trace:
    """Validate the fields of a trace and convert them to the file format's dtypes (read-only arrays).

    Args:
        model, fps, features, pooled, predictions, confidence, correct, labels, scene: as in the module
            docstring; ``pooled``, ``labels`` and ``scene`` may be None (none recorded, unknown, unknown).
        where: prefix of error messages (a function or file name).
        hint: what to do, appended to error messages.

    Raises:
        ConfigError: a field has the wrong type, dtype or shape, inconsistent lengths, NaN or infinite values,
            or confidence outside [0, 1].
    """
    c = _Checker(where, hint)
    if not isinstance(model, str) or not model:
        raise c.fail(f"model must be a non-empty string (the model profile's name), got {model!r}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise c.fail(f"fps must be a finite number > 0 (frames per second), got {fps!r}")
    fps_f = float(fps)
    if not np.isfinite(fps_f) or fps_f <= 0:
        raise c.fail(f"fps must be a finite number > 0 (frames per second), got {fps!r}")

    feats = c.array("features", features, 2, "fiu", f"a (T, {N_FEATURES}) float array")
    t = feats.shape[0]
    if feats.shape[1] != N_FEATURES or t == 0:
        raise c.fail(f"features must be a (T, {N_FEATURES}) float array with T ≥ 1, got shape {feats.shape}")
    c.finite("features", feats)

    if pooled is None:
        pool = np.zeros((t, 0), np.float32)
    else:
        pool = c.array("pooled", pooled, 2, "fiu", "a (T, D) float array (D may be 0)")
        c.rows("pooled", pool, t)
        c.finite("pooled", pool)

    corr = c.array("correct", correct, 2, "b", "a (T, E) bool array")
    c.rows("correct", corr, t)
    e = corr.shape[1]
    if e == 0:
        raise c.fail("correct must have at least one exit (shape (T, E) with E ≥ 1), got shape (T, 0)")

    pred = c.array("predictions", predictions, 2, "iu", "a (T, E) integer array (top-1 class per exit)")
    c.rows("predictions", pred, t)
    conf = c.array("confidence", confidence, 2, "fiu", "a (T, E) float array in [0, 1]")
    c.rows("confidence", conf, t)
    for name, arr in (("predictions", pred), ("confidence", conf)):
        if arr.shape[1] != e:
            raise c.fail(f"{name} has {arr.shape[1]} exits but correct has {e} (all (T, E) arrays need the same E)")
    if conf.size and np.isnan(conf).any():
        c.finite("confidence", conf)
    if conf.size and ((conf < 0).any() or (conf > 1).any()):
        raise c.fail(f"confidence must lie in [0, 1], found values in [{conf.min():g}, {conf.max():g}]")

    if labels is None:
        lab = np.full(t, -1, np.int64)
    else:
        lab = c.array("labels", labels, 1, "iu", "a (T,) integer array (−1 where unknown)")
        c.rows("labels", lab, t)
        if lab.size and lab.min() < -1:
            raise c.fail(f"labels must be ≥ −1 (−1 = unknown), found {int(lab.min())}")
    if scene is None:
        scn = np.zeros(t, np.int64)
    else:
        scn = c.array("scene", scene, 1, "iu", "a (T,) integer array of scene ids ≥ 0")
        c.rows("scene", scn, t)
        if scn.size and scn.min() < 0:
            raise c.fail(f"scene ids must be ≥ 0, found {int(scn.min())}")

    def ro(arr: np.ndarray, dtype: type) -> np.ndarray:
        out = np.array(arr, dtype=dtype, copy=True)
        out.setflags(write=False)
        return out

    return Trace(
        model=model,
        fps=fps_f,
        features=ro(feats, np.float32),
        pooled=ro(pool, np.float32),
        predictions=ro(pred, np.int64),
        confidence=ro(conf, np.float32),
        correct=ro(corr, np.bool_),
        labels=ro(lab, np.int64),
        scene=ro(scn, np.int64),
    )


def save_trace(
    path: str | os.PathLike[str],
    *,
    model: str,
    fps: float,
    features: np.ndarray,
    pooled: np.ndarray | None,
    predictions: np.ndarray,
    confidence: np.ndarray,
    correct: np.ndarray,
    labels: np.ndarray | None = None,
    scene: np.ndarray | None = None,
) -> Path:
    """Validate a trace and write it to ``path`` atomically (format in the module docstring).

    The archive is written to a temporary file in the same folder, flushed to disk and renamed over ``path``
    with :func:`os.replace`. On any exception the temporary file is removed and ``path`` is untouched (absent
    if it did not exist, the previous file otherwise). ``path`` is used as given (no ``.npz`` is appended).

    Args:
        path: file to write.
        model: model profile name. fps: frames per second, > 0.
        features: (T, 4) complexity features. pooled: (T, D) pooled backbone features or None.
        predictions: (T, E) top-1 class per exit. confidence: (T, E) in [0, 1]. correct: (T, E) bool.
        labels: (T,) ground-truth classes (−1 unknown) or None. scene: (T,) scene ids or None (all 0).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: a field is malformed (see :func:`build_trace`) or the folder does not exist.
    """
    trace = build_trace(
        model=model,
        fps=fps,
        features=features,
        pooled=pooled,
        predictions=predictions,
        confidence=confidence,
        correct=correct,
        labels=labels,
        scene=scene,
        where="save_trace",
    )
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"save_trace: folder '{folder}' of '{path}' does not exist; create it first")
    arrays = {
        "format": np.array(TRACE_FORMAT),
        "model": np.array(trace.model),
        "fps": np.array(trace.fps, np.float64),
        "features": trace.features,
        "pooled": trace.pooled,
        "predictions": trace.predictions,
        "confidence": trace.confidence,
        "correct": trace.correct,
        "labels": trace.labels,
        "scene": trace.scene,
    }
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _scalar(c: _Checker, raw: dict[str, np.ndarray], key: str, kinds: str, what: str) -> object:
    arr = raw[key]
    if arr.ndim != 0 or arr.dtype.kind not in kinds:
        raise c.fail(f"key '{key}' must be {what}, got dtype {arr.dtype} and shape {arr.shape}")
    return arr.item()


def _read_npz(fh: BinaryIO, c: _Checker) -> dict[str, np.ndarray]:
    """Read every trace key of the archive open in ``fh``; corrupt or incomplete archives raise ConfigError."""
    try:
        obj = np.load(fh, allow_pickle=False)
    except Exception as exc:  # BadZipFile, ValueError (not npy/npz: would need pickle), OSError, EOFError, ...
        problem = f"is not a readable .npz archive, it is corrupt or truncated ({type(exc).__name__}: {exc})"
        raise c.fail(problem) from None
    if not isinstance(obj, np.lib.npyio.NpzFile):
        raise c.fail(f"holds a single .npy array (shape {getattr(obj, 'shape', '?')}), not an e4gym trace archive")
    with obj:
        missing = [k for k in TRACE_KEYS if k not in obj.files]
        if missing:
            raise c.fail(f"lacks key(s) {missing} of format {TRACE_FORMAT} (it has {sorted(obj.files)})")
        try:
            return {k: obj[k] for k in TRACE_KEYS}
        except Exception as exc:  # corrupt member: BadZipFile (CRC), zlib.error, ValueError, EOFError, ...
            raise c.fail(f"has a corrupt or truncated member ({type(exc).__name__}: {exc})") from None


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Load and validate a trace written by :func:`save_trace`.

    Raises:
        ConfigError: the file is missing, not an ``.npz`` archive (corrupt or truncated), lacks a key, has
            another format string, or holds malformed arrays (inconsistent lengths, NaN, confidence outside
            [0, 1], ...). The message names the file and the problem and says how to fix it.
    """
    path = Path(path)
    c = _Checker(f"trace file '{path}'", _FIX)
    if not path.exists():
        raise ConfigError(
            f"trace file '{path}' does not exist; check the path, or record a trace with `e4gym record` "
            f"(or write one with e4gym.workload.save_trace)"
        )
    if not path.is_file():
        raise c.fail("is not a regular file")
    with open(path, "rb") as fh:  # our own handle: closed even when np.load fails half-way
        raw = _read_npz(fh, c)
    fmt = raw["format"]
    if fmt.ndim != 0 or fmt.dtype.kind != "U" or str(fmt) != TRACE_FORMAT:
        raise c.fail(f"has format {fmt.tolist()!r}, expected {TRACE_FORMAT!r} (not an e4gym trace, or another version)")
    model = _scalar(c, raw, "model", "U", "a string")
    fps = _scalar(c, raw, "fps", "fiu", "a number")
    return build_trace(
        model=model,
        fps=fps,
        features=raw["features"],
        pooled=raw["pooled"],
        predictions=raw["predictions"],
        confidence=raw["confidence"],
        correct=raw["correct"],
        labels=raw["labels"],
        scene=raw["scene"],
        where=c.where,
        hint=_FIX,
    )


class TraceSource(FrameSource):
    """Replays a recorded :class:`Trace` frame by frame as :class:`~e4gym.workload.base.FrameRecord` s.

    - ``difficulty`` of a recorded frame is ``earliest_correct / n_exits``: 0 when the first exit is right,
      1 when no exit is (the trace has no other ground truth of difficulty).
    - ``index`` counts frames served since ``reset``; ``scene`` is the trace's scene id.
    - The stream wraps around to the trace's first frame after its last one (``next()`` never stops).
    - ``reset(seed)`` starts at a random frame drawn from ``np.random.Generator(np.random.PCG64(seed))`` when
      ``random_start`` (the default), else at frame 0. ``reset(None)`` keeps the generator running.

    Attributes:
        trace: the replayed trace. length: its number of frames T.
    """

    def __init__(
        self, trace: Trace | str | os.PathLike[str], *, random_start: bool = True, seed: int | None = None
    ) -> None:
        """Replay ``trace`` (a :class:`Trace` or a path to load with :func:`load_trace`), then ``reset(seed)``.

        Raises:
            ConfigError: the trace file is missing or malformed, or ``seed`` is not a non-negative int or None.
        """
        self.trace = trace if isinstance(trace, Trace) else load_trace(trace)
        self.n_exits = self.trace.n_exits
        self.fps = self.trace.fps
        self.length = self.trace.n_frames
        self.random_start = bool(random_start)
        corr = self.trace.correct
        earliest = np.where(corr.any(axis=1), corr.argmax(axis=1), self.n_exits)
        self._difficulty = earliest.astype(np.float64) / self.n_exits
        self._rng: np.random.Generator | None = None
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Start a new replay at frame index 0 (a random trace frame if ``random_start``, else the first)."""
        seed = check_seed(seed, "TraceSource.reset")
        if seed is not None or self._rng is None:
            self._rng = np.random.Generator(np.random.PCG64(seed))
        self.start = int(self._rng.integers(self.length)) if self.random_start else 0
        self._served = 0

    def next(self) -> FrameRecord:
        """The next frame of the trace (wrapping around at its end)."""
        tr = self.trace
        t = (self.start + self._served) % self.length
        rec = FrameRecord(
            index=self._served,
            scene=int(tr.scene[t]),
            features=tr.features[t].copy(),
            correct=tr.correct[t].copy(),
            confidence=tr.confidence[t].copy(),
            difficulty=float(self._difficulty[t]),
        )
        self._served += 1
        return rec

    def batch(self, frames: int) -> FrameBatch:
        """The next ``frames`` frames as arrays (wrapping around at the trace's end)."""
        frames = check_frames(frames, "TraceSource.batch")
        idx = np.arange(self._served, self._served + frames, dtype=np.int64)
        rows = (idx + self.start) % self.length
        tr = self.trace
        self._served += frames
        return FrameBatch(
            index=idx,
            scene=tr.scene[rows],
            features=tr.features[rows],
            correct=tr.correct[rows],
            confidence=tr.confidence[rows],
            difficulty=self._difficulty[rows],
        )
