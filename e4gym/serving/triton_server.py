"""The server side of :mod:`e4gym.serving.triton`: a real Triton Inference Server run through PyTriton.

Run only by the server environment (``.venv-triton``, ``make triton-env``: ``nvidia-pytriton`` pins
``numpy<2``, so it cannot share the project's environment), as
``.venv-triton/bin/python -m e4gym.serving.triton_server --http-port P --parent-pid PID``; the client
(:class:`e4gym.serving.triton.TritonServer`) starts it and talks to it over two channels:

- **control** (this process's stdin and stdout, one JSON object a line): ``{"cmd": "bind", ...}`` binds a network
  under a new Triton model name with a batching configuration, ``{"cmd": "unload", "name": ...}`` unloads one,
  ``{"cmd": "stop"}`` stops the server. Every command gets one reply, ``{"ok": true, ...}`` or ``{"ok": false,
  "error": "<one line>"}``. The first line this process writes is ``{"event": "ready", ...}`` (or ``{"event":
  "failed", "error": ...}``) once Triton answers. Anything else written to stdout (PyTriton's, Triton's) is sent
  to stderr, so the control channel carries only replies.
- **inference** (Triton's HTTP endpoint on ``127.0.0.1:P``, the KServe v2 protocol): requests and statistics.

Each bound model takes one input, ``image`` (FP32, ``(3, H, W)`` per request), and returns ``top1`` (INT32, the
predicted class); Triton's dynamic batcher stacks requests up to ``max_batch_size`` and PyTriton's instances
(``instances`` threads of this process, sharing the GIL) run the network on the batches. torch runs one thread
(per instance: one intra-op thread in all, so instances do not oversubscribe the cores).

This process never outlives its run: it stops on SIGTERM or SIGINT, on end of input on stdin (the client closed
the pipe or died), and when its parent dies (:func:`e4gym.hardware.restore.die_with_parent`: the kernel's
``PR_SET_PDEATHSIG`` and a parent-pid watch). PyTriton starts ``tritonserver`` with ``PR_SET_PDEATHSIG`` too,
and stopping stops it (SIGINT, then SIGKILL after PyTriton's timeout).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import sysconfig
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import IO, Any

#: Networks this server builds besides :func:`e4gym.dnn.multiexit.build_multiexit`'s.
TINY = "tiny"
#: Name of the input and output tensors of every bound model.
INPUT, OUTPUT = "image", "top1"


class _Stop(Exception):
    """Raised in the main thread (by the signal handler) to stop the server; ``args[0]`` says why."""


def tiny_net() -> Any:
    """A tiny conv net for tests (about 1.6 k parameters): two strided 3×3 convolutions, average pool, 10 classes."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(16, 10),
    )


def servable() -> list[str]:
    """Networks :func:`build_net` builds: :data:`TINY` and the backbones of ``build_multiexit``."""
    from e4gym.dnn.multiexit import DEFAULT_EXITS

    return [TINY, *sorted(DEFAULT_EXITS)]


def build_net(network: str, seed: int = 0) -> Callable[[Any], Any]:
    """``network``'s logits function ``(B, 3, H, W) tensor -> (B, classes) tensor``, in eval mode, seeded weights.

    The multi-exit networks run to their last exit (the whole network).

    Raises:
        ValueError: ``network`` is not one of :func:`servable`.
    """
    import torch

    names = servable()
    if network not in names:
        raise ValueError(f"unknown network {network!r}; servable: {', '.join(names)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if network == TINY:
            net = tiny_net().eval()
            return net
        from e4gym.dnn.multiexit import build_multiexit

        multi = build_multiexit(network).eval()
    return lambda x: multi(x).logits


class _Service:
    """The PyTriton server and the models bound to it (called from the main thread only)."""

    def __init__(self, http_port: int, log_verbose: int) -> None:
        import numpy as np
        import torch
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        self.np, self.torch = np, torch
        torch.set_num_threads(1)
        config = TritonConfig(http_address="127.0.0.1", http_port=http_port, allow_grpc=False, allow_metrics=False,
                              log_verbose=log_verbose, exit_timeout_secs=5)
        # No token on the statistics and repository endpoints: the client reads them, and Triton listens on the
        # loopback interface only.
        self.triton = Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=[]))
        self.url = f"http://127.0.0.1:{http_port}"
        self.nets: dict[str, Callable[[Any], Any]] = {}

    def start(self) -> None:
        """Start ``tritonserver`` and wait until it answers (PyTriton's ``run``)."""
        self.triton.run()

    def tritonserver_pid(self) -> int | None:
        """The ``tritonserver`` process's pid (None where PyTriton does not say)."""
        cmd = getattr(getattr(self.triton, "_triton_server", None), "_tritonserver_running_cmd", None)
        return getattr(cmd, "pid", None)

    def bind(self, name: str, network: str, input_shape: list[int], max_batch_size: int, instances: int,
             max_queue_delay_us: int) -> dict[str, Any]:
        """Bind ``network`` as Triton model ``name`` with a dynamic batcher; returns when Triton has loaded it."""
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        np, torch = self.np, self.torch
        if network not in self.nets:
            self.nets[network] = build_net(network)
        net = self.nets[network]

        def make_instance() -> Callable[..., dict[str, Any]]:
            @batch
            def infer(**inputs: Any) -> dict[str, Any]:
                with torch.no_grad():
                    logits = net(torch.from_numpy(np.ascontiguousarray(inputs[INPUT], dtype=np.float32)))
                return {OUTPUT: logits.argmax(dim=-1, keepdim=True).numpy().astype(np.int32)}

            return infer

        t0 = time.perf_counter()
        self.triton.bind(
            model_name=name,
            infer_func=[make_instance() for _ in range(instances)],
            inputs=[Tensor(name=INPUT, dtype=np.float32, shape=tuple(input_shape))],
            outputs=[Tensor(name=OUTPUT, dtype=np.int32, shape=(1,))],
            config=ModelConfig(max_batch_size=max_batch_size,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=max_queue_delay_us)),
            strict=True,
        )
        return {"bind_s": time.perf_counter() - t0}

    def unload(self, name: str) -> dict[str, Any]:
        """Stop model ``name``'s instances and unload it from Triton (PyTriton has no public call for one model)."""
        t0 = time.perf_counter()
        models = self.triton._model_manager._models  # (name lowercased, version) -> pytriton Model
        key = next((k for k in models if k[0] == name.lower()), None)
        if key is None:
            raise ValueError(f"no model {name!r} is bound; bound: {', '.join(k[0] for k in models) or 'none'}")
        models.pop(key).clean()
        req = urllib.request.Request(f"{self.url}/v2/repository/models/{name}/unload", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
        return {"unload_s": time.perf_counter() - t0}

    def stop(self) -> None:
        """Stop Triton (PyTriton sends it SIGINT and waits) and clean the workspace."""
        self.triton.stop()


def _ignore(_signum: int, _frame: object) -> None:
    """A signal handler that does nothing (the server is already stopping)."""


def _handle(service: _Service, msg: dict[str, Any]) -> dict[str, Any]:
    """Run one control command; returns the reply's fields (raises on a bad command)."""
    cmd = msg.get("cmd")
    if cmd == "bind":
        return service.bind(str(msg["name"]), str(msg["network"]), [int(s) for s in msg["input_shape"]],
                            int(msg["max_batch_size"]), int(msg["instances"]), int(msg["max_queue_delay_us"]))
    if cmd == "unload":
        return service.unload(str(msg["name"]))
    if cmd == "ping":
        return {}
    raise ValueError(f"unknown command {cmd!r}; commands: bind, unload, ping, stop")


def serve(http_port: int, parent_pid: int | None, log_verbose: int = 0, *, home: str | None = None,
          control_in: IO[str] | None = None, control_out: IO[str] | None = None) -> str:
    """Run the server until stopped (see the module docstring); returns why it stopped.

    Args:
        http_port: Triton's HTTP port on 127.0.0.1.
        parent_pid: stop when this process (the parent) dies; None: do not watch.
        log_verbose: Triton's ``--log-verbose`` level (0: quiet).
        home: the client's temporary folder (PyTriton's workspace, the log), deleted here when the parent died
            (the parent deletes it otherwise).
        control_in, control_out: the control channel (default: stdin, and the file stdout was on entry; stdout
            itself is then sent to stderr).
    """
    if control_out is None:
        control_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    control_in = control_in or sys.stdin

    def reply(obj: dict[str, Any]) -> None:
        control_out.write(json.dumps(obj) + "\n")
        control_out.flush()

    def on_signal(signum: int, _frame: object) -> None:
        raise _Stop(f"got {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if parent_pid is not None:
        from e4gym.hardware.restore import die_with_parent

        die_with_parent(parent_pid)  # SIGTERM to this (main) thread when the parent dies
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The Python backend's stub links libpython: point the loader at this interpreter's (the Triton processes
    # PyTriton starts inherit this environment).
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
    service: _Service | None = None
    reason = "end of input on the control channel"
    try:
        try:
            service = _Service(http_port, log_verbose)
            service.start()
        except _Stop:
            raise
        except Exception as exc:
            reply({"event": "failed", "error": _one_line(exc)})
            return f"failed to start: {_one_line(exc)}"
        reply({"event": "ready", "pid": os.getpid(), "tritonserver_pid": service.tritonserver_pid(),
               "servable": servable(), "numpy": service.np.__version__, "torch": service.torch.__version__})
        for line in control_in:
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
                if msg.get("cmd") == "stop":
                    reason = "stop command"
                    break
                reply({"ok": True, **_handle(service, msg)})
            except _Stop:
                raise
            except Exception as exc:
                reply({"ok": False, "error": _one_line(exc)})
    except _Stop as exc:
        reason = str(exc.args[0])
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal must not interrupt the stop; not SIG_IGN:
            signal.signal(sig, _ignore)  # die_with_parent's watch would then exit at once instead of after a grace
        if service is not None:
            service.stop()
        if home and parent_pid is not None and os.getppid() != parent_pid:  # orphaned: no one else cleans up
            shutil.rmtree(home, ignore_errors=True)
    with contextlib.suppress(OSError, ValueError):  # the client may have closed the channel already
        reply({"ok": True, "stopped": reason})
    return reason


def _one_line(exc: BaseException) -> str:
    """``exc`` as one line: its type and its message's lines joined."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m e4gym.serving.triton_server``)."""
    p = argparse.ArgumentParser(prog="python -m e4gym.serving.triton_server", description=__doc__.splitlines()[0])
    p.add_argument("--http-port", type=int, required=True, help="Triton's HTTP port on 127.0.0.1")
    p.add_argument("--parent-pid", type=int, default=None, help="stop when this process dies")
    p.add_argument("--log-verbose", type=int, default=0, help="Triton's --log-verbose level (default: 0)")
    p.add_argument("--home", default=None, help="the client's temporary folder, deleted if the parent died")
    args = p.parse_args(argv)
    reason = serve(args.http_port, args.parent_pid, args.log_verbose, home=args.home)
    print(f"e4gym triton_server: stopped ({reason})", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "e4gym-triton-server"
    sys.exit(main())
