"""E4's attention-based early-exit cascade: predict a frame's earliest correct exit from frame complexity.

E4 (Zhang, Zhao, Liu; SenSys 2023 poster, AAAI 2025) reads how complex the incoming frames are and picks
the exit before the frame runs. This module is that predictor, rebuilt from the public description:

* **Window and accumulated feature pooling.** The policy keeps the complexity features of the last ``window``
  frames, each with the previous frame's result (its exit and that exit's confidence, which the running
  system knows) (:class:`FeatureWindow`). Frames before the most recent scene cut are masked out: a cut is a frame
  whose ``feature_change`` is at least ``cut_threshold`` (ASSUMPTION, see :data:`CUT_THRESHOLD`). Over the
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
from e4gym.workload.base import N_FEATURES, FrameSource

#: ASSUMPTION: a frame whose ``feature_change`` (1 − cosine similarity of its pooled features with the
#: previous frame's) reaches this value starts a new scene, and the window forgets the frames before it. On
#: the synthetic video, within-scene changes stay below about 0.3 and cuts are above 0.45 (its
#: ``CHANGE_*`` coefficients); nothing published fixes it for real video.
CUT_THRESHOLD = 0.35

#: Default number of recent frames the cascade attends over (about half a second at 30 fps): ASSUMPTION.
DEFAULT_WINDOW = 16

_FEATURE_CHANGE = 3  # index of feature_change in COMPLEXITY_FEATURES


def input_width(n_exits: int) -> int:
    """Width of a frame's input row: 4 features, the previous exit's confidence, the previous exit one-hot."""
    return N_FEATURES + 1 + n_exits


@dataclass
class FeatureWindow:
    """The last ``size`` frames' inputs and which of them belong to the current scene.

    A frame's input row is its complexity features and the previous frame's result as the policy saw it:
    the confidence of the exit it left at and that exit (one-hot; all zero for the first frame of an
    episode). ``push(...)`` adds a frame (the current one); :meth:`arrays` gives the network's inputs. The
    window starts empty after :meth:`clear` (an episode start).
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

    def push(self, features: np.ndarray, prev_exit: int = -1, prev_confidence: float = 0.0) -> None:
        """Add the current frame: its features (shape ``(4,)``, order of ``COMPLEXITY_FEATURES``) and the
        previous frame's exit (``-1``: none, at an episode start) and that exit's confidence (in [0, 1])."""
        f = np.asarray(features, np.float32)
        self._feat = np.roll(self._feat, -1, axis=0)
        self._mask = np.roll(self._mask, -1)
        self._feat[-1] = 0.0
        self._feat[-1, :N_FEATURES] = f
        if prev_exit >= 0:
            self._feat[-1, N_FEATURES] = prev_confidence
            self._feat[-1, N_FEATURES + 1 + int(prev_exit)] = 1.0
        if f[_FEATURE_CHANGE] >= self.cut_threshold:
            self._mask[:] = False  # a cut: the frames before it are another scene
        self._mask[-1] = True

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs (size, width), mask (size,))``: oldest first; the last row is the current frame."""
        return self._feat, self._mask


def input_rows(features: np.ndarray, prev_exit: np.ndarray, prev_confidence: np.ndarray, n_exits: int) -> np.ndarray:
    """Input rows ``(T, width)`` of consecutive frames (see :class:`FeatureWindow`); ``prev_exit`` -1: none."""
    t_len = len(features)
    rows = np.zeros((t_len, input_width(n_exits)), np.float32)
    rows[:, :N_FEATURES] = features
    has = prev_exit >= 0
    rows[has, N_FEATURES] = prev_confidence[has]
    rows[np.flatnonzero(has), N_FEATURES + 1 + prev_exit[has]] = 1.0
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
    cut = f[:, _FEATURE_CHANGE] >= cut_threshold
    # Index of the latest cut at or before each frame (-1: none since the stream started).
    last_cut = np.maximum.accumulate(np.where(cut, np.arange(t_len), -1))
    mask = valid & (idx >= np.maximum(last_cut, 0)[:, None])
    return win, mask


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
        net: the network (eval mode). n_exits / window / cut_threshold: its input layout.
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

    def predict_stream(self, rows: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Probabilities for every frame of a stream of input rows ``(T, width)`` (:func:`input_rows`), as the
        policy would see them one by one."""
        win, mask = window_arrays(rows, self.window, self.cut_threshold)
        return np.concatenate([self.predict(win[i:i + batch], mask[i:i + batch])
                               for i in range(0, len(win), batch)]) if len(win) else np.zeros((0, self.n_exits + 1))

    def save(self, path: str | Path) -> Path:
        """Write the weights and layout to ``path`` (a ``torch.save`` file); returns the path."""
        from e4gym.bench._io import atomic_write

        path = Path(path)
        data = {"format": "e4gym-e4-cascade-1", "state_dict": self.net.state_dict(), "n_exits": self.n_exits,
                "window": self.window, "cut_threshold": self.cut_threshold, "dim": self.net.dim,
                "model_name": self.model_name, "val_accuracy": self.val_accuracy}
        atomic_write(path, lambda f: torch.save(data, f))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Cascade:
        """Read a cascade written by :meth:`save`.

        Raises:
            ConfigError: the file is missing, not a cascade file, or its weights do not fit the layout.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"E4 cascade file {path} does not exist (train one with agents.e4.train_cascade)")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a corrupt file
            raise ConfigError(f"{path} is not a readable E4 cascade file ({type(exc).__name__}: {exc})") from None
        if not isinstance(data, dict) or data.get("format") != "e4gym-e4-cascade-1":
            raise ConfigError(f"{path} is not an E4 cascade file (no 'e4gym-e4-cascade-1' format tag)")
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

    The previous frame's exit in each row is drawn uniformly at random (from ``seed``), with that exit's
    confidence, so the cascade learns to read any exit's confidence, not one policy's habits.
    """
    src = make_source()
    src.reset(seed=seed)
    b = src.batch(frames)
    rng = np.random.default_rng(seed)
    prev_exit = np.concatenate([[-1], rng.integers(0, n_exits, frames - 1)])
    prev_conf = np.zeros(frames, np.float32)
    prev_conf[1:] = b.confidence[np.arange(frames - 1), prev_exit[1:]]
    return input_rows(b.features, prev_exit, prev_conf, n_exits), b.earliest_correct, b.correct


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
