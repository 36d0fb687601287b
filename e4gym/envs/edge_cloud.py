"""``e4gym/EdgeCloudDVFS-v0`` (DVFO): per frame, the CPU, GPU and memory clock levels of a Jetson and the share of
a DNN's feature maps offloaded to a cloud server over a shaped uplink."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from e4gym.dnn.offload import (
    CONCENTRATION_SPREAD,
    DEFAULT_CONCENTRATION,
    DEFAULT_SHARES,
    SplitPlan,
    default_split,
    importance_mass,
    split_accuracy_loss,
)
from e4gym.envs.base import F64, NP_BOOL, NP_COST, NP_INT, StreamEnv, _tuple_new
from e4gym.envs.core import (
    CONFIDENCE,
    CORRECT,
    COST_ACCURACY,
    COST_MISS,
    CPU_HZ,
    DEADLINE_MISSED,
    DVFS_SWITCHES,
    EMC_HZ,
    ENERGY_J,
    EXIT,
    FRAME,
    GPU_HZ,
    LATENCY_MS,
    MEASURED_ENERGY_J,
    POWER_W,
    PROFILING_ENERGY_J,
    PROFILING_MS,
    PROFILING_RUNS,
    RUN_MS,
    TEMP_C,
    TEMPERATURE,
    THROTTLED,
    THROTTLED_FIELD,
    EnvConfig,
    FrameOutcome,
    ObsField,
    feature_fields,
    level_fields,
)
from e4gym.errors import ConfigError, HardwareError
from e4gym.hardware.cloud import DEFAULT_TIMEOUT_S
from e4gym.hardware.link import (
    ESTIMATE_PRIOR_BPS,
    ESTIMATE_WINDOW,
    RADIO_PROFILES,
    SYNTH_RTT_MS,
    BandwidthTrace,
    RadioPower,
    Uplink,
    constant_bandwidth,
    load_bandwidth_trace,
    synthetic_bandwidth,
)
from e4gym.hardware.model import cost_table, power_table
from e4gym.hardware.spec import DeviceSpec, load_server

if TYPE_CHECKING:  # pragma: no cover
    from e4gym.hardware.split_runner import SplitRunner

#: Info keys the edge-cloud env adds (NumPy scalars).
SHARE = "offload_share"
TX_BYTES = "tx_bytes"
TRANSFER_MS = "transfer_ms"
CLOUD_MS = "cloud_ms"
RADIO_ENERGY_J = "radio_energy_j"
IMPORTANCE_OFFLOADED = "importance_offloaded"
FUSION_WEIGHT = "fusion_weight"
UPLINK_ESTIMATE_MBPS = "uplink_estimate_mbps"
OFFLOAD_FAILED = "offload_failed"
EDGE_CLOUD_INFO_KEYS: dict[str, str] = {
    SHARE: "share of the split's feature maps offloaded (0 edge-only .. 1 all)",
    TX_BYTES: "bytes sent over the uplink for the frame (B)",
    TRANSFER_MS: "time from the start of the send to the data's arrival at the server, queueing on the uplink "
                 "included (ms; 0 when nothing was sent)",
    CLOUD_MS: "time the server took for its part (ms; 0 when nothing was sent)",
    RADIO_ENERGY_J: "energy of the edge's radio sending the frame's data (J), included in energy_j",
    IMPORTANCE_OFFLOADED: "share of the attention importance in the offloaded channels",
    FUSION_WEIGHT: "weight of the edge's result in the fused prediction (lambda)",
    UPLINK_ESTIMATE_MBPS: "uplink bandwidth the board estimates from its past transfers (Mbit/s)",
    OFFLOAD_FAILED: "the offload failed (real board: the connection dropped or timed out): the frame is lost, "
                    "counted missed and wrong",
}
#: Bandwidth that scales the ``uplink`` observation to 1 (bit/s): DVFO's top uplink rate, 8 Mbps.
UPLINK_REF_BPS = 8e6


@dataclass(frozen=True)
class EdgeCloudOptions:
    """The edge-cloud env's own arguments (the rest are :class:`~e4gym.envs.core.EnvConfig`'s).

    Attributes:
        split_block: the block after which the feature maps are split (-1: the input frame is sent; default
            :func:`~e4gym.dnn.offload.default_split`). shares: the offload shares of the action (0 .. 1).
        uplink: ``"synthetic"`` (a seeded 0.5–8 Mbps trace per episode), a constant rate in Mbit/s, a CSV path
            (``time_s,bandwidth_mbps[,rtt_ms]``) or a :class:`~e4gym.hardware.link.BandwidthTrace`.
        radio: the edge's radio power model: ``"wifi"`` (default), ``"lte"`` or a ``RadioPower``.
        cloud: the server: a name of ``configs/servers`` (default ``"rtx-3080"``), a YAML path or a DeviceSpec.
        concurrent: DVFO's thinking-while-moving: the action of a step applies one frame later and the
            observation carries the pending action and the decision latency.
        decision_ms: the controller's decision time per frame (ms, >= 0): it delays each frame's start unless
            ``concurrent``, where the decision overlaps the previous frame.
        cloud_address: on a real board (``backend="jetson"`` or a backend object), ``"HOST:PORT"`` of an
            ``e4gym serve-cloud`` started with the same model and split block: offloading is then real
            (:class:`~e4gym.hardware.split_runner.SplitRunner`; ``uplink`` and ``cloud`` are not used). The
            emulated backend models the uplink and refuses it.
        cloud_timeout_s: on a real board, the limit (s) of each blocking step of the connection (connect, send,
            ACK, result); a step over it fails the frame.
    """

    split_block: int | None = None
    shares: tuple[float, ...] | None = None
    uplink: Any = "synthetic"
    radio: Any = "wifi"
    cloud: Any = "rtx-3080"
    concurrent: bool = False
    decision_ms: float = 0.0
    cloud_address: str | None = None
    cloud_timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The argument names."""
        return tuple(cls.__dataclass_fields__)


class EdgeCloudDVFSEnv(StreamEnv):
    """Choose each frame's CPU, GPU and memory clock levels and how much of a DNN's features to offload (DVFO).

    ## Description

    A video stream arrives at ``fps`` frames per second. Each frame runs on the edge board up to a *split
    point* (a backbone block); an attention module ranks the split's feature maps and the agent's *offload share*
    of the least important ones is quantised and sent over the uplink to a cloud server, which finishes the
    network on them while the edge finishes it on the rest; the two results are fused. The uplink follows a
    bandwidth trace (DVFO's 0.5–8 Mbps); the server is an emulated desktop GPU (``configs/servers``). The costs,
    the bytes and the accuracy model are :mod:`e4gym.dnn.offload`'s (stated assumptions); the link and radio
    models are :mod:`e4gym.hardware.link`'s.

    Energy is the edge board's: its run and idle wait (as in the frame env) plus its radio's energy while
    sending. Latency is end to end: from the frame's arrival to the later of the edge's result and the cloud's
    result back at the edge (queueing on the board and on the uplink included).

    ## Action Space

    ``MultiDiscrete([n_shares, n_cpu, n_gpu, n_emc])``: ``offload_share`` (index into ``env.unwrapped.shares``,
    0 = edge-only), then the CPU, GPU and memory levels (memory clocks are DVFO's knob, so
    ``control_memory`` defaults to True here).

    ## Observation Space

    The frame env's board fields (``env.unwrapped.obs_names``), without the exit fields, plus:

    | name | range | meaning |
    |---|---|---|
    | `last_share` | [0, 1] | share the previous frame offloaded |
    | `uplink` | [0, 2] | uplink bandwidth the board estimates from its past transfers / 8 Mbit/s |
    | `last_transfer` | [0, 10] | previous frame's transfer time / deadline |
    | `importance_offloaded` | [0, 1] | attention importance in the previous frame's offloaded channels |

    With ``concurrent=True``: ``pending_share``, ``pending_cpu``, ``pending_gpu``, ``pending_emc`` (the action
    the next frame runs with, chosen at the previous step) and ``decision_latency`` (decision time / deadline).

    ## Rewards

    As the frame env (:class:`~e4gym.envs.core.FrameReward` by default, any ``reward=`` callable): the frame's
    edge energy (radio included), its deadline miss and whether the fused prediction is right.

    ## Episode End

    Truncation after ``episode_frames`` frames.

    ## Info

    The frame env's keys (``exit`` is the last exit: the network always runs whole) plus
    :data:`EDGE_CLOUD_INFO_KEYS`.

    ## Arguments

    :class:`~e4gym.envs.core.EnvConfig`'s fields and :class:`EdgeCloudOptions`'s (``split_block``,
    ``shares``, ``uplink``, ``radio``, ``cloud``, ``concurrent``, ``decision_ms``).

    ## Version History

    - v0: initial version (issue 18).
    """

    ACTION_HEAD: ClassVar[tuple[str, int | None]] = ("offload_share", None)
    #: The arguments it takes besides :class:`~e4gym.envs.core.EnvConfig`'s (see :class:`EdgeCloudOptions`).
    OPTIONS: ClassVar[tuple[str, ...]] = EdgeCloudOptions.names()

    def __init__(self, config: EnvConfig | None = None, /, **kwargs: Any) -> None:
        own = {k: kwargs.pop(k) for k in EdgeCloudOptions.names() if k in kwargs}
        if config is None:
            kwargs.setdefault("control_memory", True)
        self.options = opts = _check_options(EdgeCloudOptions(**own))
        self._concurrent = opts.concurrent
        # The action head's size is the number of shares (known before the spaces are built).
        shares = opts.shares
        if shares is None:
            shares = (0.0, 1.0) if opts.split_block == -1 else DEFAULT_SHARES
        self.ACTION_HEAD = ("offload_share", len(shares))  # type: ignore[misc]
        super().__init__(config, **kwargs)
        s = self.setup
        split = default_split(s.profile) if opts.split_block is None else opts.split_block
        self.plan = plan = SplitPlan(s.profile, split, tuple(shares))
        self.shares: tuple[float, ...] = plan.shares
        self.cloud_spec: DeviceSpec = opts.cloud if isinstance(opts.cloud, DeviceSpec) else load_server(opts.cloud)
        cpw = power_table(self.cloud_spec)
        #: Server time per share (s), at its top clocks (its noise is not modelled: a desktop GPU is steady).
        self._cloud_s = tuple(0.0 if w is None else float(cost_table(self.cloud_spec, w, cpw).latency_s[-1])
                              for w in plan.cloud)
        # Per share, then CPU, GPU and EMC level: the share of the edge's run done before the send can start (the
        # head to the split, the attention and the quantisation), from the analytic cost tables.
        epw = power_table(s.spec)
        fractions = []
        for w, first in zip(plan.edge, plan.to_send):
            fractions.append(None if first is None else (cost_table(s.spec, first, epw).latency_s
                                                         / cost_table(s.spec, w, epw).latency_s
                                                         ).reshape(s.spec.n_levels).tolist())
        self._send_fraction = tuple(fractions)
        #: Per share index: (share, the edge's work, bytes sent, the send-start fractions, the server's time (s)).
        self._share_rows = tuple(zip(plan.shares, plan.edge, plan.tx_bytes, self._send_fraction, self._cloud_s))
        self.radio: RadioPower = opts.radio if isinstance(opts.radio, RadioPower) else RADIO_PROFILES[opts.radio]
        #: The uplink's trace when it is fixed (a rate, a CSV, a trace); None: a synthetic trace per episode.
        self._trace: BandwidthTrace | None = _fixed_trace(opts.uplink, s.episode_frames * s.period_s)
        self.uplink: Uplink | None = None
        self._acc_full = s.profile.exits[-1].accuracy
        self._last = s.profile.n_exits - 1
        self._decision_s = opts.decision_ms * 1e-3
        self._inv_shares = 1.0 / max(len(self.shares) - 1, 1)
        self._n_emc = s.max_levels[2]
        #: On a real board: the runner that offloads for real (None: the uplink and server are emulated).
        self.split_runner: SplitRunner | None = None
        self._measured_rates: deque[float] = deque(maxlen=ESTIMATE_WINDOW)
        if opts.cloud_address is not None:
            try:
                self.split_runner = _real_offload(self.backend, plan, opts)
            except BaseException:
                self.close()  # nothing half-done: a real board is restored
                raise

    def make_obs_fields(self, control_memory: bool) -> list[ObsField]:  # type: ignore[override]
        """The observation's fields, in order (see the class docstring)."""
        fields = [
            *feature_fields(),
            ObsField("last_share", 0.0, 1.0, "share of the feature maps the previous frame offloaded"),
            ObsField("latency", 0.0, 10.0, "previous frame's end-to-end latency / deadline (> 1: missed)"),
            ObsField("energy", 0.0, 10.0, "previous frame's edge energy (power monitor, radio included) / E_ref"),
            ObsField("power", 0.0, 10.0, "previous frame's average edge power (power monitor) / P_ref"),
            TEMPERATURE,
            THROTTLED_FIELD,
            *level_fields(control_memory),
            ObsField("slack", -10.0, 1.0, "(deadline − queueing delay the next frame already has) / deadline"),
            ObsField("fps", 0.0, 4.0, "achieved / stream frame rate (moving average)"),
            ObsField("uplink", 0.0, 2.0, "uplink bandwidth estimated from past transfers / 8 Mbit/s"),
            ObsField("last_transfer", 0.0, 10.0, "previous frame's transfer time / deadline"),
            ObsField("importance_offloaded", 0.0, 1.0, "attention importance of the previous frame's offloaded "
                     "channels"),
        ]
        if self._concurrent:
            fields += [
                ObsField("pending_share", 0.0, 1.0, "share the next frame offloads (chosen at the previous step)"),
                ObsField("pending_cpu", 0.0, 1.0, "CPU level the next frame runs at / highest"),
                ObsField("pending_gpu", 0.0, 1.0, "GPU level the next frame runs at / highest"),
                ObsField("pending_emc", 0.0, 1.0, "memory level the next frame runs at / highest"),
                ObsField("decision_latency", 0.0, 10.0, "the controller's decision time / deadline"),
            ]
        return fields

    # ------------------------------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode: reseed the stream, the board, the uplink and the frames' attention statistics."""
        sensors = self._reseed(seed)
        o, s = self._o, self.setup
        link_seed = int(self.np_random.integers(0, 2**63 - 1))
        trace = self._trace or synthetic_bandwidth(np.random.default_rng(link_seed), s.episode_frames * s.period_s)
        self.uplink = Uplink(trace, self.radio)
        o.last_share = o.latency = o.energy = o.last_transfer = o.importance_offloaded = 0.0
        o.slack = o.fps = 1.0
        self._measured_rates.clear()
        self._estimate_bps = self.uplink.estimate_bps if self.split_runner is None else self._uplink_estimate
        o.uplink = self._uplink_estimate(0.0) / UPLINK_REF_BPS
        top = s.max_levels
        self._pending = [0, top[0], top[1], top[2]]  # the first frame of a concurrent episode: edge-only, top clocks
        if self._concurrent:
            self._set_pending_obs()
            o.decision_latency = self._decision_s / s.deadline_s
        return self._obs(), {**self._blank_info(sensors), **self._blank_edge_cloud()}

    def _fill(self) -> None:
        """The source's next chunk, plus each frame's attention concentration and accuracy draw.

        The concentration ``beta`` is the frame's recorded one when the source has it (a trace with
        ``importance_beta``: ``TraceSource.recorded_beta``, by frame index; the chunk's first frame is frame
        ``self._k``), else drawn log-normally. The draw is made either way, so the accuracy draws (and every draw
        after) are the same for a seed whichever ``beta`` is used.
        """
        super()._fill()
        n, rng = self._n_buf, self.np_random
        # log beta is normal (the fit's median and spread, e4gym.dnn.offload)
        beta = DEFAULT_CONCENTRATION * np.exp(CONCENTRATION_SPREAD * rng.standard_normal(n))
        recorded = getattr(self.source, "recorded_beta", None)
        recorded = recorded(np.arange(self._k, self._k + n)) if recorded is not None else None
        self._beta = (beta if recorded is None else recorded).tolist()
        self._u = rng.random(n).tolist()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Run the next frame with ``action`` = (offload_share, cpu_level, gpu_level, emc_level)."""
        vals = self._parse_action(action)
        if not self.setup.control_memory:
            vals = [*vals, self._n_emc]
        if self._concurrent:  # this step's action is the next frame's; this frame runs the pending one
            vals, self._pending = self._pending, vals
        k: int = self._k  # type: ignore[assignment]
        s, clock, o, b = self.setup, self._clock, self._o, self.backend
        i = vals[0]
        share, work, n_bytes, fractions, cloud_s = self._share_rows[i]
        if self._decision_s > 0.0 and not self._concurrent:
            self._delay_next_frame(self._decision_s)  # the board waits for the controller's decision
        before = b.levels
        start = clock.free_s
        try:
            m, idle = self._run_then_idle(work, clock.slot_s(), 1, (vals[1], vals[2], vals[3]))
        except HardwareError:
            if self.split_runner is not None:  # the server is gone or refused the frame: the run cannot go on
                self.close()  # the board is restored now, not at exit
            raise
        edge_done = start + m.latency_s
        energy, measured, temp = m.energy_j, m.measured_energy_j, m.temp_c
        if idle is not None:
            energy += idle.energy_j
            measured += idle.measured_energy_j
            temp = idle.temp_c
        after = b.levels
        arrival = k * clock.period_s
        edge_latency = clock.finish(edge_done)
        pos = self._pos
        failed = False
        real = self.split_runner.last if self.split_runner is not None else None
        if real is not None:  # a real board offloaded for real: measured, not modelled
            transfer_s, cloud_s, n_bytes, mass = real.send_s, real.cloud_s, float(real.wire_bytes), real.importance
            done = start + m.latency_s  # the run's window ends when the edge and the reply are both done
            failed = real.failed is not None
            radio_j = (self.radio.energy_j(transfer_s, n_bytes * 8.0 / transfer_s) if transfer_s > 0.0 else 0.0)
            energy += radio_j
            measured += radio_j
            if transfer_s > 0.0:
                self._measured_rates.append(n_bytes * 8.0 / transfer_s)
        elif n_bytes > 0.0:
            frac = fractions[vals[1]][vals[2]][vals[3]]  # type: ignore[index]
            tx = self.uplink.send(start + m.latency_s * frac, n_bytes)  # queues behind earlier sends
            transfer_s = tx.latency_s
            done = max(edge_done, tx.arrival_s + cloud_s + 0.5 * tx.rtt_s)  # the result comes back: RTT / 2
            radio_j = tx.energy_j + tx.tail_j
            energy += radio_j
            measured += radio_j
            mass = importance_mass(share, self._beta[pos])
        else:
            cloud_s = transfer_s = radio_j = mass = 0.0
            done = edge_done
        latency = max(edge_latency, done - arrival)
        correct_last = bool(self._correct[pos][self._last])
        correct = correct_last and not failed
        conf = self._conf[pos][self._last]
        if correct and share > 0.0:
            correct = self._u[pos] >= split_accuracy_loss(share, mass) / self._acc_full
        missed = latency > s.deadline_s or failed
        reward, terms = self.reward_fn(_tuple_new(FrameOutcome, (energy, measured, missed, correct, latency,
                                                                  self._last, True)))
        span = clock.free_s - start
        if span > 0.0:
            power, o.power = energy / span, measured / span * self._inv_power_ref
        else:
            power = m.avg_power_w
            o.power = power * self._inv_power_ref
        o.last_share = share
        o.latency = latency * self._inv_deadline
        o.energy = measured * self._inv_energy_ref
        o.temperature = (temp - self._ambient_c) * self._temp_span
        o.throttled = 1.0 if m.throttled else 0.0
        o.slack = clock.slack
        o.fps = clock.fps
        est = self._estimate_bps(clock.free_s)  # what the board knows when it decides the next frame
        o.uplink = est / UPLINK_REF_BPS
        o.last_transfer = transfer_s * self._inv_deadline
        o.importance_offloaded = mass
        if self._concurrent:
            self._set_pending_obs()
        self._k = k + 1
        self._pos = pos = pos + 1
        if pos == self._n_buf:
            self._fill()
        f = self._freqs
        info = {
            LATENCY_MS: F64(latency * 1e3),
            ENERGY_J: F64(energy),
            POWER_W: F64(power),
            TEMP_C: F64(temp),
            EXIT: NP_INT[self._last + 1],
            CORRECT: NP_BOOL[correct],
            CONFIDENCE: F64(conf),
            CPU_HZ: f[0][after[0]],
            GPU_HZ: f[1][after[1]],
            EMC_HZ: f[2][after[2]],
            DEADLINE_MISSED: NP_BOOL[missed],
            DVFS_SWITCHES: NP_INT[(before[0] != after[0]) + (before[1] != after[1]) + (before[2] != after[2]) + 1],
            MEASURED_ENERGY_J: F64(measured),
            RUN_MS: F64(m.latency_s * 1e3),
            THROTTLED: NP_BOOL[m.throttled],
            FRAME: NP_INT[k + 1] if k < 4094 else np.int64(k),
            PROFILING_RUNS: NP_INT[1],
            PROFILING_MS: F64(0.0),
            PROFILING_ENERGY_J: F64(0.0),
            COST_MISS: NP_COST[missed + 1],
            COST_ACCURACY: NP_COST[correct_last - correct + 1],
            SHARE: F64(share),
            TX_BYTES: F64(n_bytes),
            TRANSFER_MS: F64(transfer_s * 1e3),
            CLOUD_MS: F64(cloud_s * 1e3),
            RADIO_ENERGY_J: F64(radio_j),
            IMPORTANCE_OFFLOADED: F64(mass),
            FUSION_WEIGHT: F64(1.0 - mass),
            UPLINK_ESTIMATE_MBPS: F64(est * 1e-6),
            OFFLOAD_FAILED: NP_BOOL[failed],
        }
        for key, v in terms.items():
            info[key] = F64(v)
        self._frame_rails(info, m, idle)
        return self._obs(after), reward, False, k + 1 >= s.episode_frames, info

    def close(self) -> None:
        """Close the backend (a real board restores its governors and clocks) and the cloud connection."""
        try:
            super().close()
        finally:
            if self.split_runner is not None:
                self.split_runner.client.close()

    def profiling_run(self, exit: int, levels: Any) -> Any:
        """Not offered here: the edge-cloud env has no exits to profile (use :meth:`cost_model`)."""
        raise ConfigError("profiling_run() is not available in the edge-cloud env")

    def render(self) -> str | None:
        """``ansi``: one line describing the last frame."""
        if self.render_mode != "ansi":
            return None
        if self._k is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        o = self._o
        return (f"frame {self._k} share={o.last_share:.1f} latency={o.latency:.2f}×deadline "
                f"energy={o.energy:.2f}×E_ref uplink={o.uplink * 8:.2f} Mbit/s levels={self.backend.levels}")

    # ------------------------------------------------------------------------------------------ helpers

    def _uplink_estimate(self, now_s: float) -> float:
        """The uplink estimate (bit/s) the board has at ``now_s``: the emulated uplink's, or on a real board the
        harmonic mean of the last transfers' measured throughputs (the same rule, :class:`Uplink`)."""
        if self.split_runner is None:
            return self.uplink.estimate_bps(now_s)  # type: ignore[union-attr]
        rates = self._measured_rates
        return len(rates) / sum(1.0 / r for r in rates) if rates else ESTIMATE_PRIOR_BPS

    def _set_pending_obs(self) -> None:
        o, p, im = self._o, self._pending, self._inv_max
        o.pending_share = p[0] * self._inv_shares
        o.pending_cpu, o.pending_gpu = p[1] * im[0], p[2] * im[1]
        o.pending_emc = p[3] * im[2]

    def _blank_edge_cloud(self) -> dict[str, Any]:
        info = {k: F64(0.0) for k in EDGE_CLOUD_INFO_KEYS}
        info[FUSION_WEIGHT] = F64(1.0)
        info[UPLINK_ESTIMATE_MBPS] = F64(self._uplink_estimate(0.0) * 1e-6)
        info[OFFLOAD_FAILED] = NP_BOOL[False]
        return info


def _check_options(o: EdgeCloudOptions) -> EdgeCloudOptions:
    """Validate the edge-cloud arguments; one-line :class:`ConfigError` naming the value and the fix."""
    if o.split_block is not None and (isinstance(o.split_block, bool) or not isinstance(o.split_block, int)):
        raise ConfigError(f"split_block must be an int (a block index, -1 for the input), got {o.split_block!r}")
    if o.shares is not None:
        try:
            shares = tuple(float(x) for x in o.shares)
        except (TypeError, ValueError):
            raise ConfigError(f"shares must be a list of numbers from 0 to 1, got {o.shares!r}") from None
        if any(not math.isfinite(x) or not 0.0 <= x <= 1.0 for x in shares):
            raise ConfigError(f"offload shares must lie in [0, 1] (a share of the feature maps), got {list(shares)}")
        o = EdgeCloudOptions(**{**o.__dict__, "shares": shares})
    if not isinstance(o.concurrent, (bool, np.bool_)):
        raise ConfigError(f"concurrent must be True or False, got {o.concurrent!r}")
    if isinstance(o.decision_ms, bool) or not isinstance(o.decision_ms, (int, float)) or not (
            math.isfinite(o.decision_ms) and 0.0 <= o.decision_ms <= 1e4):
        raise ConfigError(f"decision_ms must be a time in ms in [0, 10000], got {o.decision_ms!r}")
    if o.cloud_address is not None and not isinstance(o.cloud_address, str):
        raise ConfigError(f"cloud_address must be 'HOST:PORT' (of `e4gym serve-cloud`), got {o.cloud_address!r}")
    t = o.cloud_timeout_s
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
        raise ConfigError(f"cloud_timeout_s must be a time in s > 0, got {t!r}")
    if not isinstance(o.radio, RadioPower) and o.radio not in RADIO_PROFILES:
        raise ConfigError(f"radio must be one of {sorted(RADIO_PROFILES)} or a RadioPower, got {o.radio!r}")
    if not isinstance(o.uplink, (BandwidthTrace, str, int, float)) or isinstance(o.uplink, bool):
        raise ConfigError(f"uplink must be 'synthetic', a rate in Mbit/s, a CSV path or a BandwidthTrace, got "
                          f"{o.uplink!r}")
    return o


def _fixed_trace(uplink: Any, duration_s: float) -> BandwidthTrace | None:
    """The uplink's trace when the argument fixes it (a rate in Mbit/s, a CSV path, a trace); None for
    ``"synthetic"`` (a new seeded trace per episode)."""
    if isinstance(uplink, BandwidthTrace):
        return uplink
    if isinstance(uplink, (int, float)):
        if not (math.isfinite(uplink) and uplink > 0):
            raise ConfigError(f"uplink as a constant rate must be > 0 Mbit/s, got {uplink!r}")
        return constant_bandwidth(float(uplink), rtt_ms=SYNTH_RTT_MS, duration_s=max(duration_s, 1.0))
    if uplink == "synthetic":
        return None
    return load_bandwidth_trace(uplink)


def _real_offload(backend: Any, plan: SplitPlan, opts: EdgeCloudOptions) -> SplitRunner:
    """Put a :class:`~e4gym.hardware.split_runner.SplitRunner` under a real backend's power monitor, connected to
    ``opts.cloud_address``.

    Raises:
        ConfigError: the backend is emulated, has no TorchRunner, or the address is malformed.
        HardwareError: the server cannot be reached (one line naming it and the command that starts it).
    """
    from e4gym.hardware.emulator import EmulatedBackend
    from e4gym.hardware.runner import TorchRunner
    from e4gym.hardware.split_runner import SplitRunner

    if isinstance(backend, EmulatedBackend):
        raise ConfigError("cloud_address applies to a real board (backend='jetson' or a backend object); the emulated "
                          "backend models the uplink and the server: drop cloud_address, or set uplink= and cloud=")
    runner = getattr(backend, "runner", None)
    if not isinstance(runner, TorchRunner):
        raise ConfigError(f"real offloading needs the backend's runner to be a TorchRunner (it runs the split), got "
                          f"{type(runner).__name__}")
    host, sep, port = opts.cloud_address.rpartition(":")  # type: ignore[union-attr]
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"cloud_address must be 'HOST:PORT' (e.g. '192.168.1.20:5600'), got {opts.cloud_address!r}")
    from e4gym.hardware.cloud import CloudClient

    client = CloudClient(host.strip("[]"), int(port), timeout_s=float(opts.cloud_timeout_s))
    split = SplitRunner(runner, plan, client)  # checks the split before anything connects
    client.connect()
    backend.runner = split
    return split
