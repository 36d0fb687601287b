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
from typing import TYPE_CHECKING

import numpy as np

from e4gym.errors import ConfigError
from e4gym.workload.base import N_FEATURES, FrameBatch, FrameRecord, FrameSource, check_frames, check_seed

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

    Model (per frame t, all randomness from ``np.random.Generator(np.random.PCG64(seed))``):

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
    slowly drifting difficulty within scenes stands for. ASSUMPTIONS (class attributes, in one place):

    - ``mean_scene_s = 4.0`` s, ``drift = 0.02`` per frame, ``feature_noise = 0.1`` (constructor defaults);
    - difficulty marginal Uniform(0, 1), reflected Gaussian random walk within scenes, fresh draw at cuts;
    - ``SHARED_NOISE`` σ_s = 0.05 and ``EXIT_NOISE`` σ_i = 0.05 (about 2 % of frames then have non-nested
      correctness for EfficientNet-B0's exit accuracies 0.40 … 0.78; the share grows as accuracies get closer);
    - ``CONF_BIAS`` b = 0.5 (networks are over-confident: margin 0 gives mean confidence 0.62), ``CONF_GAIN``
      g = 10 per unit of margin, ``CONF_LOGIT_SD`` s = 0.6 (the spread of a Beta of concentration 10 at μ = 0.5);
    - the feature coefficients above (``EDGE_*``, ``CONTRAST_*``, ``MOTION_*``, ``CHANGE_*``,
      ``TEMPORAL_FEATURE_NOISE``), and ``CHANGE_EXIT_NOISE = 0.2`` (× ``feature_noise``): the exits' branch
      points see the same content change up to a small independent per-exit noise (sd 0.02 by default).

    ``next()`` is served from internally pre-generated chunks of frames, and :meth:`batch` draws from the same
    chunks, so the stream after ``reset(seed)`` is the same whichever mix of ``next()`` and ``batch()`` reads it.
    ``reset(None)`` starts a new stream (index 0, new scene) and keeps the generator running.

    :meth:`spawn` gives an independent copy (same parameters, own generator); :meth:`stream_key` is
    ``("synthetic", sha256 of the parameters, seed)``.
    """

    SHARED_NOISE = 0.05
    EXIT_NOISE = 0.05
    CONF_BIAS = 0.5
    CONF_GAIN = 10.0
    CONF_LOGIT_SD = 0.6
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
        feature_noise: float = 0.1,
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

    # -- generation -----------------------------------------------------------------------------------------

    def _generate(self, n: int) -> FrameBatch:
        """Generate the next ``n`` frames of the stream (vectorised) and advance the stream state."""
        rng = self._rng
        assert rng is not None
        e = self.n_exits
        idx = np.arange(n)

        # Scenes and difficulty.
        cut = rng.random(n) < 1.0 / self.mean_scene_frames
        if self._d_prev is None:
            cut[0] = True
        fresh = rng.random(n)
        steps = rng.normal(0.0, self.drift, n)
        a = np.where(cut, fresh, steps)
        cs = np.cumsum(a)
        last = np.maximum.accumulate(np.where(cut, idx, -1))
        start = last.clip(min=0)
        d_prev0 = 0.0 if self._d_prev is None else self._d_prev
        unfolded = np.where(last >= 0, cs - (cs[start] - a[start]), d_prev0 + cs)
        d = _fold(unfolded)
        prev = np.empty(n)
        prev[0] = d_prev0
        prev[1:] = d[:-1]
        delta = np.abs(d - prev)
        scene = self._scene + np.cumsum(cut, dtype=np.int64)

        # Correctness and confidence (latent threshold model).
        shared = rng.normal(0.0, self.SHARED_NOISE, n)
        own = rng.normal(0.0, self.EXIT_NOISE, (n, e))
        margin = self.thresholds[None, :] - (d + shared)[:, None] - own
        correct = margin > 0.0
        with np.errstate(over="ignore"):
            mu = 1.0 / (1.0 + np.exp(-(self.CONF_BIAS + self.CONF_GAIN * margin)))
        mu = mu.clip(self.CONF_MIN, self.CONF_MAX)
        logit = np.log(mu / (1.0 - mu)) + rng.normal(0.0, self.CONF_LOGIT_SD, (n, e))
        confidence = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

        # Pre-inference features (pixel statistics), then the post-inference feature change per exit.
        noise = rng.normal(0.0, self.feature_noise, (n, N_FEATURES + 1))  # the last column: shared change noise
        strength = rng.random(n)
        tn = self.TEMPORAL_FEATURE_NOISE
        feats = np.empty((n, N_FEATURES))
        feats[:, 0] = self.EDGE_BASE + self.EDGE_GAIN * d + self.EDGE_NOISE * noise[:, 0]
        feats[:, 1] = (
            np.where(
                cut,
                self.MOTION_CUT_BASE + self.MOTION_CUT_SPAN * strength,
                self.MOTION_BASE + self.MOTION_GAIN * delta,
            )
            + tn * noise[:, 1]
        )
        feats[:, 2] = self.CONTRAST_BASE + self.CONTRAST_GAIN * d + self.CONTRAST_NOISE * noise[:, 2]
        features = feats.clip(0.0, 1.0).astype(np.float32)
        change = (
            np.where(
                cut,
                self.CHANGE_CUT_BASE + self.CHANGE_CUT_SPAN * strength,
                self.CHANGE_BASE + self.CHANGE_GAIN * delta,
            )
            + tn * noise[:, N_FEATURES]
        )[:, None] + rng.normal(0.0, self.CHANGE_EXIT_NOISE * self.feature_noise, (n, e))
        if self._d_prev is None:
            change[0] = 0.0  # the first frame of the stream: no previous frame to compare with
        feature_change = change.clip(0.0, 1.0).astype(np.float32)

        out = FrameBatch(
            index=self._next_index + idx.astype(np.int64),
            scene=scene,
            features=features,
            correct=correct,
            confidence=confidence,
            feature_change=feature_change,
            difficulty=d,
        )
        self._d_prev = float(d[-1])
        self._scene = int(scene[-1])
        self._next_index += n
        return out
