"""Runtimes (issue 15): TensorRT's view of a device and a network, and the envs that take ``runtime=``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401  (registers the envs)
from e4gym.dnn.profile import load_model_profile
from e4gym.envs.common import resolve_setup
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.hardware.model import cost_table, power_table
from e4gym.hardware.runtime import RUNTIMES, get_runtime, runtime_view
from e4gym.hardware.spec import load_device

TX2, NX = load_device("jetson-tx2"), load_device("xavier-nx")
RESNET = load_model_profile("resnet50")


def _latency(spec, profile) -> np.ndarray:
    return cost_table(spec, profile.frame_work(), power_table(spec)).latency_s.reshape(spec.n_levels)


def test_pytorch_is_the_board_coefficients_unchanged() -> None:
    spec, profile = runtime_view(TX2, RESNET, "pytorch")
    assert spec is TX2 and profile is RESNET


def test_tensorrt_fuses_kernels_halves_bytes_and_runs_faster() -> None:
    spec, trt = runtime_view(TX2, RESNET, "tensorrt-fp16")
    assert trt.name == "resnet50@tensorrt-fp16"
    eager, fused = RESNET.frame_work(), trt.frame_work()
    assert fused.array("kernels").sum() < 0.4 * eager.array("kernels").sum()
    assert fused.array("param_bytes").sum() == pytest.approx(eager.array("param_bytes").sum() / 2)
    assert spec.model.gpu_flops_per_core_cycle > 2 * TX2.model.gpu_flops_per_core_cycle  # double-rate fp16
    assert spec.model.dispatch_cycles_per_kernel < 0.1 * TX2.model.dispatch_cycles_per_kernel
    lat_eager, lat_trt = _latency(TX2, RESNET), _latency(spec, trt)
    assert (lat_trt < lat_eager).all()
    # The memory clock matters where the GPU is fast, not where it is slow (the sweep's crossover).
    top, low = lat_trt[-1, -1], lat_trt[-1, 0]
    emc_1062, emc_1866 = list(TX2.emc_freqs_hz).index(1062400000), len(TX2.emc_freqs_hz) - 1
    assert top[emc_1062] / top[emc_1866] > 1.15 and low[emc_1062] / low[emc_1866] < 1.03


def test_int8_runs_int8_only_where_the_gpu_has_int8_tensor_cores() -> None:
    assert get_runtime("tensorrt-int8", TX2).name == "tensorrt-fp16"  # Pascal: fp16 kernels
    assert get_runtime("tensorrt-int8", load_device("jetson-nano")).name == "tensorrt-fp16"  # Maxwell
    assert get_runtime("tensorrt-int8", NX) is RUNTIMES["tensorrt-int8"]  # Volta
    fp16 = _latency(*runtime_view(NX, RESNET, "tensorrt-fp16"))
    int8 = _latency(*runtime_view(NX, RESNET, "tensorrt-int8"))
    assert (int8 < fp16).all()
    assert np.array_equal(_latency(*runtime_view(TX2, RESNET, "tensorrt-int8")),
                          _latency(*runtime_view(TX2, RESNET, "tensorrt-fp16")))


def test_unknown_or_malformed_runtimes_name_the_choices() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown runtime 'onnx'; runtimes: \['pytorch', 'tensorrt-fp16'"):
        gym.make("e4gym/EarlyExitDVFS-v1", runtime="onnx")
    with pytest.raises(ConfigError, match="runtime must be a runtime name"):
        resolve_setup(runtime=16)


def test_envs_run_under_a_runtime_and_keep_the_published_eager_rows() -> None:
    def top_frame(runtime: str) -> dict:
        env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", runtime=runtime)
        env.reset(seed=0)
        return env.step(env.action_space.nvec - 1)[4]

    eager, trt = top_frame("pytorch"), top_frame("tensorrt-fp16")
    assert eager["run_ms"] == pytest.approx(30.0, rel=0.1)  # E4 poster Fig. 1 (PyTorch) still holds
    assert trt["run_ms"] < 0.5 * eager["run_ms"] and trt["energy_j"] < eager["energy_j"]
    vec = gym.make_vec("e4gym/EarlyExitDVFS-v1", num_envs=2, vectorization_mode="vector_entry_point",
                       device="xavier-nx", runtime="tensorrt-fp16")
    vec.reset(seed=0)
    info = vec.step(np.tile(vec.single_action_space.nvec - 1, (2, 1)))[4]
    assert info["run_ms"][0] < 0.5 * eager["run_ms"]


def test_a_real_board_refuses_an_emulated_runtime(tmp_path) -> None:
    from e4gym.envs.common import make_backend

    setup = resolve_setup(device="xavier-nx", runtime="tensorrt-fp16")
    with pytest.raises(ConfigError, match=r"runtime='tensorrt-fp16' is emulated only"):
        make_backend("jetson", setup, {"sysfs_root": str(tmp_path)})


def test_one_view_per_device_and_runtime_so_cost_models_are_shared_and_never_mixed() -> None:
    a = resolve_setup(device="xavier-nx", runtime="tensorrt-fp16")
    b = resolve_setup(device="xavier-nx", runtime="tensorrt-fp16")
    c = resolve_setup(device="xavier-nx", runtime="tensorrt-int8")
    assert a.spec is b.spec and a.spec is not c.spec
    assert c.spec.model.gpu_flops_per_core_cycle > a.spec.model.gpu_flops_per_core_cycle
    assert resolve_setup(device="xavier-nx").spec is load_device("xavier-nx")
