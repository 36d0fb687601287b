"""Spatial-channel attention over a split point's feature maps (DVFO's ranking of primary and secondary maps).

DVFO (Zhang et al., IEEE TMC 2024) ranks the feature maps at its split point with a spatial-channel attention
module and offloads the least important ones; the module's architecture and weights are not public. This is
CBAM's structure (Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018): a channel attention from
the maps' average- and max-pooled values, then a spatial attention from the channel-wise mean and max, each a
sigmoid gate. Untrained (``learned=False``, the default: ASSUMPTION, docs/assumptions.md) the gates are
parameter-free: each pooled statistic is standardised across channels (or positions) and summed before the
sigmoid, so a channel ranks by its attention-weighted activation. ``learned=True`` has CBAM's shared MLP
(reduction 16) and 7×7 convolution, to train with a network.

A channel's **importance** is its attention-weighted activation mass, normalised to sum 1 over channels; the
importance statistics an edge-cloud split needs are the mass ``m(s)`` of the ``s`` least important channels and
its **concentration** ``beta``, the least-squares fit of ``m(s) = s**beta`` (:func:`importance_concentration`,
the model :func:`e4gym.dnn.offload.importance_mass` uses).

:class:`SplitImportance` measures the importance at a multi-exit network's split block during its forward passes:
``e4gym record`` stores each frame's ``beta`` in the trace (``importance_beta``) and
``benchmarks/importance_fit.py`` fits the emulator's draw with it (one implementation for both).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from e4gym.dnn.offload import CBAM_KERNEL, CBAM_REDUCTION, default_split
from e4gym.errors import ConfigError

if TYPE_CHECKING:
    from e4gym.dnn.multiexit import MultiExitNet

#: The offload shares at which ``m(s) = s**beta`` is fitted.
FIT_SHARES = tuple(i / 10 for i in range(1, 10))


def _standardise(x: Tensor, dim: int) -> Tensor:
    if x.shape[dim] < 2:  # one channel or one position: nothing to rank (the sample std would be NaN)
        return torch.zeros_like(x)
    return (x - x.mean(dim=dim, keepdim=True)) / (x.std(dim=dim, keepdim=True) + 1e-6)


class SpatialChannelAttention(nn.Module):
    """CBAM-style channel-then-spatial attention over ``(N, C, H, W)`` maps; returns the gated maps and the
    per-channel importance ``(N, C)`` (non-negative, summing to 1 per sample).

    Args:
        channels: C. learned: CBAM's trainable MLP and convolution instead of the parameter-free gates.
        reduction / kernel: CBAM's MLP reduction ratio and spatial kernel (16 and 7).
    """

    def __init__(self, channels: int, learned: bool = False, reduction: int = CBAM_REDUCTION,
                 kernel: int = CBAM_KERNEL) -> None:
        super().__init__()
        if channels < 1 or reduction < 1 or kernel < 1 or kernel % 2 == 0:
            raise ConfigError(f"attention needs channels >= 1, reduction >= 1 and an odd kernel, got {channels}, "
                              f"{reduction}, {kernel}")
        self.learned = learned
        if learned:
            hidden = max(channels // reduction, 1)
            self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
            self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(gated maps (N, C, H, W), importance (N, C))``."""
        if x.dim() != 4:
            raise ConfigError(f"attention takes (N, C, H, W) feature maps, got shape {tuple(x.shape)}")
        avg, mx = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
        if self.learned:
            gate_c = torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        else:
            gate_c = torch.sigmoid(_standardise(avg, 1) + _standardise(mx, 1))
        y = x * gate_c[:, :, None, None]
        pooled = torch.stack([y.mean(dim=1), y.amax(dim=1)], dim=1)  # (N, 2, H, W)
        if self.learned:
            gate_s = torch.sigmoid(self.conv(pooled))
        else:
            flat = pooled.flatten(2)
            gate_s = torch.sigmoid(_standardise(flat[:, 0], 1) + _standardise(flat[:, 1], 1)).view_as(pooled[:, :1])
        y = y * gate_s
        mass = y.abs().mean(dim=(2, 3))
        importance = mass / mass.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return y, importance


def offloaded_mass(importance: np.ndarray, share: float) -> np.ndarray:
    """Share of the importance held by the ``share`` least important channels, per sample (``importance``:
    ``(N, C)`` or ``(C,)``, non-negative, normalised here); the channels offloaded are ``round(share · C)``."""
    imp = np.atleast_2d(np.asarray(importance, dtype=np.float64))
    imp = imp / imp.sum(axis=1, keepdims=True).clip(1e-300)
    k = round(float(share) * imp.shape[1])
    return np.sort(imp, axis=1)[:, :k].sum(axis=1)


def importance_concentration(importance: np.ndarray) -> np.ndarray:
    """``beta`` per sample: the least-squares fit of ``log m(s) = beta · log s`` over :data:`FIT_SHARES`, with
    ``m(s)`` the mass of the ``s`` least important channels (:func:`offloaded_mass`). 1 for uniform importance,
    larger when a few channels hold most of it."""
    imp = np.atleast_2d(np.asarray(importance, dtype=np.float64))
    if imp.shape[1] < 10:
        raise ConfigError(f"importance_concentration needs at least 10 channels, got {imp.shape[1]}")
    logs = np.log(np.array(FIT_SHARES))
    logm = np.log(np.stack([offloaded_mass(imp, s) for s in FIT_SHARES], axis=1).clip(1e-12))
    return (logm @ logs) / (logs @ logs)


class SplitImportance:
    """The channel importance at a multi-exit network's split block, measured on every forward pass.

    A forward hook on block ``split`` ranks the block's output maps ``(N, C, H, W)`` with the parameter-free
    :class:`SpatialChannelAttention` as the network runs (inside the caller's ``torch.no_grad`` or
    ``inference_mode``); :meth:`take` returns the importance of every frame since the last call, in order. Use
    it as a context manager, which removes the hook on exit::

        with SplitImportance(net) as split:
            net.forward_all(batch)
            beta = importance_concentration(split.take())  # one beta per frame of the batch

    ``e4gym record`` (:func:`e4gym.workload.record.record_trace`, the trace's ``importance_beta``) and
    ``benchmarks/importance_fit.py`` both measure the importance through it.

    Args:
        net: the network.
        split: the block whose output is ranked; None: :func:`~e4gym.dnn.offload.default_split` of the network's
            model profile (``configs/models/<net.name>.yaml``), the edge-cloud env's default.

    Attributes:
        split: the block index.

    Raises:
        ConfigError / UnknownNameError: ``split`` is not a block of ``net``, or (``split=None``) the network has
            no model profile.
    """

    def __init__(self, net: MultiExitNet, split: int | None = None) -> None:
        if split is None:
            from e4gym.dnn.profile import load_model_profile

            split = default_split(load_model_profile(net.name))
        self.split = int(split)
        self._rows: list[np.ndarray] = []
        self._attention: SpatialChannelAttention | None = None
        self._handle = net.block(self.split).register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, _inputs: object, out: Tensor) -> None:
        if self._attention is None:
            self._attention = SpatialChannelAttention(int(out.shape[1]))
        with torch.no_grad():
            self._rows.append(self._attention(out.detach().float())[1].cpu().numpy())

    def take(self) -> np.ndarray:
        """Importance ``(N, C)`` (float32, rows summing to 1) of the N frames run since the last call; clears it.

        Raises:
            ConfigError: no forward pass reached the split block since the last call.
        """
        if not self._rows:
            raise ConfigError(f"SplitImportance.take: no forward pass reached block {self.split} since the last "
                              f"take(); run the network first")
        rows, self._rows = self._rows, []
        return np.concatenate(rows)

    def close(self) -> None:
        """Remove the hook (idempotent)."""
        self._handle.remove()
        self._rows = []

    def __enter__(self) -> SplitImportance:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
