"""Real split inference on a board (DVFO on a real Jetson): the edge runs a network to its split, ranks the split's
channels with the attention module, sends the least important share to ``e4gym serve-cloud`` over TCP while it
runs the rest of the network on the kept channels, and waits for the server's result.

:class:`SplitRunner` is the :class:`~e4gym.hardware.runner.WorkRunner` the edge-cloud env
(:mod:`e4gym.envs.edge_cloud`) puts under a real backend's power monitor: ``run(work)`` for an edge work of a
:class:`~e4gym.dnn.offload.SplitPlan` (``<model>/split<S>/edge/share<s>``) executes all of it for real and returns
the time from the frame's start until both the edge's part and the cloud's reply are done (s); the backend
integrates the board's power over that window (the board is powered while it waits for the reply). What happened
is in :attr:`SplitRunner.last` (an :class:`OffloadRecord`): the edge's compute time, the send time up to the
server's ACK, the server's compute time, the bytes on the wire, and the *measured* importance of the offloaded
channels (from the attention over this frame's real feature maps, not the emulator's draw).

A dropped or timed-out connection **fails the frame** (``last.failed`` says why; the client is closed and the next
frame reconnects); a server that cannot be reached again, or that refuses the frame (another model or split),
raises: the env closes and the board is restored. Other Work keys (e.g. a whole frame) go to the wrapped
:class:`~e4gym.hardware.runner.TorchRunner` unchanged.

torch is imported when a :class:`SplitRunner` is built, not with this module.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from e4gym.dnn.work import Work
from e4gym.errors import ConfigError
from e4gym.hardware.cloud import CloudClient, CloudFrameError, CloudReply, CloudServerError, quantise_int8

if TYPE_CHECKING:  # pragma: no cover
    from e4gym.dnn.offload import SplitPlan
    from e4gym.hardware.runner import TorchRunner

__all__ = ["OffloadRecord", "SplitRunner"]


@dataclass(frozen=True)
class OffloadRecord:
    """What one real split frame did (times in s).

    Attributes:
        share: the offload share. channels: channels sent (of the split's C).
        edge_s: the edge's compute (head, attention, quantisation, the tail on the kept channels).
        send_start_s: from the frame's start to the send's first byte. send_s: from the first byte to the server's
            ACK of the last (0: nothing sent). cloud_s: the server's compute time. total_s: from the frame's start
            until the edge's part and the cloud's reply are both done (or the failure).
        wire_bytes: bytes of the request on the wire (header, metadata, int8 payload; 0: nothing sent).
        importance: share of the attention importance in the offloaded channels (measured on this frame).
        fused_class: top-1 class of the fused prediction (``lambda = 1 − importance`` on the edge's softmax, the
            rest on the cloud's top-5); the edge's alone when nothing was sent or the send failed; -1 at share 1
            when the send failed.
        failed: why the offload failed (the connection dropped or timed out), or ``None``.
    """

    share: float
    channels: int
    edge_s: float
    send_start_s: float
    send_s: float
    cloud_s: float
    total_s: float
    wire_bytes: int
    importance: float
    fused_class: int
    failed: str | None = None


class SplitRunner:
    """Run a :class:`~e4gym.dnn.offload.SplitPlan`'s edge works for real, offloading through a
    :class:`~e4gym.hardware.cloud.CloudClient`.

    Args:
        runner: the board's :class:`~e4gym.hardware.runner.TorchRunner` (its network runs the edge's part).
        plan: the split (``plan.split >= 0``: the server runs a tail after a block, not the raw input).
        client: the connection to ``e4gym serve-cloud`` started with the same model and split block.

    Raises:
        ConfigError: ``split_block=-1`` (sending the input is emulated only), a runner for another network, or
            ``batch != 1``.
    """

    def __init__(self, runner: TorchRunner, plan: SplitPlan, client: CloudClient) -> None:
        import torch

        from e4gym.dnn.attention import SpatialChannelAttention

        if plan.split < 0:
            raise ConfigError("split_block=-1 (sending the input frame) is emulated only: `e4gym serve-cloud` runs a "
                              "network's tail after a split block >= 0; pass split_block >= 0 on a real board")
        if runner.model != plan.profile.name:
            raise ConfigError(f"the board's runner holds {runner.model!r}, the split is of {plan.profile.name!r}")
        self.runner, self.plan, self.client = runner, plan, client
        self._torch = torch
        self._shares = {w.key: i for i, w in enumerate(plan.edge)}
        self._attention = SpatialChannelAttention(int(plan.split_shape[0])).to(runner.device).eval()
        self._frame = 0
        self.last: OffloadRecord | None = None

    @property
    def model(self) -> str:
        """The network's name (as :class:`~e4gym.hardware.runner.TorchRunner`)."""
        return self.runner.model

    def run(self, work: Work, batch: int = 1) -> float:
        """Run ``work`` (an edge work of the plan: for real, offloading its share; any other: the wrapped runner's)
        and return its time (s): until the edge's part and the cloud's reply are both done.

        Raises:
            ConfigError: batch is not 1 for a split work. HardwareError: the server cannot be reached, or refused the
                frame (:class:`~e4gym.hardware.cloud.CloudServerError`).
        """
        i = self._shares.get(work.key)
        if i is None:
            self.last = None
            return self.runner.run(work, batch)
        if batch != 1:
            raise ConfigError(f"split inference runs one frame at a time (batch 1), got batch {batch!r}")
        self._frame += 1
        return self._split_frame(self.plan.shares[i])

    def _split_frame(self, share: float) -> float:
        torch, r, plan, net = self._torch, self.runner, self.plan, self.runner.net
        r.new_frame()
        x = r.fresh_input(1)  # made before the clock starts
        reply: list[CloudReply | BaseException] = []
        sender: threading.Thread | None = None
        send_start = 0.0
        n_off, importance = 0, 0.0
        edge_probs = None
        t0 = time.perf_counter()
        with torch.inference_mode():
            act = x
            for b in range(plan.split + 1):
                act = net.run_block(b, act)
            if share > 0.0:
                _, imp = self._attention(act)
                imp = imp[0].float().cpu().numpy().astype(np.float64)
                order = np.argsort(imp, kind="stable")  # least important first
                n_off = round(share * imp.size)
                off = order[:n_off]
                importance = float(imp[off].sum() / max(imp.sum(), 1e-300))
                q, scale = quantise_int8(act[0].float().cpu().numpy())
                send_start = time.perf_counter() - t0
                sender = threading.Thread(target=self._send, args=(q, off.tolist(), scale, reply),
                                          name="e4gym-offload", daemon=True)
                sender.start()
                if share < 1.0:
                    act = act.clone()
                    act[:, torch.as_tensor(off, device=act.device, dtype=torch.long)] = 0
            if share < 1.0:
                for b in range(plan.split + 1, net.n_blocks):
                    act = net.run_block(b, act)
                edge_probs = torch.softmax(net.run_head(net.n_exits - 1, act).float(), dim=-1)[0]
                if r.device.type == "cuda":
                    torch.cuda.synchronize(r.device)
        edge_s = time.perf_counter() - t0
        if sender is not None:
            sender.join()
        total = time.perf_counter() - t0
        r.new_frame()
        result = reply[0] if reply else None
        # A refused frame (another model or split) or a server that cannot be reached again ends the run; a dropped
        # or timed-out connection fails this frame only.
        if isinstance(result, BaseException) and (isinstance(result, CloudServerError)
                                                  or not isinstance(result, CloudFrameError)):
            raise result
        failed = str(result) if isinstance(result, BaseException) else None
        edge_top = int(edge_probs.argmax()) if edge_probs is not None else -1
        if isinstance(result, CloudReply):
            fused = self._fuse(edge_probs, result, 1.0 - importance)
            send_s, cloud_s, wire = result.send_s, result.server_ms * 1e-3, result.wire_bytes
        else:
            fused, send_s, cloud_s, wire = edge_top, 0.0, 0.0, 0
        self.last = OffloadRecord(share, n_off, edge_s, send_start, send_s, cloud_s, total, wire, importance, fused,
                                  failed)
        return total

    def _send(self, q: np.ndarray, channels: list[int], scale: float, out: list[Any]) -> None:
        try:
            out.append(self.client.infer(self._frame, q, channels, scale, self.plan.profile.name, self.plan.split))
        except BaseException as exc:  # handed to the frame's thread, which decides
            out.append(exc)

    @staticmethod
    def _fuse(edge_probs: Any, reply: CloudReply, weight: float) -> int:
        """Top-1 class of ``weight · edge + (1 − weight) · cloud`` (the cloud's probabilities: its top-k)."""
        scores: dict[int, float] = {}
        if edge_probs is not None:
            top = edge_probs.topk(min(len(reply.classes) or 1, edge_probs.numel()))
            for p, c in zip(top.values.tolist(), top.indices.tolist()):
                scores[int(c)] = weight * float(p)
        else:
            weight = 0.0
        for c, p in zip(reply.classes, reply.scores):
            scores[int(c)] = scores.get(int(c), 0.0) + (1.0 - weight) * float(p)
        return max(scores, key=scores.__getitem__) if scores else -1

    def close(self) -> None:
        """Close the connection and the wrapped runner."""
        self.client.close()
        self.runner.close()
