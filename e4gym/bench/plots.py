"""Plots of a benchmark (matplotlib, Agg, PNG): ``plots/<scenario>/{bars,scatter,traces}.png``.

* ``bars.png``: energy per frame (J) and p99 latency (ms) per policy, mean over seeds with ± one standard
  deviation as error bars, a dashed line at the deadline on the latency panel, clairvoyant policies hatched;
* ``scatter.png``: p99 latency (ms) against energy per frame (J), one colour and marker per policy (the same
  in every plot of the experiment), error bars over seeds, the deadline as a dashed line;
* ``traces.png``: the first seed's per-frame CPU clock (MHz), GPU clock (MHz), exit and board temperature
  (°C), stacked on one frame axis, one colour per policy.

A scenario's plots are drawn in a temporary folder beside ``plots/<scenario>`` and swapped in whole when all three
are done (:func:`e4gym.io.staged_dir`): a failure or Ctrl-C while plotting leaves the previous plots as they were.
A scenario without results gets an empty folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.bench.config import Experiment
from e4gym.io import atomic_write, staged_dir

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "8", "d")
_LINESTYLES = ("-", "--", "-.", ":")
_DPI = 110
#: A value axis turns logarithmic when its largest positive value exceeds the smallest by this factor.
LOG_RATIO = 30.0
#: The scatter plot adds a linear zoom on the policies whose p99 latency is within this factor of the deadline
#: when others are beyond it.
ZOOM_FACTOR = 3.0


def _wide_range(values: Sequence[float]) -> bool:
    """The positive ``values`` span more than :data:`LOG_RATIO` (a linear axis would hide the small ones)."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=np.float64)
    return v.size > 1 and float(v.max()) > LOG_RATIO * float(v.min())


def policy_styles(labels: Sequence[str]) -> dict[str, tuple[Any, str]]:
    """A distinct ``(colour, marker)`` per label (tab10 up to 10 labels, tab20 beyond)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {lab: (cmap(i % cmap.N), _MARKERS[i % len(_MARKERS)]) for i, lab in enumerate(labels)}


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=_DPI))


def write_plots(out: Path, exp: Experiment, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """Write the three plots of every scenario with results under ``out/plots``; returns the files.

    Each scenario's folder is replaced whole, once its plots are drawn (see the module docstring).
    """
    from e4gym.bench.report import aggregate

    agg = aggregate(exp, rows)
    styles = policy_styles([p.label for p in exp.policies])
    files: list[Path] = []
    for sc in exp.scenarios:
        items = agg.get(sc.name, [])
        final = Path(out) / "plots" / sc.name
        with staged_dir(final) as d:
            written: list[Path] = []
            if not items:
                continue  # an empty folder swapped in: no stale plots of an earlier run
            if exp.family == "serving":  # requests per interval, no frames: utility and tail latency per policy
                written.append(_serving_bars(d / "bars.png", sc, items, styles))
                continue
            written += [_bars(d / "bars.png", sc, items, styles), _scatter(d / "scatter.png", sc, items, styles)]
            first = {}
            for s in items:
                seed = next(x for x in exp.seeds if x in s.seeds)
                row = next(r for r in rows
                           if r["scenario"] == sc.name and r["label"] == s.label and r["seed"] == seed)
                with np.load(Path(out) / row["trace"]) as z:
                    first[s.label] = {k: z[k] for k in ("cpu_hz", "gpu_hz", "exit", "temp_c")}, seed
            written.append(_traces(d / "traces.png", sc, first, styles))
        files += [final / f.name for f in written]
    return files


def _serving_bars(path: Path, sc: Any, items: Sequence[Any], styles: dict[str, tuple[Any, str]]) -> Path:
    """A serving scenario: each policy's utility per interval and p99 latency (means over seeds, ± the std)."""
    from matplotlib.figure import Figure

    n = len(items)
    fig = Figure(figsize=(max(8.0, 3.0 + 1.1 * n), 4.6), layout="constrained")
    x = np.arange(n)
    for ax, key, ylabel in zip(fig.subplots(1, 2), ("utility_per_interval", "p99_latency_ms"),
                               ("utility per interval", "p99 latency (ms)")):
        ax.bar(x, [s.mean[key] for s in items], yerr=[s.std[key] for s in items], capsize=3,
               color=[styles[s.label][0] for s in items], edgecolor="black", linewidth=0.6)
        ax.set_xticks(x, [s.label for s in items], rotation=35, ha="right")
        ax.set_xlabel("policy")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(sc.title)
    fig.savefig(path, dpi=110)
    return path


def _bars(path: Path, sc: Any, items: Sequence[Any], styles: dict[str, tuple[Any, str]]) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = len(items)
    fig = Figure(figsize=(max(8.0, 3.0 + 1.1 * n), 4.6), layout="constrained")
    ax_e, ax_l = fig.subplots(1, 2)
    x = np.arange(n)
    labels = [s.label for s in items]
    colours = [styles[s.label][0] for s in items]
    hatches = ["//" if s.clairvoyant else "" for s in items]
    for ax, key, ylabel, title in (
        (ax_e, "energy_per_frame_j", "energy per frame (J)", "Energy per frame"),
        (ax_l, "latency_p99_ms", "p99 latency (ms)", "p99 latency"),
    ):
        bars = ax.bar(x, [s.mean[key] for s in items], yerr=[s.std[key] for s in items], capsize=3,
                      color=colours, edgecolor="black", linewidth=0.6)
        for b, h in zip(bars, hatches):
            b.set_hatch(h)
        ax.set_xticks(x, labels, rotation=35, ha="right")
        ax.set_xlabel("policy")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        values = [s.mean[key] for s in items] + ([sc.deadline_ms] if key == "latency_p99_ms" else [])
        if _wide_range(values):
            ax.set_yscale("log")
            ylabel += ", log scale"
        ax.set_ylabel(ylabel)
    ax_l.axhline(sc.deadline_ms, color="black", linestyle="--", linewidth=1.2)
    handles = [_dashed_handle(f"deadline {sc.deadline_ms:.1f} ms")]
    if any(hatches):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="clairvoyant (bound)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    fig.suptitle(f"{sc.title} (mean ± std over seeds)", fontsize=11)
    _save(fig, path)
    return path


def _dashed_handle(label: str) -> Any:
    """A dashed black legend line labelled ``label``."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color="black", linestyle="--", linewidth=1.2, label=label)


def _scatter(path: Path, sc: Any, items: Sequence[Any], styles: dict[str, tuple[Any, str]]) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 5.2), layout="constrained")
    ax = fig.subplots()
    order = list(styles)

    def draw(axes: Any, subset: Sequence[Any], labelled: bool) -> None:
        for s in subset:
            colour, marker = styles[s.label]
            # Later policies get smaller markers, so policies at the same point show as nested markers.
            size = max(5.0, 13.0 - 0.8 * order.index(s.label))
            axes.errorbar(s.mean["latency_p99_ms"], s.mean["energy_per_frame_j"], xerr=s.std["latency_p99_ms"],
                          yerr=s.std["energy_per_frame_j"], fmt=marker, color=colour, markersize=size, capsize=3,
                          markeredgecolor="black", markeredgewidth=0.6,
                          label=(s.label + (" (bound)" if s.clairvoyant else "")) if labelled else None)
        axes.axvline(sc.deadline_ms, color="black", linestyle="--", linewidth=1.2,
                     label=f"deadline {sc.deadline_ms:.1f} ms" if labelled else None)

    draw(ax, items, True)
    # Policies far over the deadline (e.g. powersave, whose frames queue) squash the others into a corner:
    # repeat the ones near the deadline in a linear zoom.
    near = [s for s in items if s.mean["latency_p99_ms"] <= ZOOM_FACTOR * sc.deadline_ms]
    if 2 <= len(near) < len(items):
        inset = ax.inset_axes((0.22, 0.16, 0.55, 0.6))
        draw(inset, near, False)
        inset.set_title(f"zoom: p99 ≤ {ZOOM_FACTOR:g}× deadline", fontsize=8)
        inset.set_xlabel("p99 latency (ms)", fontsize=8)
        inset.set_ylabel("energy per frame (J)", fontsize=8)
        inset.tick_params(labelsize=7)
        inset.grid(alpha=0.3)
    xlabel, ylabel = "p99 latency (ms)", "energy per frame (J)"
    if _wide_range([s.mean["latency_p99_ms"] for s in items] + [sc.deadline_ms]):
        ax.set_xscale("log")
        xlabel += ", log scale"
    if _wide_range([s.mean["energy_per_frame_j"] for s in items]):
        ax.set_yscale("log")
        ylabel += ", log scale"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Latency vs energy: {sc.title}", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    _save(fig, path)
    return path


def _traces(path: Path, sc: Any, traces: dict[str, tuple[dict[str, np.ndarray], int]],
            styles: dict[str, tuple[Any, str]]) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11.0, 8.5), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    panels = (("cpu_hz", 1e-6, "CPU clock (MHz)"), ("gpu_hz", 1e-6, "GPU clock (MHz)"),
              ("exit", 1.0, "exit (index)"), ("temp_c", 1.0, "temperature (°C)"))
    seeds = sorted({seed for _, seed in traces.values()})
    for label, (tr, _) in traces.items():
        colour = styles[label][0]
        # Policies that hold the same clocks draw the same line: a line style per policy keeps both visible.
        style = _LINESTYLES[list(styles).index(label) % len(_LINESTYLES)]
        frames = np.arange(len(tr["cpu_hz"]))
        for ax, (key, scale, _) in zip(axes, panels):
            (line,) = ax.plot(frames, tr[key] * scale, drawstyle="steps-post", color=colour, linestyle=style,
                              linewidth=1.2, alpha=0.85, label=label)
            line.set_in_layout(False)  # inside the axes anyway; measuring long paths makes the layout slow
    for ax, (_, _, ylabel) in zip(axes, panels):
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[2].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("frame")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=9, frameon=False)
    fig.suptitle(f"Per-frame traces, seed {', '.join(map(str, seeds))}: {sc.title}", fontsize=11)
    _save(fig, path)
    return path
