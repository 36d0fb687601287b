"""The unit of work a backend runs: a sequence of DNN blocks of known cost.

A :class:`Work` is what :meth:`e4gym.hardware.Backend.run` executes. It is built from a
:class:`e4gym.dnn.ModelProfile` (a whole frame up to an exit, one block, or one exit head) and
carries, per block, the three quantities the emulator's model needs:

* ``flops``: floating-point operations (2 per multiply-accumulate), per inference;
* ``param_bytes``: bytes of weights read from DRAM (once per batch);
* ``activation_bytes``: bytes of activations read and written (per inference in the batch);
* ``kernels``: GPU kernel launches, each costing CPU-side dispatch and a GPU-side minimum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from e4gym.errors import ConfigError


@dataclass(frozen=True)
class Work:
    """Cost of a sequence of blocks, per inference (batch size 1).

    Attributes:
        key: a stable identifier (e.g. ``"efficientnet_b0/frame/exit4"``); backends cache by it.
        names: block names, for reports.
        flops: FLOPs per block (count, not rate).
        param_bytes: weights read per block (bytes, once per batch).
        activation_bytes: activations read and written per block (bytes, per inference).
        kernels: kernel launches per block (count).
    """

    key: str
    names: tuple[str, ...]
    flops: tuple[float, ...]
    param_bytes: tuple[float, ...]
    activation_bytes: tuple[float, ...]
    kernels: tuple[float, ...]
    _arrays: dict = field(default_factory=dict, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise ConfigError(f"work '{self.key}': needs at least one block")
        columns = (
            ("flops", self.flops),
            ("param_bytes", self.param_bytes),
            ("activation_bytes", self.activation_bytes),
            ("kernels", self.kernels),
        )
        for label, values in columns:
            if len(values) != n:
                raise ConfigError(f"work '{self.key}': {label} has {len(values)} entries for {n} blocks")
            arr = np.asarray(values, dtype=float)
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ConfigError(
                    f"work '{self.key}': {label} must be finite and >= 0 (a negative cost is meaningless), "
                    f"got {list(values)}"
                )
        if sum(self.kernels) <= 0:
            raise ConfigError(f"work '{self.key}': needs at least one kernel launch")

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return len(self.names)

    def array(self, name: str) -> np.ndarray:
        """One cost column as a float64 array of shape ``(n_blocks,)`` (cached)."""
        if name not in self._arrays:
            self._arrays[name] = np.asarray(getattr(self, name), dtype=float)
        return self._arrays[name]

    @property
    def total_flops(self) -> float:
        """Sum of FLOPs over blocks."""
        return float(sum(self.flops))

    def total_dram_bytes(self, batch: int = 1) -> float:
        """DRAM traffic of the whole work for a batch of ``batch`` inferences (bytes)."""
        return float(sum(self.param_bytes) + batch * sum(self.activation_bytes))

    @property
    def total_kernels(self) -> float:
        """Sum of kernel launches over blocks."""
        return float(sum(self.kernels))

    def __add__(self, other: Work) -> Work:
        """Concatenate two works (e.g. backbone blocks then an exit head)."""
        return Work(
            key=f"{self.key}+{other.key}",
            names=self.names + other.names,
            flops=self.flops + other.flops,
            param_bytes=self.param_bytes + other.param_bytes,
            activation_bytes=self.activation_bytes + other.activation_bytes,
            kernels=self.kernels + other.kernels,
        )
