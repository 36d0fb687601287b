"""Inference runtimes: how the same network costs differently under eager PyTorch and TensorRT (issue 15).

The emulator's board coefficients (``configs/devices/*.yaml``, ``model:``) describe eager PyTorch at fp32: one
kernel per ATen operator, each dispatched by the host thread, 4 bytes per element. A TensorRT engine runs the
same network differently, and :func:`runtime_view` expresses that as a view of the device and of the network
profile that every consumer (the emulator, the measured cost model, the envs, sweeps) then uses unchanged:

- **fewer kernels**: a convolution, its batch norm and its activation fuse into one kernel
  (:data:`FUSED_KERNELS_PER_OP` of the ATen operators are left; ASSUMPTION: the conv-BN-activation chains of
  these networks);
- **little host work**: the engine is enqueued whole, so the CPU's per-kernel dispatch is a small fraction of
  eager PyTorch's (:data:`TRT_DISPATCH_FACTOR`, ASSUMPTION; the TX2 sweep's fit puts it near 0);
- **cheaper launches**: each fused kernel costs the GPU a fraction of an eager kernel's fixed cycles
  (``gpu_kernel_factor``);
- **fewer bytes and faster arithmetic**: fp16 halves every byte and runs at twice the fp32 rate on every Jetson
  GPU's CUDA cores (``compute_factor`` includes that ×2 and the better-tuned kernels); int8 quarters the bytes
  and doubles the fp16 rate again on the GPUs with int8 tensor cores (Volta: Xavier; Ampere: Orin), while on
  Maxwell (Nano) and Pascal (TX2) TensorRT falls back to fp16 kernels, as the TX2 sweep's data note says;
- **activation traffic** per element relative to eager's count (``activation_traffic``: fused kernels skip the
  intermediate maps, tiled convolutions re-read their inputs).

``compute_factor``, ``gpu_kernel_factor`` and ``activation_traffic`` of ``tensorrt-fp16`` are **fitted** on the
public Jetson TX2 sweep (``benchmarks/data/tx2_trtexec_gpu_emc_sweep.csv``: ResNet-50 and tiny-YOLOv3, 13 GPU ×
4 EMC clocks; ``benchmarks/emc_sweep.py``) with the TX2's board coefficients unchanged: median latency error
2.7 %, the memory-clock ratio at the top GPU clock 1.27 / 1.20 against the board's 1.25 / 1.35, and 1.00 at the
lowest GPU clock as on the board. The same factors are carried to the other boards (no data there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from e4gym.dnn.profile import BlockCost, ModelProfile
from e4gym.errors import UnknownNameError
from e4gym.hardware.spec import DeviceSpec

__all__ = ["DEFAULT_RUNTIME", "RUNTIMES", "Runtime", "get_runtime", "runtime_view"]

#: ATen operators left per operator after TensorRT fuses conv, batch norm and activation (ASSUMPTION).
FUSED_KERNELS_PER_OP = 1.0 / 3.0
#: The host's per-kernel dispatch under TensorRT, relative to eager PyTorch's (ASSUMPTION; the fit: about 0).
TRT_DISPATCH_FACTOR = 0.02
#: GPU architectures with int8 tensor cores, where ``tensorrt-int8`` runs int8 kernels (ASSUMPTION: Xavier's and
#: Orin's INT8 TOPS; Maxwell and Pascal Jetsons fall back to fp16).
INT8_ARCHS = frozenset({"Volta", "Ampere"})


@dataclass(frozen=True)
class Runtime:
    """How a runtime changes a network's cost relative to eager PyTorch at fp32 (every factor 1 for that).

    Attributes:
        name: ``pytorch``, ``tensorrt-fp16`` or ``tensorrt-int8``.
        bytes_per_element: bytes of a weight or an activation (4 fp32, 2 fp16, 1 int8).
        kernel_fusion: kernels launched per ATen operator.
        dispatch_factor: the host's dispatch cycles per kernel, relative to eager PyTorch's.
        gpu_kernel_factor: the GPU's fixed cycles per kernel, relative to an eager kernel's.
        compute_factor: achieved FLOPs per CUDA-core cycle, relative to eager fp32's.
        activation_traffic: activation bytes moved per element counted by the profiler (fp32 eager: 1).
        fallback: the runtime used on a GPU without this one's fast path (int8 → fp16), or None.
    """

    name: str
    bytes_per_element: float = 4.0
    kernel_fusion: float = 1.0
    dispatch_factor: float = 1.0
    gpu_kernel_factor: float = 1.0
    compute_factor: float = 1.0
    activation_traffic: float = 1.0
    fallback: str | None = None


_FP16 = Runtime("tensorrt-fp16", bytes_per_element=2.0, kernel_fusion=FUSED_KERNELS_PER_OP,
                dispatch_factor=TRT_DISPATCH_FACTOR, gpu_kernel_factor=0.106, compute_factor=2.68,
                activation_traffic=1.53)  # the last three: fitted on the TX2 sweep (module docstring)
#: The runtimes an env, a scenario or a sweep takes (``runtime=``).
RUNTIMES: dict[str, Runtime] = {
    "pytorch": Runtime("pytorch"),
    "tensorrt-fp16": _FP16,
    # int8: a quarter of fp32's bytes, twice fp16's rate on int8 tensor cores (ASSUMPTION).
    "tensorrt-int8": dataclasses.replace(_FP16, name="tensorrt-int8", bytes_per_element=1.0,
                                         compute_factor=2.0 * _FP16.compute_factor, fallback="tensorrt-fp16"),
}
#: eager PyTorch: E4 and Dutt et al. measured with it, and the board coefficients describe it.
DEFAULT_RUNTIME = "pytorch"


def get_runtime(name: str, spec: DeviceSpec | None = None) -> Runtime:
    """The runtime ``name`` as it runs on ``spec`` (its fallback where the GPU lacks the fast path).

    Raises:
        UnknownNameError: not a runtime (the message lists them).
    """
    rt = RUNTIMES.get(name) if isinstance(name, str) else None
    if rt is None:
        raise UnknownNameError(f"unknown runtime {name!r}; runtimes: {list(RUNTIMES)}")
    if rt.fallback is not None and spec is not None and spec.gpu_arch not in INT8_ARCHS:
        return RUNTIMES[rt.fallback]
    return rt


def _block(b: BlockCost, rt: Runtime) -> BlockCost:
    scale = rt.bytes_per_element / 4.0
    kernels = b.kernels if rt.kernel_fusion == 1.0 else (max(1, round(b.kernels * rt.kernel_fusion)) if b.kernels
                                                         else 0)
    return dataclasses.replace(b, param_bytes=b.param_bytes * scale,
                               activation_bytes=b.activation_bytes * scale * rt.activation_traffic, kernels=kernels)


def runtime_view(spec: DeviceSpec, profile: ModelProfile, runtime: str) -> tuple[DeviceSpec, ModelProfile]:
    """The device and the network as ``runtime`` runs them: the board's per-kernel and compute coefficients
    scaled, the network's kernels, bytes and traffic scaled (its name gets ``@runtime``, so cost tables of two
    runtimes never share a cache key). ``pytorch`` returns both unchanged.

    Raises:
        UnknownNameError: not a runtime.
    """
    rt = get_runtime(runtime, spec)
    if rt.name == DEFAULT_RUNTIME:
        return spec, profile
    view = dataclasses.replace(
        profile,
        name=f"{profile.name}@{runtime}",
        blocks=tuple(_block(b, rt) for b in profile.blocks),
        exits=tuple(dataclasses.replace(e, head=_block(e.head, rt)) for e in profile.exits),
    )
    return _spec_view(spec, rt), view


_SPEC_VIEWS: dict[tuple[int, str], tuple[DeviceSpec, DeviceSpec]] = {}


def _spec_view(spec: DeviceSpec, rt: Runtime) -> DeviceSpec:
    """The device as ``rt`` runs it, one object per (device object, runtime): caches keyed by the device object
    (the envs' measured cost models) find it again, and the original is held so its id is never reused."""
    key = (id(spec), rt.name)
    hit = _SPEC_VIEWS.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    m = spec.model
    model = dataclasses.replace(
        m,
        dispatch_cycles_per_kernel=m.dispatch_cycles_per_kernel * rt.dispatch_factor,
        gpu_cycles_per_kernel=m.gpu_cycles_per_kernel * rt.gpu_kernel_factor,
        gpu_flops_per_core_cycle=m.gpu_flops_per_core_cycle * rt.compute_factor,
    )
    if len(_SPEC_VIEWS) > 256:
        _SPEC_VIEWS.clear()
    view = _SPEC_VIEWS[key] = (spec, dataclasses.replace(spec, model=model))
    return view[1]
