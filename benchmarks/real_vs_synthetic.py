"""How the synthetic video compares with the real clips (issue 16): the statistics a policy learns from.

Usage::

    python benchmarks/real_vs_synthetic.py [--seeds 10] [--frames 1000] [--set mean_scene_s=2.0 ...]

For the shipped real-video traces (``clip:bikes``, ``clip:bigbuckbunny``, ``clip:carphone``; EfficientNet-Lite0 with
distilled heads, docs/real_video.md), pooled, and for :class:`~e4gym.workload.SyntheticVideo` of the same network
(``configs/models/efficientnet_lite0.yaml``, 25 fps; ``--set`` overrides constructor arguments), it prints:

- **agreement e0 … e4**: the share of frames each exit gets right (agrees with the final exit);
- **earliest change**: how often the earliest correct exit differs between consecutive frames;
- **not nested**: the share of frames right at some exit and wrong at a later one;
- **features R²**: how well the pre-inference features predict the earliest correct exit (``R²`` of a linear
  least-squares fit with an intercept, in sample);
- **confidence AUC e0**: how well exit 0's confidence tells whether exit 0 is right (ROC AUC);
- **motion**: the mean of the motion feature.

Earliest correct exit: the first exit that is right, or ``n_exits`` when none is. Takes ~5 s.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

from e4gym.dnn.profile import load_model_profile
from e4gym.markdown import markdown_table
from e4gym.workload import SyntheticVideo
from e4gym.workload.clips import CLIPS
from e4gym.workload.trace import load_trace

COLUMNS = ["agreement e0", "e1", "e2", "e3", "e4", "earliest change", "not nested", "features R²",
           "confidence AUC e0", "motion"]


def earliest_correct(correct: np.ndarray) -> np.ndarray:
    """Per frame, the first exit that is right, or ``n_exits`` when none is."""
    return np.where(correct.any(axis=1), correct.argmax(axis=1), correct.shape[1])


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC of ``score`` for the boolean ``label`` (ties count one half); NaN with a single class."""
    pos, neg = score[label], score[~label]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):  # average ranks of ties
        m = allv == v
        ranks[m] = ranks[m].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def stats(streams: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[float]:
    """The row of :data:`COLUMNS` for streams of ``(correct (T, E), confidence (T, E), features (T, 3))``."""
    correct = np.concatenate([c for c, _, _ in streams])
    conf = np.concatenate([k for _, k, _ in streams])
    feats = np.concatenate([f for _, _, f in streams])
    ec = [earliest_correct(c) for c, _, _ in streams]
    changes = sum(int((e[1:] != e[:-1]).sum()) for e in ec) / sum(len(e) - 1 for e in ec)
    y = np.concatenate(ec).astype(np.float64)
    x = np.column_stack([np.ones(len(y)), feats.astype(np.float64)])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    var = y.var()
    r2 = float(1.0 - ((y - x @ coef) ** 2).mean() / var) if var > 0 else float("nan")
    wrong_later = np.flip(np.logical_or.accumulate(np.flip(~correct, axis=1), axis=1), axis=1)
    not_nested = float((correct[:, :-1] & wrong_later[:, 1:]).any(axis=1).mean())
    return [*correct.mean(axis=0).tolist(), changes, not_nested, r2, auc(conf[:, 0], correct[:, 0]),
            float(feats[:, 1].mean())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="synthetic streams")
    ap.add_argument("--frames", type=int, default=1000, help="frames per synthetic stream")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="SyntheticVideo arguments")
    args = ap.parse_args(argv)
    print("command: python benchmarks/real_vs_synthetic.py " + shlex.join(sys.argv[1:] if argv is None else argv))
    traces = {name: load_trace(f"clip:{name}") for name in CLIPS}
    rows = [[f"real: clip:{n}", *stats([(t.correct, t.confidence, t.features)])] for n, t in traces.items()]
    rows.append(["real: the three clips", *stats([(t.correct, t.confidence, t.features) for t in traces.values()])])
    kw = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    video = SyntheticVideo.from_profile(load_model_profile("efficientnet_lite0"), fps=25.0, **kw)
    streams = []
    for seed in range(args.seeds):
        video.reset(seed)
        b = video.batch(args.frames)
        streams.append((b.correct, b.confidence, b.features))
    label = "synthetic" + (f" ({', '.join(args.set)})" if args.set else " (defaults)")
    rows.append([label, *stats(streams)])
    print(markdown_table(["stream", *COLUMNS], [[r[0], *(f"{v:.3f}" for v in r[1:])] for r in rows],
                         align="l" + "r" * len(COLUMNS)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
