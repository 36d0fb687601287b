"""Synthetic video: scenes of random length, difficulty that drifts within a scene and jumps at cuts.

See :class:`SyntheticVideo`; every constant of the model is listed there as an ASSUMPTION.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from e4gym._jit import lazy_kernel
from e4gym.errors import ConfigError
from e4gym.workload.base import (
    N_FEATURES,
    FrameBatch,
    FrameRecord,
    FrameSource,
    StackedFrames,
    check_frames,
    check_seed,
)

if TYPE_CHECKING:
    from e4gym.dnn.profile import ModelProfile


_CHUNK = 512  # frames generated per internal chunk: the stream is a function of the seed alone


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _uniform_plus_normal_cdf(t: float, sigma: float) -> float:
    """P(U + sigma·N < t) for U ~ Uniform(0, 1) and N ~ Normal(0, 1) independent."""
    if sigma <= 0.0:
        return min(max(t, 0.0), 1.0)

    def g(x: float) -> float:  # antiderivative of the normal CDF
        return x * _normal_cdf(x) + math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)

    return sigma * (g(t / sigma) - g((t - 1.0) / sigma))


def latent_thresholds(accuracies: Sequence[float], sigma: float) -> np.ndarray:
    """Per-exit thresholds ``q_e`` with ``P(U + sigma·N < q_e) = accuracies[e]`` (U uniform, N standard normal).

    An accuracy of 1 gives ``+inf`` (always correct). Solved by bisection to 1e-12.
    """
    out = np.empty(len(accuracies))
    for e, acc in enumerate(accuracies):
        if acc >= 1.0:
            out[e] = np.inf
            continue
        lo, hi = -1.0 - 10.0 * sigma, 2.0 + 10.0 * sigma
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if _uniform_plus_normal_cdf(mid, sigma) < acc:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-12:
                break
        out[e] = 0.5 * (lo + hi)
    return out


def _fold(y: np.ndarray) -> np.ndarray:
    """Fold the real line onto [0, 1] by mirror reflection at 0 and 1 (a triangle wave of period 2)."""
    m = np.mod(y, 2.0)
    return np.where(m > 1.0, 2.0 - m, m)


def _positive_number(value: object, name: str, *, allow_zero: bool = False, max: float | None = None) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        x = float(value)
        ok = math.isfinite(x) and (x >= 0.0 if allow_zero else x > 0.0) and (max is None or x <= max)
    if not ok:
        if allow_zero:
            rng = f"in [0, {max:g}]" if max is not None else "≥ 0"
        else:
            rng = f"in (0, {max:g}]" if max is not None else "> 0"
        raise ConfigError(f"SyntheticVideo: {name} must be a finite number {rng}, got {value!r}")
    return x


class SyntheticVideo(FrameSource):
    """An infinite synthetic video stream with per-exit correctness consistent with given exit accuracies.

    Model (per frame t, all randomness from ``np.random.Generator(np.random.PCG64(seed))``; its normals are the
    Box–Muller transform of float32 uniforms, three times faster than the generator's own, see
    :func:`_draw_stacked`):

    - **Scenes.** Each frame starts a new scene (a cut) with probability ``1 / (mean_scene_s · fps)``, so scene
      lengths are geometric in frames with mean ``mean_scene_s · fps``. The first frame after ``reset`` starts
      scene 0.
    - **Difficulty** ``d_t`` in [0, 1]. At a cut it is drawn afresh from Uniform(0, 1) (it jumps); within a scene
      it does a random walk with Normal(0, ``drift``) steps, mirror-reflected at 0 and 1. The reflected walk
      keeps Uniform(0, 1) invariant, so the marginal of ``d_t`` is *exactly* Uniform(0, 1) at every frame
      (chosen so the exit thresholds below are analytic; no empirical calibration is needed).
    - **Correctness** (a latent threshold model). Exit e is correct iff
      ``z_{t,e} = d_t + σ_s·η_t + σ_i·ε_{t,e} < q_e`` with η, ε standard normal, where σ_s is noise shared by the
      exits of a frame and σ_i per-exit noise. ``q_e`` solves ``P(U + σ·N < q_e) = accuracies[e]`` with
      ``σ² = σ_s² + σ_i²`` (U uniform), so the marginal P(correct at e) equals ``accuracies[e]``. Non-decreasing
      accuracies give non-decreasing thresholds: correctness is mostly nested (correct at e ⇒ correct at later
      exits); σ_i makes a few frames violate it, as real exits disagree.
    - **Confidence** of exit e: logit-normal, ``sigmoid(logit(μ) + s·N)`` with centre
      ``μ = clip(sigmoid(b + g·(q_e − z_{t,e})), 0.02, 0.98)`` and spread ``s``: higher when correct (positive
      margin), informative but noisy; float32 in [0, 1]. (Logit-normal rather than Beta: about the same shape at
      a quarter of the sampling cost, which matters for the vector env's frame rate.)
    - **Pre-inference features** (clipped to [0, 1], order of :data:`~e4gym.workload.base.COMPLEXITY_FEATURES`):
      ``edge_density = 0.2 + 0.6·d + f·N``; ``contrast = 0.25 + 0.5·d + 1.5·f·N``; ``motion = 0.05 + 5·|Δd|``
      within a scene and ``0.55 + 0.4·c`` at a cut, plus ``0.5·f·N``. They stand for pixel statistics of the
      frame and of its difference to the previous frame, which exist before the network runs (causal).
    - **Feature change** (post-inference, per exit e, clipped to [0, 1]): ``0.02 + 8·|Δd|`` within a scene and
      ``0.45 + 0.5·c`` at a cut, plus ``0.5·f·N`` shared by the exits and ``0.2·f·N_e`` of each exit's own.
      ``f = feature_noise``, N fresh standard normals, ``c ~ Uniform(0, 1)`` the strength of the cut (shared
      with ``motion``), ``Δd = d_t − d_{t−1}``. The first frame after ``reset`` has a feature change of 0 (no
      previous frame); its ``motion`` follows the cut formula, standing in for the change from whatever the
      camera showed before.

    Nothing in this model is published. The only related public figure: FrameExit (Ghodrati et al., CVPR 2021)
    processes about 6 of 10 sampled frames per ActivityNet video, i.e. video has temporal redundancy, which the
    slowly drifting difficulty within scenes stands for. Four of its parameters are **fitted** to the real-video
    traces shipped with e4gym (EfficientNet-Lite0 with distilled heads on three clips, 251 frames;
    ``benchmarks/real_vs_synthetic.py``, docs/real_video.md): ``feature_noise``, ``SHARED_NOISE``/``EXIT_NOISE``,
    ``CONF_GAIN`` and ``CONF_LOGIT_SD``, so that how often the earliest correct exit changes between frames
    (real 0.093, synthetic 0.111; before 0.218), the share of non-nested frames (0.024 / 0.015; before 0.053),
    how well the features predict the earliest correct exit (R² 0.37 / 0.40; before 0.64) and how well exit 0's
    confidence tells whether it is right (ROC AUC 0.75 / 0.77; before 0.99) match. Three clips are thin
    evidence; the rest is assumed. ASSUMPTIONS and fits (class attributes, in one place):

    - ``mean_scene_s = 4.0`` s, ``drift = 0.02`` per frame (assumed), ``feature_noise = 0.2`` (fitted; it was
      0.1) (constructor defaults);
    - difficulty marginal Uniform(0, 1), reflected Gaussian random walk within scenes, fresh draw at cuts;
    - ``SHARED_NOISE`` σ_s = 0.02 and ``EXIT_NOISE`` σ_i = 0.02 (fitted; both were 0.05): about 1.8 % of frames
      have non-nested correctness with EfficientNet-Lite0's close exit accuracies, 0.07 % with EfficientNet-B0's
      spread-out ones;
    - ``CONF_BIAS`` b = 0.5 (networks are over-confident: margin 0 gives mean confidence 0.62), ``CONF_GAIN``
      g = 3 per unit of margin and ``CONF_LOGIT_SD`` s = 1.5 (fitted; they were 10 and 0.6, which made the
      confidence a near-perfect predictor of correctness, AUC 0.99, where the real heads' reaches 0.75);
    - the feature coefficients above (``EDGE_*``, ``CONTRAST_*``, ``MOTION_*``, ``CHANGE_*``,
      ``TEMPORAL_FEATURE_NOISE``; not fitted: the synthetic ``motion`` averages 0.14 where the real clips' pixel
      motion averages 0.013), and ``CHANGE_EXIT_NOISE = 0.2`` (× ``feature_noise``): the exits' branch
      points see the same content change up to a small independent per-exit noise (sd 0.02 by default).

    ``next()`` is served from internally pre-generated chunks of frames, and :meth:`batch` draws from the same
    chunks, so the stream after ``reset(seed)`` is the same whichever mix of ``next()`` and ``batch()`` reads it.
    :meth:`batch_many` reads many streams at once (the same frames as each one's ``batch``, faster).
    ``reset(None)`` starts a new stream (index 0, new scene) and keeps the generator running.

    :meth:`spawn` gives an independent copy (same parameters, own generator); :meth:`stream_key` is
    ``("synthetic", sha256 of the parameters, seed)``.
    """

    SHARED_NOISE = 0.02
    EXIT_NOISE = 0.02
    CONF_BIAS = 0.5
    CONF_GAIN = 3.0
    CONF_LOGIT_SD = 1.5
    CONF_MIN, CONF_MAX = 0.02, 0.98
    EDGE_BASE, EDGE_GAIN, EDGE_NOISE = 0.2, 0.6, 1.0
    CONTRAST_BASE, CONTRAST_GAIN, CONTRAST_NOISE = 0.25, 0.5, 1.5
    MOTION_BASE, MOTION_GAIN, MOTION_CUT_BASE, MOTION_CUT_SPAN = 0.05, 5.0, 0.55, 0.4
    CHANGE_BASE, CHANGE_GAIN, CHANGE_CUT_BASE, CHANGE_CUT_SPAN = 0.02, 8.0, 0.45, 0.5
    TEMPORAL_FEATURE_NOISE = 0.5
    CHANGE_EXIT_NOISE = 0.2

    length: int | None = None

    def __init__(
        self,
        accuracies: Sequence[float],
        fps: float = 30.0,
        mean_scene_s: float = 4.0,
        drift: float = 0.02,
        feature_noise: float = 0.2,
        seed: int | None = None,
    ) -> None:
        """Build the stream and ``reset(seed)`` it.

        Args:
            accuracies: per-exit top-1 accuracy (fraction), non-empty, non-decreasing, each in (0, 1].
            fps: frame rate (frames per second), > 0.
            mean_scene_s: mean scene length (seconds); at least one frame (``≥ 1 / fps``).
            drift: standard deviation of the per-frame difficulty step within a scene (difficulty units), [0, 1].
            feature_noise: standard deviation of the noise on the complexity features (feature units), [0, 1].
            seed: seed of the generator (non-negative int) or None for fresh OS entropy.

        Raises:
            ConfigError: an argument is out of range; the message names it and what is allowed.
        """
        self.accuracies = self._check_accuracies(accuracies)
        self.n_exits = len(self.accuracies)
        self.fps = _positive_number(fps, "fps")
        self.mean_scene_s = _positive_number(mean_scene_s, "mean_scene_s")
        self.mean_scene_frames = self.mean_scene_s * self.fps
        if self.mean_scene_frames < 1.0:
            raise ConfigError(
                f"SyntheticVideo: mean_scene_s must be at least one frame (≥ 1/fps = {1.0 / self.fps:g} s), "
                f"got {mean_scene_s!r}"
            )
        self.drift = _positive_number(drift, "drift", allow_zero=True, max=1.0)
        self.feature_noise = _positive_number(feature_noise, "feature_noise", allow_zero=True, max=1.0)
        sigma = math.hypot(self.SHARED_NOISE, self.EXIT_NOISE)
        self.thresholds = latent_thresholds(self.accuracies, sigma)
        self._rng: np.random.Generator | None = None
        self.reset(seed)

    @staticmethod
    def _check_accuracies(accuracies: object) -> tuple[float, ...]:
        expected = "a non-empty, non-decreasing sequence of numbers in (0, 1]"
        try:
            values = tuple(float(a) for a in accuracies)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ConfigError(f"SyntheticVideo: accuracies must be {expected}, got {accuracies!r}") from None
        if isinstance(accuracies, (str, bytes)) or not values:
            raise ConfigError(f"SyntheticVideo: accuracies must be {expected}, got {accuracies!r}")
        if not all(0.0 < a <= 1.0 for a in values):  # also rejects NaN
            raise ConfigError(f"SyntheticVideo: accuracies must be {expected}; {list(values)} has one outside (0, 1]")
        if any(b < a for a, b in itertools.pairwise(values)):
            raise ConfigError(f"SyntheticVideo: accuracies must be {expected}; {list(values)} decreases")
        return values

    @classmethod
    def from_profile(cls, profile: ModelProfile, **kw: object) -> SyntheticVideo:
        """A stream for ``profile``'s exits: accuracies from ``profile.exits[i].accuracy``; ``kw`` as ``__init__``."""
        return cls([e.accuracy for e in profile.exits], **kw)  # type: ignore[arg-type]

    # -- stream ---------------------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Start a new stream at frame index 0 with a new scene.

        Args:
            seed: non-negative int to reseed the generator (same seed ⇒ identical stream); None keeps the
                current generator running (a fresh OS-entropy one on the first call).
        """
        seed = check_seed(seed, "SyntheticVideo.reset")
        if seed is not None or self._rng is None:
            self._rng = np.random.Generator(np.random.PCG64(seed))
        # The stream's identity: the seed, or a fresh id (never equal to an int) for an unseeded stream.
        self._stream_id: int | str = seed if seed is not None else f"unseeded-{secrets.token_hex(16)}"
        self._d_prev: float | None = None
        self._scene = -1
        self._next_index = 0
        self._buf: FrameBatch | None = None
        self._pos = 0

    def next(self) -> FrameRecord:
        """The next frame (served from the current pre-generated chunk)."""
        if self._buf is None or self._pos >= len(self._buf):
            self._buf, self._pos = self._generate(_CHUNK), 0
        b, i = self._buf, self._pos
        self._pos += 1
        return FrameRecord(
            index=int(b.index[i]),
            scene=int(b.scene[i]),
            features=b.features[i].copy(),
            correct=b.correct[i].copy(),
            confidence=b.confidence[i].copy(),
            feature_change=b.feature_change[i].copy(),
            difficulty=float(b.difficulty[i]),
        )

    def batch(self, frames: int) -> FrameBatch:
        """The next ``frames`` frames as arrays (fresh copies); the same frames ``next()`` would give."""
        frames = check_frames(frames, "SyntheticVideo.batch")
        parts: list[FrameBatch] = []
        left = frames
        while left > 0:
            if self._buf is None or self._pos >= len(self._buf):
                self._buf, self._pos = self._generate(_CHUNK), 0
            k = min(left, len(self._buf) - self._pos)
            parts.append(self._buf.slice(self._pos, self._pos + k))
            self._pos += k
            left -= k
        if not parts:
            return FrameBatch.empty(self.n_exits)
        return parts[0].copy() if len(parts) == 1 else FrameBatch.concatenate(parts)

    def spawn(self, seed: int | None = None) -> SyntheticVideo:
        """A new, independent stream with the same parameters, ``reset(seed)`` (its own generator: fresh OS
        entropy for ``seed=None``); advancing it does not move this one and vice versa."""
        seed = check_seed(seed, "SyntheticVideo.spawn")
        new = copy.copy(self)  # parameters and thresholds are shared read-only; the stream state is replaced
        new._rng = None
        new.reset(seed)
        return new

    def params_sha256(self) -> str:
        """SHA-256 (hex) of everything but the seed that determines the stream: the class, the constructor
        parameters and the model constants."""
        consts = {k: getattr(self, k) for k in dir(type(self)) if k.isupper() and not k.startswith("_")}
        params = (
            f"{type(self).__module__}.{type(self).__qualname__}",
            self.accuracies,
            self.fps,
            self.mean_scene_s,
            self.drift,
            self.feature_noise,
            sorted(consts.items()),
            _CHUNK,
        )
        return hashlib.sha256(repr(params).encode()).hexdigest()

    def stream_key(self) -> tuple:
        """``("synthetic", params_sha256(), seed)``: ``seed`` is the int given to the last ``reset`` (or the
        constructor), or a fresh random string id when that was None (an unseeded stream never repeats)."""
        return ("synthetic", self.params_sha256(), self._stream_id)

    # -- many streams at once -------------------------------------------------------------------------------

    @classmethod
    def batch_many(
        cls, streams: Sequence[FrameSource], frames: int, out: StackedFrames | None = None
    ) -> StackedFrames:
        """The next ``frames`` frames of each of ``streams``, stacked: equal, bit for bit, to stacking
        ``[s.batch(frames) for s in streams]``, and advancing every stream exactly as that would (later
        ``next()`` / ``batch()`` calls continue the same streams).

        Faster per stream than that loop for many :class:`SyntheticVideo` streams at a chunk boundary (freshly
        reset, or every frame of their last chunk served, as after ``batch(k · 512)``): each stream still makes
        its own random draws from its own generator, in its own order, but the arithmetic that turns them into
        frames runs once over a block of streams (arrays ``(streams, 512, …)``) instead of ~60 small NumPy calls
        per stream. Those streams must share their model with the first of them (class, accuracies, mean scene
        length in frames ``mean_scene_s · fps``, drift, feature_noise, and no model constant overridden on the
        instance); every other stream (mid-chunk, another model, another kind of source, or a repeat of an
        earlier entry) is served by its own ``batch`` (same result, at the per-stream speed). The chunk is 512
        frames, so ``frames = 512`` with every stream at a boundary (the native vector env's refill) is the case
        this is built for; any ``frames`` works.

        Cost per frame and stream (shared 2-core x86 VM, NumPy 2.4, 5 exits, 1024 streams of 512 frames, the frame
        arithmetic compiled: :func:`_k_frames`): ~0.22 µs in the loop, ~0.19 µs here, ~0.15 µs with ``out``, of
        which ~0.09 µs are the random draws, which stay per stream (~21 normals and 3 uniforms a frame); see
        ``benchmarks/synthetic_speed.py``.

        Args:
            streams: frame sources with the same number of exits; a source may appear more than once (it is
                then read once per appearance, in order).
            frames: frames per stream (non-negative int).
            out: arrays to write the frames into and return instead of new ones (reusing them across calls saves
                allocating, and first touching, ~80 bytes a frame): the shapes and dtypes of the result (views
                allowed).

        Returns:
            :class:`~e4gym.workload.base.StackedFrames`, shape ``(len(streams), frames, …)``: row ``s`` equals
            ``streams[s].batch(frames)`` (``out``, or new arrays, the caller's). With no streams and no ``out``
            the arrays have 0 rows and 0 exits.

        Raises:
            ConfigError: ``frames`` is not a non-negative int, the streams' numbers of exits differ, or ``out``
                does not fit.
        """
        frames = check_frames(frames, "SyntheticVideo.batch_many")
        streams = list(streams)
        e = streams[0].n_exits if streams else (out.n_exits if out is not None else 0)
        if any(s.n_exits != e for s in streams):
            raise ConfigError(
                f"SyntheticVideo.batch_many: all streams must have the same number of exits, got "
                f"{sorted({s.n_exits for s in streams})}"
            )
        if out is None:
            out = StackedFrames(*_empty_arrays((len(streams), frames), e))
        else:
            for name, w, a in zip(_FIELDS, _empty_arrays((0, 0), e), _arrays(out)):
                shape = (len(streams), frames, *w.shape[2:])
                if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != w.dtype or not a.flags.writeable:
                    got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                    raise ConfigError(
                        f"SyntheticVideo.batch_many: out.{name} must be a writeable {w.dtype} array of shape "
                        f"{shape}, got {got}"
                    )
        fast: list[int] = []  # rows served by the stacked generation
        key: tuple | None = None
        seen: set[int] = set()
        for i, s in enumerate(streams):
            if id(s) in seen or not isinstance(s, SyntheticVideo) or not s._at_chunk_boundary():
                continue
            seen.add(id(s))
            k = s._model_key()
            if key is None:
                key = k
            if k == key:
                fast.append(i)
        if fast:
            model = streams[fast[0]]
            assert isinstance(model, SyntheticVideo)
            if len(fast) == len(streams):
                model._batch_stacked(streams, frames, _arrays(out))  # type: ignore[arg-type]
            else:
                part = _empty_arrays((len(fast), frames), e)
                model._batch_stacked([streams[i] for i in fast], frames, part)  # type: ignore[misc]
                for dst, src in zip(_arrays(out), part):
                    dst[fast] = src
        done = set(fast)
        for i, s in enumerate(streams):  # the rest, in order (a repeated stream continues where it was)
            if i not in done:
                for dst, src in zip(_arrays(out), _arrays(s.batch(frames))):
                    dst[i] = src
        return out

    def _at_chunk_boundary(self) -> bool:
        """True when the next frame starts a new chunk (fresh stream, or every frame of the last chunk served)."""
        return self._buf is None or self._pos >= len(self._buf)

    def _model_key(self) -> tuple:
        """What the generation reads besides the stream state: equal keys ⇒ one stacked generation serves both
        streams. Model constants overridden on an instance (not on a subclass) make the key unique to it."""
        attrs = vars(self)
        own = () if _CONSTANTS.isdisjoint(attrs) else tuple(sorted((k, repr(attrs[k])) for k in attrs if k.isupper()))
        return (type(self), self.accuracies, self.mean_scene_frames, self.drift, self.feature_noise, own)

    def _batch_stacked(self, streams: list[SyntheticVideo], frames: int, out: Sequence[np.ndarray]) -> None:
        """``out[s] = streams[s].batch(frames)`` (arrays in :data:`_FIELDS` order) for distinct streams at a chunk
        boundary that share ``self``'s model, in blocks of ``_BLOCK`` streams, one chunk at a time; the streams
        end up where ``batch`` leaves them."""
        n_chunks, rem = divmod(frames, _CHUNK)
        scratch: dict = {}  # the draw buffers, reused from block to block
        for lo in range(0, len(streams), _BLOCK):
            hi = min(lo + _BLOCK, len(streams))
            block = streams[lo:hi]
            for j in range(n_chunks):
                self._fill(block, _CHUNK, [a[lo:hi, j * _CHUNK : (j + 1) * _CHUNK] for a in out], scratch)
            for s in block:
                s._buf, s._pos = None, 0  # as good as a fully served chunk: the next read generates a new one
            if rem:  # a whole chunk more, of which `rem` frames are served; the streams keep it as their buffer
                tail = _empty_arrays((hi - lo, _CHUNK), self.n_exits)
                self._fill(block, _CHUNK, tail, scratch)
                for dst, src in zip(out, tail):
                    dst[lo:hi, n_chunks * _CHUNK :] = src[:, :rem]
                for k, s in enumerate(block):
                    s._buf, s._pos = FrameBatch(*(a[k] for a in tail)), rem

    # -- generation -----------------------------------------------------------------------------------------

    def _generate(self, n: int) -> FrameBatch:
        """Generate the next ``n`` frames of the stream and advance the stream state."""
        arrays = _empty_arrays((n,), self.n_exits)
        self._fill([self], n, [a[None] for a in arrays])
        return FrameBatch(*arrays)

    def _draws(self) -> tuple[_Draw, ...]:
        """The model's random draws for a chunk, in the order every stream makes them."""
        e, fn = self.n_exits, self.feature_noise
        return (
            _Draw("cut", False, None, 0.0),  # a scene cut where below 1 / mean_scene_frames
            _Draw("fresh", False, None, 0.0),  # the difficulty at a cut
            _Draw("steps", True, None, self.drift),  # the difficulty step within a scene
            _Draw("shared", True, None, self.SHARED_NOISE),
            _Draw("own", True, e, self.EXIT_NOISE),
            _Draw("conf_noise", True, e, self.CONF_LOGIT_SD),
            _Draw("noise", True, N_FEATURES + 1, fn),  # feature noise; the last column: shared change noise
            _Draw("strength", False, None, 0.0),  # the strength of a cut
            _Draw("change_noise", True, e, self.CHANGE_EXIT_NOISE * fn),
        )

    def _fill(
        self, streams: Sequence[SyntheticVideo], n: int, out: Sequence[np.ndarray], scratch: dict | None = None
    ) -> None:
        """Generate the next ``n`` frames of each of ``streams`` into ``out`` (arrays in :data:`_FIELDS` order,
        shape ``(len(streams), n, …)``, views allowed) and advance the streams' states (not their chunk buffers).

        The streams share ``self``'s model; each makes the draws of :meth:`_draws` from its own generator (see
        :func:`_draw_stacked`, with ``scratch``), then :meth:`_frames_from_draws` computes the frames of all of
        them at once.
        """
        s_n = len(streams)
        draws = _draw_stacked([s._rng for s in streams], n, self, scratch)  # type: ignore[misc]
        d_prev = np.empty(s_n)
        scene0 = np.empty(s_n, np.int64)
        index0 = np.empty(s_n, np.int64)
        first: list[int] = []
        for i, s in enumerate(streams):
            if s._d_prev is None:
                first.append(i)
                d_prev[i] = 0.0
            else:
                d_prev[i] = s._d_prev
            scene0[i], index0[i] = s._scene, s._next_index
        self._frames_from_draws(draws, d_prev, first, scene0, index0, out)
        d_last, scene_last = out[6][:, -1].tolist(), out[1][:, -1].tolist()
        for i, s in enumerate(streams):
            s._d_prev, s._scene, s._next_index = d_last[i], scene_last[i], s._next_index + n

    def _frames_from_draws(
        self,
        draws: dict[str, np.ndarray],
        d_prev: np.ndarray,
        first: list[int],
        scene0: np.ndarray,
        index0: np.ndarray,
        out: Sequence[np.ndarray],
    ) -> None:
        """The model's arithmetic (the class docstring's formulas), once over ``S`` streams of ``n`` frames: one
        compiled loop (:func:`_k_frames`) over streams and frames.

        Every value is computed by the same IEEE operations on the same operands whatever ``S`` (elementwise
        operations, and sums along the frame axis in frame order), so a stream's frames do not depend on the
        streams computed with it.

        Args:
            draws: per entry of :meth:`_draws`, ``(S, n, cols)``, or ``(S, n)`` where ``cols`` is None
                (uniforms, and normals already scaled).
            d_prev: ``(S,)`` difficulty of each stream's previous frame (0 where there is none).
            first: the streams (row numbers) whose first frame this is (a cut, with no feature change).
            scene0, index0: ``(S,)`` int64: scene id of the previous frame (−1 at the start) and index of the
                first frame.
            out: ``(S, n, …)`` arrays to write, in :data:`_FIELDS` order (views allowed).
        """
        first_mask = np.zeros(d_prev.shape[0], np.bool_)
        first_mask[first] = True
        lo, hi = math.log(self.CONF_MIN / (1.0 - self.CONF_MIN)), math.log(self.CONF_MAX / (1.0 - self.CONF_MAX))
        consts = np.array([
            1.0 / self.mean_scene_frames, -self.CONF_GAIN, -self.CONF_BIAS, -hi, -lo,
            self.EDGE_BASE, self.EDGE_GAIN, self.EDGE_NOISE,
            self.MOTION_BASE, self.MOTION_GAIN, self.MOTION_CUT_BASE, self.MOTION_CUT_SPAN,
            self.CONTRAST_BASE, self.CONTRAST_GAIN, self.CONTRAST_NOISE,
            self.CHANGE_BASE, self.CHANGE_GAIN, self.CHANGE_CUT_BASE, self.CHANGE_CUT_SPAN,
            self.TEMPORAL_FEATURE_NOISE,
        ])
        _frames_kernel()(
            draws["cut"], draws["fresh"], draws["steps"], draws["shared"], draws["own"], draws["conf_noise"],
            draws["noise"], draws["strength"], draws["change_noise"], np.asarray(d_prev, np.float64), first_mask,
            np.asarray(scene0, np.int64), np.asarray(index0, np.int64), self.thresholds, consts, *out,
        )


def _k_frames(
    cut_u: np.ndarray, fresh: np.ndarray, steps: np.ndarray, shared: np.ndarray, own: np.ndarray,
    conf_noise: np.ndarray, noise: np.ndarray, strength: np.ndarray, change_noise: np.ndarray, d_prev: np.ndarray,
    first: np.ndarray, scene0: np.ndarray, index0: np.ndarray, thresholds: np.ndarray, c: np.ndarray,
    index: np.ndarray, scene: np.ndarray, features: np.ndarray, correct: np.ndarray, confidence: np.ndarray,
    feature_change: np.ndarray, difficulty: np.ndarray,
) -> None:
    """:meth:`SyntheticVideo._frames_from_draws` as one loop over streams and frames (compiled by numba; see
    :func:`_frames_kernel`). ``c`` holds the model's constants in the order that method packs them. Each value is
    the IEEE operation sequence of the model's formulas, in the order the NumPy version computed them."""
    s_n, n = cut_u.shape
    e = thresholds.shape[0]
    nf = noise.shape[2] - 1  # the feature noises; the last column is the shared change noise
    inv_scene, neg_gain, neg_bias, z_lo, z_hi = c[0], c[1], c[2], c[3], c[4]
    tn = c[19]
    for s in range(s_n):
        csum = 0.0
        base = -d_prev[s]  # the walk before the chunk's first cut continues from the previous frame
        d_last = d_prev[s]
        sc = scene0[s]
        for t in range(n):
            fresh_start = t == 0 and first[s]
            cut = cut_u[s, t] < inv_scene or fresh_start
            a = fresh[s, t] if cut else steps[s, t]
            csum = a if t == 0 else csum + a
            if cut:
                base = csum - a
                sc += 1
            v = csum - base
            m = math.floor(v * 0.5) * -2.0 + v  # v mod 2, rounded once
            d = 2.0 - m if m > 1.0 else m  # folded onto [0, 1] (a triangle wave)
            delta = abs(d - d_last)
            d_last = d
            difficulty[s, t] = d
            scene[s, t] = sc
            index[s, t] = index0[s] + t
            x = d + shared[s, t]
            for k in range(e):
                z = (thresholds[k] - x) - own[s, t, k]
                correct[s, t, k] = z > 0.0
                z = z * neg_gain + neg_bias
                z = min(max(z, z_lo), z_hi) - conf_noise[s, t, k]
                confidence[s, t, k] = np.float32(1.0 / (math.exp(z) + 1.0))
            edge = c[6] * d + c[5] + c[7] * noise[s, t, 0]
            motion = (c[10] + c[11] * strength[s, t]) if cut else (c[9] * delta + c[8])
            motion = motion + tn * noise[s, t, 1]
            contrast = c[13] * d + c[12] + c[14] * noise[s, t, 2]
            features[s, t, 0] = np.float32(min(max(edge, 0.0), 1.0))
            features[s, t, 1] = np.float32(min(max(motion, 0.0), 1.0))
            features[s, t, 2] = np.float32(min(max(contrast, 0.0), 1.0))
            ch = (c[17] + c[18] * strength[s, t]) if cut else (c[16] * delta + c[15])
            ch = ch + tn * noise[s, t, nf]
            for k in range(e):
                v_k = 0.0 if fresh_start else ch + change_noise[s, t, k]
                feature_change[s, t, k] = np.float32(min(max(v_k, 0.0), 1.0))


#: :func:`_k_frames` compiled (on first use).
_frames_kernel = lazy_kernel(_k_frames)


class _Draw(NamedTuple):
    """One of the model's random draws per chunk (see ``SyntheticVideo._draws``)."""

    name: str
    normal: bool  # a normal of standard deviation sd (Box–Muller, see _draw_stacked) if true, else uniform on [0, 1)
    cols: int | None  # numbers per frame, in a last axis; None: one, no such axis
    sd: float  # the normal's standard deviation


_BLOCK = 16  # streams per stacked generation in batch_many (a block's draws stay in cache)
_FIELDS = ("index", "scene", "features", "correct", "confidence", "feature_change", "difficulty")
_LAYOUTS: dict[tuple, tuple] = {}
#: The model constants (class attributes) the generation reads.
_CONSTANTS = frozenset(k for k in vars(SyntheticVideo) if k.isupper())
_RANDOM = np.random.Generator.random
_F32_ONE, _F32_MINUS_TWO, _F32_TWO_PI = np.float32(1.0), np.float32(-2.0), np.float32(2.0 * math.pi)


def _arrays(frames: FrameBatch | StackedFrames) -> list[np.ndarray]:
    """The arrays of ``frames`` in :data:`_FIELDS` order."""
    return [getattr(frames, f) for f in _FIELDS]


def _empty_arrays(lead: tuple[int, ...], n_exits: int) -> list[np.ndarray]:
    """Uninitialised arrays in :data:`_FIELDS` order for frames of shape ``lead`` (``(T,)`` or ``(S, T)``)."""
    e = n_exits
    return [
        np.empty(lead, np.int64),
        np.empty(lead, np.int64),
        np.empty((*lead, N_FEATURES), np.float32),
        np.empty((*lead, e), bool),
        np.empty((*lead, e), np.float32),
        np.empty((*lead, e), np.float32),
        np.empty(lead, np.float64),
    ]


def _draw_stacked(
    rngs: Sequence[np.random.Generator], n: int, model: SyntheticVideo, scratch: dict | None = None
) -> dict[str, np.ndarray]:
    """Each generator's draws of ``model._draws()`` for ``n`` frames, into stacked buffers: per entry of the
    spec, ``(len(rngs), n, cols)``, or ``(len(rngs), n)`` where ``cols`` is None.

    The uniforms (float64, ``Generator.random``) go to one buffer; consecutive draws of one kind are one call (a
    generator gives the same numbers either way). The normals are the **Box–Muller transform of float32
    uniforms** (``Generator.random(dtype=float32)``, drawn in the same order): of a stream's ``2h`` uniforms
    ``u`` (the last run drawn one longer when the count is odd), normal ``j < h`` is ``r_j · cos(2π u_{h+j})``
    and normal ``h + j`` is ``r_j · sin(2π u_{h+j})``, with ``r_j = sqrt(−2 ln(1 − u_j))``, computed in float32
    over all streams at once, then scaled by the draw's standard deviation in float64. On this project's 2-core
    machine that is 2.9 ns a normal against 9.4 ns for ``Generator.standard_normal`` (ziggurat), two thirds of a
    refill (``benchmarks/synthetic_speed.py``); the 24-bit uniforms bound the normals at |z| <= 5.77 (a tail
    of probability 8e-9 is cut), and NumPy's float32 ``log``/``cos``/``sin`` may round differently on another
    CPU, so a seed gives the same stream on one machine (and in every env mode), not bit for bit on every
    machine. With a ``scratch`` dict, the buffers are kept there and reused by the next call given it (the
    returned views are then valid until that call): fresh large buffers cost a page fault per 4 KiB when the
    allocator maps them anew.
    """
    m = model
    key = (n, m.n_exits, m.drift, m.feature_noise, m.SHARED_NOISE, m.EXIT_NOISE, m.CONF_LOGIT_SD, m.CHANGE_EXIT_NOISE)
    layout = _LAYOUTS.get(key)
    if layout is None:
        if len(_LAYOUTS) > 64:
            _LAYOUTS.clear()
        spec = m._draws()
        width = [0, 0]  # columns of the uniform and of the normal buffer
        views = []  # per entry: (name, buffer, first column, columns, numbers per frame)
        runs: list[list] = []  # [buffer, first column, end column] per run of consecutive draws of one kind
        for d in spec:
            b, size = int(d.normal), n * (d.cols or 1)
            views.append((d.name, b, width[b], size, d.cols))
            if runs and runs[-1][0] == b:
                runs[-1][2] += size
            else:
                runs.append([b, width[b], width[b] + size])
            width[b] += size
        normals = width[1]
        if normals % 2:  # Box–Muller makes normals in pairs: one more uniform, at the end of the last run
            runs[max(i for i, r in enumerate(runs) if r[0] == 1)][2] += 1
            width[1] += 1
        scale = np.zeros(width[1])  # the padding normal is scaled to 0 (nothing reads it)
        scale[:normals] = np.repeat([d.sd for d in spec if d.normal], [n * (d.cols or 1) for d in spec if d.normal])
        scale.setflags(write=False)
        layout = _LAYOUTS[key] = (tuple(width), tuple(views), tuple(tuple(r) for r in runs), scale)
    width, views, runs, scale = layout
    s_n, h = len(rngs), width[1] // 2
    bufs = scratch.get(key) if scratch is not None else None
    if bufs is None or bufs[0].shape[0] < s_n:
        bufs = (np.empty((s_n, width[0])), np.empty((s_n, width[1])), np.empty((s_n, width[1]), np.float32),
                np.empty((s_n, h), np.float32))
        if scratch is not None:
            scratch[key] = bufs
    uni, g, u, r = (a[:s_n] for a in bufs)
    calls = [(uni if b == 0 else u, np.float64 if b == 0 else np.float32, lo, hi) for b, lo, hi in runs]
    for i, rng in enumerate(rngs):
        for buf, dtype, lo, hi in calls:
            _RANDOM(rng, out=buf[i, lo:hi], dtype=dtype)
    # Box–Muller in float32 (see above); the uniforms' buffer takes the normals.
    u1, u2 = u[:, :h], u[:, h:]
    np.subtract(_F32_ONE, u1, out=r)  # in (0, 1]: the logarithm is finite
    np.log(r, out=r)
    np.multiply(r, _F32_MINUS_TWO, out=r)
    np.sqrt(r, out=r)
    np.multiply(u2, _F32_TWO_PI, out=u2)
    np.cos(u2, out=u1)
    np.sin(u2, out=u2)
    np.multiply(u1, r, out=u1)
    np.multiply(u2, r, out=u2)
    np.copyto(g, u)  # to float64, then scaled there (a float32 × float64 ufunc casts through a slow buffer)
    np.multiply(g, scale, out=g)
    return {
        name: (uni if b == 0 else g)[:, lo : lo + size] if cols is None
        else (uni if b == 0 else g)[:, lo : lo + size].reshape(s_n, n, cols)
        for name, b, lo, size, cols in views
    }

