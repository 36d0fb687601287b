"""Run e4gym :class:`~e4gym.dnn.work.Work` for real with PyTorch, on the CPU or a CUDA GPU, and time it.

:class:`WorkRunner` is what a real backend (:class:`~e4gym.hardware.jetson.JetsonBackend`,
:class:`~e4gym.hardware.nvml.NvmlBackend`) needs to execute Work: ``run(work, batch)`` returning the latency (s).
:class:`TorchRunner` is the runner e4gym ships.

:class:`TorchRunner` holds a :class:`~e4gym.dnn.multiexit.MultiExitNet` and maps every Work key of
:class:`~e4gym.dnn.profile.ModelProfile` onto its modules:

* ``<model>/frame/exit<e>``: a whole inference: a fresh input, blocks ``0..exit_after[e]``, then exit ``e``'s head;
* ``<model>/block<i>``: one backbone block. Block 0 starts a new frame on a fresh input; block ``i > 0`` runs on
  the activation block ``i - 1`` left behind (the block env runs a frame block by block, one step at a time);
* ``<model>/head<e>``: exit ``e``'s head on the activation of block ``exit_after[e]`` (the activation is kept:
  the frame may go on to later blocks);
* ``a+b`` (from ``Work.__add__``): the parts in order, timed as one.

A frame work is the same as running its blocks and head one by one: it also leaves its activation behind, so a
frame that exits early can be continued with the next block. The fresh input of a frame is the one given to
:meth:`TorchRunner.set_input` if any, else random (seeded); it is made before the clock starts.

Timing: on CUDA with CUDA events around the work (the device is synchronised first, so the start event is
reached when the host issues it, and the elapsed time includes the host's launch overhead); on the CPU with
:func:`time.perf_counter`. Inference runs under ``torch.inference_mode()`` in eval mode.

This module does not import torch until a :class:`TorchRunner` is built, so the light parts of e4gym (and a
backend that only imports this module) stay cheap to import.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from e4gym.dnn.work import Work
from e4gym.errors import ConfigError, HardwareError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from e4gym.dnn.multiexit import MultiExitNet

__all__ = ["DTYPES", "TorchRunner", "WorkRunner"]

#: dtype names :class:`TorchRunner` accepts (or pass a ``torch.dtype``).
DTYPES = ("float32", "float16", "bfloat16")

_PART = re.compile(r"^(?P<model>[^/+]+)/(?:frame/exit(?P<frame>\d+)|block(?P<block>\d+)|head(?P<head>\d+))$")


@runtime_checkable
class WorkRunner(Protocol):
    """Executes :class:`~e4gym.dnn.work.Work` for real (e.g. :class:`TorchRunner`): what a real backend's
    ``run()`` calls."""

    def run(self, work: Work, batch: int = 1) -> float:
        """Run ``work`` on ``batch`` inferences at once; returns its latency (s)."""
        ...


class TorchRunner:
    """Executes e4gym Work on a PyTorch multi-exit network and returns how long it took.

    Args:
        model: backbone name (``efficientnet_b0``, ``mobilenet_v2``, ``resnet18``); must be the model of the
            Work keys given to :meth:`run`. Ignored when ``net`` is given (its name is used).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:<i>"`` or a ``torch.device``.
        weights: path of a local torchvision state dict for the backbone (``None``: random initialisation,
            seeded; timing does not depend on the weights' values). Nothing is downloaded.
        input_size: side of the square input image (pixels).
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` or a ``torch.dtype`` (weights and activations).
        warmup: untimed full passes (every block and head) the first time a batch size is seen (lets cuDNN
            pick its kernels and the caching allocator fill up).
        net: a ready :class:`~e4gym.dnn.multiexit.MultiExitNet` (e.g. from
            :func:`e4gym.dnn.train_exits.load_exit_checkpoint`) instead of building one.
        num_classes: classes of every exit when the network is built here.
        seed: seeds the random initialisation and the random inputs.

    Raises:
        ConfigError: a bad argument (unknown dtype, weights that do not match, ...).
        HardwareError: CUDA asked for but not available.

    Example:
        >>> from e4gym.dnn import load_model_profile
        >>> prof = load_model_profile("efficientnet_b0")
        >>> runner = TorchRunner("efficientnet_b0", device="cpu", input_size=64, warmup=0)
        >>> seconds = runner.run(prof.frame_work(2))
    """

    def __init__(
        self,
        model: str = "efficientnet_b0",
        device: Any = "cpu",
        weights: str | Path | None = None,
        input_size: int = 224,
        dtype: Any = "float32",
        warmup: int = 2,
        *,
        net: MultiExitNet | None = None,
        num_classes: int = 1000,
        seed: int = 0,
    ) -> None:
        import torch

        from e4gym.dnn.multiexit import MultiExitNet, build_multiexit
        from e4gym.dnn.nets import load_torchvision_weights

        self._torch = torch
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 16:
            raise ConfigError(f"input_size must be an integer >= 16 (pixels), got {input_size!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ConfigError(f"warmup must be an integer >= 0 (full untimed passes), got {warmup!r}")
        self.device = self._device(device)
        self.dtype = self._dtype(dtype)
        self.input_size = input_size
        self.warmup = warmup
        self.seed = int(seed)
        if net is None:
            with torch.random.fork_rng(devices=[]):  # seeded initialisation, the caller's RNG state untouched
                torch.manual_seed(self.seed)
                net = build_multiexit(model, num_classes=num_classes)
            if weights is not None:
                load_torchvision_weights(net, weights)
        elif not isinstance(net, MultiExitNet):
            raise ConfigError(f"net must be a MultiExitNet, got {type(net).__name__}")
        elif weights is not None:
            raise ConfigError("pass either net= (with its weights loaded) or weights=, not both")
        self.net: MultiExitNet = net.to(device=self.device, dtype=self.dtype).eval()
        self.model: str = net.name
        self._block_names = list(net.block_names)
        self._head_names = list(net.head_names)
        self._exit_after = list(net.exit_after)
        self._plans: dict[str, tuple[tuple[str, ...], list[tuple[str, int]]]] = {}
        self._warm: set[int] = set()
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(self.seed)
        self._next_input: torch.Tensor | None = None
        # The frame in progress: the activation after block ``_frame_block`` (-1: none), for ``_frame_batch``.
        self._act: torch.Tensor | None = None
        self._frame_block = -1
        self._frame_batch = 0
        self.last_logits: torch.Tensor | None = None
        self.last_exit: int | None = None
        self.last_latency_s: float = 0.0
        self._cuda = self.device.type == "cuda"
        if self._cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    # ------------------------------------------------------------------------------------ arguments

    def _device(self, device: Any) -> torch.device:
        torch = self._torch
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}") from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise HardwareError(
                    f"device {device!r} asked for, but CUDA is not available (torch {torch.__version__}, "
                    f"built with CUDA {torch.version.cuda}); use device='cpu' or install a CUDA build of torch"
                )
            index = torch.cuda.current_device() if dev.index is None else dev.index
            if not 0 <= index < torch.cuda.device_count():
                raise HardwareError(
                    f"CUDA device {index} does not exist; this machine has {torch.cuda.device_count()} "
                    f"(indices follow CUDA_VISIBLE_DEVICES)"
                )
            dev = torch.device("cuda", index)
        elif dev.type != "cpu":
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
        return dev

    def _dtype(self, dtype: Any) -> torch.dtype:
        torch = self._torch
        if isinstance(dtype, torch.dtype):
            name = str(dtype).removeprefix("torch.")
        else:
            name = str(dtype)
        if name not in DTYPES:
            raise ConfigError(f"dtype must be one of {list(DTYPES)} (or the torch dtype), got {dtype!r}")
        return getattr(torch, name)

    # ------------------------------------------------------------------------------------ inputs and state

    @property
    def frame_block(self) -> int:
        """Last block run of the frame in progress (-1: no frame in progress)."""
        return self._frame_block

    @property
    def activation(self) -> torch.Tensor | None:
        """Output of block :attr:`frame_block` of the frame in progress (``None`` if none)."""
        return self._act

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """Shape of a frame's input: ``(batch, 3, input_size, input_size)``."""
        return (batch, 3, self.input_size, self.input_size)

    def set_input(self, x: Any) -> None:
        """Give the input of the next frame (used once, by the next frame work or block 0).

        Args:
            x: a tensor or array of shape ``(3, H, W)`` or ``(B, 3, H, W)`` (float; normalised as the
                network expects). It is copied to the runner's device and dtype now, outside any timing.
                A ``(3, H, W)`` image is repeated to the batch size of the run.
        """
        torch = self._torch
        t = torch.as_tensor(x)
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4 or t.shape[1] != 3:
            raise ConfigError(f"an input frame has shape (3, H, W) or (B, 3, H, W), got {tuple(t.shape)}")
        self._next_input = t.to(device=self.device, dtype=self.dtype)

    def new_frame(self) -> None:
        """Drop the frame in progress (its activation); the next block must be block 0 or a frame work."""
        self._act = None
        self._frame_block = -1
        self._frame_batch = 0

    def fresh_input(self, batch: int = 1) -> torch.Tensor:
        """A new frame's input ``(batch, 3, input_size, input_size)``: the one given to :meth:`set_input` (used
        once), else random (seeded). Made outside any timing."""
        x = self._next_input
        if x is not None:
            self._next_input = None
            if x.shape[0] == 1 and batch > 1:
                return x.expand(batch, *x.shape[1:]).contiguous()
            if x.shape[0] != batch:
                raise ConfigError(f"the input given to set_input has batch {x.shape[0]}, but the run has batch {batch}")
            return x
        return self._torch.randn(
            self.input_shape(batch), generator=self._gen, device=self.device, dtype=self.dtype
        )

    # ------------------------------------------------------------------------------------ work keys

    def plan(self, work: Work) -> list[tuple[str, int]]:
        """The steps ``work`` maps to: ``("start", 0)`` (a fresh input), ``("block", i)``, ``("head", e)``.

        Raises:
            ConfigError: the key is not a Work key of this model, or its block names are not this network's.
        """
        hit = self._plans.get(work.key)
        if hit is not None and (hit[0] is work.names or hit[0] == work.names):
            return hit[1]
        steps = []
        for part in work.key.split("+"):
            m = _PART.match(part)
            if m is None:
                raise ConfigError(
                    f"work '{work.key}': '{part}' is not a Work key TorchRunner knows "
                    f"('<model>/frame/exit<e>', '<model>/block<i>' or '<model>/head<e>')"
                )
            if m["model"] != self.model:
                raise ConfigError(
                    f"work '{work.key}' is for model '{m['model']}', but this runner holds '{self.model}'; "
                    f"build a TorchRunner(model='{m['model']}')"
                )
            if m["frame"] is not None:
                e = self._exit_index(int(m["frame"]), work)
                steps.append(("start", 0))
                steps.extend(("block", i) for i in range(self._exit_after[e] + 1))
                steps.append(("head", e))
            elif m["block"] is not None:
                i = int(m["block"])
                if not 0 <= i < len(self._block_names):
                    raise ConfigError(
                        f"work '{work.key}': {self.model} has blocks 0..{len(self._block_names) - 1}, got block {i}"
                    )
                if i == 0:
                    steps.append(("start", 0))
                steps.append(("block", i))
            else:
                steps.append(("head", self._exit_index(int(m["head"]), work)))
        names = tuple(self._block_names[i] if kind == "block" else self._head_names[i] for kind, i in steps
                      if kind != "start")
        if names != tuple(work.names):
            raise ConfigError(
                f"work '{work.key}' lists blocks {list(work.names)}, but on this {self.model} network the key "
                f"means {list(names)}: the profile and the network split the model differently (exits after "
                f"blocks {self._exit_after})"
            )
        self._plans[work.key] = (work.names, steps)
        return steps

    def _exit_index(self, e: int, work: Work) -> int:
        if not 0 <= e < len(self._exit_after):
            raise ConfigError(f"work '{work.key}': {self.model} has exits 0..{len(self._exit_after) - 1}, got exit {e}")
        return e

    def _check_order(self, work: Work, steps: Sequence[tuple[str, int]], batch: int) -> None:
        """Check the steps against the frame in progress before anything runs (so a refused run changes nothing)."""
        block, fbatch = self._frame_block, self._frame_batch
        for kind, i in steps:
            if kind == "start":
                block, fbatch = -1, batch
                continue
            done = "no frame in progress" if block < 0 else f"the frame in progress has run blocks 0..{block}"
            if kind == "block" and block != i - 1:
                raise ConfigError(
                    f"work '{work.key}': block {i} of {self.model} needs the output of block {i - 1} of the same "
                    f"frame, but {done}; run blocks in order (block 0 starts a new frame)"
                )
            if kind == "head" and block != self._exit_after[i]:
                raise ConfigError(
                    f"work '{work.key}': exit {i}'s head needs the output of block {self._exit_after[i]}, but {done}"
                )
            if fbatch != batch:
                raise ConfigError(
                    f"work '{work.key}' runs at batch {batch}, but the frame in progress has batch {fbatch}; "
                    f"finish it at batch {fbatch}, or start a new frame (block 0 or a frame work)"
                )
            if kind == "block":
                block = i

    # ------------------------------------------------------------------------------------ running

    def _warmup(self, batch: int) -> None:
        if batch in self._warm:
            return
        self._warm.add(batch)
        if self.warmup == 0:
            return
        torch = self._torch
        x = torch.randn(self.input_shape(batch), generator=self._gen, device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            for _ in range(self.warmup):
                self.net.forward_all(x)
        if self._cuda:
            torch.cuda.synchronize(self.device)

    def run(self, work: Work, batch: int = 1) -> float:
        """Run ``work`` on ``batch`` inferences at once and return its latency (s).

        On CUDA the latency is measured with CUDA events (synchronised); on the CPU with ``perf_counter``.
        The logits of the last head run are kept in :attr:`last_logits` (exit in :attr:`last_exit`).

        Raises:
            ConfigError: a Work key of another model, blocks out of order (block ``i`` needs block ``i - 1`` of
                the same frame; a head needs its exit's block), or a batch that differs from the frame's.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
        steps = self.plan(work)
        self._check_order(work, steps, batch)
        self._warmup(batch)
        torch = self._torch
        inputs = [self.fresh_input(batch) for kind, _ in steps if kind == "start"]
        net = self.net

        def execute() -> tuple[Any, Any, int | None]:
            """Run the planned steps; returns (activation, logits of the last head or None, its exit)."""
            act, k, logits, exit_ = self._act, 0, None, None
            for kind, i in steps:
                if kind == "start":
                    act, k = inputs[k], k + 1
                elif kind == "block":
                    act = net.run_block(i, act)
                else:
                    logits, exit_ = net.run_head(i, act), i
            return act, logits, exit_

        with torch.inference_mode():
            if self._cuda:
                torch.cuda.synchronize(self.device)
                with torch.cuda.device(self.device):
                    self._start.record()
                    act, logits, exit_ = execute()
                    self._end.record()
                self._end.synchronize()
                seconds = self._start.elapsed_time(self._end) / 1e3
            else:
                t0 = time.perf_counter()
                act, logits, exit_ = execute()
                seconds = time.perf_counter() - t0
        for kind, i in steps:
            if kind == "start":
                self._frame_block, self._frame_batch = -1, batch
            elif kind == "block":
                self._frame_block = i
        self._act = act
        if logits is not None:
            self.last_logits, self.last_exit = logits, exit_
        self.last_latency_s = seconds
        return seconds

    def close(self) -> None:
        """Drop the activations (and, on CUDA, return cached memory to the driver)."""
        self.new_frame()
        self._next_input = None
        self.last_logits = None
        if self._cuda:
            self._torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return (
            f"TorchRunner(model={self.model!r}, device='{self.device}', "
            f"dtype={str(self.dtype).removeprefix('torch.')}, "
            f"input_size={self.input_size})"
        )
