"""The analytic model against hand-computed cases (gym-anm style)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from e4gym.dnn.work import Work
from e4gym.hardware.model import cost_table, power_table, voltage
from e4gym.hardware.spec import DomainModel, parse_device

TINY = {
    "name": "tiny",
    "cpu": {"cores": 2, "levels_khz": [500000, 1000000]},
    "gpu": {"cuda_cores": 100, "levels_hz": [200e6, 400e6]},
    "emc": {"dram_gbps": 10.0, "levels_hz": [500e6, 1000e6]},
    "power_modes": {"default": "MAXN", "modes": {"MAXN": {}, "LOW": {"cpu_online": 1, "gpu_max_hz": 300e6}}},
    "thermal": {"throttle_c": 80.0, "critical_c": 95.0},
    "model": {
        "dispatch_cycles_per_kernel": 1e5,
        "gpu_flops_per_core_cycle": 1.0,
        "gpu_cycles_per_kernel": 1e4,
        "mem_efficiency": 0.5,
        "overlap_p": 2.0,
        "static_w": 1.0,
        "cpu": {"c_eff_f": 1e-9, "leak_w": 0.2, "v_min": 0.5, "v_max": 1.0, "knee_frac": 0.0, "idle_activity": 0.1},
        "gpu": {"c_eff_f": 2e-9, "leak_w": 0.4, "v_min": 0.5, "v_max": 1.0, "knee_frac": 0.0, "idle_activity": 0.0},
        "emc": {"c_eff_f": 1e-10, "leak_w": 0.0, "v_min": 1.0, "v_max": 1.0, "knee_frac": 0.0, "idle_activity": 0.5},
    },
}


def test_voltage_is_flat_then_linear() -> None:
    dom = DomainModel(c_eff_f=1.0, leak_w=0.0, v_min=0.6, v_max=1.0, knee_frac=0.5, idle_activity=0.0)
    v = voltage(np.array([0.0, 25.0, 50.0, 75.0, 100.0]), dom)
    assert v == pytest.approx([0.6, 0.6, 0.6, 0.8, 1.0])


def test_latency_and_energy_of_one_block_by_hand() -> None:
    spec = parse_device(TINY)
    work = Work("w", ("b",), flops=(4e7,), param_bytes=(1e6,), activation_bytes=(1.5e6,), kernels=(10.0,))
    pt = power_table(spec)
    t = cost_table(spec, work, pt, batch=2)
    # top levels: f_cpu 1 GHz, f_gpu 400 MHz, f_emc 1 GHz
    t_cpu = 10 * 1e5 / 1e9  # 1 ms, independent of batch
    t_gpu = (2 * 4e7 / (100 * 1.0) + 10 * 1e4) / 400e6  # (8e5 + 1e5) cycles / 400 MHz = 2.25 ms
    t_mem = (1e6 + 2 * 1.5e6) / (10e9 * 1.0 * 0.5)  # 4 MB / 5 GB/s = 0.8 ms
    lat = math.sqrt(t_cpu**2 + t_gpu**2 + t_mem**2)
    top = -1  # last flat index = (1, 1, 1)
    assert t.latency_s[top] == pytest.approx(lat)
    assert t.t_cpu_s[top] == pytest.approx(t_cpu) and t.t_gpu_s[top] == pytest.approx(t_gpu)
    # V = 1 at the top clocks (knee 0, linear to v_max): dynamic powers at activity 1
    p_cpu, p_gpu, p_emc = 1e-9 * 1e9, 2e-9 * 400e6, 1e-10 * 1e9
    busy = p_cpu * (1 - 0.1) * lat + p_gpu * t_gpu + p_emc * (1 - 0.5) * t_mem
    assert t.busy_dyn_j[top] == pytest.approx(busy)
    assert pt.idle_dyn_w[top] == pytest.approx(p_cpu * 0.1 + p_gpu * 0.0 + p_emc * 0.5)
    assert pt.leak_ref_w[top] == pytest.approx(0.2 + 0.4)
    # lowest levels: V = v_min = 0.5 for CPU and GPU
    assert pt.leak_ref_w[0] == pytest.approx(0.2 * 0.5 + 0.4 * 0.5)


def test_offline_cores_do_not_leak() -> None:
    spec = parse_device(TINY)
    full, one = power_table(spec, 2), power_table(spec, 1)
    assert one.leak_ref_w[-1] == pytest.approx(full.leak_ref_w[-1] - 0.1)
    assert spec.max_levels("LOW") == (1, 0, 1)


def test_floor_power_is_one_formula_on_floats_and_arrays() -> None:
    from e4gym.hardware.model import floor_power_w, leakage_scale
    from e4gym.hardware.spec import load_device

    spec = load_device("xavier-nx")
    m, pt = spec.model, power_table(spec)
    idx = np.array([0, 17, 500, pt.idle_dyn_w.shape[0] - 1])
    temps = np.array([25.0, 48.5, 71.0, 90.0])
    many = floor_power_w(pt, idx, temps, m)
    one = [floor_power_w(pt, int(i), float(t), m) for i, t in zip(idx, temps, strict=True)]
    assert many.tolist() == pytest.approx(one, rel=1e-15)
    for i, t, w in zip(idx, temps, one, strict=True):  # by hand: static + idle + leak · exp(k (T − T_ref))
        leak = pt.leak_ref_w[i] * math.exp(m.leak_temp_coeff_per_c * (t - m.temp_ref_c))
        assert w == pytest.approx(pt.static_w + pt.idle_dyn_w[i] + leak, rel=1e-15)
    assert leakage_scale(m, m.temp_ref_c) == 1.0 and isinstance(leakage_scale(m, 60.0), float)
    assert leakage_scale(m, temps).tolist() == pytest.approx([leakage_scale(m, float(t)) for t in temps], rel=1e-15)
    # every setting at once, and a precomputed scale, give the same numbers
    full = floor_power_w(pt, slice(None), 60.0, m)
    assert full[idx].tolist() == pytest.approx(floor_power_w(pt, idx, 60.0, m, scale=leakage_scale(m, 60.0)).tolist())


def test_power_table_rails_split_the_domains() -> None:
    spec = parse_device(TINY)
    pt = power_table(spec, 1)
    assert np.all(pt.cpu_idle_w + pt.gpu_idle_w <= pt.idle_dyn_w + 1e-12)
    assert np.all(pt.cpu_leak_ref_w + pt.gpu_leak_ref_w <= pt.leak_ref_w + 1e-12)
    assert pt.cpu_leak_ref_w[-1] == pytest.approx(0.2 / 2) and pt.gpu_leak_ref_w[-1] == pytest.approx(0.4)
    work = Work("w", ("b",), flops=(4e7,), param_bytes=(1e6,), activation_bytes=(1.5e6,), kernels=(10.0,))
    t = cost_table(spec, work, pt)
    assert np.all(t.cpu_dyn_j + t.gpu_dyn_j <= t.busy_dyn_j * (1 + 1e-12))
    assert t.cpu_dyn_j[-1] == pytest.approx(pt.dyn_active_cpu_w[-1] * t.latency_s[-1])
