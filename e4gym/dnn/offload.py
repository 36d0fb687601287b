"""Edge-cloud split inference (DVFO): what each side runs for an offload share, what crosses the uplink, and
what the split costs in accuracy.

DVFO (Zhang et al., IEEE TMC 2024, arXiv 2306.01811; CALIBRATION.md "DVFO") runs a network on the edge up to a
*split point*, ranks the split's feature maps by a spatial-channel attention module, keeps the primary ones on the
edge, compresses and sends the secondary ones (a share ``s`` of the channels) to a cloud server, and fuses the
two results. The paper's cost and accuracy models are not public; this module's are stated here and named in
``docs/assumptions.md`` ("Edge-cloud split"):

- **Compute.** The edge runs blocks ``0..split`` whole, then the attention module (CBAM's channel and spatial
  attention, Woo et al., ECCV 2018, over the split's ``C×H×W`` maps) and, when it offloads, a quantisation
  kernel; then the rest of the network (the *tail*, with the last exit's head) on the ``1 − s`` kept channels,
  at ``1 − s`` of the tail's FLOPs, parameter and activation bytes (DVFO's latency model scales the edge's work
  with the share it keeps) and all of its kernel launches. The cloud runs the tail on the ``s`` offloaded
  channels, scaled the same way. ``s = 0`` is edge-only (no attention, nothing sent); ``s = 1`` runs no tail on
  the edge.
- **Bytes sent.** ``s·C·H·W`` elements at :data:`FEATURE_BYTES_PER_ELEMENT` (int8 quantisation then lossless
  coding); with ``split = -1`` the *input* frame is sent, JPEG-compressed at :data:`INPUT_BYTES_PER_ELEMENT`
  (cloud-only inference, DVFO's "send the input" baseline).
- **Importance.** The attention ranks channels (:mod:`e4gym.dnn.attention`); the ``s`` least important carry a
  share ``m = s**beta`` of the importance (``beta`` = the frame's concentration: 1 is uniform, larger is more
  concentrated on few channels). ``beta`` is drawn per frame around :data:`DEFAULT_CONCENTRATION`, **fitted on
  real frames** (``benchmarks/importance_fit.py``); on a recorded trace that carries it (``importance_beta``,
  :func:`e4gym.workload.record.record_trace`) each frame's recorded ``beta`` is used instead.
- **Accuracy.** Anchored at both ends: ``s = 0`` is the full network's accuracy (edge-only), ``s = 1`` loses
  :data:`QUANTISATION_LOSS` (the cloud sees quantised features). Between them the two partial results are fused
  with the weight ``lambda = 1 − m`` on the edge's (importance-proportional), and the fused result loses
  ``QUANTISATION_LOSS·m + FUSION_LOSS·4·m·(1 − m)``: the quantised share, and a fusion penalty that is largest
  when both halves matter equally. DVFO reports an average loss within 1 %; these constants keep every share
  within 1.5 points.

This module does not import torch.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from e4gym.dnn.profile import BlockCost, ModelProfile
from e4gym.dnn.work import Work
from e4gym.errors import ConfigError

#: The offload shares of the env's action (DVFO's discrete grid): 0, 0.1, ..., 1.
DEFAULT_SHARES: tuple[float, ...] = tuple(i / 10 for i in range(11))
#: Bytes per feature-map element sent: int8 quantisation (1 byte) then lossless coding to half. ASSUMPTION.
FEATURE_BYTES_PER_ELEMENT = 0.5
#: Bytes per input element sent when the input is offloaded (``split=-1``): a 224×224 RGB frame as a JPEG of
#: about 15 kB (quality ~90). ASSUMPTION.
INPUT_BYTES_PER_ELEMENT = 0.1
#: Top-1 points lost when the cloud classifies from int8-quantised features (or a JPEG input). ASSUMPTION.
QUANTISATION_LOSS = 0.005
#: Largest extra loss of fusing two partial results (at ``m = 0.5``). ASSUMPTION (DVFO: within 1 % on average).
FUSION_LOSS = 0.01
#: The median per-frame importance concentration ``beta`` (``m = s**beta``). FIT: 2.07 on the 251 frames of the
#: three shipped clips through the pretrained EfficientNet-Lite0 at its default split, ranked by the parameter-free
#: attention of :mod:`e4gym.dnn.attention` (per clip 1.99-2.13; ``benchmarks/importance_fit.py``): the least
#: important half of the channels holds about a fifth of the importance.
DEFAULT_CONCENTRATION = 2.07
#: Standard deviation of ``log beta`` from frame to frame. FIT: 0.028 over the same frames (0.009-0.015 within a
#: clip).
CONCENTRATION_SPREAD = 0.028
#: CBAM's channel-attention reduction ratio (Woo et al., ECCV 2018) and its spatial kernel (7×7).
CBAM_REDUCTION, CBAM_KERNEL = 16, 7


def importance_mass(share: float | np.ndarray, concentration: float | np.ndarray) -> float | np.ndarray:
    """Share of the attention importance held by the ``share`` least important channels: ``share**beta``
    (0 at share 0, 1 at share 1; ``concentration`` = beta >= 1)."""
    return share**concentration


def split_accuracy_loss(share: float, mass: float) -> float:
    """Top-1 accuracy lost (a fraction, e.g. 0.005 = half a point) by offloading ``share`` of the channels whose
    importance mass is ``mass`` (see the module docstring): 0 at ``share = 0``, :data:`QUANTISATION_LOSS` at 1."""
    if share <= 0.0:
        return 0.0
    if share >= 1.0:
        return QUANTISATION_LOSS
    return QUANTISATION_LOSS * mass + FUSION_LOSS * 4.0 * mass * (1.0 - mass)


def default_split(profile: ModelProfile, max_flops_fraction: float = 0.6) -> int:
    """The default split point: the block with the smallest output among those that end within the first
    ``max_flops_fraction`` of the network's FLOPs (DVFO does not publish its split; ASSUMPTION)."""
    total = sum(b.flops for b in profile.blocks) + profile.exits[-1].head.flops
    best, best_size, done = 0, math.inf, 0.0
    for j, b in enumerate(profile.blocks[:-1]):
        done += b.flops
        if done > max_flops_fraction * total:
            break
        size = math.prod(b.output_shape) if b.output_shape else math.inf
        if size < best_size:
            best, best_size = j, size
    return best


def _scaled(b: BlockCost, f: float, name: str | None = None) -> BlockCost:
    """``b`` with ``f`` of its FLOPs, parameter and activation bytes (kernels unchanged)."""
    return BlockCost(name=name or b.name, macs=b.macs * f, flops=b.flops * f, param_bytes=b.param_bytes * f,
                     activation_bytes=b.activation_bytes * f, kernels=b.kernels, output_shape=b.output_shape)


def attention_cost(shape: tuple[int, ...]) -> BlockCost:
    """Cost of CBAM's channel and spatial attention plus the channel ranking over ``C×H×W`` maps (fp32).

    Channel attention: average and max pooling (2·CHW), a shared MLP C → C/16 → C on both vectors, a sigmoid and
    the rescale (CHW); spatial attention: mean and max across channels (2·CHW), a 7×7 convolution 2 → 1, a sigmoid
    and the rescale (CHW); ranking: a per-channel sum (CHW). About ten kernels.
    """
    c, h, w = [*shape, 1, 1, 1][:3]
    chw, hw, r = c * h * w, h * w, max(c // CBAM_REDUCTION, 1)
    mlp_macs = 2 * (c * r + r * c)
    conv_macs = 2 * CBAM_KERNEL * CBAM_KERNEL * hw
    macs = mlp_macs + conv_macs
    flops = 2 * macs + 7 * chw
    params = (2 * c * r + 2 * CBAM_KERNEL * CBAM_KERNEL) * 4
    return BlockCost(name="attention", macs=macs, flops=flops, param_bytes=params,
                     activation_bytes=4 * 6 * chw, kernels=12, output_shape=tuple(shape))


def quantise_cost(elements: float) -> BlockCost:
    """Cost of quantising ``elements`` fp32 values to int8 on the GPU (scale, round, pack: 2 kernels)."""
    return BlockCost(name="quantise", macs=0.0, flops=3.0 * elements, param_bytes=0.0,
                     activation_bytes=5.0 * elements, kernels=2, output_shape=(int(elements),))


@dataclass(frozen=True)
class SplitPlan:
    """The works and bytes of a network split for edge-cloud inference, one entry per offload share.

    Attributes:
        profile: the network. split: the block after which the feature maps are split (-1: the input).
        shares: the offload shares, increasing from 0 to 1.
        split_shape: shape of what is split (the block's output, or the input).
        edge: per share, the edge's work (the head to the split, attention and quantisation when it offloads,
            the kept share of the tail). to_send: per share, the part of it done before the send can start (the
            head, attention and quantisation; ``None`` at share 0). cloud: per share, the cloud's work (``None`` at
            share 0).
        tx_bytes: per share, bytes sent over the uplink (B).
    """

    profile: ModelProfile
    split: int
    shares: tuple[float, ...]
    split_shape: tuple[int, ...] = field(init=False)
    edge: tuple[Work, ...] = field(init=False)
    to_send: tuple[Work | None, ...] = field(init=False)
    cloud: tuple[Work | None, ...] = field(init=False)
    tx_bytes: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        p, shares = self.profile, tuple(float(s) for s in self.shares)
        if not -1 <= self.split < p.n_blocks - 1:
            raise ConfigError(f"split_block must be in -1..{p.n_blocks - 2} for '{p.name}' (-1: send the input; "
                              f"the last block cannot be split off), got {self.split}")
        if (len(shares) < 2 or shares[0] != 0.0 or shares[-1] != 1.0
                or any(b <= a for a, b in itertools.pairwise(shares))):
            raise ConfigError(f"offload shares must increase strictly from 0 to 1 (e.g. 0, 0.1, ..., 1), got "
                              f"{list(self.shares)}")
        object.__setattr__(self, "shares", shares)
        head = list(p.blocks[: self.split + 1])
        tail = [*p.blocks[self.split + 1:], p.exits[-1].head]
        shape = tuple(p.input_shape) if self.split < 0 else tuple(p.blocks[self.split].output_shape)
        if not shape:
            raise ConfigError(f"model '{p.name}': block {self.split} has no output_shape; regenerate the profile "
                              f"with `e4gym profile`")
        elements = float(math.prod(shape))
        per_element = INPUT_BYTES_PER_ELEMENT if self.split < 0 else FEATURE_BYTES_PER_ELEMENT
        edge, to_send, cloud, tx = [], [], [], []
        tag = f"{p.name}/split{self.split}"
        for s in shares:
            blocks = list(head)
            if s > 0.0 and self.split >= 0:
                blocks += [attention_cost(shape), quantise_cost(s * elements)]
            elif s > 0.0:  # the input: JPEG-encode it (a quantisation-sized kernel on the raw pixels)
                blocks += [quantise_cost(elements)]
            to_send.append(ModelProfile._work(f"{tag}/to-send/share{s:g}", blocks) if s > 0 else None)
            if s < 1.0:
                blocks += [_scaled(b, 1.0 - s) for b in tail]
            edge.append(ModelProfile._work(f"{tag}/edge/share{s:g}", blocks))
            cloud.append(ModelProfile._work(f"{tag}/cloud/share{s:g}", [_scaled(b, s) for b in tail])
                         if s > 0 else None)
            tx.append(s * elements * per_element)
        object.__setattr__(self, "split_shape", shape)
        object.__setattr__(self, "edge", tuple(edge))
        object.__setattr__(self, "to_send", tuple(to_send))
        object.__setattr__(self, "cloud", tuple(cloud))
        object.__setattr__(self, "tx_bytes", tuple(tx))
