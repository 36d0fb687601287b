"""E4's attention-based early-exit cascade: predict a frame's earliest correct exit from frame complexity.

E4 (Zhang, Zhao, Liu; SenSys 2023 poster, AAAI 2025) reads how complex the incoming frames are and picks
the exit before the frame runs. This module is that predictor, rebuilt from the public description:

* **Causal inputs.** Per frame the cascade reads only what exists before the frame runs: its pre-inference
  complexity features (:data:`~e4gym.workload.base.COMPLEXITY_FEATURES`, from pixels) and the previous
  frame's post-inference figures at the exit it left at: that exit, its confidence and its ``feature_change``
  (:data:`~e4gym.workload.base.POST_INFERENCE_FIGURES`, which the running system knows).
* **Window and accumulated feature pooling.** The policy keeps these inputs for the last ``window`` frames
  (:class:`FeatureWindow`). Frames before the most recent scene cut are masked out: a cut is a frame whose
  pre-inference ``motion`` is at least ``cut_threshold`` (ASSUMPTION, see :data:`CUT_THRESHOLD`). Over the
  unmasked frames it pools the features the way FrameExit (Ghodrati et al., CVPR 2021; cited by E4) pools
  backbone features across frames: an element-wise running *max*, and, since complexity features are noisy
  measurements of one slowly drifting quantity, also the running *mean*.
* **Attention.** Each frame of the window is embedded (its inputs, its age in the window); the
  current frame's embedding is the query of a multi-head attention over the unmasked window
  (:class:`CascadeNet`). The attended vector, the current frame's embedding and the pooled features go
  through a small MLP to logits over ``n_exits + 1`` classes: "exit ``e`` is the earliest correct one" for
  each exit, and "no exit is correct".
* **Training** (:func:`train_cascade`): offline, on labelled frame streams (the env's workload with seeds
  the benchmark never uses), by cross-entropy, with Adam. Labels are each frame's earliest correct exit,
  which offline data has and a running policy never sees.

The cascade only predicts; :class:`agents.e4.policy.E4Policy` turns the prediction into an exit with the
energy of each exit (from the just-in-time profiler) and an accuracy budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from e4gym.errors import ConfigError
from e4gym.workload.base import COMPLEXITY_FEATURES, N_FEATURES, FrameSource

#: ASSUMPTION: a frame whose pre-inference ``motion`` (mean absolute grey difference to the previous frame)
#: reaches this value starts a new scene, and the window forgets the frames before it. On the synthetic video
#: within-scene motion exceeds it on about 0.2 % of frames and cuts never fall below it (its ``MOTION_*``
#: coefficients); nothing published fixes it for real video, where cuts usually move less (tune it, e.g. to
#: about 0.1–0.2 for recorded traces).
CUT_THRESHOLD = 0.4

#: Default number of recent frames the cascade attends over (about half a second at 30 fps): ASSUMPTION.
DEFAULT_WINDOW = 16

#: Format tag of :meth:`Cascade.save` files. Version 2: causal inputs (3 pre-inference features + the previous
#: frame's confidence and feature change); version-1 files read frame t's own feature change and are refused.
CASCADE_FORMAT = "e4gym-e4-cascade-2"
_OLD_FORMATS = ("e4gym-e4-cascade-1",)

_MOTION = COMPLEXITY_FEATURES.index("motion")
_PREV_CONF = N_FEATURES  # column of the previous frame's confidence in an input row
_PREV_CHANGE = N_FEATURES + 1  # column of the previous frame's feature change
_PREV_EXIT = N_FEATURES + 2  # first column of the previous exit's one-hot


def input_width(n_exits: int) -> int:
    """Width of a frame's input row: the 3 pre-inference features, the previous frame's confidence and feature
    change at its exit, and that exit one-hot (``n_exits`` columns)."""
    return N_FEATURES + 2 + n_exits


@dataclass
class FeatureWindow:
    """The last ``size`` frames' inputs and which of them belong to the current scene.

    A frame's input row (:func:`input_width` columns) is ``[edge_density, motion, contrast, prev_conf,
    prev_feature_change, one-hot prev_exit]``: its pre-inference features and the previous frame's result as
    the policy saw it (the exit it left at, that exit's confidence and feature change; all zero for the first
    frame of an episode). ``push(...)`` adds a frame (the current one); :meth:`arrays` gives the network's
    inputs. The window starts empty after :meth:`clear` (an episode start).
    """

    size: int = DEFAULT_WINDOW
    n_exits: int = 5
    cut_threshold: float = CUT_THRESHOLD
    _feat: np.ndarray = field(init=False, repr=False)
    _mask: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"window must be an integer >= 1 (frames), got {self.size!r}")
        self.clear()

    def clear(self) -> None:
        """Forget every frame (call at an episode start)."""
        self._feat = np.zeros((self.size, input_width(self.n_exits)), np.float32)
        self._mask = np.zeros(self.size, bool)

    def push(self, features: np.ndarray, prev_exit: int = -1, prev_conf: float = 0.0,
             prev_feature_change: float = 0.0) -> None:
        """Add the current frame.

        Args:
            features: its pre-inference features, shape ``(3,)``, order of ``COMPLEXITY_FEATURES``.
            prev_exit: the exit the previous frame left at (``-1``: none, at an episode start; the two figures
                below are then ignored).
            prev_conf: that exit's confidence on the previous frame, in [0, 1].
            prev_feature_change: that exit's ``feature_change`` on the previous frame, in [0, 1].

        Raises:
            ConfigError: ``features`` does not have 3 values or ``prev_exit`` is not in ``-1 … n_exits − 1``.
        """
        f = np.asarray(features, np.float32).reshape(-1)
        if f.shape != (N_FEATURES,):
            raise ConfigError(f"FeatureWindow.push: features must have {N_FEATURES} values {COMPLEXITY_FEATURES}, "
                              f"got shape {np.shape(features)}")
        if not -1 <= int(prev_exit) < self.n_exits:
            raise ConfigError(f"FeatureWindow.push: prev_exit must be -1 (none) or an exit in 0..{self.n_exits - 1}, "
                              f"got {prev_exit!r}")
        self._feat = np.roll(self._feat, -1, axis=0)
        self._mask = np.roll(self._mask, -1)
        self._feat[-1] = 0.0
        self._feat[-1, :N_FEATURES] = f
        if prev_exit >= 0:
            self._feat[-1, _PREV_CONF] = prev_conf
            self._feat[-1, _PREV_CHANGE] = prev_feature_change
            self._feat[-1, _PREV_EXIT + int(prev_exit)] = 1.0
        if f[_MOTION] >= self.cut_threshold:
            self._mask[:] = False  # a cut: the frames before it are another scene
        self._mask[-1] = True

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs (size, width), mask (size,))``: oldest first; the last row is the current frame."""
        return self._feat, self._mask


def input_rows(features: np.ndarray, prev_exit: np.ndarray, prev_conf: np.ndarray,
               prev_feature_change: np.ndarray, n_exits: int) -> np.ndarray:
    """Input rows ``(T, width)`` of consecutive frames (see :class:`FeatureWindow`).

    Args:
        features: ``(T, 3)`` pre-inference features of each frame.
        prev_exit: ``(T,)`` the exit the frame before each frame left at (-1: none).
        prev_conf / prev_feature_change: ``(T,)`` that exit's confidence / feature change on the frame before.
        n_exits: exits of the network.
    """
    t_len = len(features)
    rows = np.zeros((t_len, input_width(n_exits)), np.float32)
    rows[:, :N_FEATURES] = features
    prev_exit = np.asarray(prev_exit)
    has = prev_exit >= 0
    rows[has, _PREV_CONF] = np.asarray(prev_conf)[has]
    rows[has, _PREV_CHANGE] = np.asarray(prev_feature_change)[has]
    rows[np.flatnonzero(has), _PREV_EXIT + prev_exit[has]] = 1.0
    return rows


def window_arrays(rows: np.ndarray, size: int = DEFAULT_WINDOW,
                  cut_threshold: float = CUT_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """The :class:`FeatureWindow` inputs of every frame of a stream at once (for training).

    Args:
        rows: ``(T, width)`` input rows (:func:`input_rows`) of consecutive frames of one stream (its first
            frame starts the window).

    Returns:
        ``(windows (T, size, width), masks (T, size))``, identical to pushing the frames one by one into a
        fresh :class:`FeatureWindow` and reading :meth:`FeatureWindow.arrays` after each push.
    """
    f = np.asarray(rows, np.float32)
    t_len = len(f)
    idx = np.arange(t_len)[:, None] + np.arange(-size + 1, 1)[None, :]  # (T, size): frame index of each slot
    valid = idx >= 0
    win = np.where(valid[..., None], f[np.clip(idx, 0, None)], 0.0).astype(np.float32)
    cut = f[:, _MOTION] >= cut_threshold
    # Index of the latest cut at or before each frame (-1: none since the stream started).
    last_cut = np.maximum.accumulate(np.where(cut, np.arange(t_len), -1))
    mask = valid & (idx >= np.maximum(last_cut, 0)[:, None])
    return win, mask


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function (Abramowitz & Stegun 7.1.26, absolute error < 1.5e-7), vectorised."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t \
        * np.exp(-a * a)
    return sign * y


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, ``x·Φ(x)`` (torch's default), in NumPy."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class CascadeNet(nn.Module):
    """Attention over the recent frames of a scene → logits of the earliest correct exit (``n_exits + 1``).

    Args:
        n_exits: exits of the multi-exit network (the last class is "none correct").
        window: frames in the window. dim: embedding width. heads: attention heads.
    """

    def __init__(self, n_exits: int, window: int = DEFAULT_WINDOW, dim: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.n_exits, self.window, self.dim = n_exits, window, dim
        width = input_width(n_exits)
        self.embed = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim))
        self.age = nn.Parameter(torch.zeros(window, dim))  # learned embedding of the position in the window
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(2 * dim + 2 * width + 1, 64), nn.GELU(), nn.Linear(64, n_exits + 1),
        )

    def forward(self, windows: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_exits + 1)`` from windows ``(B, window, width)`` and masks ``(B, window)`` (True: use)."""
        x = self.embed(windows) + self.age
        query = x[:, -1:, :]
        attended, _ = self.attn(query, x, x, key_padding_mask=~masks, need_weights=False)
        m = masks.unsqueeze(-1).to(windows.dtype)
        n = m.sum(dim=1).clamp(min=1.0)
        mean_pool = (windows * m).sum(dim=1) / n
        max_pool = torch.where(masks.unsqueeze(-1), windows, torch.full_like(windows, -1.0)).amax(dim=1)
        scene_len = n / self.window
        z = torch.cat([attended[:, 0], query[:, 0], mean_pool, max_pool, scene_len], dim=-1)
        return self.head(z)


@dataclass
class Cascade:
    """A trained :class:`CascadeNet` with what it was trained for; :meth:`predict` gives class probabilities.

    Attributes:
        net: the network (eval mode). n_exits / window / cut_threshold: its input layout (``cut_threshold``
            applies to the current frame's ``motion``).
        model_name: the multi-exit network whose exits it predicts (checked by the policy).
        val_accuracy: top-1 accuracy of the predicted class on the validation stream (fraction).
    """

    net: CascadeNet
    n_exits: int
    window: int
    cut_threshold: float
    model_name: str
    val_accuracy: float = math.nan

    def predict(self, windows: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, n_exits + 1)`` (last column: no exit correct) for windows ``(B, window, width)``."""
        with torch.no_grad():
            logits = self.net(torch.from_numpy(np.ascontiguousarray(windows, np.float32)),
                              torch.from_numpy(np.ascontiguousarray(masks, bool)))
            return torch.softmax(logits, dim=-1).numpy().astype(np.float64)

    def predict_one(self, window: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Probabilities ``(n_exits + 1,)`` for one window ``(window, width)`` and mask ``(window,)``: the same
        network as :meth:`predict`, in NumPy (no torch dispatch: about 20x faster for one frame, which is what
        a governor decides per frame). Matches :meth:`predict` to about 1e-6."""
        w = self._numpy_weights()
        x = np.asarray(window, np.float64)
        m = np.asarray(mask, bool)
        h = _gelu(x @ w["e0w"] + w["e0b"]) @ w["e1w"] + w["e1b"] + w["age"]  # (window, dim)
        q = h[-1] @ w["qw"] + w["qb"]
        k = h @ w["kw"] + w["kb"]
        v = h @ w["vw"] + w["vb"]
        heads, dim = w["heads"], self.net.dim
        hd = dim // heads
        out = np.empty(dim)
        for i in range(heads):
            sl = slice(i * hd, (i + 1) * hd)
            score = (k[:, sl] @ q[sl]) / math.sqrt(hd)
            score = np.where(m, score, -np.inf)
            score = np.exp(score - score.max())
            out[sl] = (score / score.sum()) @ v[:, sl]
        attended = out @ w["ow"] + w["ob"]
        n = max(float(m.sum()), 1.0)
        mean_pool = (x * m[:, None]).sum(axis=0) / n
        max_pool = np.where(m[:, None], x, -1.0).max(axis=0)
        z = np.concatenate([attended, h[-1], mean_pool, max_pool, [n / self.window]])
        logits = _gelu(z @ w["h0w"] + w["h0b"]) @ w["h1w"] + w["h1b"]
        e = np.exp(logits - logits.max())
        return e / e.sum()

    def _numpy_weights(self) -> dict:
        w = getattr(self, "_np_weights", None)
        if w is None:
            sd = {k: t.detach().double().numpy() for k, t in self.net.state_dict().items()}
            dim = self.net.dim
            ipw, ipb = sd["attn.in_proj_weight"], sd["attn.in_proj_bias"]
            w = {
                "e0w": sd["embed.0.weight"].T, "e0b": sd["embed.0.bias"],
                "e1w": sd["embed.2.weight"].T, "e1b": sd["embed.2.bias"], "age": sd["age"],
                "qw": ipw[:dim].T, "kw": ipw[dim:2 * dim].T, "vw": ipw[2 * dim:].T,
                "qb": ipb[:dim], "kb": ipb[dim:2 * dim], "vb": ipb[2 * dim:],
                "ow": sd["attn.out_proj.weight"].T, "ob": sd["attn.out_proj.bias"],
                "h0w": sd["head.0.weight"].T, "h0b": sd["head.0.bias"],
                "h1w": sd["head.2.weight"].T, "h1b": sd["head.2.bias"], "heads": self.net.attn.num_heads,
            }
            self._np_weights = w
        return w

    def predict_stream(self, rows: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Probabilities for every frame of a stream of input rows ``(T, width)`` (:func:`input_rows`), as the
        policy would see them one by one."""
        win, mask = window_arrays(rows, self.window, self.cut_threshold)
        return np.concatenate([self.predict(win[i:i + batch], mask[i:i + batch])
                               for i in range(0, len(win), batch)]) if len(win) else np.zeros((0, self.n_exits + 1))

    def save(self, path: str | Path) -> Path:
        """Write the weights and layout to ``path`` (a ``torch.save`` file); returns the path."""
        from e4gym.io import atomic_write

        path = Path(path)
        data = {"format": CASCADE_FORMAT, "state_dict": self.net.state_dict(), "n_exits": self.n_exits,
                "window": self.window, "cut_threshold": self.cut_threshold, "dim": self.net.dim,
                "model_name": self.model_name, "val_accuracy": self.val_accuracy}
        atomic_write(path, lambda f: torch.save(data, f))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Cascade:
        """Read a cascade written by :meth:`save`.

        Raises:
            ConfigError: the file is missing, not a cascade file, saved by an older version with other inputs
                (``e4gym-e4-cascade-1``), or its weights do not fit the layout.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"E4 cascade file {path} does not exist (train one with agents.e4.train_cascade)")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a corrupt file
            raise ConfigError(f"{path} is not a readable E4 cascade file ({type(exc).__name__}: {exc})") from None
        fmt = data.get("format") if isinstance(data, dict) else None
        if fmt in _OLD_FORMATS:
            raise ConfigError(
                f"{path} is an E4 cascade of format {fmt!r}, whose inputs included each frame's own feature change "
                f"(known only after the frame ran); this version ({CASCADE_FORMAT!r}) reads causal inputs. Retrain "
                f"it with agents.e4.train_cascade (or let E4Policy train one) and save it again"
            )
        if fmt != CASCADE_FORMAT:
            raise ConfigError(f"{path} is not an E4 cascade file (no {CASCADE_FORMAT!r} format tag)")
        net = CascadeNet(int(data["n_exits"]), int(data["window"]), int(data["dim"]))
        try:
            net.load_state_dict(data["state_dict"])
        except RuntimeError as exc:
            raise ConfigError(f"{path}: the weights do not fit the cascade's layout: {exc}") from None
        net.eval()
        return cls(net, int(data["n_exits"]), int(data["window"]), float(data["cut_threshold"]),
                   str(data["model_name"]), float(data["val_accuracy"]))


def stream_data(make_source: Callable[[], FrameSource], seed: int, frames: int,
                n_exits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One labelled stream: ``(input rows (T, width), earliest correct exit (T,), correct (T, n_exits))``.

    Row t holds frame t's pre-inference features and frame t−1's confidence and feature change at frame t−1's
    exit. That exit is drawn uniformly at random (from ``seed``), so the cascade learns to read any exit's
    figures, not one policy's habits. Nothing of frame t's own pass enters row t (the labels come from it).
    """
    src = make_source()
    src.reset(seed=seed)
    b = src.batch(frames)
    rng = np.random.default_rng(seed)
    prev_exit = np.concatenate([[-1], rng.integers(0, n_exits, max(frames - 1, 0))]).astype(np.int64)[:frames]
    prev_conf = np.zeros(frames, np.float32)
    prev_change = np.zeros(frames, np.float32)
    rows_before = np.arange(frames - 1)
    prev_conf[1:] = b.confidence[rows_before, prev_exit[1:]]
    prev_change[1:] = b.feature_change[rows_before, prev_exit[1:]]
    rows = input_rows(b.features, prev_exit, prev_conf, prev_change, n_exits)
    return rows, b.earliest_correct, b.correct


def train_cascade(
    make_source: Callable[[], FrameSource],
    n_exits: int,
    model_name: str,
    *,
    streams: int = 8,
    frames_per_stream: int = 4000,
    epochs: int = 6,
    window: int = DEFAULT_WINDOW,
    cut_threshold: float = CUT_THRESHOLD,
    seed: int = 0,
    batch_size: int = 256,
    lr: float = 3e-3,
    progress: Callable[[int, int, float], None] | None = None,
) -> Cascade:
    """Train a :class:`CascadeNet` offline on labelled frame streams.

    Args:
        make_source: builds a fresh frame source (e.g. ``EnvSetup.make_source``); streams are drawn from
            seeds ``10_000 + seed·100 + i`` so they never coincide with the benchmark's seeds (0, 1, 2, ...).
        n_exits / model_name: the multi-exit network's exit count and name.
        streams / frames_per_stream: training data (frames); one more stream of the same length validates.
        epochs / batch_size / lr: Adam training schedule. seed: torch and data seed.
        progress: called as ``progress(epoch, epochs, loss)`` after each epoch.

    Returns:
        The trained cascade (eval mode), with its top-1 accuracy on the validation stream.
    """
    if streams < 1 or frames_per_stream < window:
        raise ConfigError(f"train_cascade needs streams >= 1 and frames_per_stream >= window ({window}), "
                          f"got {streams} and {frames_per_stream}")
    base = 10_000 + 100 * seed
    wins, masks, labels = [], [], []
    for s in range(streams + 1):
        rows, e, _ = stream_data(make_source, base + s, frames_per_stream, n_exits)
        w, m = window_arrays(rows, window, cut_threshold)
        wins.append(w)
        masks.append(m)
        labels.append(np.minimum(e, n_exits))
    x, m, y = (np.concatenate(a[:-1]) for a in (wins, masks, labels))
    xv, mv, yv = wins[-1], masks[-1], labels[-1]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest and leaves the other cores to the harness
    try:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = CascadeNet(n_exits, window)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        steps = epochs * math.ceil(len(x) / batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        xt, mt, yt = torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(y.astype(np.int64))
        loss_fn = nn.CrossEntropyLoss()
        net.train()
        for ep in range(epochs):
            order = torch.randperm(len(xt), generator=gen)
            total = 0.0
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                loss = loss_fn(net(xt[idx], mt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            if progress is not None:
                progress(ep + 1, epochs, total / len(xt))
        net.eval()
        cascade = Cascade(net, n_exits, window, cut_threshold, model_name)
        pv = cascade.predict(xv, mv)
    finally:
        torch.set_num_threads(threads)
    cascade.val_accuracy = float(np.mean(pv.argmax(1) == yv))
    return cascade
