"""Cost profiles of multi-exit networks (``configs/models/*.yaml``).

A profile lists, per block of the backbone, its FLOPs, parameter and activation bytes, kernel launches
and output shape, and per exit the block it follows, the cost of its head and its accuracy. The cost
fields are generated from the PyTorch networks in :mod:`e4gym.dnn` by ``e4gym profile``; the exit
accuracies are assumptions (see ``docs/assumptions.md``) and are kept when a profile is regenerated.

This module does not import torch, so the emulator and the envs load profiles cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from e4gym._yaml import Fields, load_yaml
from e4gym.dnn.work import Work
from e4gym.errors import UnknownNameError
from e4gym.paths import config_dir

_COST_FIELDS = {"name", "macs", "flops", "param_bytes", "activation_bytes", "kernels", "output_shape"}


@dataclass(frozen=True)
class BlockCost:
    """Cost of one block (or exit head) per inference at batch size 1.

    Attributes:
        name: module path in the network (torchvision naming, e.g. ``features.3``).
        macs: multiply-accumulates.
        flops: floating-point operations (PyTorch's FLOP counter: 2 per MAC).
        param_bytes: bytes of parameters and buffers read (fp32).
        activation_bytes: bytes of activations read and written (fp32).
        kernels: operator launches (one GPU kernel each in eager PyTorch).
        output_shape: shape of the block's output without the batch dimension.
    """

    name: str
    macs: float
    flops: float
    param_bytes: float
    activation_bytes: float
    kernels: int
    output_shape: tuple[int, ...]

    @property
    def dram_bytes(self) -> float:
        """Bytes moved to/from DRAM, assuming no cache reuse across kernels."""
        return self.param_bytes + self.activation_bytes


@dataclass(frozen=True)
class ExitSpec:
    """One exit of a multi-exit network.

    Attributes:
        name: exit name (``exit0`` ... ``exitN``; the last is the original classifier).
        after_block: index of the last backbone block the exit needs (blocks ``0..after_block`` run first).
        head: cost of the exit head.
        accuracy: top-1 accuracy when every input exits here (an assumption, see the YAML's source).
    """

    name: str
    after_block: int
    head: BlockCost
    accuracy: float


@dataclass(frozen=True)
class ModelProfile:
    """Per-block and per-exit cost of a multi-exit network; see the module docstring."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    blocks: tuple[BlockCost, ...]
    exits: tuple[ExitSpec, ...]
    source: str = ""

    @property
    def n_blocks(self) -> int:
        """Number of backbone blocks."""
        return len(self.blocks)

    @property
    def n_exits(self) -> int:
        """Number of exits (the last one is the full network)."""
        return len(self.exits)

    @property
    def total_macs(self) -> float:
        """MACs of the full network (all blocks and the final exit's head)."""
        return sum(b.macs for b in self.blocks) + self.exits[-1].head.macs

    def _check_exit(self, exit: int) -> ExitSpec:
        if not 0 <= exit < self.n_exits:
            raise UnknownNameError(f"model '{self.name}' has exits 0..{self.n_exits - 1}, got exit {exit}")
        return self.exits[exit]

    @staticmethod
    def _work(key: str, blocks: list[BlockCost]) -> Work:
        return Work(
            key=key,
            names=tuple(b.name for b in blocks),
            flops=tuple(b.flops for b in blocks),
            param_bytes=tuple(b.param_bytes for b in blocks),
            activation_bytes=tuple(b.activation_bytes for b in blocks),
            kernels=tuple(float(b.kernels) for b in blocks),
        )

    def frame_work(self, exit: int = -1) -> Work:
        """The work of one inference that leaves at ``exit`` (default: the last exit).

        It runs blocks ``0..after_block`` and the exit's head.
        """
        exit = exit % self.n_exits if exit < 0 else exit
        spec = self._check_exit(exit)
        blocks = [*self.blocks[: spec.after_block + 1], spec.head]
        return self._work(f"{self.name}/frame/exit{exit}", blocks)

    def block_work(self, index: int) -> Work:
        """The work of backbone block ``index`` alone."""
        if not 0 <= index < self.n_blocks:
            raise UnknownNameError(f"model '{self.name}' has blocks 0..{self.n_blocks - 1}, got {index}")
        return self._work(f"{self.name}/block{index}", [self.blocks[index]])

    def head_work(self, exit: int) -> Work:
        """The work of exit ``exit``'s head alone."""
        spec = self._check_exit(exit)
        return self._work(f"{self.name}/head{exit}", [spec.head])


def _block(f: Fields) -> BlockCost:
    f.check_known(_COST_FIELDS)
    shape = f.raw("output_shape", [])
    if not isinstance(shape, list) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise f.fail("output_shape", "a list of positive integers", shape)
    return BlockCost(
        name=f.str("name"),
        macs=f.number("macs", min=0),
        flops=f.number("flops", min=0),
        param_bytes=f.number("param_bytes", min=0),
        activation_bytes=f.number("activation_bytes", min=0),
        kernels=f.int("kernels", min=0),
        output_shape=tuple(shape),
    )


def _list(f: Fields, key: str) -> list[Fields]:
    items = f.raw(key)
    if not isinstance(items, list) or not items:
        raise f.fail(key, "a non-empty list", items)
    return [Fields(item, f.file, f"{key}[{i}].") for i, item in enumerate(items)]


def parse_model_profile(data: dict, file: Path | str = "<dict>") -> ModelProfile:
    """Validate a profile mapping (as read from YAML) and build the :class:`ModelProfile`.

    Raises:
        ConfigError: a field is missing or malformed; the message names the file and the field.
    """
    f = Fields(data, file)
    f.check_known({"name", "input_shape", "num_classes", "blocks", "exits", "source", "totals"})
    blocks = tuple(_block(b) for b in _list(f, "blocks"))
    exits = []
    for i, e in enumerate(_list(f, "exits")):
        e.check_known({"name", "after_block", "head", "accuracy", "accuracy_source"})
        after = e.int("after_block", min=0)
        if after >= len(blocks):
            raise e.fail("after_block", f"an index < {len(blocks)} (the number of blocks)", after)
        if exits and after <= exits[-1].after_block:
            raise e.fail("after_block", "larger than the previous exit's (exits are listed in order)", after)
        exits.append(
            ExitSpec(
                name=e.str("name", f"exit{i}"),
                after_block=after,
                head=_block(e.sub("head")),
                accuracy=e.number("accuracy", min=0.0, max=1.0),
            )
        )
    shape = f.raw("input_shape", [3, 224, 224])
    return ModelProfile(
        name=f.str("name"),
        input_shape=tuple(shape),
        num_classes=f.int("num_classes", 1000, min=1),
        blocks=blocks,
        exits=tuple(exits),
        source=str(f.raw("source", "")),
    )


def available_models() -> list[str]:
    """Names of the model profiles in ``configs/models``."""
    return sorted(p.stem for p in (config_dir() / "models").glob("*.yaml"))


def load_model_profile(name_or_path: str | Path) -> ModelProfile:
    """Load a model profile by name (``efficientnet_b0``) or by path to a YAML file.

    Raises:
        UnknownNameError: no profile of that name; the message lists the known ones.
        ConfigError: the file is malformed.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / "models" / f"{name_or_path}.yaml"
        if not path.exists():
            raise UnknownNameError(
                f"unknown model '{name_or_path}'; known models: {available_models()} "
                f"(or pass a path to a profile YAML)"
            )
    return parse_model_profile(load_yaml(path), path)
