"""``e4gym serve-cloud``: the cloud side of real edge-cloud offloading (DVFO on a real board).

The server loads a multi-exit network (:func:`e4gym.dnn.multiexit.build_multiexit`), keeps its *tail* after the
split block (blocks ``split_block+1..`` and the last exit's head) and answers the edge's ``INFER`` requests in the
wire format of :mod:`e4gym.hardware.cloud`: for each, it acknowledges the request's arrival, dequantises the
offloaded channels into a zero tensor of the split's shape (the channels the edge kept stay zero), runs the tail
(``torch.no_grad``, one torch thread on CPU) and replies with the top-5 classes and its compute time.

A real server never outlives its run. It serves one connection at a time, sequentially, and stops

- on SIGTERM or SIGINT;
- when the process that started it dies (Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, and a parent-pid watch
  where that is missing), unless ``exit_with_parent=False`` (``--no-exit-with-parent``);
- after ``idle_timeout_s`` without a request (with or without a client connected);
- after ``max_frames`` frames, when given.

torch is imported when :func:`serve` runs, not with this module.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.errors import ConfigError, HardwareError
from e4gym.hardware.cloud import (
    ACK,
    ERROR,
    HEADER,
    INFER,
    RESULT,
    CloudProtocolError,
    decode_header,
    decode_meta,
    dequantise,
    encode_message,
)

#: How often (s) a waiting server checks its parent and its idle time.
POLL_S = 0.25
#: Default idle timeout (s): the server stops after this long without a request.
DEFAULT_IDLE_TIMEOUT_S = 600.0
#: Classes in a RESULT.
TOP_K = 5
#: Input side (pixels) at which the split's shape is computed.
INPUT_SIZE = 224
_PR_SET_PDEATHSIG = 1


class _Stop(Exception):
    """Raised (by a signal handler or a watchdog check) to stop the server; ``args[0]`` says why."""


class _PeerGone(Exception):
    """The client closed its connection (``args[0]``: between messages, or mid-message and where)."""


@dataclass(frozen=True)
class ServeSummary:
    """Why the server stopped and what it served."""

    reason: str
    frames: int
    connections: int


def _set_pdeathsig(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class _Server:
    def __init__(self, model: str, split_block: int | None, device: str, weights: str | Path | None,
                 seed: int) -> None:
        import torch

        from e4gym.dnn.lite import packaged_weights
        from e4gym.dnn.multiexit import build_multiexit
        from e4gym.dnn.nets import load_torchvision_weights
        from e4gym.dnn.offload import default_split
        from e4gym.dnn.profile import load_model_profile

        self.torch = torch
        try:
            self.device = torch.device(device)
        except RuntimeError as exc:
            raise ConfigError(f"--device {device!r}: {exc}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available here; use --device cpu")
        self.model = model
        if weights is None:
            try:
                weights = packaged_weights(model)
            except ConfigError:
                weights = None  # the package that ships them is missing: random weights, said in the banner
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_multiexit(model)
        if weights is not None:
            load_torchvision_weights(net, weights)
            self.weights = str(weights)
        else:
            self.weights = f"random (seed {seed})"
        self.net = net.to(self.device).eval()
        if split_block is None:
            split_block = default_split(load_model_profile(model))
        if not (isinstance(split_block, int) and 0 <= split_block < net.n_blocks - 1):
            raise ConfigError(f"--split-block must be in 0..{net.n_blocks - 2} for {model} (the last block cannot be "
                              f"split off), got {split_block!r}")
        self.split = split_block
        with torch.no_grad():
            x = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=self.device)
            for i in range(split_block + 1):
                x = net.run_block(i, x)
        self.shape = tuple(int(s) for s in x.shape[1:])

    def check(self, meta: dict[str, Any], payload_len: int) -> tuple[list[int], tuple[int, int, int], float]:
        """The request's channels, shape and scale; ValueError (one line) if it does not fit this server."""
        if meta.get("model") != self.model or meta.get("split_block") != self.split:
            raise ValueError(f"this server runs {self.model} split after block {self.split}, the request is for "
                             f"{meta.get('model')!r} split after block {meta.get('split_block')!r}; start the server "
                             f"with the edge's --model and --split-block")
        if meta.get("dtype", "int8") != "int8":
            raise ValueError(f"dtype {meta.get('dtype')!r}: only int8 is served")
        shape = meta.get("shape")
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)
                and shape[0] == self.shape[0]):
            raise ValueError(f"shape {shape!r}: expected [{self.shape[0]}, H, W] (the split's maps, "
                             f"{list(self.shape)} at {INPUT_SIZE}x{INPUT_SIZE} input)")
        channels = meta.get("channels")
        if not (isinstance(channels, list) and all(isinstance(c, int) and 0 <= c < shape[0] for c in channels)
                and len(set(channels)) == len(channels)):
            raise ValueError(f"channels must be distinct indices in 0..{shape[0] - 1}")
        if payload_len != len(channels) * shape[1] * shape[2]:
            raise ValueError(f"payload of {payload_len} B, expected {len(channels)}x{shape[1]}x{shape[2]} int8")
        scale = meta.get("scale")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale {scale!r}: expected a finite number > 0")
        return channels, (shape[0], shape[1], shape[2]), float(scale)

    def infer(self, channels: list[int], shape: tuple[int, int, int], scale: float,
              payload: bytes) -> tuple[list[int], list[float], float]:
        """Top-k classes, their probabilities and the compute time (ms) of the tail on the offloaded channels."""
        torch = self.torch
        t0 = time.perf_counter()
        q = np.frombuffer(payload, dtype=np.int8).reshape(len(channels), shape[1], shape[2])
        x = torch.zeros((1, *shape), dtype=torch.float32)
        if channels:
            x[0, channels] = torch.from_numpy(dequantise(q, scale))
        with torch.no_grad():
            x = x.to(self.device)
            for i in range(self.split + 1, self.net.n_blocks):
                x = self.net.run_block(i, x)
            logits = self.net.run_head(self.net.n_exits - 1, x)
            probs, classes = torch.softmax(logits.float(), dim=-1)[0].topk(min(TOP_K, logits.shape[-1]))
            probs, classes = probs.cpu().tolist(), classes.cpu().tolist()  # .cpu() waits for CUDA
        return classes, probs, (time.perf_counter() - t0) * 1e3


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    model: str = "efficientnet_b0",
    split_block: int | None = None,
    device: str = "cpu",
    weights: str | Path | None = None,
    max_frames: int | None = None,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    *,
    seed: int = 0,
    exit_with_parent: bool = True,
    announce: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> ServeSummary:
    """Serve the tail of ``model`` after ``split_block`` on ``host:port`` until stopped (see the module docstring).

    Args:
        host, port: where to listen (port 0: a free port, named in the announcement).
        model: a network of :func:`~e4gym.dnn.multiexit.build_multiexit`.
        split_block: the edge's split (default :func:`e4gym.dnn.offload.default_split` of the model's profile).
        device: torch device of the tail (``cpu``, ``cuda``, ``cuda:1``).
        weights: a state dict for the backbone (default: the packaged weights where there are some, e.g.
            EfficientNet-Lite0's, else a random initialisation seeded with ``seed``).
        max_frames: stop after this many frames (None: no limit).
        idle_timeout_s: stop after this long (s) without a request.
        exit_with_parent: stop when the parent process dies.
        announce: called once with the listening line (default: print it, flushed, to stdout).
        log: called with one line per dropped connection or refused request (default: stderr).

    Raises:
        ConfigError: a bad argument. HardwareError: cannot listen on ``host:port``.
    """
    if max_frames is not None and not (isinstance(max_frames, int) and max_frames >= 1):
        raise ConfigError(f"max_frames must be an integer >= 1 or None, got {max_frames!r}")
    if not (math.isfinite(idle_timeout_s) and idle_timeout_s > 0):
        raise ConfigError(f"idle_timeout_s must be > 0 s, got {idle_timeout_s}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an integer in 0..65535 (0: a free one), got {port!r}")
    announce = announce or (lambda line: print(line, flush=True))
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    parent = os.getppid()
    if exit_with_parent:
        _set_pdeathsig()
    stop_reason: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        raise _Stop(f"got {signal.Signals(signum).name}")

    main_thread = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
    frames = connections = 0
    threads: list[int] = []  # torch's thread count to restore
    try:
        if exit_with_parent and os.getppid() != parent:
            raise _Stop("the parent process died")
        import torch

        server = _Server(model, split_block, device, weights, seed)
        if server.device.type == "cpu":
            threads.append(torch.get_num_threads())
            torch.set_num_threads(1)
        try:
            lsock = socket.create_server((host, port))
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise HardwareError(f"cannot listen on {host}:{port}: {why}; choose another --host or "
                                f"--port (or stop what holds it)") from None
        last = time.monotonic()

        def watchdog() -> None:
            if exit_with_parent and os.getppid() != parent:
                raise _Stop("the parent process died")
            if time.monotonic() - last > idle_timeout_s:
                raise _Stop(f"no request for {idle_timeout_s:g} s")

        def recv(conn: socket.socket, n: int, what: str, between: bool = False) -> tuple[bytes, float]:
            """``n`` bytes and the time the first of them arrived, polling the watchdog while waiting."""
            buf, first = bytearray(), 0.0
            while len(buf) < n:
                try:
                    chunk = conn.recv(min(n - len(buf), 1 << 20))
                except TimeoutError:
                    watchdog()
                    continue
                if not chunk:
                    raise _PeerGone("" if between and not buf else f"after {len(buf)} of {n} bytes of the {what}")
                if not buf:
                    first = time.perf_counter()
                buf += chunk
            return bytes(buf), first

        with lsock:
            lsock.settimeout(POLL_S)
            bound = lsock.getsockname()
            announce(f"e4gym serve-cloud: listening on {bound[0]}:{bound[1]} (model {model}, split block "
                     f"{server.split}, split shape {'x'.join(map(str, server.shape))}, device {server.device}, "
                     f"weights {server.weights}, pid {os.getpid()})")
            while max_frames is None or frames < max_frames:
                try:
                    conn, peer = lsock.accept()
                except TimeoutError:
                    watchdog()
                    continue
                connections += 1
                with conn:
                    conn.settimeout(POLL_S)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    try:
                        while max_frames is None or frames < max_frames:
                            head, t_first = recv(conn, HEADER.size, "header", between=True)
                            kind, frame, meta_len, payload_len = decode_header(head)
                            body = recv(conn, meta_len, "metadata")[0] if meta_len else b""
                            payload = recv(conn, payload_len, "payload")[0] if payload_len else b""
                            t_last = time.perf_counter()
                            last = time.monotonic()
                            meta = decode_meta(body)
                            if kind != INFER:
                                raise CloudProtocolError(f"expected an INFER message, got type {kind}")
                            try:
                                channels, shape, scale = server.check(meta, payload_len)
                            except ValueError as exc:
                                log(f"e4gym serve-cloud: refused frame {frame} from {peer[0]}:{peer[1]}: {exc}")
                                conn.sendall(encode_message(ERROR, frame, {"error": str(exc)}))
                                continue
                            conn.sendall(encode_message(ACK, frame, {"recv_ms": (t_last - t_first) * 1e3}))
                            classes, scores, ms = server.infer(channels, shape, scale, payload)
                            conn.sendall(encode_message(RESULT, frame, {"classes": classes, "scores": scores,
                                                                        "server_ms": ms}))
                            frames += 1
                            last = time.monotonic()
                    except _PeerGone as exc:
                        if exc.args[0]:
                            log(f"e4gym serve-cloud: client {peer[0]}:{peer[1]} dropped the connection "
                                f"{exc.args[0]}")
                    except CloudProtocolError as exc:
                        log(f"e4gym serve-cloud: dropped client {peer[0]}:{peer[1]}: {exc}")
                        with contextlib.suppress(OSError):
                            conn.sendall(encode_message(ERROR, 0, {"error": str(exc)}))
                    except OSError as exc:
                        log(f"e4gym serve-cloud: client {peer[0]}:{peer[1]}: {exc.strerror or exc}")
                last = time.monotonic()
            stop_reason.append(f"served max_frames={max_frames}")
    except _Stop as exc:
        stop_reason.append(str(exc.args[0]))
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if threads:
            sys.modules["torch"].set_num_threads(threads[0])
    return ServeSummary(stop_reason[0] if stop_reason else "stopped", frames, connections)


def cmd_serve_cloud(args: argparse.Namespace) -> int:
    """Run the server until it stops; print why."""
    summary = serve(args.host, args.port, args.model, args.split_block, device=args.device, weights=args.weights,
                    max_frames=args.max_frames, idle_timeout_s=args.idle_timeout, seed=args.seed,
                    exit_with_parent=args.exit_with_parent)
    print(f"e4gym serve-cloud: stopped ({summary.reason}); {summary.frames} frame(s) served over "
          f"{summary.connections} connection(s)", flush=True)
    return 0


def add_serve_cloud_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``serve-cloud`` verb on ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "serve-cloud",
        help="run a network's tail for edge-cloud offloading (the cloud side of DVFO on a real board)",
        description="Serve the tail of a multi-exit network after its split block over TCP (wire format: "
                    "docs/cloud.md): the edge sends the offloaded channels of the split's int8 feature maps, the "
                    "server replies with the top-5 classes. One client at a time. Stops on SIGTERM/SIGINT, when its "
                    "parent process dies, after --idle-timeout without a request, or after --max-frames.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0: all)")
    p.add_argument("--port", type=int, default=5190, help="TCP port (default: %(default)s; 0: a free one)")
    p.add_argument("--model", default="efficientnet_b0", help="network (default: %(default)s)")
    p.add_argument("--split-block", type=int, default=None,
                   help="the block after which the edge splits (default: e4gym.dnn.offload.default_split)")
    p.add_argument("--device", default="cpu", help="torch device of the tail: cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--weights", type=Path, default=None,
                   help="backbone state dict (default: packaged weights where there are some, else random)")
    p.add_argument("--seed", type=int, default=0, help="seed of a random initialisation (default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S, metavar="S",
                   help="stop after S seconds without a request (default: %(default)s)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--exit-with-parent", action=argparse.BooleanOptionalAction, default=True,
                   help="stop when the process that started the server dies (default: on)")
    p.set_defaults(func=cmd_serve_cloud)
    return p
