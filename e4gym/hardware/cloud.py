"""Real edge-cloud offloading (DVFO on a real board): the wire format between the edge and ``e4gym serve-cloud``,
int8 quantisation of feature maps, and the edge's TCP client.

The edge runs a network up to its split block, quantises the split's feature maps to int8 and sends the offloaded
channels to a server that runs the network's tail (:mod:`e4gym.hardware.cloud_server`, ``e4gym serve-cloud``).
This module does not import torch.

Wire format, version 1
======================

One TCP connection carries a sequence of frames; each request is answered in order. Every message is a fixed
24-byte header, then a UTF-8 JSON metadata block, then a binary payload. Integers are big-endian (network order,
``struct`` format ``>4sBBHQII``):

====== ======= ============================================================================================
offset bytes   field
====== ======= ============================================================================================
0      4       magic ``b"E4GC"``
4      1       version (:data:`WIRE_VERSION`, 1)
5      1       message type: 1 ``INFER`` (edge → server), 2 ``ACK`` (server → edge: the full request arrived),
               3 ``RESULT`` (server → edge), 4 ``ERROR`` (server → edge: the request was refused)
6      2       flags, 0 (reserved)
8      8       frame number (unsigned; the edge's, echoed in the ACK, RESULT or ERROR)
16     4       JSON metadata length ``M`` (bytes, at most :data:`MAX_META_BYTES`)
20     4       payload length ``P`` (bytes, at most :data:`MAX_PAYLOAD_BYTES`)
24     M       JSON metadata (an object)
24+M   P       payload
====== ======= ============================================================================================

``INFER`` metadata: ``{"model": str, "split_block": int, "shape": [C, H, W], "channels": [int, ...],
"scale": float, "dtype": "int8"}``: the network and split the edge ran, the shape of the whole split feature map,
the indices of the offloaded channels (distinct, in ``0..C-1``; the kept ones stay on the edge) and the scale of
the symmetric int8 quantisation (``x ≈ q · scale``, :func:`quantise_int8`). The payload is the offloaded channels'
int8 values, ``len(channels) × H × W`` bytes, in C order, channels in the order of ``channels``.

``ACK``: no metadata but ``{"recv_ms": float}`` (the server's time from the request's first byte to its last), no
payload. The server sends it as soon as the whole request has arrived, before it computes: the edge's *send time*
runs from its first byte written to the ACK's arrival (serialisation on the uplink plus one round trip of the
small ACK).

``RESULT`` metadata: ``{"classes": [int × k], "scores": [float × k], "server_ms": float}``: the top-k (k = 5)
classes of the tail's last exit and their softmax probabilities, best first, and the server's compute time
(dequantisation, the tail and the top-k, in ms). No payload.

``ERROR`` metadata: ``{"error": str}``, one line (a request for another model or split, a bad shape, ...). The
connection stays usable.

A server serves one connection at a time. A message with another magic or version, or lengths over the limits,
ends the connection.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from e4gym.errors import ConfigError, HardwareError

__all__ = [
    "ACK",
    "ERROR",
    "HEADER",
    "INFER",
    "MAGIC",
    "RESULT",
    "WIRE_VERSION",
    "CloudClient",
    "CloudFrameError",
    "CloudProtocolError",
    "CloudReply",
    "CloudServerError",
    "Message",
    "decode_header",
    "dequantise",
    "encode_message",
    "quantise_int8",
    "read_message",
]

MAGIC = b"E4GC"
WIRE_VERSION = 1
INFER, ACK, RESULT, ERROR = 1, 2, 3, 4
_TYPE_NAMES = {INFER: "INFER", ACK: "ACK", RESULT: "RESULT", ERROR: "ERROR"}
#: The fixed header: magic, version, type, flags, frame, metadata length, payload length.
HEADER = struct.Struct(">4sBBHQII")
#: Largest JSON metadata block accepted (bytes).
MAX_META_BYTES = 1 << 20
#: Largest payload accepted (bytes): 64 MiB, far above any split's feature maps.
MAX_PAYLOAD_BYTES = 64 << 20
#: Default limit (s) of each blocking step of the client: connecting, sending a frame, waiting for the ACK, waiting
#: for the result.
DEFAULT_TIMEOUT_S = 10.0


class CloudFrameError(HardwareError):
    """One frame could not be offloaded: the connection dropped, timed out or carried a malformed reply. The
    client has closed its connection; :meth:`CloudClient.connect` opens a new one."""


class CloudProtocolError(CloudFrameError):
    """A message that does not follow the wire format (wrong magic or version, truncated, bad metadata)."""


class CloudServerError(CloudFrameError):
    """The server refused the frame (its ERROR message: another model or split, a bad shape); the connection stays
    open."""


# ------------------------------------------------------------------------------------------------------------------
# Quantisation
# ------------------------------------------------------------------------------------------------------------------


def quantise_int8(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric per-tensor int8 quantisation: ``(q, scale)`` with ``q = round(x / scale)`` in -127..127 and
    ``scale = max|x| / 127`` (1.0 for an all-zero ``x``), so ``|x - q · scale| <= scale / 2``.

    Raises:
        ConfigError: ``x`` holds NaN or infinity.
    """
    x = np.asarray(x, dtype=np.float32)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if not math.isfinite(peak):
        raise ConfigError("cannot quantise feature maps holding NaN or infinity")
    scale = peak / 127.0 if peak > 0 else 1.0
    q = np.clip(np.rint(x / np.float32(scale)), -127, 127).astype(np.int8)
    return q, scale


def dequantise(q: np.ndarray, scale: float) -> np.ndarray:
    """``q · scale`` as float32 (the inverse of :func:`quantise_int8`, up to ``scale / 2``)."""
    return np.asarray(q, dtype=np.float32) * np.float32(scale)


# ------------------------------------------------------------------------------------------------------------------
# Messages
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One decoded message: its type, frame number, metadata and payload."""

    type: int
    frame: int
    meta: dict[str, Any]
    payload: bytes = b""


def encode_message(kind: int, frame: int, meta: dict[str, Any] | None = None, payload: bytes = b"") -> bytes:
    """The bytes of one message (header, JSON metadata, payload)."""
    if kind not in _TYPE_NAMES:
        raise ConfigError(f"unknown message type {kind}; types: {_TYPE_NAMES}")
    if not 0 <= int(frame) < 1 << 64:
        raise ConfigError(f"frame number must be in 0..2**64-1, got {frame}")
    body = json.dumps(meta or {}, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_META_BYTES or len(payload) > MAX_PAYLOAD_BYTES:
        raise ConfigError(f"message too large: {len(body)} B of metadata (at most {MAX_META_BYTES}), "
                          f"{len(payload)} B of payload (at most {MAX_PAYLOAD_BYTES})")
    return HEADER.pack(MAGIC, WIRE_VERSION, kind, 0, int(frame), len(body), len(payload)) + body + bytes(payload)


def decode_header(data: bytes) -> tuple[int, int, int, int]:
    """``(type, frame, metadata length, payload length)`` of a 24-byte header.

    Raises:
        CloudProtocolError: wrong magic, version or type, or lengths over the limits (one line).
    """
    if len(data) != HEADER.size:
        raise CloudProtocolError(f"truncated header: {len(data)} of {HEADER.size} bytes")
    magic, version, kind, _flags, frame, meta_len, payload_len = HEADER.unpack(data)
    if magic != MAGIC:
        raise CloudProtocolError(f"not an e4gym cloud message: magic {magic!r}, expected {MAGIC!r} (is the peer "
                                 f"`e4gym serve-cloud`?)")
    if version != WIRE_VERSION:
        raise CloudProtocolError(f"wire format version {version}, this e4gym speaks version {WIRE_VERSION}; run "
                                 f"the same e4gym version on the edge and the server")
    if kind not in _TYPE_NAMES:
        raise CloudProtocolError(f"unknown message type {kind}; types: {_TYPE_NAMES}")
    if meta_len > MAX_META_BYTES or payload_len > MAX_PAYLOAD_BYTES:
        raise CloudProtocolError(f"message too large: {meta_len} B of metadata (at most {MAX_META_BYTES}), "
                                 f"{payload_len} B of payload (at most {MAX_PAYLOAD_BYTES})")
    return kind, frame, meta_len, payload_len


def _recv_exact(sock: socket.socket, n: int, what: str) -> bytes:
    """``n`` bytes from ``sock``; raises :class:`CloudProtocolError` when the peer closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise CloudProtocolError(f"connection closed by the peer after {len(buf)} of {n} bytes of the {what}")
        buf += chunk
    return bytes(buf)


def decode_meta(body: bytes) -> dict[str, Any]:
    """The JSON metadata block as a dict. Raises :class:`CloudProtocolError` if it is not a JSON object."""
    try:
        meta = json.loads(body.decode()) if body else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise CloudProtocolError(f"metadata is not JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(meta, dict):
        raise CloudProtocolError(f"metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def read_message(sock: socket.socket, first: bytes = b"") -> Message:
    """Read one whole message from ``sock`` (``first``: header bytes already read).

    Raises:
        CloudProtocolError: malformed or truncated (the peer closed mid-message).
        OSError / TimeoutError: as the socket raises them.
    """
    head = first + _recv_exact(sock, HEADER.size - len(first), "header") if len(first) < HEADER.size else first
    kind, frame, meta_len, payload_len = decode_header(head)
    meta = decode_meta(_recv_exact(sock, meta_len, "metadata"))
    payload = _recv_exact(sock, payload_len, "payload") if payload_len else b""
    return Message(kind, frame, meta, payload)


# ------------------------------------------------------------------------------------------------------------------
# The edge's client
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloudReply:
    """The server's answer to one frame, and what the edge measured (times in s, from ``time.perf_counter``).

    Attributes:
        frame: the frame number.
        classes: top-k class indices of the network's last exit, best first. scores: their softmax probabilities.
        server_ms: the server's compute time (ms): dequantisation, the tail, the top-k.
        send_s: from the request's first byte written to the server's ACK of its last byte (serialisation on the
            uplink, queueing, one round trip of the small ACK).
        round_trip_s: from the first byte written to the result's arrival.
        server_recv_s: the server's time from the request's first byte to its last.
        payload_bytes: int8 payload sent. wire_bytes: the whole request (header, metadata, payload).
    """

    frame: int
    classes: tuple[int, ...]
    scores: tuple[float, ...]
    server_ms: float
    send_s: float
    round_trip_s: float
    server_recv_s: float
    payload_bytes: int
    wire_bytes: int


class CloudClient:
    """The edge's TCP connection to ``e4gym serve-cloud``.

    Args:
        host, port: the server's address.
        timeout_s: limit (s) of each blocking step: connecting, sending one frame, waiting for the ACK, waiting for
            the result. A step over it fails the frame (:class:`CloudFrameError`), never hangs.

    Use as a context manager, or call :meth:`connect` and :meth:`close`. :meth:`infer` connects if needed.
    """

    def __init__(self, host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._sock: socket.socket | None = None
        if not (isinstance(port, int) and 0 < port < 65536):
            raise ConfigError(f"cloud server port must be an integer in 1..65535, got {port!r}")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigError(f"timeout_s must be > 0 s, got {timeout_s}")
        self.host, self.port, self.timeout_s = str(host), int(port), float(timeout_s)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> CloudClient:
        """Open the connection (a no-op when open).

        Raises:
            HardwareError: the server cannot be reached (refused, unreachable, timed out), one line naming it and
                the command that starts it.
        """
        if self._sock is not None:
            return self
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
            raise HardwareError(
                f"cannot reach the cloud server at {self.address}: {why}; start it there with `e4gym serve-cloud "
                f"--host {self.host} --port {self.port}` (and the same --model/--split-block as the edge)"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return self

    def close(self) -> None:
        """Close the connection (a no-op when closed)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> CloudClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _fail(self, frame: int, why: str) -> CloudFrameError:
        self.close()
        return CloudFrameError(f"frame {frame}: the connection to the cloud server {self.address} failed: {why}; "
                               f"the frame is lost, connect() again to go on")

    def infer(
        self,
        frame: int,
        features_int8: np.ndarray,
        channels: Sequence[int],
        scale: float,
        model: str,
        split: int,
    ) -> CloudReply:
        """Offload one frame and wait for the server's top-k.

        Args:
            frame: the frame number (echoed by the server).
            features_int8: the whole quantised split feature map, int8 ``(C, H, W)`` (a leading batch of 1 is
                dropped); only ``channels`` are sent.
            channels: indices of the offloaded channels, distinct, in ``0..C-1``.
            scale: the quantisation scale (:func:`quantise_int8`).
            model, split: the network and split block the edge ran (the server checks them against its own).

        Raises:
            ConfigError: bad arguments. HardwareError: the server cannot be reached.
            CloudFrameError: the connection dropped or timed out, or the reply is malformed
                (:class:`CloudProtocolError`), for this frame; the client is closed. CloudServerError: the server
                refused the frame (the connection stays open).
        """
        q = np.asarray(features_int8)
        if q.ndim == 4 and q.shape[0] == 1:
            q = q[0]
        if q.dtype != np.int8 or q.ndim != 3:
            raise ConfigError(f"features_int8 must be an int8 (C, H, W) array, got {q.dtype} {q.shape}")
        idx = [int(c) for c in channels]
        if len(set(idx)) != len(idx) or any(not 0 <= c < q.shape[0] for c in idx):
            raise ConfigError(f"channels must be distinct indices in 0..{q.shape[0] - 1}, got {idx[:10]}")
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"scale must be a finite number > 0, got {scale}")
        payload = np.ascontiguousarray(q[idx]).tobytes(order="C")
        meta = {"model": str(model), "split_block": int(split), "shape": [int(s) for s in q.shape],
                "channels": idx, "scale": float(scale), "dtype": "int8"}
        data = encode_message(INFER, frame, meta, payload)
        self.connect()
        sock = self._sock
        assert sock is not None
        try:
            t0 = time.perf_counter()
            sock.sendall(data)
            ack = read_message(sock)
            t_ack = time.perf_counter()
            if ack.type == ACK:
                reply = read_message(sock)
            else:
                reply = ack  # an ERROR before the ACK
            t_end = time.perf_counter()
        except CloudProtocolError as exc:
            raise self._fail(frame, str(exc)) from None
        except TimeoutError:
            raise self._fail(frame, f"no progress within timeout_s={self.timeout_s:g} s") from None
        except OSError as exc:
            raise self._fail(frame, exc.strerror or str(exc) or type(exc).__name__) from None
        if reply.frame != frame:
            raise self._fail(frame, f"the reply is for frame {reply.frame}")
        if reply.type == ERROR:
            raise CloudServerError(f"frame {frame}: the cloud server {self.address} refused it: "
                                   f"{reply.meta.get('error', '(no message)')}")
        if reply.type != RESULT or ack.type != ACK:
            raise self._fail(frame, f"expected ACK then RESULT, got {_TYPE_NAMES[ack.type]} then "
                                    f"{_TYPE_NAMES[reply.type]}")
        try:
            classes = tuple(int(c) for c in reply.meta["classes"])
            scores = tuple(float(s) for s in reply.meta["scores"])
            server_ms = float(reply.meta["server_ms"])
            recv_ms = float(ack.meta.get("recv_ms", math.nan))
        except (KeyError, TypeError, ValueError) as exc:
            raise self._fail(frame, f"malformed RESULT metadata ({type(exc).__name__}: {exc})") from None
        return CloudReply(frame, classes, scores, server_ms, t_ack - t0, t_end - t0, recv_ms / 1e3, len(payload),
                          len(data))
