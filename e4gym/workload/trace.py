"""Recorded frame traces: the file format, atomic writing, validated loading and replay.

A trace is what running a real multi-exit network over a video gives, frame by frame. File format: a NumPy
``.npz`` archive (no pickled objects) with keys

===================  ===================  ======================================================================
key                  dtype, shape         meaning
===================  ===================  ======================================================================
``format``           str (0-d)            ``"e4gym-trace-v2"``
``model``            str (0-d)            name of the model profile the trace was recorded with
``fps``              float (0-d)          frame rate of the video (frames per second), > 0
``features``         float32 (T, 3)       pre-inference features, :data:`~e4gym.workload.base.COMPLEXITY_FEATURES`
``feature_change``   float32 (T, E)       per exit, 1 − cosine similarity of the pooled features at the exit's
                                          branch point with the previous frame's, in [0, 1] (post-inference)
``pooled``           float32 (T, D)       pooled backbone features per frame; ``(T, 0)`` when not recorded
``predictions``      int64 (T, E)         top-1 class of each exit
``confidence``       float32 (T, E)       confidence of each exit, in [0, 1]
``correct``          bool (T, E)          whether each exit's top-1 class is right
``labels``           int64 (T,)           ground-truth class, −1 when unknown
``scene``            int64 (T,)           scene id, ≥ 0 (0 everywhere when unknown)
``importance_beta``  float32 (T,)         *optional*: per frame, the concentration ``beta`` of the attention
                                          importance at the network's default edge-cloud split (the least
                                          important share ``s`` of the split's channels holds ``s**beta`` of
                                          it; :class:`~e4gym.dnn.attention.SplitImportance`), finite, > 0
===================  ===================  ======================================================================

``importance_beta`` is an optional key of the same format version: ``e4gym record`` writes it (since issue 18),
files without it (every trace recorded before) load with :attr:`Trace.importance_beta` ``None``, and the
edge-cloud env then draws each frame's ``beta`` (:mod:`e4gym.dnn.offload`). A trace without it hashes
(:attr:`Trace.sha256`) exactly as before the key existed; older e4gym versions read a file with it and ignore it.

:func:`save_trace` writes it atomically, :func:`load_trace` validates it, :class:`TraceSource` replays it
(optionally only a frame range, so one part of a trace can train and another evaluate; see also
:meth:`Trace.split`).

**Version 1** (``"e4gym-trace-v1"``, no ``feature_change`` key, ``features`` (T, 4)) still loads: its 4th
feature column, the change of the *last* backbone block's pooled output, becomes the ``feature_change`` of the
last exit and is copied to every exit (v1 traces carry only the last exit's change); its first 3 columns are
the features. Re-record with ``e4gym record`` to get per-exit changes.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np

from e4gym.errors import ConfigError
from e4gym.workload.base import N_FEATURES, FrameBatch, FrameRecord, FrameSource, check_frames, check_seed
from e4gym.workload.clips import CLIP_PREFIX, clip_trace

TRACE_FORMAT = "e4gym-trace-v2"
#: The older format :func:`load_trace` still reads (see the module docstring).
TRACE_FORMAT_V1 = "e4gym-trace-v1"
TRACE_KEYS: tuple[str, ...] = (
    "format",
    "model",
    "fps",
    "features",
    "feature_change",
    "pooled",
    "predictions",
    "confidence",
    "correct",
    "labels",
    "scene",
)
#: The keys of a version-1 file.
TRACE_KEYS_V1: tuple[str, ...] = tuple(k for k in TRACE_KEYS if k != "feature_change")
_V1_FEATURES = N_FEATURES + 1  # v1: the 3 features and the last block's feature change
_FIX = "re-record it with `e4gym record` (or write it with e4gym.workload.save_trace)"
_ARRAYS = ("features", "feature_change", "pooled", "predictions", "confidence", "correct", "labels", "scene")
#: The optional keys of a file (absent: the trace's field is None).
TRACE_OPTIONAL_KEYS: tuple[str, ...] = ("importance_beta",)


@dataclass(frozen=True, eq=False)
class Trace:
    """A recorded trace (arrays read-only; see the module docstring for the fields' meaning and shapes).

    ``source_format`` is the format of the file it was loaded from (:data:`TRACE_FORMAT` for a trace built in
    memory); a ``"e4gym-trace-v1"`` trace's ``feature_change`` is the last exit's, copied to every exit.
    ``importance_beta`` is the per-frame attention concentration (float32 ``(T,)``, > 0), ``None`` when the trace
    was recorded without it.
    """

    model: str
    fps: float
    features: np.ndarray
    feature_change: np.ndarray
    pooled: np.ndarray
    predictions: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray
    labels: np.ndarray
    scene: np.ndarray
    source_format: str = TRACE_FORMAT
    importance_beta: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.features.shape[0])

    @property
    def n_exits(self) -> int:
        """Number of exits E."""
        return int(self.correct.shape[1])

    def equals(self, other: Trace) -> bool:
        """True when every field of ``other`` is equal (arrays: same dtype, shape and values;
        ``importance_beta``: both None, or equal arrays). ``source_format`` is not compared."""
        if self.model != other.model or self.fps != other.fps:
            return False
        for name in (*_ARRAYS, *TRACE_OPTIONAL_KEYS):
            a, b = getattr(self, name), getattr(other, name)
            if a is None or b is None:
                if a is not b:
                    return False
            elif a.dtype != b.dtype or not np.array_equal(a, b):
                return False
        return True

    @cached_property
    def sha256(self) -> str:
        """SHA-256 (hex) of the trace's content (model, fps, every array's dtype, shape and bytes): equal for
        equal traces, whichever file (or format version) they came from. An optional array that is None adds
        nothing, so a trace without ``importance_beta`` hashes as it did before that key existed. Computed once."""
        h = hashlib.sha256()
        h.update(repr((self.model, float(self.fps))).encode())
        for name in (*_ARRAYS, *TRACE_OPTIONAL_KEYS):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.ascontiguousarray(value)
            h.update(f"|{name}|{arr.dtype.str}|{arr.shape}|".encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    def subset(self, start: int = 0, stop: int | None = None) -> Trace:
        """Frames ``[start, stop)`` as a new trace (``stop=None``: to the end). Note that the first frame's
        ``feature_change`` and ``motion`` still compare it with the frame before it in the recording.

        Raises:
            ConfigError: the range is not ``0 <= start < stop <= n_frames``.
        """
        start, stop = check_range(start, stop, self.n_frames, "Trace.subset")
        fields = {name: getattr(self, name)[start:stop] for name in _ARRAYS}
        beta = None if self.importance_beta is None else self.importance_beta[start:stop]
        return build_trace(model=self.model, fps=self.fps, **fields, importance_beta=beta, where="Trace.subset",
                           source_format=self.source_format)

    def split(self, fraction: float) -> tuple[Trace, Trace]:
        """``(first, rest)``: the first ``round(fraction · n_frames)`` frames and the others, e.g. to train on
        one part of a recording and evaluate on the other (:meth:`TraceSource.split` does the same on one
        trace with frame ranges, keeping both parts' :meth:`~TraceSource.stream_key` comparable).

        Raises:
            ConfigError: ``fraction`` is not in (0, 1) or leaves a part without frames.
        """
        k = split_point(fraction, self.n_frames, "Trace.split")
        return self.subset(0, k), self.subset(k, None)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_range(start: object, stop: object, n_frames: int, where: str) -> tuple[int, int]:
    """``(start, stop)`` as ints (``stop=None``: ``n_frames``) if ``0 <= start < stop <= n_frames``, else
    raise :class:`ConfigError`."""
    if not _is_int(start) or (stop is not None and not _is_int(stop)):
        raise ConfigError(f"{where}: start and stop must be integers (stop may be None), got {start!r} and {stop!r}")
    lo, hi = int(start), n_frames if stop is None else int(stop)  # type: ignore[arg-type]
    if not 0 <= lo < hi <= n_frames:
        raise ConfigError(
            f"{where}: frame range [{start}, {stop}) is empty or outside the trace's {n_frames} frames; "
            f"use 0 <= start < stop <= {n_frames}"
        )
    return lo, hi


def split_point(fraction: object, n_frames: int, where: str) -> int:
    """``round(fraction · n_frames)`` if ``fraction`` is in (0, 1) and both parts keep a frame, else raise."""
    ok = isinstance(fraction, (int, float, np.integer, np.floating)) and not isinstance(fraction, bool)
    if not ok or not 0.0 < float(fraction) < 1.0:  # type: ignore[arg-type]
        raise ConfigError(f"{where}: fraction must be a number in (0, 1), got {fraction!r}")
    k = round(float(fraction) * n_frames)  # type: ignore[arg-type]
    if not 0 < k < n_frames:
        raise ConfigError(
            f"{where}: fraction {fraction} of {n_frames} frames leaves a part empty; pick a fraction between "
            f"{1 / n_frames:g} and {1 - 1 / n_frames:g}, or use a longer trace"
        )
    return k


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
    feature_change: object,
    pooled: object,
    predictions: object,
    confidence: object,
    correct: object,
    labels: object = None,
    scene: object = None,
    importance_beta: object = None,
    where: str = "Trace",
    hint: str = "",
    source_format: str = TRACE_FORMAT,
) -> Trace:
    """Validate the fields of a trace and convert them to the file format's dtypes (read-only arrays).

    Args:
        model, fps, features, feature_change, pooled, predictions, confidence, correct, labels, scene,
            importance_beta: as in the module docstring; ``pooled``, ``labels``, ``scene`` and
            ``importance_beta`` may be None (none recorded, unknown, unknown, not recorded).
        where: prefix of error messages (a function or file name).
        hint: what to do, appended to error messages.
        source_format: recorded in :attr:`Trace.source_format`.

    Raises:
        ConfigError: a field has the wrong type, dtype or shape, inconsistent lengths, NaN or infinite values,
            confidence or feature_change outside [0, 1], or an importance_beta ≤ 0.
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
    change = c.array("feature_change", feature_change, 2, "fiu", "a (T, E) float array in [0, 1]")
    c.rows("feature_change", change, t)
    for name, arr in (("predictions", pred), ("confidence", conf), ("feature_change", change)):
        if arr.shape[1] != e:
            raise c.fail(f"{name} has {arr.shape[1]} exits but correct has {e} (all (T, E) arrays need the same E)")
    for name, arr in (("confidence", conf), ("feature_change", change)):
        c.finite(name, arr)
        if arr.size and ((arr < 0).any() or (arr > 1).any()):
            raise c.fail(f"{name} must lie in [0, 1], found values in [{arr.min():g}, {arr.max():g}]")

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
    beta = None
    if importance_beta is not None:
        beta = c.array("importance_beta", importance_beta, 1, "fiu", "a (T,) float array of concentrations > 0")
        c.rows("importance_beta", beta, t)
        c.finite("importance_beta", beta)
        if beta.size and beta.min() <= 0:
            bad = int(np.argmax(beta <= 0))
            raise c.fail(f"importance_beta must be > 0 (a concentration), found {beta[bad]:g} at frame {bad}")

    def ro(arr: np.ndarray, dtype: type) -> np.ndarray:
        out = np.array(arr, dtype=dtype, copy=True)
        out.setflags(write=False)
        return out

    return Trace(
        model=model,
        fps=fps_f,
        features=ro(feats, np.float32),
        feature_change=ro(change, np.float32),
        pooled=ro(pool, np.float32),
        predictions=ro(pred, np.int64),
        confidence=ro(conf, np.float32),
        correct=ro(corr, np.bool_),
        labels=ro(lab, np.int64),
        scene=ro(scn, np.int64),
        source_format=source_format,
        importance_beta=None if beta is None else ro(beta, np.float32),
    )


def save_trace(
    path: str | os.PathLike[str],
    *,
    model: str,
    fps: float,
    features: np.ndarray,
    feature_change: np.ndarray,
    pooled: np.ndarray | None,
    predictions: np.ndarray,
    confidence: np.ndarray,
    correct: np.ndarray,
    labels: np.ndarray | None = None,
    scene: np.ndarray | None = None,
    importance_beta: np.ndarray | None = None,
) -> Path:
    """Validate a trace and write it to ``path`` atomically (format in the module docstring).

    The archive is written to a temporary file in the same folder, flushed to disk and renamed over ``path``
    with :func:`os.replace`. On any exception the temporary file is removed and ``path`` is untouched (absent
    if it did not exist, the previous file otherwise). ``path`` is used as given (no ``.npz`` is appended).

    Args:
        path: file to write.
        model: model profile name. fps: frames per second, > 0.
        features: (T, 3) pre-inference complexity features. feature_change: (T, E) per-exit feature change,
            in [0, 1]. pooled: (T, D) pooled backbone features or None.
        predictions: (T, E) top-1 class per exit. confidence: (T, E) in [0, 1]. correct: (T, E) bool.
        labels: (T,) ground-truth classes (−1 unknown) or None. scene: (T,) scene ids or None (all 0).
        importance_beta: (T,) per-frame attention concentration (> 0), or None (the key is not written).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: a field is malformed (see :func:`build_trace`) or the folder does not exist.
    """
    trace = build_trace(
        model=model,
        fps=fps,
        features=features,
        feature_change=feature_change,
        pooled=pooled,
        predictions=predictions,
        confidence=confidence,
        correct=correct,
        labels=labels,
        scene=scene,
        importance_beta=importance_beta,
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
        "feature_change": trace.feature_change,
        "pooled": trace.pooled,
        "predictions": trace.predictions,
        "confidence": trace.confidence,
        "correct": trace.correct,
        "labels": trace.labels,
        "scene": trace.scene,
    }
    if trace.importance_beta is not None:
        arrays["importance_beta"] = trace.importance_beta
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
    """Read every trace key of the archive open in ``fh`` (the keys of its format version, v2 or v1, and the
    optional keys it has); corrupt or incomplete archives, and unknown format strings, raise ConfigError."""
    try:
        obj = np.load(fh, allow_pickle=False)
    except Exception as exc:  # BadZipFile, ValueError (not npy/npz: would need pickle), OSError, EOFError, ...
        problem = f"is not a readable .npz archive, it is corrupt or truncated ({type(exc).__name__}: {exc})"
        raise c.fail(problem) from None
    if not isinstance(obj, np.lib.npyio.NpzFile):
        raise c.fail(f"holds a single .npy array (shape {getattr(obj, 'shape', '?')}), not an e4gym trace archive")
    with obj:
        try:
            if "format" not in obj.files:
                raise c.fail(f"lacks key(s) ['format'] of format {TRACE_FORMAT} (it has {sorted(obj.files)})")
            fmt = obj["format"]
            if fmt.ndim != 0 or fmt.dtype.kind != "U" or str(fmt) not in (TRACE_FORMAT, TRACE_FORMAT_V1):
                raise c.fail(
                    f"has format {fmt.tolist()!r}, expected {TRACE_FORMAT!r} (or the older {TRACE_FORMAT_V1!r}; "
                    f"not an e4gym trace, or another version)"
                )
            keys = TRACE_KEYS if str(fmt) == TRACE_FORMAT else TRACE_KEYS_V1
            missing = [k for k in keys if k not in obj.files]
            if missing:
                raise c.fail(f"lacks key(s) {missing} of format {fmt!s} (it has {sorted(obj.files)})")
            return {k: obj[k] for k in (*keys, *(o for o in TRACE_OPTIONAL_KEYS if o in obj.files))}
        except ConfigError:
            raise
        except Exception as exc:  # corrupt member: BadZipFile (CRC), zlib.error, ValueError, EOFError, ...
            raise c.fail(f"has a corrupt or truncated member ({type(exc).__name__}: {exc})") from None


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Load and validate a trace written by :func:`save_trace` (format v2, or v1 converted as the module
    docstring says: features = its first 3 columns, every exit's feature_change = its 4th). ``clip:<name>``
    is the trace of a real clip shipped in the package (:func:`e4gym.workload.clips.clip_trace`). A file
    without the optional ``importance_beta`` key gives ``importance_beta=None``.

    Raises:
        ConfigError: the file is missing, not an ``.npz`` archive (corrupt or truncated), lacks a key, has
            another format string, or holds malformed arrays (inconsistent lengths, NaN, confidence outside
            [0, 1], an importance_beta ≤ 0, ...). The message names the file and the problem and says how to fix
            it.
    """
    if isinstance(path, str) and path.startswith(CLIP_PREFIX):
        path = clip_trace(path[len(CLIP_PREFIX):])
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
    fmt = str(raw["format"])
    model = _scalar(c, raw, "model", "U", "a string")
    fps = _scalar(c, raw, "fps", "fiu", "a number")
    features, change = raw["features"], raw.get("feature_change")
    if fmt == TRACE_FORMAT_V1:
        feats = c.array("features", features, 2, "fiu", f"a (T, {_V1_FEATURES}) float array in format {fmt}")
        if feats.shape[1] != _V1_FEATURES:
            raise c.fail(f"features must be a (T, {_V1_FEATURES}) float array in format {fmt}, got shape {feats.shape}")
        corr = raw["correct"]
        n_exits = corr.shape[1] if corr.ndim == 2 else 1  # a malformed 'correct' is reported by build_trace
        features = feats[:, :N_FEATURES]
        change = np.repeat(feats[:, N_FEATURES:], n_exits, axis=1)  # only the last block's change was recorded
    return build_trace(
        model=model,
        fps=fps,
        features=features,
        feature_change=change,
        pooled=raw["pooled"],
        predictions=raw["predictions"],
        confidence=raw["confidence"],
        correct=raw["correct"],
        labels=raw["labels"],
        scene=raw["scene"],
        importance_beta=raw.get("importance_beta"),
        where=c.where,
        hint=_FIX,
        source_format=fmt,
    )


class TraceSource(FrameSource):
    """Replays a recorded :class:`Trace` (or the frames ``[start, stop)`` of it) as
    :class:`~e4gym.workload.base.FrameRecord` s.

    - ``difficulty`` of a recorded frame is ``earliest_correct / n_exits``: 0 when the first exit is right,
      1 when no exit is (the trace has no other ground truth of difficulty).
    - ``index`` counts frames served since ``reset``; ``scene`` is the trace's scene id.
    - Only the trace frames ``start … stop − 1`` are served; after ``stop − 1`` the stream wraps around to
      ``start`` (``next()`` never stops). ``length`` is ``stop − start``.
    - ``reset(seed)`` starts at a random frame of the range drawn from ``np.random.Generator(np.random.PCG64(
      seed))`` when ``random_start`` (the default), else at ``start``; ``first_row`` is the trace row the
      replay starts at. ``reset(None)`` keeps the generator running.
    - :meth:`spawn` gives an independent replay of the same trace and range; :meth:`stream_key` is
      ``("trace", trace.sha256, start, stop)``, whatever the seed (every replay serves the same frames).
    - :meth:`recorded_beta` gives the served frames' recorded attention concentration (the trace's
      ``importance_beta``; None when it has none), by frame index: the edge-cloud env uses it instead of drawing
      ``beta``.

    Attributes:
        trace: the replayed trace (all of it, also when a range is served). start / stop: the frame range.
        length: ``stop − start``. first_row: trace row of frame index 0 since the last ``reset``.
    """

    def __init__(
        self,
        trace: Trace | str | os.PathLike[str],
        start: int = 0,
        stop: int | None = None,
        *,
        random_start: bool = True,
        seed: int | None = None,
    ) -> None:
        """Replay ``trace`` (a :class:`Trace` or a path to load with :func:`load_trace`), frames
        ``[start, stop)`` (``stop=None``: to the end), then ``reset(seed)``.

        Raises:
            ConfigError: the trace file is missing or malformed, the range is not ``0 <= start < stop <= T``,
                or ``seed`` is not a non-negative int or None.
        """
        self.trace = trace if isinstance(trace, Trace) else load_trace(trace)
        self.start, self.stop = check_range(start, stop, self.trace.n_frames, "TraceSource")
        self.n_exits = self.trace.n_exits
        self.fps = self.trace.fps
        self.length = self.stop - self.start
        self.random_start = bool(random_start)
        corr = self.trace.correct
        earliest = np.where(corr.any(axis=1), corr.argmax(axis=1), self.n_exits)
        self._difficulty = earliest.astype(np.float64) / self.n_exits
        self._rng: np.random.Generator | None = None
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Start a new replay at frame index 0 (a random frame of the range if ``random_start``, else ``start``)."""
        seed = check_seed(seed, "TraceSource.reset")
        if seed is not None or self._rng is None:
            self._rng = np.random.Generator(np.random.PCG64(seed))
        offset = int(self._rng.integers(self.length)) if self.random_start else 0
        self.first_row = self.start + offset
        self._served = 0

    def spawn(self, seed: int | None = None) -> TraceSource:
        """A new replay of the same trace and range with its own cursor and generator, ``reset(seed)``."""
        seed = check_seed(seed, "TraceSource.spawn")
        new = copy.copy(self)  # the trace and the difficulty table are read-only and shared
        new._rng = None
        new.reset(seed)
        return new

    def stream_key(self) -> tuple:
        """``("trace", trace.sha256, start, stop)``: equal for replays of the same frames of the same content."""
        return ("trace", self.trace.sha256, self.start, self.stop)

    def split(self, fraction: float, seed: int | None = None) -> tuple[TraceSource, TraceSource]:
        """Two independent replays of this source's range cut in two: its first ``round(fraction · length)``
        frames and the others (same ``random_start``; each ``reset(seed)``). Their stream keys differ and
        name the same trace, so a harness can tell them apart.

        Raises:
            ConfigError: ``fraction`` is not in (0, 1) or leaves a part without frames.
        """
        k = split_point(fraction, self.length, "TraceSource.split")
        return (
            TraceSource(self.trace, self.start, self.start + k, random_start=self.random_start, seed=seed),
            TraceSource(self.trace, self.start + k, self.stop, random_start=self.random_start, seed=seed),
        )

    def _rows(self, idx: np.ndarray | int) -> np.ndarray | int:
        return self.start + (idx + (self.first_row - self.start)) % self.length

    @property
    def has_importance_beta(self) -> bool:
        """Whether the trace carries the per-frame attention concentration (``importance_beta``)."""
        return self.trace.importance_beta is not None

    def recorded_beta(self, index: np.ndarray | int) -> np.ndarray | None:
        """The recorded attention concentration ``beta`` (the trace's ``importance_beta``, > 0) of the frames with
        these indices since the last ``reset`` (the ``index`` of :class:`~e4gym.workload.base.FrameRecord` and
        :class:`~e4gym.workload.base.FrameBatch`; past the range's end it wraps as :meth:`next` does), as float64
        of ``index``'s shape; None when the trace has none. Does not move the cursor.

        Raises:
            ConfigError: an index is not an integer ≥ 0.
        """
        beta = self.trace.importance_beta
        if beta is None:
            return None
        idx = np.asarray(index)
        if idx.dtype.kind not in "iu" or (idx.size and idx.min() < 0):
            raise ConfigError(f"TraceSource.recorded_beta: frame indices must be integers >= 0, got {index!r}")
        return beta[self._rows(idx.astype(np.int64))].astype(np.float64)

    def next(self) -> FrameRecord:
        """The next frame of the range (wrapping around at its end)."""
        tr = self.trace
        t = int(self._rows(self._served))
        rec = FrameRecord(
            index=self._served,
            scene=int(tr.scene[t]),
            features=tr.features[t].copy(),
            correct=tr.correct[t].copy(),
            confidence=tr.confidence[t].copy(),
            feature_change=tr.feature_change[t].copy(),
            difficulty=float(self._difficulty[t]),
        )
        self._served += 1
        return rec

    def batch(self, frames: int) -> FrameBatch:
        """The next ``frames`` frames as arrays (wrapping around at the range's end)."""
        frames = check_frames(frames, "TraceSource.batch")
        idx = np.arange(self._served, self._served + frames, dtype=np.int64)
        rows = self._rows(idx)
        tr = self.trace
        self._served += frames
        return FrameBatch(
            index=idx,
            scene=tr.scene[rows],
            features=tr.features[rows],
            correct=tr.correct[rows],
            confidence=tr.confidence[rows],
            feature_change=tr.feature_change[rows],
            difficulty=self._difficulty[rows],
        )
