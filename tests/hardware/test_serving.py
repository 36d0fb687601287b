"""The serving emulator of the batching env (issue 19): hand-computed batches, contention, energy, memory."""

from __future__ import annotations

import numpy as np
import pytest

from e4gym._yaml import load_yaml
from e4gym.dnn.profile import load_model_profile
from e4gym.errors import ConfigError
from e4gym.hardware import serving as sv
from e4gym.hardware.model import cost_table, power_table
from e4gym.hardware.spec import available_devices, load_device, parse_device

MODELS = ("mobilenet_v2", "resnet18")


@pytest.fixture(scope="module")
def tables() -> sv.ServingTables:
    return sv.serving_tables(load_device("xavier-nx"), [load_model_profile(m) for m in MODELS], "pytorch", 8)


def _top(spec_name: str = "xavier-nx") -> int:
    spec = load_device(spec_name)
    return int(spec.flat_index(spec.max_levels()))


def _par(batch: tuple[int, ...], instances: tuple[int, ...], delay_s: float = 0.0, slo_s: float = 1.0) -> np.ndarray:
    return np.array([[b, n, delay_s, slo_s] for b, n in zip(batch, instances)], dtype=float)


def _serve(tables: sv.ServingTables, server: sv.Server, t1: float, par: np.ndarray, idx: int | None = None,
           compiled: bool = True) -> np.ndarray:
    idx = _top() if idx is None else idx
    return sv.serve_interval(server, t1, tables.table[idx], par, tables.floor_w[idx], tables.cpu_busy_w[idx],
                             compiled=compiled).copy()


def test_every_board_has_its_memory() -> None:
    sizes = {d: load_device(d).memory_gb for d in available_devices()}
    assert sizes["jetson-nano"] == 4 and sizes["xavier-nx"] == 8 and sizes["orin-nx"] == 16
    assert all(v is not None and v >= 4 for v in sizes.values())


def test_a_bad_memory_size_is_a_config_error() -> None:
    data = load_yaml(load_device("xavier-nx").source_file)
    data["memory_gb"] = -8
    with pytest.raises(ConfigError, match="memory_gb"):
        parse_device(data, "bad.yaml")
    del data["memory_gb"]
    spec = parse_device(data, "nomem.yaml")
    assert spec.memory_gb is None
    with pytest.raises(ConfigError, match="no memory_gb"):
        sv.usable_memory_gb(spec)


def test_one_request_alone_costs_what_the_cost_model_says(tables: sv.ServingTables) -> None:
    """One request at 0.1 s, batch 1: it completes after the cost table's latency, and the interval's energy is
    the idle floor over the interval plus the batch's dynamic energy (the emulator's run energy)."""
    idx = _top()
    server = sv.Server(2, 2, tables.cores)
    server.reset([np.array([0.1]), np.zeros(0)])
    out = _serve(tables, server, 1.0, _par((1, 1), (1, 1)))
    spec = load_device("xavier-nx")
    work = load_model_profile("mobilenet_v2").frame_work(-1)
    ct = cost_table(spec, work, power_table(spec), 1)
    lat = ct.latency_s[idx]
    assert out[0, 0] == 1 and out[0, 1] == 1  # completed, on time
    assert out[0, 5] == pytest.approx(lat, rel=1e-12)  # its latency is the solo latency
    assert out[-1, 0] == pytest.approx(tables.floor_w[idx] * 1.0 + ct.busy_dyn_j[idx], rel=1e-9)


def test_an_idle_board_draws_its_floor(tables: sv.ServingTables) -> None:
    server = sv.Server(2, 2, tables.cores)
    server.reset([np.zeros(0), np.zeros(0)])
    idx = _top()
    out = _serve(tables, server, 2.5, _par((1, 1), (1, 1)))
    assert out[-1, 0] == pytest.approx(tables.floor_w[idx] * 2.5) and out[-1, 1] == 0.0


def test_concurrent_batches_share_the_gpu_by_the_stated_rule(tables: sv.ServingTables) -> None:
    """Two batches of 8 start together: each is slowed by s = max(1, Σ u_gpu, Σ u_mem, Σ u_cpu / cores)."""
    idx = _top()
    t = tables.table[idx]
    server = sv.Server(2, 2, tables.cores)
    server.reset([np.zeros(8), np.zeros(8)])
    out = _serve(tables, server, 5.0, _par((8, 8), (1, 1)))
    s = max(1.0, t[1, 0, 8] + t[1, 1, 8], t[2, 0, 8] + t[2, 1, 8], (t[3, 0, 8] + t[3, 1, 8]) / tables.cores)
    assert s > 1.0  # they do contend
    first = min(t[0, 0, 8], t[0, 1, 8]) * s  # the shorter one ends first, slowed by s all along
    m_first = int(np.argmin([t[0, 0, 8], t[0, 1, 8]]))
    assert out[m_first, 5] == pytest.approx(first, rel=1e-9)
    # the longer one ran slowed until then, then alone at full speed
    other = 1 - m_first
    rest = t[0, other, 8] - first / s
    assert out[other, 5] == pytest.approx(first + rest, rel=1e-9)


def test_dynamic_batching_waits_for_the_batch_or_the_delay(tables: sv.ServingTables) -> None:
    server = sv.Server(2, 1, tables.cores)
    arr = np.array([0.0, 0.01, 0.02, 0.5])  # three close together, one late
    server.reset([arr, np.zeros(0)])
    idx = _top()
    lat = tables.table[idx]
    out = _serve(tables, server, 0.45, _par((4, 1), (1, 1), delay_s=0.05))
    # the batch waited 50 ms for a 4th request, then ran the 3 that were there
    assert out[0, 0] == 3
    assert out[0, 5] == pytest.approx(0.05 + lat[0, 0, 3], rel=1e-9)  # the first request's latency is the p99


def test_queue_carries_over_and_deadlines_count_once(tables: sv.ServingTables) -> None:
    """Far more requests than one instance can serve: the queue grows from one interval to the next, and each
    request that misses its deadline is counted once, in the interval its deadline falls."""
    rng = np.random.default_rng(0)
    arr = np.sort(rng.random(3000) * 3.0)  # 1000 req/s of resnet18, which serves ~50 req/s at batch 1
    server = sv.Server(2, 1, tables.cores)
    server.reset([np.zeros(0), arr])
    par = _par((1, 1), (1, 1), slo_s=0.1)
    queues, viols, done = [], 0, 0
    for k in range(1, 4):
        out = _serve(tables, server, float(k), par)
        queues.append(out[1, 4])
        viols += out[1, 2]
        done += out[1, 1]
    assert queues[0] < queues[1] < queues[2]
    assert viols / (viols + done) > 0.9
    # every request whose deadline passed was counted exactly once (on time or violated)
    assert viols + done == np.sum(arr + 0.1 <= 3.0)


def test_more_instances_help_until_the_gpu_saturates(tables: sv.ServingTables) -> None:
    rng = np.random.default_rng(1)
    arr = np.sort(rng.random(4000) * 2.0)  # mobilenet_v2 flooded

    def throughput(batch: int, n: int) -> float:
        server = sv.Server(2, 4, tables.cores)
        server.reset([arr, np.zeros(0)])
        _serve(tables, server, 1.0, _par((batch, 1), (n, 1)))
        return _serve(tables, server, 2.0, _par((batch, 1), (n, 1)))[0, 0]

    assert throughput(1, 2) > 1.8 * throughput(1, 1)  # batch 1 leaves most of the GPU idle
    assert throughput(8, 4) < 1.5 * throughput(8, 1)  # batch 8 nearly fills DRAM bandwidth alone
    assert throughput(8, 1) > 2.0 * throughput(1, 1)  # batching amortises the per-kernel dispatch


def test_higher_clocks_are_faster_and_draw_more_power(tables: sv.ServingTables) -> None:
    spec = load_device("xavier-nx")
    mx = spec.max_levels()
    arr = np.arange(0.0, 1.0, 0.05)  # 20 req/s, light
    res = {}
    for name, gpu in (("low", 3), ("top", mx[1])):
        idx = int(spec.flat_index((mx[0], gpu, mx[2])))
        server = sv.Server(2, 1, tables.cores)
        server.reset([arr, np.zeros(0)])
        res[name] = _serve(tables, server, 1.0, _par((1, 1), (1, 1)), idx=idx)
    assert res["top"][0, 6] < res["low"][0, 6]  # mean latency
    assert res["top"][-1, 0] > res["low"][-1, 0] * 0.5 and res["top"][0, 0] == res["low"][0, 0] == 20
    # power while busy: the top clock's dynamic power per second of work is higher
    t = tables.table
    idx_lo, idx_hi = int(spec.flat_index((mx[0], 3, mx[2]))), int(spec.flat_index(mx))
    p_lo = tables.floor_w[idx_lo] + t[idx_lo, 4, 0, 1] / t[idx_lo, 0, 0, 1]
    p_hi = tables.floor_w[idx_hi] + t[idx_hi, 4, 0, 1] / t[idx_hi, 0, 0, 1]
    assert p_hi > p_lo


def test_compiled_and_python_kernels_agree(tables: sv.ServingTables) -> None:
    rng = np.random.default_rng(2)
    arrivals = [np.sort(rng.random(300) * 3.0), np.sort(rng.random(150) * 3.0)]
    outs = []
    for compiled in (True, False):
        server = sv.Server(2, 3, tables.cores)
        server.reset(arrivals)
        rows = []
        for k, (b, n) in enumerate([(1, 1), (4, 3), (8, 2)]):
            rows.append(_serve(tables, server, k + 1.0, _par((b, b), (n, n), delay_s=0.01, slo_s=0.2),
                               compiled=compiled))
        outs.append(np.array(rows))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_memory_grows_with_batch_and_counts_weights() -> None:
    p = load_model_profile("resnet18")
    m1, m8 = sv.instance_memory_gb(p, 1), sv.instance_memory_gb(p, 8)
    weights = sum(b.param_bytes for b in p.blocks) * 1e-9
    assert m8 > m1 > weights + sv.INSTANCE_OVERHEAD_GB
    assert sv.usable_memory_gb(load_device("jetson-nano")) == 4 - sv.SYSTEM_RESERVED_GB


def test_capacity_is_the_best_configuration(tables: sv.ServingTables) -> None:
    idx = _top()
    cap = sv.capacity_rps(tables, idx, 0, (1, 2, 4, 8), 4)
    assert cap >= 1.0 / sv.solo_latency_s(tables, idx, 0, 1)
    assert cap >= 8 / sv.solo_latency_s(tables, idx, 0, 8)


def test_the_in_place_selection_is_the_kth_smallest() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 10, 101):
        for _ in range(20):
            a = rng.integers(0, 5, n).astype(float) if n > 3 else rng.random(n)  # with ties
            k = int(rng.integers(0, n))
            buf = np.concatenate([[9.0, 9.0], a, [-1.0]])
            assert sv._select(buf, 2, 2 + n, k) == np.sort(a)[k]
            assert sorted(buf[2:2 + n]) == sorted(a) and buf[0] == 9.0 and buf[-1] == -1.0


def test_tables_are_shared_between_envs_of_one_configuration() -> None:
    spec = load_device("xavier-nx")
    a = sv.serving_tables(spec, [load_model_profile(m) for m in MODELS], "pytorch", 4)
    b = sv.serving_tables(spec, [load_model_profile(m) for m in MODELS], "pytorch", 4)  # new, equal profiles
    assert a is b
    assert sv.serving_tables(spec, [load_model_profile(m) for m in MODELS], "tensorrt-fp16", 4) is not a
    assert len(sv._TABLES) <= sv._TABLES_KEPT
