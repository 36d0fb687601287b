"""The ``e4gym`` command.

Verbs (``e4gym VERB --help`` for each):

* ``devices``: list the device catalogue with clock ranges and power modes;
* ``calibrate``: check the emulator against the published figures (CALIBRATION.md), pass/fail per row;
* ``demo``: stream frames through the emulator at fixed settings and under the default governors;
* ``profile``: regenerate a model's cost profile (``configs/models/NAME.yaml``) from the PyTorch network;
* ``profile-device``: measure the CPU × GPU sweep on a board (Jetson, NVML GPU or the emulator) into a profile
  that the emulator can load and ``calibrate --profile`` checks the analytic model against;
* ``train-exits``: train the early-exit heads on a frozen backbone over an image-folder dataset;
* ``record``: run a multi-exit network over a video file and save a replayable trace (``.npz``);
* ``bench``: run a matrix of scenarios × policies × seeds; tables, plots and TensorBoard runs;
* ``sweep``: the CPU × GPU frequency sweep of one device and model, as heatmaps;
* ``reproduce``: every claim of the seed papers against the emulator, with a verdict, in one report;
* ``restore``: put a board back from the restore journal a killed run left (SIGKILL, OOM kill);
* ``serve-cloud``: run a network's tail after its split block for real edge-cloud offloading (the cloud side of
  DVFO on a real board; wire format in ``e4gym.hardware.cloud`` and docs/cloud.md);
* ``train``: train a stable-baselines3 agent, zTT or Ring-DVFS (from ``agents``, through the ``e4gym.cli``
  entry-point group).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from e4gym.errors import ConfigError, E4gymError
from e4gym.markdown import markdown_table


def cmd_devices(args: argparse.Namespace) -> int:
    """Print the device catalogue."""
    from e4gym.hardware.spec import available_devices, load_device

    rows = []
    for name in available_devices():
        s = load_device(name)
        rows.append([
            name,
            f"{s.cpu_cores}× {s.cpu_arch}",
            f"{s.cpu_freqs_hz[0] / 1e6:.0f}–{s.cpu_freqs_hz[-1] / 1e6:.0f} MHz ({s.n_cpu})",
            f"{s.gpu_arch} {s.cuda_cores}",
            f"{s.gpu_freqs_hz[0] / 1e6:.0f}–{s.gpu_freqs_hz[-1] / 1e6:.0f} MHz ({s.n_gpu})",
            f"{s.emc_freqs_hz[0] / 1e6:.0f}–{s.emc_freqs_hz[-1] / 1e6:.0f} MHz ({s.n_emc})",
            f"{s.dram_bw_bytes_per_s / 1e9:.1f}",
            ", ".join(m if m != s.default_power_mode else f"{m}*" for m in s.power_modes),
        ])
    print(markdown_table(["device", "CPU", "CPU clocks (levels)", "GPU cores", "GPU clocks (levels)",
                          "EMC clocks (levels)", "DRAM GB/s", "power modes (*default)"], rows, align="l"))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Print the calibration table; exit status 1 if any row fails. With ``--profile``: the analytic model's
    error against a measured profile."""
    from tqdm import tqdm

    if args.profile:
        from e4gym.hardware.measured import MeasuredProfile, format_errors, model_error

        prof = MeasuredProfile.load(args.profile)
        print(format_errors(prof, model_error(prof)))
        return 0
    from e4gym.hardware.calibration import calibrate, evidence_summary, format_rows
    from e4gym.hardware.spec import available_devices, load_device

    devices = args.device or available_devices()
    for d in devices:
        load_device(d)  # fail fast on an unknown name
    bar = tqdm(total=len(devices), desc="calibrating", unit="device", file=sys.stderr, disable=args.quiet)

    def progress(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    rows = calibrate(devices, progress=progress)
    bar.close()
    print(format_rows(rows))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} rows pass\n")
    print(evidence_summary(rows))
    return 1 if failed else 0


def _parse_setting(text: str, spec) -> tuple[str, tuple[int, int, int] | None]:
    """``top``, ``min``, ``default`` or ``CPU_MHZ,GPU_MHZ[,EMC_MHZ]`` (nearest levels)."""
    top = spec.max_levels()
    if text == "top":
        return "top clocks", top
    if text == "min":
        return "lowest clocks", (0, 0, top[2])
    if text == "default":
        return "default governors", None
    try:
        parts = [float(p) * 1e6 for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3):
        raise E4gymError(f"--setting '{text}': expected top, min, default or CPU_MHZ,GPU_MHZ[,EMC_MHZ]")
    emc = spec.level_of("emc", parts[2]) if len(parts) == 3 else top[2]
    levels = (spec.level_of("cpu", parts[0]), spec.level_of("gpu", parts[1]), emc)
    return f"CPU {spec.cpu_freqs_hz[levels[0]] / 1e6:.0f} / GPU {spec.gpu_freqs_hz[levels[1]] / 1e6:.0f} MHz", levels


def cmd_demo(args: argparse.Namespace) -> int:
    """Stream frames at fixed settings and under the default governors; print a table."""
    from e4gym.dnn.profile import load_model_profile
    from e4gym.hardware.emulator import EmulatedBackend
    from e4gym.hardware.spec import load_device
    from e4gym.hardware.stream import stream

    spec = load_device(args.device)
    profile = load_model_profile(args.model)
    rows = []
    for text in args.setting:
        exit_ = args.exit
        if "@" in text:
            text, _, e = text.partition("@")
            try:
                exit_ = int(e)
            except ValueError:
                raise E4gymError(f"--setting '{text}@{e}': the exit after '@' must be an integer") from None
        work = profile.frame_work(exit_)
        label, levels = _parse_setting(text, spec)
        label += f", exit {work.key.rsplit('exit', 1)[-1]}"
        governors = "default" if levels is None else None
        with EmulatedBackend(spec, seed=args.seed, governors=governors) as board:
            if levels is not None:
                board.apply(levels)
            frames = list(stream(board, work, args.frames, fps=args.fps))
        lat = np.array([f.latency_s for f in frames]) * 1e3
        energy = np.array([f.energy_j for f in frames]) * 1e3
        measured = np.array([f.measured_energy_j for f in frames]) * 1e3
        rows.append([
            label,
            f"{np.mean([f.cpu_hz for f in frames]) / 1e6:.0f}",
            f"{np.mean([f.gpu_hz for f in frames]) / 1e6:.0f}",
            f"{lat.mean():.1f}",
            f"{np.percentile(lat, 99):.1f}",
            f"{100 * np.mean([f.deadline_missed for f in frames]):.1f}",
            f"{energy.mean():.0f}",
            f"{measured.mean():.0f}",
            f"{energy.sum() / 1e3 / (args.frames / args.fps):.2f}",
            f"{max(f.temp_c for f in frames):.1f}",
        ])
    print(f"{spec.full_name}, {profile.name} ({profile.n_exits} exits), "
          f"{args.frames} frames at {args.fps:g} fps (deadline {1e3 / args.fps:.1f} ms), emulated, seed {args.seed}\n")
    print(markdown_table(["setting", "CPU MHz", "GPU MHz", "latency ms", "p99 ms", "missed %", "energy mJ/frame",
                          "measured mJ/frame", "power W", "peak °C"], rows, align="l"))
    return 0


def cmd_profile_device(args: argparse.Namespace) -> int:
    """Run the CPU × GPU sweep on a backend and write a measured profile."""
    from pathlib import Path

    from tqdm import tqdm

    from e4gym.hardware.measured import profile_device
    from e4gym.hardware.spec import load_device

    out = Path(args.out)
    if out.exists() and not args.force:
        raise E4gymError(f"{out} exists; pass --force to overwrite it")
    if args.backend == "emulated":
        from e4gym.hardware.emulator import EmulatedBackend

        board = EmulatedBackend(args.device or "xavier-nx", seed=0)
    else:
        from e4gym.hardware.runner import TorchRunner

        dev = args.runner_device
        if dev is None:
            import torch

            dev = "cuda" if torch.cuda.is_available() else "cpu"
        runner = TorchRunner(args.model, device=dev)
        if args.backend == "jetson":
            from e4gym.hardware.jetson import JetsonBackend

            board = JetsonBackend(spec=load_device(args.device) if args.device else None, sysfs_root=args.sysfs_root,
                                  runner=runner)
        else:
            from e4gym.hardware.nvml import NvmlBackend

            board = NvmlBackend(runner=runner, lock_clocks=True)
    bar = tqdm(total=None, desc="profiling", unit="pair", file=sys.stderr, disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    with board:
        prof = profile_device(board, args.model, frames=args.frames, stride=args.stride, progress=progress)
    bar.close()
    prof.save(out)
    print(f"wrote {out}: {prof.device} / {prof.model}, {len(prof.cpu_levels)} × {len(prof.gpu_levels)} pairs, "
          f"{len(prof.exits)} exits, measured by {prof.source}; compare with `e4gym calibrate --profile {out}`")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Regenerate a model's cost profile from its PyTorch network."""
    from e4gym.dnn.profile import load_model_profile
    from e4gym.dnn.profiling import write_module_profile, write_profile

    if args.module:
        try:
            shape = tuple(int(v) for v in args.input.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--input {args.input!r}: expected sizes joined by 'x', e.g. 3x416x416") from None
        path = write_module_profile(args.module, args.out, name=args.name, input_shape=shape, exits=args.exits,
                                    num_classes=args.num_classes, accuracies=args.accuracy,
                                    accuracy_source=args.accuracy_source)
    else:
        path = write_profile(args.model, args.out)
    p = load_model_profile(path)
    print(f"wrote {path}: {p.n_blocks} blocks, {p.n_exits} exits, {p.total_macs / 1e9:.3f} GMACs")
    return 0


def cmd_import_sweep(args: argparse.Namespace) -> int:
    """Write a published latency sweep as a measured profile and print the analytic model's error against it."""
    from pathlib import Path

    from e4gym.hardware.measured import format_errors, model_error, sweep_profile

    out = Path(args.out)
    if out.exists() and not args.force:
        raise E4gymError(f"{out} exists; pass --force to overwrite it")
    prof = sweep_profile(args.csv, args.device, args.model, runtime=args.runtime, sweep_model=args.sweep_model,
                         emc_hz=None if args.emc_mhz is None else args.emc_mhz * 1e6)
    prof.save(out)
    print(format_errors(prof, model_error(prof)))
    print(f"\nwrote {out}: use it with gym.make(..., device={prof.device!r}, model={prof.model!r}, "
          f"runtime={prof.runtime!r}, backend_kwargs={{'measured': {str(out)!r}}})")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Put a board back from the restore journal a killed run left; exit status 1 if a file could not be
    restored."""
    import time
    from pathlib import Path

    from e4gym.hardware.lock import JOURNAL_FILE
    from e4gym.hardware.restore import restore_board

    root = Path(args.sysfs_root)
    if not root.is_dir():
        raise E4gymError(f"--sysfs-root {root}: no such folder (give the board's / or a copy of its tree)")
    done = restore_board(root)
    if done is None:
        print(f"nothing to restore: no restore journal at {root / JOURNAL_FILE} (no run left the board changed)")
        return 0
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(done.started))
    print(f"restore journal {done.journal}: left by process {done.owner} (run started {when}), "
          f"{done.checked} file(s) recorded")
    for path, old, new in done.written:
        print(f"  restored {path}: {old if old is not None else '?'} -> {new}")
    if done.failures:
        print(f"e4gym restore: {len(done.failures)} file(s) could not be restored; set them by hand (the journal "
              f"{done.journal} is kept):", file=sys.stderr)
        for f in done.failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    already = "" if done.written else " (every file already held its original value)"
    print(f"restored the board at {root}: {len(done.written)} file(s) written{already}; removed {done.journal}")
    return 0


_LIGHT_VERBS = ("devices", "calibrate", "demo", "bench", "sweep", "reproduce", "profile-device", "restore")


def build_parser(torch_verbs: bool = True) -> argparse.ArgumentParser:
    """The argument parser of the ``e4gym`` command.

    ``torch_verbs=False`` leaves out the verbs whose modules import torch (about a second to import), so
    the light verbs start fast.
    """
    from e4gym import __version__

    parser = argparse.ArgumentParser(prog="e4gym", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"e4gym {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("devices", help="list the device catalogue")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("calibrate", help="check the emulator against the published figures")
    p.add_argument("--device", action="append", help="device name (repeatable; default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--profile", default=None,
                   help="a measured profile (e4gym profile-device): report the analytic model's error against it")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("profile-device", help="measure the CPU × GPU sweep of a model on a board into a profile")
    p.add_argument("--backend", choices=("jetson", "nvml", "emulated"), default="jetson")
    p.add_argument("--device", default=None, help="device name (emulated; jetson: default detected)")
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--out", required=True, help="profile file to write (JSON)")
    p.add_argument("--frames", type=int, default=5, help="frames measured per level pair and exit")
    p.add_argument("--stride", type=int, default=1, help="measure every STRIDE-th level of each domain")
    p.add_argument("--sysfs-root", default="/", help="jetson: root of the board's file tree")
    p.add_argument("--runner-device", default=None, help="torch device of the network (default: cuda if present)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_profile_device)

    p = sub.add_parser("demo", help="stream frames through the emulator at fixed settings")
    p.add_argument("--device", default="xavier-nx")
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--exit", type=int, default=-1, help="exit index for settings without @EXIT (default: last)")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--setting", action="append",
                   help="top, min, default or CPU_MHZ,GPU_MHZ[,EMC_MHZ], optionally @EXIT (repeatable; "
                        "default: top, 1190,803@2 and default)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import-sweep", help="turn a published latency sweep (CSV) into a measured profile",
                       description="Turn a published latency sweep (columns model, gpu_hz, emc_hz, "
                                   "mean_gpu_latency_ms, e.g. benchmarks/data/tx2_trtexec_gpu_emc_sweep.csv) into "
                                   "a measured profile that replaces the analytic model for envs "
                                   "(backend_kwargs={'measured': FILE}, with the same runtime=), their cost models "
                                   "and `e4gym calibrate --profile FILE`.")
    p.add_argument("csv", help="the sweep")
    p.add_argument("--device", required=True, help="e4gym's device name, e.g. jetson-tx2")
    p.add_argument("--model", required=True, help="e4gym's model name, e.g. resnet50")
    p.add_argument("--runtime", default="tensorrt-fp16", help="the runtime the sweep ran (default tensorrt-fp16)")
    p.add_argument("--sweep-model", default=None, help="the model's name in the CSV (default: MODEL with - for _)")
    p.add_argument("--emc-mhz", type=float, default=None, help="the EMC rate to take (default: the highest)")
    p.add_argument("--out", required=True, help="the profile to write (JSON)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.set_defaults(func=cmd_import_sweep)

    p = sub.add_parser("restore", help="put a board back from the restore journal a killed run left",
                       description="Put a Jetson board's clocks, governors and online cores back from the restore "
                                   "journal (<root>/run/e4gym-restore.json) that a run killed without time to "
                                   "restore them left (SIGKILL, OOM kill). Refused while a live process owns the "
                                   "board (it restores the board itself when it ends).")
    p.add_argument("--sysfs-root", default="/", help="root of the board's file tree (default /)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("profile", help="write a model's cost profile (configs/models/NAME.yaml) from a PyTorch network",
                       description="Profile a network block by block (FLOPs, bytes, kernels; batch 1, fp32, CPU) "
                                   "into a model YAML the envs accept by name or path: one of e4gym's networks "
                                   "(--model), or any PyTorch module given by a factory returning an "
                                   "nn.Sequential of blocks or a MultiExitNet (--module).")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="an e4gym network: efficientnet_b0, efficientnet_lite0, mobilenet_v2 or resnet18")
    what.add_argument("--module", metavar="PKG.MOD:FACTORY",
                      help="a factory returning the network, e.g. e4gym.dnn.sequences:tiny_yolov3_blocks")
    p.add_argument("--name", help="the model's name (--module; default: the factory's name)")
    p.add_argument("--input", default="3x224x224", metavar="CxHxW", help="input shape (--module; default 3x224x224)")
    p.add_argument("--exits", type=int, nargs="+", default=[], metavar="BLOCK",
                   help="block indices after which early exits go, with e4gym's early head (--module)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes of the early heads (--module)")
    p.add_argument("--accuracy", type=float, nargs="+", metavar="A",
                   help="each exit's accuracy in (0, 1] (--module; a new file needs them, an existing one keeps "
                        "its own)")
    p.add_argument("--accuracy-source", help="where those accuracies come from (recorded in the YAML)")
    p.add_argument("--out", default=None, help="output path (default: configs/models/NAME.yaml)")
    p.set_defaults(func=cmd_profile)

    from e4gym.bench.cli import add_bench_parser
    from e4gym.bench.reproduce import add_reproduce_parser
    from e4gym.bench.sweep import add_sweep_parser

    add_bench_parser(sub)
    add_sweep_parser(sub)
    add_reproduce_parser(sub)
    if not torch_verbs:
        return parser
    from e4gym.dnn.train_exits import add_train_exits_parser
    from e4gym.hardware.cloud_server import add_serve_cloud_parser
    from e4gym.workload.distill import add_distill_parser
    from e4gym.workload.record import add_record_parser

    add_train_exits_parser(sub)
    add_record_parser(sub)
    add_distill_parser(sub)
    add_serve_cloud_parser(sub)
    # Verbs from other packages (e.g. `train` from agents/): entry points of the `e4gym.cli` group, each a
    # function that registers its sub-parser. e4gym itself never imports agents/ or baselines/.
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="e4gym.cli"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``e4gym`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(torch_verbs=verb not in _LIGHT_VERBS).parse_args(argv)
    if getattr(args, "setting", "unset") is None:
        args.setting = ["top", "1190,803@2", "default"]
    try:
        return int(args.func(args) or 0)
    except E4gymError as exc:
        print(f"e4gym {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; finished work is kept (files are atomic)
        print(f"e4gym {args.verb}: interrupted; finished results are kept, run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
