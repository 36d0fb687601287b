"""Train the early-exit heads of a :class:`~e4gym.dnn.multiexit.MultiExitNet` on a frozen backbone.

The data is an image folder (one sub-folder per class, see :mod:`e4gym.dnn.imagefolder`); the number of
classes is the number of class folders. A stratified, seeded fraction of every class is held out for
validation.

What is trained:

* the early heads ``exits.<i>`` always;
* the final exit (the backbone's own classifier) only when no ``weights`` are given. With ``weights`` (a
  torchvision state dict) the whole backbone *including its classifier* is loaded and stays frozen, so the
  classifier's outputs must be the data's classes in sorted folder order (e.g. an ImageNet folder tree named
  by WordNet ids, or weights fine-tuned on the same folders). Without ``weights`` the backbone is randomly
  initialised (seeded) and frozen, which is only useful for tests and plumbing.

Speed: every head starts with a global average pool and the backbone is frozen (in eval mode), so the pooled
input of each head is computed once per image, in one pass, and the epochs run on those cached vectors only
(no data augmentation). This is exactly equivalent to running the full network every epoch.

Checkpoint (``torch.save``, written atomically; read back with :func:`load_exit_checkpoint`):
``{"format": "e4gym-exits-v1", "model", "num_classes", "classes", "image_size", "head_state",
"val_accuracy", "epoch", ...}``. ``head_state`` holds every exit head's tensors under their
:class:`MultiExitNet` state-dict names (``exits.<i>.*`` and the final classifier's keys). Extra keys:
``exit_after``, ``hidden``, ``confidence``, ``val_accuracy_before``, ``trained_final``, ``weights`` (file
name or None) and ``backbone_state`` (the random backbone's torchvision-keyed state dict when trained
without ``weights``, else None: heads trained on a random backbone are only meaningful with that backbone).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from e4gym.dnn.imagefolder import ImageFolder
from e4gym.dnn.lite import packaged_weights
from e4gym.dnn.multiexit import MultiExitNet, build_multiexit
from e4gym.dnn.nets import load_torchvision_weights
from e4gym.errors import ConfigError, E4gymError
from e4gym.markdown import markdown_table

__all__ = [
    "CHECKPOINT_FORMAT",
    "add_train_exits_parser",
    "load_exit_checkpoint",
    "train_exits",
]

CHECKPOINT_FORMAT = "e4gym-exits-v1"


# ------------------------------------------------------------------------------------------- helpers


def _starts_with_pool(head: nn.Module) -> bool:
    """Whether an exit head starts with a global average pool and a flatten."""
    return (
        isinstance(head, nn.Sequential)
        and len(head) >= 3
        and isinstance(head[0], nn.AdaptiveAvgPool2d)
        and head[0].output_size in (1, (1, 1))
        and isinstance(head[1], nn.Flatten)
    )


def _after_pool(head: nn.Module, name: str) -> nn.Module:
    """The part of an exit head after its global average pool and flatten (the head must start with them)."""
    if _starts_with_pool(head):
        return head[2:]
    raise ConfigError(f"exit head '{name}' does not start with a global average pool and flatten; cannot cache")


def _first_linear(tail: nn.Module, name: str) -> nn.Linear:
    """The first Linear layer of a head's post-pool part (only dropout may come before it)."""
    for m in tail.modules():
        if isinstance(m, nn.Linear):
            return m
        if not isinstance(m, (nn.Sequential, nn.Dropout, nn.Identity)):
            break
    raise ConfigError(f"exit head '{name}' does not start (after pooling) with a Linear layer; cannot train it")


def _head_keys(net: MultiExitNet, e: int) -> list[str]:
    """State-dict names of exit ``e``'s head tensors in ``net``."""
    ids = {id(t) for t in [*net.head(e).parameters(), *net.head(e).buffers()]}
    return [k for k, v in net.state_dict(keep_vars=True).items() if id(v) in ids]


def _all_head_keys(net: MultiExitNet) -> list[str]:
    return [k for e in range(net.n_exits) for k in _head_keys(net, e)]


def _atomic_torch_save(obj: object, out: Path) -> None:
    from e4gym.io import atomic_write

    atomic_write(out, lambda f: torch.save(obj, f))


def _split(targets: list[int], n_classes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation indices: ``round(val_fraction * n)`` (≥ 1, ≤ n − 1) per class."""
    rng = np.random.default_rng(seed)
    t = np.asarray(targets)
    train, val = [], []
    for c in range(n_classes):
        idx = np.flatnonzero(t == c)
        rng.shuffle(idx)
        n_val = min(max(1, round(val_fraction * len(idx))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


@torch.inference_mode()
def _pooled_inputs(
    net: MultiExitNet, data: ImageFolder, batch_size: int, progress: bool
) -> tuple[list[Tensor], Tensor]:
    """Global-average-pooled input of every head, per image: list over exits of (N, C_e), and targets (N,)."""
    from tqdm import tqdm

    net.eval()
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
    feats: list[list[Tensor]] = [[] for _ in range(net.n_exits)]
    targets = []
    bar = tqdm(loader, desc="backbone features", unit="batch", file=sys.stderr, disable=not progress)
    for x, y in bar:
        e = 0
        for i in range(net.n_blocks):
            x = net.run_block(i, x)
            if i == net.exit_after[e]:
                feats[e].append(x.mean(dim=(2, 3)))
                e += 1
        targets.append(y)
    return [torch.cat(f) for f in feats], torch.cat(targets)


@torch.no_grad()
def _accuracy(tails: list[nn.Module], feats: list[Tensor], targets: Tensor) -> list[float]:
    out = []
    for tail, f in zip(tails, feats):
        was = tail.training
        tail.eval()
        out.append(float((tail(f).argmax(dim=1) == targets).float().mean()))
        tail.train(was)
    return out


def _checkpoint_from(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: exit checkpoint not found (create one with `e4gym train-exits`)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types on corrupt files
        raise ConfigError(
            f"{path}: cannot read it as an e4gym exit checkpoint with weights_only=True ({exc}); "
            f"the file is corrupt or truncated: re-create it with `e4gym train-exits`"
        ) from exc
    if not isinstance(ck, Mapping) or ck.get("format") != CHECKPOINT_FORMAT:
        got = ck.get("format") if isinstance(ck, Mapping) else type(ck).__name__
        raise ConfigError(
            f"{path}: not an e4gym exit checkpoint (format {got!r}, expected {CHECKPOINT_FORMAT!r}); "
            f"create one with `e4gym train-exits`"
        )
    for key, typ in (("model", str), ("num_classes", int), ("classes", list), ("image_size", int),
                     ("head_state", Mapping)):
        if not isinstance(ck.get(key), typ) or isinstance(ck.get(key), bool):
            raise ConfigError(
                f"{path}: field '{key}' is missing or not a {typ.__name__} (got {type(ck.get(key)).__name__}); "
                f"re-create the checkpoint with `e4gym train-exits`"
            )
    if len(ck["classes"]) != ck["num_classes"]:
        raise ConfigError(
            f"{path}: 'classes' has {len(ck['classes'])} names but num_classes is {ck['num_classes']}"
        )
    return ck


# ------------------------------------------------------------------------------------------- public API


def load_exit_checkpoint(
    path: str | Path,
    model: str | MultiExitNet | None = None,
    *,
    weights: str | Path | None = None,
) -> MultiExitNet:
    """Load an exit checkpoint written by :func:`train_exits` (``torch.load(weights_only=True)``).

    Args:
        path: the checkpoint file.
        model: None to build the network the checkpoint names; a model name to also check that the
            checkpoint is for it; or a :class:`MultiExitNet` whose heads (and, for a checkpoint trained
            without weights, backbone) are overwritten in place.
        weights: torchvision state dict for the backbone. Required when the checkpoint was trained on
            pretrained weights (it does not store them), unless a package ships them
            (:func:`~e4gym.dnn.lite.packaged_weights`: EfficientNet-Lite0's); refused when it stores its own
            random backbone.

    Returns:
        The network, in eval mode, with every exit head loaded; its extra attributes ``classes`` (class
        names, index order) and ``image_size`` (training input side, pixels) come from the checkpoint.

    Raises:
        ConfigError: missing, corrupt or incompatible checkpoint (wrong format, other model, other number of
            classes, head tensors missing or of the wrong shape), or missing/extra ``weights`` (the message
            names the problem).
    """
    path = Path(path)
    ck = _checkpoint_from(path)
    name = ck["model"]
    if isinstance(model, str) and model != name:
        raise ConfigError(f"{path}: checkpoint is for model '{name}', not '{model}'; pass --model {name}")
    if isinstance(model, MultiExitNet):
        net = model
        if net.name != name or net.num_classes != ck["num_classes"]:
            raise ConfigError(
                f"{path}: checkpoint is for {name} with {ck['num_classes']} classes, the network is "
                f"{net.name} with {net.num_classes} classes"
            )
    else:
        kwargs = {}
        if isinstance(ck.get("hidden"), int):
            kwargs["hidden"] = ck["hidden"]
        if isinstance(ck.get("confidence"), str):
            kwargs["confidence"] = ck["confidence"]
        if isinstance(ck.get("exit_after"), list):
            kwargs["exit_after"] = ck["exit_after"]
        try:
            net = build_multiexit(name, num_classes=ck["num_classes"], **kwargs)
        except E4gymError as exc:
            raise ConfigError(f"{path}: cannot rebuild the network it describes: {exc}") from exc

    backbone_state = ck.get("backbone_state")
    if backbone_state is not None:
        if weights is not None:
            raise ConfigError(
                f"{path}: these heads were trained on a randomly initialised backbone stored in the checkpoint; "
                f"do not pass weights ({weights}) with it"
            )
        if not isinstance(backbone_state, Mapping):
            raise ConfigError(f"{path}: field 'backbone_state' is not a state dict")
        try:
            net.load_backbone_state_dict(backbone_state)
        except ConfigError as exc:
            raise ConfigError(f"{path}: its stored backbone does not fit: {exc}") from exc
    elif weights is not None or (weights := packaged_weights(name)) is not None:
        load_torchvision_weights(net, weights)
    else:
        raise ConfigError(
            f"{path}: these heads were trained on the backbone weights {ck.get('weights')!r}, which the "
            f"checkpoint does not store; pass them (--weights FILE)"
        )

    head_state = dict(ck["head_state"])
    expected = {k: v for k, v in net.state_dict().items() if k in set(_all_head_keys(net))}
    missing = [k for k in expected if k not in head_state]
    unexpected = [k for k in head_state if k not in expected]
    bad = [
        f"{k} {tuple(getattr(head_state[k], 'shape', ()))} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in head_state and (not isinstance(head_state[k], Tensor) or head_state[k].shape != v.shape)
    ]
    if missing or unexpected or bad:
        parts = [f"{label}: {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected),
                                      ("wrong shape (file != model)", bad)) if items]
        raise ConfigError(
            f"{path}: head_state does not match {name}'s exit heads ({'; '.join(parts)}); the checkpoint is "
            f"for another model or exit split: re-create it with `e4gym train-exits`"
        )
    net.load_state_dict(head_state, strict=False)
    net.classes = list(ck["classes"])
    net.image_size = ck["image_size"]
    return net.eval()


def train_exits(
    model_name: str,
    data_dir: str | Path,
    out: str | Path,
    *,
    weights: Path | None = None,
    image_size: int = 224,
    epochs: int = 5,
    batch_size: int = 32,
    lr: float = 1e-3,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train the exit heads of ``model_name`` on a frozen backbone over the image folder ``data_dir``.

    Args:
        model_name: ``efficientnet_b0``, ``efficientnet_lite0``, ``mobilenet_v2`` or ``resnet18``.
        data_dir: folder with one sub-folder of images per class (at least 2 classes, 2 images each).
        out: checkpoint file to write (atomically; rewritten after every epoch).
        weights: torchvision state dict for the backbone; with it the final classifier stays frozen, and it
            must have one output per class folder. Without it the backbone is random (seeded) and the final
            classifier is trained too.
        image_size: side of the square input, in pixels.
        epochs: passes over the training split.
        batch_size: images per batch (feature extraction and head training).
        lr: Adam learning rate.
        val_fraction: fraction of each class held out for validation, in (0, 1).
        seed: seeds the random backbone and head initialisation, the split and the shuffling (sets torch's
            global seed).
        progress: show tqdm progress bars on stderr.

    Returns:
        ``{"model", "classes", "num_classes", "n_train", "n_val", "epochs", "trained_final", "checkpoint",
        "before", "after"}`` where ``before`` / ``after`` are the per-exit validation accuracies in [0, 1]
        of the untrained and the trained heads (exit order; the last is the final classifier).

    Raises:
        ConfigError: bad data folder (missing, fewer than 2 classes, a class with fewer than 2 images, an
            unreadable image), bad weights, or a bad argument.
        UnknownNameError: unknown model name.
    """
    from tqdm import tqdm

    out = Path(out)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs must be a non-negative integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; pass the path of the checkpoint file to write")

    data = ImageFolder(data_dir, size=image_size, min_per_class=2)
    n_classes = len(data.classes)
    torch.manual_seed(seed)
    net = build_multiexit(model_name, num_classes=n_classes)
    if weights is not None:
        try:
            load_torchvision_weights(net, weights)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc} Note: the data has {n_classes} class folders, so the weights' classifier must have "
                f"{n_classes} outputs (one per folder, in sorted folder order)."
            ) from exc
    net.freeze_backbone(True)
    net.eval()
    train_final = weights is None

    feats, targets = _pooled_inputs(net, data, batch_size, progress)
    train_idx, val_idx = _split(data.targets, n_classes, val_fraction, seed)
    tr_idx, va_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    tr_feats, va_feats = [f[tr_idx] for f in feats], [f[va_idx] for f in feats]
    tr_y, va_y = targets[tr_idx], targets[va_idx]

    tails = [_after_pool(net.head(e), net.head_names[e]) for e in range(net.n_exits)]
    trained = list(range(net.n_exits)) if train_final else list(range(net.n_exits - 1))
    # Trained heads see their pooled input standardised per channel (training-split statistics): a random
    # backbone's activations can be ~1e-12, and pretrained ones are badly scaled too. The affine map is
    # folded into each head's first Linear layer when saving, so the saved heads take the raw features.
    stats: dict[int, tuple[Tensor, Tensor]] = {}
    z_tr, z_va = list(tr_feats), list(va_feats)
    for e in trained:
        mu = tr_feats[e].double().mean(dim=0)
        sd = tr_feats[e].double().std(dim=0, unbiased=False)
        floor = float(sd.mean()) * 1e-3
        sd = sd.clamp(min=floor) if floor > 0 else torch.ones_like(sd)
        stats[e] = (mu, sd)
        z_tr[e] = ((tr_feats[e].double() - mu) / sd).float()
        z_va[e] = ((va_feats[e].double() - mu) / sd).float()
    module_names = {id(m): n for n, m in net.named_modules()}
    first_linear = {e: _first_linear(tails[e], net.head_names[e]) for e in trained}

    def folded(e: int) -> tuple[Tensor, Tensor]:
        """First Linear of head ``e`` acting on raw features: W' = W / sd, b' = b − W' μ."""
        lin = first_linear[e]
        mu, sd = stats[e]
        w = lin.weight.detach().double() / sd[None, :]
        b = lin.bias.detach().double() - w @ mu
        return w.float(), b.float()

    params = [p for e in trained for p in tails[e].parameters()]
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.Adam(params, lr=lr)
    before = _accuracy(tails, z_va, va_y)
    after = list(before)
    backbone_state = None if weights is not None else {k: v.clone() for k, v in net.backbone_state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    n_train = len(tr_y)
    keys = _all_head_keys(net)

    def head_state() -> dict[str, Tensor]:
        state = net.state_dict()
        heads = {k: state[k].detach().clone() for k in keys}
        for e in trained:
            prefix = module_names[id(first_linear[e])]
            heads[f"{prefix}.weight"], heads[f"{prefix}.bias"] = folded(e)
        return heads

    def save(epoch: int, acc: list[float]) -> None:
        _atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "model": model_name,
                "num_classes": n_classes,
                "classes": list(data.classes),
                "image_size": image_size,
                "head_state": head_state(),
                "val_accuracy": [float(a) for a in acc],
                "val_accuracy_before": [float(a) for a in before],
                "epoch": epoch,
                "exit_after": list(net.exit_after),
                "hidden": net.hidden,
                "confidence": net.confidence_kind,
                "trained_final": train_final,
                "weights": None if weights is None else Path(weights).name,
                "backbone_state": backbone_state,
            },
            out,
        )

    bar = tqdm(range(1, epochs + 1), desc="training exits", unit="epoch", file=sys.stderr, disable=not progress)
    for epoch in bar:
        for e in trained:
            tails[e].train()
        order = torch.randperm(n_train, generator=gen)
        for start in range(0, n_train, batch_size):
            idx = order[start : start + batch_size]
            loss = sum(nn.functional.cross_entropy(tails[e](z_tr[e][idx]), tr_y[idx]) for e in trained)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        after = _accuracy(tails, z_va, va_y)
        bar.set_postfix_str("val acc " + " ".join(f"{a:.2f}" for a in after))
        save(epoch, after)
    if epochs == 0:
        save(0, after)
    return {
        "model": model_name,
        "classes": list(data.classes),
        "num_classes": n_classes,
        "n_train": len(tr_y),
        "n_val": len(va_y),
        "epochs": epochs,
        "trained_final": train_final,
        "checkpoint": str(out),
        "before": before,
        "after": after,
    }


# ------------------------------------------------------------------------------------------- CLI


def cmd_train_exits(args: argparse.Namespace) -> int:
    """``e4gym train-exits``: train, then print per-exit validation accuracy before/after; returns 0."""
    res = train_exits(
        args.model,
        args.data,
        args.out,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=not args.quiet,
    )
    n = len(res["after"])
    rows = [
        [e, "final" if e == n - 1 else "early", "yes" if e < n - 1 or res["trained_final"] else "frozen",
         f"{b:.3f}", f"{a:.3f}"]
        for e, (b, a) in enumerate(zip(res["before"], res["after"]))
    ]
    print(markdown_table(["exit", "kind", "trained", "val acc before", "val acc after"], rows, align="l"))
    print(
        f"\n{res['num_classes']} classes, {res['n_train']} train / {res['n_val']} validation images, "
        f"{res['epochs']} epochs; checkpoint: {res['checkpoint']}"
    )
    return 0


def add_train_exits_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``train-exits`` verb on ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "train-exits",
        help="train the early-exit heads on a frozen backbone over an image folder",
        description=(
            "Train the early-exit heads of a multi-exit network on a frozen backbone. DATA holds one "
            "sub-folder of images per class. With --weights (a torchvision state dict whose classifier has one "
            "output per class folder) the final classifier stays frozen; without, the backbone is random and "
            "the final classifier is trained too."
        ),
    )
    p.add_argument("--model", default="efficientnet_b0", help="backbone name (default: %(default)s)")
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="image folder, one sub-folder per class")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="checkpoint file to write")
    p.add_argument("--weights", type=Path, metavar="FILE", help="torchvision state dict for the backbone")
    p.add_argument("--image-size", type=int, default=224, help="input side in pixels (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out fraction (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_exits)
    return p
