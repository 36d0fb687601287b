"""``e4gym bench``: run an experiment config (scenarios × policies × seeds) and print its report.

Usage::

    e4gym bench --config quickstart --out runs/quickstart [--jobs N] [--force] [--quiet] [--frames N] [--seeds S ...]
                [--executor {local,ray}] [--address ADDR]

``--config`` takes a path or a name under ``configs/experiments/`` (format: :mod:`e4gym.bench.config`).
Outputs under ``--out`` (see :mod:`e4gym.bench.runner`): ``runs/`` (per-task results and traces),
``results.csv``, ``results.json``, ``report.md`` (also printed), ``tb/`` (``tensorboard --logdir OUT/tb``) and
``plots/``. ``--executor ray`` runs every task as a Ray task (``pip install 'e4gym[ray]'``; docs/ray.md): on a
Ray instance of this machine with ``--jobs`` CPUs, or on the cluster at ``--address``; the results come back and
are written here as the local executor writes them. Finished tasks are reused on the next invocation unless their
definition changed or ``--force`` is given; a stored result whose files are damaged is moved to ``quarantine/``
and its task runs again (one line on stderr). Exit status: 0 when every task has a result, 1 when a task failed
(the others still ran), 2 for a bad config, an ``--out`` that cannot take the outputs, ``--executor ray``
without Ray or an ``--address`` where no Ray cluster answers (one line, before any task runs or anything is
written), 130 on Ctrl-C (one line with the command that resumes: finished tasks are kept and not run again).

This module imports nothing heavy at import time (the ``e4gym`` command builds every verb's parser).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


#: ``(option, attribute)`` of every ``bench`` option but ``--force``, in the order of the resume command.
_RESUME_OPTIONS = (("--config", "config"), ("--out", "out"), ("--jobs", "jobs"), ("--quiet", "quiet"),
                   ("--frames", "frames"), ("--seeds", "seeds"), ("--backend", "backend"),
                   ("--sysfs-root", "sysfs_root"), ("--dry-run", "dry_run"), ("--read-only", "read_only"),
                   ("--thermal-limit-c", "thermal_limit_c"), ("--runner-device", "runner_device"),
                   ("--measured-profile", "measured_profile"), ("--executor", "executor"),
                   ("--address", "address"))


def resume_command(args: argparse.Namespace) -> str:
    """The shell command that resumes the run of ``args``: the same options without ``--force`` (which would
    run the finished tasks again)."""
    argv = ["e4gym", "bench"]
    for option, attr in _RESUME_OPTIONS:
        value = getattr(args, attr, None)
        if value is None or value is False:
            continue
        if value is True:
            argv.append(option)
        elif isinstance(value, (list, tuple)):
            argv += [option, *map(str, value)]
        else:
            argv += [option, str(value)]
    return shlex.join(argv)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark; print the report (stdout) and any failures (stderr). Returns the exit status.

    Ctrl-C (KeyboardInterrupt) prints one line on stderr (what is kept and the command that resumes) and returns
    130; the tasks that finished are on disk (written atomically) and the resumed run reuses them.
    """
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"e4gym bench: interrupted; finished tasks are kept under {os.path.join(args.out, 'runs')}, "
              f"resume with: {resume_command(args)}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    """:func:`cmd_bench` without the Ctrl-C handling."""
    from e4gym.bench.runner import run_benchmark
    from e4gym.errors import ConfigError

    backend = None
    if args.sysfs_root is not None and not os.path.isdir(args.sysfs_root):
        raise ConfigError(f"--sysfs-root {args.sysfs_root}: no such folder (give the board's / or a copy of its tree)")
    if args.backend is not None:
        kw = {k: v for k, v in (("sysfs_root", args.sysfs_root), ("dry_run", args.dry_run or None),
                                ("read_only", args.read_only or None), ("thermal_limit_c", args.thermal_limit_c),
                                ("runner_device", args.runner_device)) if v is not None}
        if args.backend == "emulated" and args.measured_profile:
            kw = {"measured": args.measured_profile}
        backend = {"backend": args.backend, "backend_kwargs": kw}
    elif args.sysfs_root or args.dry_run or args.read_only or args.measured_profile:
        raise ConfigError("--sysfs-root, --dry-run, --read-only and --measured-profile need --backend")
    res = run_benchmark(args.config, args.out, jobs=args.jobs, force=args.force, frames=args.frames,
                        quiet=args.quiet, backend=backend, seeds=args.seeds,
                        executor=getattr(args, "executor", None) or "local", address=getattr(args, "address", None))
    print(res.report, end="")
    print(f"\noutputs in {res.out}: results.csv, results.json, report.md, plots/, tb/ "
          f"({res.ran} task(s) run, {res.reused} reused, {res.wall_s:.1f} s)")
    return report_failures("bench", res.failures)


def report_failures(verb: str, failures: list) -> int:
    """Print a run's failed tasks to stderr, one line each; the verb's exit status (1 if any failed, else 0)."""
    if not failures:
        return 0
    print(f"e4gym {verb}: {len(failures)} task(s) failed:", file=sys.stderr)
    for f in failures:
        print(f"  {f.describe()}", file=sys.stderr)
    return 1


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--executor`` and ``--address`` (``bench`` and ``reproduce``)."""
    p.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="where tasks run: local worker processes (default) or Ray tasks (pip install 'e4gym[ray]'; "
                        "docs/ray.md)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="with --executor ray: the Ray cluster to run on (host:port or auto; checked first, a few "
                        "seconds at most; default: a Ray instance of this machine with --jobs CPUs, started and shut "
                        "down by the run)")


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``bench`` verb."""
    p = sub.add_parser("bench", help="run a matrix of scenarios × policies × seeds; tables, plots, TensorBoard",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True,
                   help="experiment config: a YAML path or a name under configs/experiments/ (e.g. quickstart)")
    p.add_argument("--out", required=True, help="output folder (reused: finished tasks are not run again)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="worker processes (default: min(CPU count, tasks to run); 1 runs in-process)")
    p.add_argument("--force", action="store_true", help="re-run tasks that already have a result")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--frames", type=_positive_int, default=None,
                   help="override episode_frames (frames per episode) of every scenario, e.g. for a smoke run")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="override the config's seeds (e.g. --seeds 0 for a one-seed smoke run)")
    add_executor_arguments(p)
    g = p.add_argument_group("backend (default: the emulator)")
    g.add_argument("--backend", choices=("emulated", "jetson"), default=None,
                   help="run every scenario on this backend (jetson: a real board through sysfs)")
    g.add_argument("--sysfs-root", default=None, help="jetson: root of the board's file tree (default /)")
    g.add_argument("--dry-run", action="store_true", help="jetson: print every clock write instead of doing it")
    g.add_argument("--read-only", action="store_true", help="jetson: never write; measure only")
    g.add_argument("--thermal-limit-c", type=float, default=None, help="jetson: stop and restore above this (°C)")
    g.add_argument("--runner-device", default=None, help="jetson: torch device of the network (cuda or cpu)")
    g.add_argument("--measured-profile", default=None, help="emulated: a profile from `e4gym profile-device`")
    p.set_defaults(func=cmd_bench)
