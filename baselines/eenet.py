"""EENet (Ilhan et al., "EENet: Learning to Early Exit for Adaptive Inference", WACV 2024) as an exit-only
baseline on the block env ``e4gym/EarlyExitDVFSBlock-v1``.

EENet learns, after the multi-exit network is trained, *where* each input leaves under an average-cost budget.
It never touches the clocks: this policy runs at fixed clocks (``clocks="max"`` or explicit levels) or under
the board's default kernel governors (``clocks="default"``, the default: ``env_kwargs={"governors":
"default"}``), and only decides ``exit_now`` at each exit head.

What EENet does (checked against its public code, ``git-disl/EENet``, ``utils/predict_helpers.py`` and
``utils/predict_utils.py``), and how it is done here:

* **Score networks.** One per exit ``k``. Input: what the board sees at exit ``k``: the exit's confidence
  ``c_k``, the frame's pre-inference complexity features (``frame_features=True``, in the observation before
  the frame runs) and the scores ``s_0 … s_{k−1}`` of the exits the frame already passed (EENet feeds the past
  scores, detached, the same way). Output: the score ``s_k`` in [0, 1], trained as the probability that exit
  ``k`` is right (:func:`_score_forward`).
* **Exit-assignment distribution.** A second small network per exit on the same input gives a logit ``r_k``;
  ``softmax_k(r)`` is the frame's distribution ``p_{·}`` over exits. Its mean over frames ``p̄`` sets how many
  frames leave at each exit.
* **Losses** (as EENet's ``ExitAssigner.compute_loss``): (1) per exit, the binary cross-entropy of ``s_k``
  against "exit ``k`` is correct", each frame weighted by ``p_{ik} / Σ_i p_{ik}`` (detached), averaged over
  exits; (2) the KL divergence from the target ``s_k^β / Σ_j s_j^β`` (detached, β = 1) to ``p``; (3) the
  budget loss ``|Σ_k p̄_k C_k − B| / B`` with ``C_k`` the cumulative cost of exit ``k`` and ``B`` the budget.
  The total is ``BCE + α_ce·KL + α_cost·budget`` (α_ce = 1e-3, α_cost = 1e-2, EENet's values), and training
  alternates between the score networks (BCE) and the assignment networks (KL + budget) every ``period``
  steps, as EENet's ``period`` does (:func:`_train`).
* **Thresholds** (EENet's ``compute_threshold``), on *validation* frames apart from the training ones: for a
  distribution ``p``, exit ``k`` takes the ``⌊p_k·N⌋`` highest-scored frames among those still running; its
  threshold is the lowest score among them; the last exit takes the rest (threshold 0). Here the learned
  ``p̄`` is tilted toward cheaper or dearer exits, ``p(τ) ∝ p̄·exp(−τ·C)``, and the most accurate tilt whose
  validation cost holds ``B·(1 − margin)`` is kept (:func:`_search_thresholds`).
* **Inference.** A frame leaves at the first exit whose score reaches its threshold; it runs to the last exit
  otherwise. ``predict`` evaluates one tiny network in NumPy at each exit head (microseconds); nothing else.

**Costs** ``C_k`` are the measured latency (the env's measured cost model, ``PolicyContext.cost_model``) of
what a frame that leaves at exit ``k`` runs in the block env: blocks ``0 … after_block(k)`` and the heads of
exits ``0 … k`` (each passed head runs), at the *reference clocks*: the fixed levels, or for the default
governors the top allowed levels (what a controller can measure before the episode; the governors pick the
real clocks as they go). ``C`` is normalised by the last exit's cost, so ``budget`` is a fraction of the full
network's latency; ``budget_ms`` (fixed clocks only) is the average latency per frame in ms at those clocks.

**Training data**: per-exit confidence and correctness of frames from a stream that is not scored: synthetic
streams of the env's workload from seeds ``30_000 + 100·seed + i`` (the benchmark's streams come from other
seeds; 9 streams × 2000 frames by default), or ``train_workload`` (a trace, e.g. ``clip:<name>``). The first
``1 − val_share`` (2/3) of the streams (of a trace's frames) train the networks, the rest set the thresholds.
:meth:`EENetPolicy.training_streams` names them all, so the harness refuses to score EENet on them.

Departures from the paper (also in docs/assumptions.md):

1. **Scalar confidence.** EENet's score networks read an exit's whole softmax vector (and its max and
   entropy); e4gym's frame streams carry one confidence per exit. The input is that confidence, optionally the
   frame's three pre-inference complexity features (not in EENet; ``frame_features=False`` drops them), and the
   past scores.
2. **Score form.** EENet's score is a linear function clamped to [0, 1] (over a probability vector, which gives
   it an implicit bias); here it is a one-hidden-layer network with a sigmoid output (a bias included).
3. **Assignment logits.** EENet's assignment head ends in a sigmoid before the softmax over exits, which
   bounds every frame's exit probabilities within a factor e of each other; here the head outputs a free logit.
4. **Threshold search.** EENet retrains up to 10 times and keeps the most accurate model whose validation cost
   is within 10 % of the budget; here one model is trained and its mean distribution tilted until the
   validation cost holds the budget (minus ``margin``): an upper bound on the validation frames, not a target.
   On held-out streams it holds on average; one 1000-frame episode (about 8 scenes) scatters by 10-20 %.
5. **Cost unit.** Latency measured on the emulated board by the cost model (EENet's ``seconds.csv`` holds
   measured per-exit latencies too). Under the default governors the reference is the top clocks and the
   budget holds in those units (the work done: EENet's exits depend on the confidences only, so they are the
   same as at the top clocks), not in wall-clock ms: the governors answer the lighter load with slower clocks.
   Measured on Xavier NX at 30 fps (10 held-out 1000-frame episodes): budgets 0.5 / 0.7 / 0.9 gave average
   latencies of 0.50 / 0.71 / 0.92 of the full network's top-clock latency at ``clocks="max"``, and
   0.89 / 0.93 / 0.99 of it under the default governors.
6. **Schedule.** Full-batch Adam (lr 1e-2) for ``train_steps`` steps alternating every ``period`` steps,
   instead of EENet's mini-batch Adam (lr 3e-5) for up to 1000 epochs: seconds of CPU, one torch thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.envs.common import EnvSetup
from e4gym.errors import ConfigError
from e4gym.policy import PolicyContext, not_bound
from e4gym.workload.base import COMPLEXITY_FEATURES, N_FEATURES

#: The env EENet runs in: the block env, where the agent sees each exit's confidence before deciding to leave.
ENV_ID = "e4gym/EarlyExitDVFSBlock-v1"
#: Default average-latency budget: a fraction of the full network's latency at the reference clocks. ASSUMPTION
#: (a design choice between exit 0's share and 1; EENet sweeps budgets).
DEFAULT_BUDGET = 0.7
#: First seed of EENet's synthetic training streams (``+ 100·seed + i``); the benchmark's seeds are far below.
TRAIN_SEED_BASE = 30_000
#: EENet's loss weights (``config.py`` of its code: ``alpha_ce`` 1e-3, ``alpha_cost`` 1e-2, ``beta_ce`` 1).
ALPHA_CE = 1e-3
ALPHA_COST = 1e-2
BETA_CE = 1.0
#: Tilts ``τ`` (in units of the full network's cost) of the threshold search: ``p(τ) ∝ p̄·exp(−τ·C)``.
TILTS = np.concatenate([-np.geomspace(64.0, 0.05, 40), [0.0], np.geomspace(0.05, 64.0, 40)])
#: Learning rate and weight decay of the training (full-batch Adam): ASSUMPTION (departure 6).
LEARNING_RATE = 1e-2
WEIGHT_DECAY = 1e-4

#: Trained models of this process, by training key (the harness builds a fresh policy per task).
_TRAINED: dict[tuple, tuple[EENetModel, frozenset]] = {}


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ExitData:
    """Per-frame figures EENet learns from (``N`` frames, ``K`` exits).

    Attributes:
        confidence: float32 ``(N, K)``: each exit's confidence, in [0, 1].
        correct: bool ``(N, K)``: whether each exit's prediction is right.
        features: float32 ``(N, 3)``: the pre-inference complexity features (order of ``COMPLEXITY_FEATURES``).
    """

    confidence: np.ndarray
    correct: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return int(self.confidence.shape[0])

    @staticmethod
    def concatenate(parts: Sequence[ExitData]) -> ExitData:
        """The frames of ``parts`` one after another."""
        return ExitData(np.concatenate([p.confidence for p in parts]), np.concatenate([p.correct for p in parts]),
                        np.concatenate([p.features for p in parts]))


def _batch_data(source: Any, frames: int) -> ExitData:
    b = source.batch(frames)
    return ExitData(np.asarray(b.confidence, np.float32), np.asarray(b.correct, bool),
                    np.asarray(b.features, np.float32))


def collect_data(make_source: Callable[[], Any], streams: int, frames: int, val_share: float,
                 seed: int = 0) -> tuple[ExitData, ExitData, set[tuple]]:
    """EENet's training and validation frames, and the stream keys they came from.

    Args:
        make_source: builds a fresh frame source (unseeded).
        streams / frames: an infinite source (synthetic video) gives ``streams`` streams of ``frames`` frames,
            seeds ``TRAIN_SEED_BASE + 100·seed + i``; the last ``round(val_share·streams)`` (at least one)
            validate. A finite source (a trace) is read whole and cut in two: its first ``1 − val_share`` of
            frames train, the rest validate (two stream keys when it can :meth:`split`, else its own key).
        val_share: share of the data kept for the threshold search, in (0, 1).

    Returns:
        ``(train, val, keys)``.
    """
    src = make_source()
    keys: set[tuple] = set()
    if getattr(src, "length", None) is None:
        n_val = min(max(1, round(val_share * streams)), streams - 1)
        parts = []
        for i in range(streams):
            s = make_source() if i else src
            s.reset(TRAIN_SEED_BASE + 100 * seed + i)
            keys.add(tuple(s.stream_key()))
            parts.append(_batch_data(s, frames))
        return ExitData.concatenate(parts[:streams - n_val]), ExitData.concatenate(parts[streams - n_val:]), keys
    split = getattr(src, "split", None)
    if callable(split):
        train_src, val_src = split(1.0 - val_share)
        out = []
        for s in (train_src, val_src):
            if hasattr(s, "random_start"):
                s.random_start = False
            s.reset(seed)
            keys.add(tuple(s.stream_key()))
            out.append(_batch_data(s, len(s)))
        return out[0], out[1], keys
    src.reset(seed)
    keys.add(tuple(src.stream_key()))
    data = _batch_data(src, len(src))
    k = min(max(1, round((1.0 - val_share) * len(data))), len(data) - 1)
    c, y, f = data.confidence, data.correct, data.features
    return ExitData(c[:k], y[:k], f[:k]), ExitData(c[k:], y[k:], f[k:]), keys


# ---------------------------------------------------------------------------------------------- model


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _score_forward(weights: tuple[np.ndarray, np.ndarray, np.ndarray, float], x: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] of one exit's score network for inputs ``x`` ``(N, d)`` (or ``(d,)``)."""
    w1, b1, w2, b2 = weights
    return _sigmoid(np.tanh(x @ w1 + b1) @ w2 + b2)


@dataclass
class EENetModel:
    """A trained EENet: the score networks (NumPy weights) and the exit thresholds.

    Attributes:
        score_weights: per exit ``k`` (all but the last), ``(W1 (d_k, H), b1 (H,), w2 (H,), b2)`` of its score
            network; input ``[c_k, features (if frame_features), s_0 … s_{k−1}]``.
        thresholds: ``(K,)``: exit ``k`` is taken when ``s_k >= thresholds[k]`` (the last is 0; ``inf``: never).
        costs: ``(K,)`` cumulative cost of each exit as a fraction of the last exit's.
        frame_features: whether the inputs include the complexity features.
        budget: the average cost budget (fraction of the last exit's cost).
        mean_assignment: ``(K,)`` the learned mean exit distribution ``p̄``; tilt: the chosen ``τ``.
        val_cost / val_accuracy / val_last_accuracy: the validation frames' average cost (fraction), accuracy
            with the thresholds, and accuracy of the last exit alone.
        train_s: wall time of the training and the search (s).
    """

    score_weights: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]
    thresholds: np.ndarray
    costs: np.ndarray
    frame_features: bool
    budget: float
    mean_assignment: np.ndarray
    tilt: float = 0.0
    val_cost: float = math.nan
    val_accuracy: float = math.nan
    val_last_accuracy: float = math.nan
    train_s: float = math.nan

    @property
    def n_exits(self) -> int:
        """Number of exits ``K``."""
        return int(self.costs.shape[0])

    def scores(self, data: ExitData) -> np.ndarray:
        """Scores ``(N, K − 1)`` of every frame at every exit but the last (each exit fed the previous scores)."""
        n = len(data)
        out = np.zeros((n, self.n_exits - 1))
        for k, w in enumerate(self.score_weights):
            x = _inputs(data.confidence[:, k], data.features, out[:, :k], self.frame_features)
            out[:, k] = _score_forward(w, x)
        return out

    def exits(self, data: ExitData) -> np.ndarray:
        """The exit each frame of ``data`` leaves at (first exit whose score reaches its threshold)."""
        return first_exits(self.scores(data), self.thresholds)


def _inputs(conf: np.ndarray, features: np.ndarray, past: np.ndarray, frame_features: bool) -> np.ndarray:
    cols = [np.asarray(conf, np.float64).reshape(-1, 1)]
    if frame_features:
        cols.append(np.asarray(features, np.float64))
    cols.append(past)
    return np.concatenate(cols, axis=1)


def first_exits(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per frame the first exit ``k`` with ``scores[:, k] >= thresholds[k]`` (the last exit when none passes).

    Args:
        scores: ``(N, K − 1)`` scores of the exits that can end a frame early.
        thresholds: ``(K,)`` (the last is not read).
    """
    k = scores.shape[1]
    passed = scores >= thresholds[None, :k]
    return np.where(passed.any(axis=1), passed.argmax(axis=1), k)


def quota_thresholds(scores: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """EENet's ``compute_threshold``: exit ``k`` takes the ``⌊probs[k]·N⌋`` highest-scored frames still
    running, its threshold the lowest score among them (``inf`` when it takes none); the last exit takes the
    rest (threshold 0).

    Args:
        scores: ``(N, K − 1)`` scores. probs: ``(K,)`` the exit distribution (sums to 1).
    """
    n, k_early = scores.shape
    thr = np.full(k_early + 1, np.inf)
    thr[-1] = 0.0
    running = np.ones(n, bool)
    for k in range(k_early):
        quota = math.floor(float(probs[k]) * n)
        idx = np.flatnonzero(running)
        if quota <= 0 or idx.size == 0:
            continue
        quota = min(quota, idx.size)
        s = scores[idx, k]
        top = np.argpartition(-s, quota - 1)[:quota]
        thr[k] = float(s[top].min())
        running[idx[s >= thr[k]]] = False
    return thr


def _search_thresholds(scores: np.ndarray, correct: np.ndarray, costs: np.ndarray, mean_p: np.ndarray,
                       limit: float) -> tuple[np.ndarray, float, float, float]:
    """The most accurate thresholds of the tilted distributions ``p(τ) ∝ mean_p·exp(−τ·costs)`` (τ in
    :data:`TILTS`) whose average cost on these (validation) frames is at most ``limit`` (fraction of the last
    exit's cost); the cheapest when none is. Returns ``(thresholds, τ, cost, accuracy)``."""
    rows = np.arange(len(correct))
    base = np.log(np.clip(mean_p, 1e-12, None))
    best: tuple[float, float, np.ndarray, float] | None = None
    cheapest: tuple[float, float, np.ndarray, float] | None = None
    for tau in TILTS:
        logits = base - tau * costs
        p = np.exp(logits - logits.max())
        p /= p.sum()
        thr = quota_thresholds(scores, p)
        ex = first_exits(scores, thr)
        cost = float(costs[ex].mean())
        acc = float(correct[rows, ex].mean())
        if cheapest is None or cost < cheapest[0]:
            cheapest = (cost, acc, thr, float(tau))
        if cost <= limit and (best is None or acc > best[1] or (acc == best[1] and cost < best[0])):
            best = (cost, acc, thr, float(tau))
    cost, acc, thr, tau = best if best is not None else cheapest  # type: ignore[misc]
    return thr, tau, cost, acc


@contextmanager
def _one_torch_thread(torch: Any) -> Iterator[None]:
    """Train with one torch thread (a tiny model; the harness's other processes use the cores), restoring the
    caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(train: ExitData, costs: np.ndarray, budget: float, *, frame_features: bool, hidden: int, steps: int,
           period: int, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray, float]], np.ndarray]:
    """Fit the score and assignment networks with EENet's losses (module docstring) on ``train``.

    Returns:
        ``(score weights of exits 0 … K−2 as NumPy arrays, mean assignment distribution p̄ (K,))``.
    """
    import torch
    from torch import nn

    with _one_torch_thread(torch):
        torch.manual_seed(seed)
        k_exits = costs.shape[0]
        n_feat = N_FEATURES if frame_features else 0
        conf = torch.as_tensor(train.confidence, dtype=torch.float32)
        correct = torch.as_tensor(train.correct, dtype=torch.float32)
        feats = torch.as_tensor(train.features, dtype=torch.float32)
        cost_t = torch.as_tensor(costs, dtype=torch.float32)

        def mlp(d: int, act: type[nn.Module]) -> nn.Sequential:
            return nn.Sequential(nn.Linear(d, hidden), act(), nn.Linear(hidden, 1))

        dims = [1 + n_feat + k for k in range(k_exits)]
        score_nets = nn.ModuleList([mlp(d, nn.Tanh) for d in dims])
        assign_nets = nn.ModuleList([mlp(d, nn.Sigmoid) for d in dims])
        opt_q = torch.optim.Adam(score_nets.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        opt_r = torch.optim.Adam(assign_nets.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)

        def scores_and_inputs() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
            """Score logits and scores ``(N, K)`` and each exit's input (fed the detached past scores)."""
            logits_s, scores, xs = [], [], []
            for k in range(k_exits):
                cols = [conf[:, k:k + 1]] + ([feats] if frame_features else [])
                if k:
                    cols.append(torch.stack([s.detach() for s in scores], dim=1))
                xs.append(torch.cat(cols, dim=1))
                z = score_nets[k](xs[-1])[:, 0]
                logits_s.append(z)
                scores.append(torch.sigmoid(z))
            return torch.stack(logits_s, 1), torch.stack(scores, 1), xs

        def assignment(xs: list[torch.Tensor]) -> torch.Tensor:
            """Each frame's exit distribution ``(N, K)``: softmax over exits of the assignment logits."""
            return torch.softmax(torch.stack([assign_nets[k](x)[:, 0] for k, x in enumerate(xs)], 1), dim=1)

        # Alternate blocks of `period` steps (EENet's `period`): the score networks with the assignment fixed,
        # then the assignment networks with the scores (hence every input) fixed.
        for block in range(0, steps, period):
            q_phase = (block // period) % 2 == 0
            n = min(period, steps - block)
            with torch.no_grad():
                _, s_fixed, xs_fixed = scores_and_inputs()
                p_fixed = assignment(xs_fixed)
            if q_phase:
                w = p_fixed / p_fixed.sum(dim=0, keepdim=True)
                for _ in range(n):
                    z, _, _ = scores_and_inputs()
                    bce = nn.functional.binary_cross_entropy_with_logits(z, correct, reduction="none")
                    loss = (w * bce).sum() / k_exits
                    opt_q.zero_grad()
                    loss.backward()
                    opt_q.step()
            else:
                target = s_fixed ** BETA_CE
                target = target / target.sum(dim=1, keepdim=True)
                entropy = torch.xlogy(target, target)
                for _ in range(n):
                    p = assignment(xs_fixed)
                    # EENet's nn.KLDivLoss() (mean over frames × exits) of the target to p.
                    kl = (entropy - target * torch.log(p.clamp_min(1e-12))).mean()
                    cost = (p * cost_t).sum(dim=1).mean()
                    loss = ALPHA_CE * kl + ALPHA_COST * torch.abs(cost - budget) / budget
                    opt_r.zero_grad()
                    loss.backward()
                    opt_r.step()
        with torch.no_grad():
            _, _, xs = scores_and_inputs()
            mean_p = assignment(xs).mean(dim=0).double().numpy()
        weights = []
        for k in range(k_exits - 1):
            lin1, lin2 = score_nets[k][0], score_nets[k][2]
            weights.append((lin1.weight.detach().double().numpy().T.copy(), lin1.bias.detach().double().numpy(),
                            lin2.weight.detach().double().numpy()[0].copy(), float(lin2.bias.detach()[0])))
    return weights, mean_p


def fit_eenet(train: ExitData, val: ExitData, costs: Sequence[float], budget: float, *, frame_features: bool = True,
              margin: float = 0.0, hidden: int = 8, steps: int = 300, period: int = 10, seed: int = 0) -> EENetModel:
    """Train EENet on ``train`` and search its thresholds on ``val`` (see the module docstring).

    Args:
        train / val: frames for the networks / for the thresholds.
        costs: ``(K,)`` cumulative cost of each exit (any unit; normalised by the last).
        budget: the average cost budget, a fraction of the last exit's cost in ``[costs[0]/costs[-1], 1]``.
        frame_features: feed the pre-inference complexity features to the networks.
        margin: share of the budget the validation cost keeps free (fraction, ``[0, 1)``).
        hidden: hidden units of each network. steps / period: training steps, alternating every ``period``.
        seed: torch seed.

    Raises:
        ConfigError: ``budget`` is below the first exit's cost share or above 1.
    """
    t0 = time.perf_counter()
    c = np.asarray(costs, np.float64)
    c = c / c[-1]
    if not c[0] - 1e-9 <= budget <= 1.0 + 1e-9:
        raise ConfigError(f"budget={budget:.4g} of the full network's latency is outside what the exits can "
                          f"reach, [{c[0]:.4g}, 1]: pass a budget in that range")
    weights, mean_p = _train(train, c, float(budget), frame_features=frame_features, hidden=hidden, steps=steps,
                             period=period, seed=seed)
    model = EENetModel(weights, np.zeros(len(c)), c, frame_features, float(budget), mean_p)
    scores = model.scores(val)
    thr, tau, cost, acc = _search_thresholds(scores, val.correct, c, mean_p, float(budget) * (1.0 - margin))
    model.thresholds, model.tilt, model.val_cost, model.val_accuracy = thr, tau, cost, acc
    model.val_last_accuracy = float(val.correct[:, -1].mean())
    model.train_s = time.perf_counter() - t0
    return model


# ---------------------------------------------------------------------------------------------- policy


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(float(v))  # type: ignore[arg-type]


class EENetPolicy:
    """EENet's learned early exit under an average-latency budget, at fixed clocks (module docstring).

    Args:
        budget: the average latency per frame as a fraction of the full network's latency at the reference
            clocks, in (0, 1] (and at least the first exit's share, checked at :meth:`bind`).
        budget_ms: the average latency per frame in ms at the fixed clocks (overrides ``budget``; not with
            ``clocks="default"``, whose clocks are the governors').
        clocks: ``"default"``: the board's default governors drive the clocks (``env_kwargs={"governors":
            "default"}``); ``"max"``: the top allowed levels, fixed; or explicit levels ``(cpu, gpu)`` /
            ``(cpu, gpu, emc)`` (emc only with ``control_memory``), fixed.
        frame_features: feed the frame's pre-inference complexity features to the score networks.
        margin: share of the budget the thresholds keep free on the validation frames (fraction, [0, 1)).
        train_workload: a trace to train on instead of the env's workload (a path or ``clip:<name>``).
        train_streams / train_frames: synthetic training data: streams × frames per stream (9 × 2000: 12 000
            frames train the networks, 6 000 set the thresholds; about 2 s of one CPU core).
        val_share: share of the streams (of a trace's frames) kept for the thresholds, in (0, 1).
        train_steps: training steps. hidden: hidden units per network. seed: data and torch seed.
        name: display name (default ``"eenet"``).

    Raises:
        ConfigError: an argument out of range (one line naming the value and the fix).
    """

    clairvoyant = False
    env_id = ENV_ID

    def __init__(self, budget: float = DEFAULT_BUDGET, budget_ms: float | None = None,
                 clocks: str | Sequence[int] = "default", frame_features: bool = True, margin: float = 0.0,
                 train_workload: str | Path | None = None, train_streams: int = 9, train_frames: int = 2000,
                 val_share: float = 1.0 / 3.0, train_steps: int = 300, hidden: int = 8, seed: int = 0,
                 name: str | None = None) -> None:
        if not _is_number(budget) or not 0.0 < float(budget) <= 1.0:
            raise ConfigError(f"budget must be a fraction of the full network's latency in (0, 1], got {budget!r}; "
                              "pass e.g. budget=0.7 (or budget_ms=... at fixed clocks)")
        if budget_ms is not None and (not _is_number(budget_ms) or float(budget_ms) <= 0.0):
            raise ConfigError(f"budget_ms must be a number of milliseconds > 0, got {budget_ms!r}; pass e.g. "
                              "budget_ms=20 or leave it None and give budget as a fraction")
        if isinstance(clocks, str):
            if clocks not in ("default", "max"):
                raise ConfigError(f"clocks must be 'default' (the board's governors), 'max' (top levels) or "
                                  f"levels (cpu, gpu[, emc]), got {clocks!r}")
            levels: tuple[int, ...] | None = None
        elif isinstance(clocks, (list, tuple)) and len(clocks) in (2, 3) and all(
                _is_int(v) and v >= 0 for v in clocks):
            levels = tuple(int(v) for v in clocks)
        else:
            raise ConfigError(f"clocks must be 'default', 'max' or 2-3 level indices >= 0 (cpu, gpu[, emc]), "
                              f"got {clocks!r}; e.g. clocks=[20, 10]")
        if clocks == "default" and budget_ms is not None:
            raise ConfigError(f"budget_ms={budget_ms!r} needs fixed clocks (clocks='max' or levels): under the default "
                              "governors give budget as a fraction of the full network's latency")
        if not isinstance(frame_features, bool):
            raise ConfigError(f"frame_features must be True or False, got {frame_features!r}")
        if not _is_number(margin) or not 0.0 <= float(margin) < 1.0:
            raise ConfigError(f"margin must be a fraction in [0, 1) of the budget, got {margin!r}; e.g. margin=0.05")
        if not _is_number(val_share) or not 0.0 < float(val_share) < 1.0:
            raise ConfigError(f"val_share must be a fraction in (0, 1), got {val_share!r}; e.g. val_share=0.33")
        for label, v, lo in (("train_streams", train_streams, 2), ("train_frames", train_frames, 10),
                             ("train_steps", train_steps, 1), ("hidden", hidden, 1)):
            if not _is_int(v) or v < lo:
                raise ConfigError(f"{label} must be an integer >= {lo}, got {v!r}")
        if not _is_int(seed) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        if train_workload is not None and not isinstance(train_workload, (str, Path)):
            raise ConfigError(f"train_workload must be a trace path (.npz from `e4gym record`) or clip:<name>, "
                              f"got {train_workload!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"name must be a non-empty string, got {name!r}")
        self.budget = float(budget)
        self.budget_ms = None if budget_ms is None else float(budget_ms)
        self.clocks = clocks if isinstance(clocks, str) else levels
        self._levels = levels
        self.frame_features = frame_features
        self.margin = float(margin)
        self.train_workload = None if train_workload is None else str(train_workload)
        self.train = {"streams": int(train_streams), "frames": int(train_frames), "val_share": float(val_share),
                      "steps": int(train_steps), "hidden": int(hidden), "seed": int(seed)}
        self.name = name or "eenet"
        self.env_kwargs: dict[str, Any] = {"governors": "default"} if clocks == "default" else {}
        self.model: EENetModel | None = None
        self.budget_fraction = math.nan
        self.reference_ms = math.nan
        self._train_keys: set[tuple] = set()
        self._ctx: PolicyContext | None = None
        self._action = np.zeros(0, np.int64)
        self._scores: list[float] = []
        self._left = False  # the current frame has left at an early exit
        self._exits = np.zeros(0, np.int64)

    # ------------------------------------------------------------------ setup
    def check_setup(self, setup: EnvSetup) -> None:
        """Check an env's resolved setup suits this policy: its governors match ``clocks`` and explicit levels
        are allowed (the harness calls it when it validates a config; :meth:`bind` calls it too).

        Raises:
            ConfigError: the env runs other governors than ``clocks`` needs, or a level is out of range.
        """
        s = setup
        if self.clocks == "default":
            govs = s.governors
            if govs != "default" and govs != dict(s.spec.governors):
                raise ConfigError(f"{self.name} with clocks='default' needs an env built with governors='default' "
                                  f"(pass policy.env_kwargs to gymnasium.make), got governors={govs!r}")
            return
        if s.governors is not None:
            raise ConfigError(f"{self.name} with clocks={self.clocks!r} sets fixed clocks, but the env runs "
                              f"governors={s.governors!r}, which ignore them: build the env without governors")
        if self._levels is not None:
            lv = self._levels
            if len(lv) == 3 and not s.control_memory:
                raise ConfigError(f"{self.name}: clocks={list(lv)} sets an emc level but the env has no "
                                  "control_memory: pass (cpu, gpu) or build the env with control_memory=True")
            for dom, v, top in zip(("cpu", "gpu", "emc"), lv, s.max_levels):
                if v > top:
                    raise ConfigError(f"{self.name}: {dom} level {v} of clocks={list(lv)} is above the highest "
                                      f"allowed level {top} of {s.spec.name}: pass levels 0..{top}")

    def _reference_levels(self, setup: EnvSetup) -> tuple[int, int, int]:
        """The levels the costs are measured at: the fixed ones, or the top allowed ones (``max``, ``default``)."""
        top = tuple(int(v) for v in setup.max_levels)
        if self._levels is None:
            return top  # type: ignore[return-value]
        lv = self._levels
        return (lv[0], lv[1], lv[2] if len(lv) == 3 else top[2])

    def exit_costs_ms(self, setup: EnvSetup, cost_model: Any) -> np.ndarray:
        """Measured latency (ms) of a frame leaving at each exit in the block env at the reference clocks:
        blocks ``0 … after_block(k)`` plus the heads of exits ``0 … k``, read from ``cost_model`` (the env's
        measured cost model, ``PolicyContext.cost_model``)."""
        s, cm = setup, cost_model
        prof = s.profile
        cpu, gpu, emc = self._reference_levels(s)
        out = []
        for k, ex in enumerate(prof.exits):
            work = prof.block_work(0)
            for j in range(1, ex.after_block + 1):
                work = work + prof.block_work(j)
            for h in range(k + 1):
                work = work + prof.head_work(h)
            out.append(float(cm.latency_s(work)[cpu, gpu, cm.emc_index(emc)]) * 1e3)
        return np.asarray(out)

    def _make_source(self, setup: EnvSetup) -> Callable[[], Any]:
        if self.train_workload is None:
            return setup.training_source  # synthetic video, also when the env replays a trace
        from e4gym.workload.trace import TraceSource, load_trace

        trace = load_trace(self.train_workload)
        if trace.n_exits != setup.profile.n_exits:
            raise ConfigError(f"train_workload {self.train_workload} has {trace.n_exits} exits but the env's model "
                              f"{setup.profile.name} has {setup.profile.n_exits}: record a trace of that model")
        return lambda: TraceSource(trace)

    def bind(self, context: PolicyContext) -> None:
        """Measure the exits' costs, train EENet (or reuse this process's model for the same data, costs and
        budget) and fix the action's level part.

        Raises:
            ConfigError: the env is not the block env, its governors do not match ``clocks``, a level is out of
                range, or the budget is below what exiting every frame at the first exit costs.
        """
        s = context.setup
        names = context.obs_names
        need = ("at_exit", "exit_confidence", "exit_index", "block", *COMPLEXITY_FEATURES)
        missing = [n for n in need if n not in names]
        if missing:
            raise ConfigError(f"{self.name} runs in {ENV_ID} (it reads {missing} from the observation): build the env "
                              "with gymnasium.make(policy.env_id, **policy.env_kwargs)")
        self.check_setup(s)
        self._i_at, self._i_conf, self._i_exit, self._i_block = (names.index(n) for n in need[:4])
        self._i_feat = [names.index(n) for n in COMPLEXITY_FEATURES]
        self._cost_model = context.cost_model
        costs = self.exit_costs_ms(s, self._cost_model)
        self.reference_ms = float(costs[-1])
        frac = self.budget if self.budget_ms is None else min(1.0, self.budget_ms / self.reference_ms)
        low = float(costs[0] / costs[-1])
        if frac < low - 1e-9:
            given = f"budget={self.budget:g}" if self.budget_ms is None else f"budget_ms={self.budget_ms:g}"
            raise ConfigError(f"{self.name}: {given} is below the cost of exiting every frame at the first exit "
                              f"({low:.3f} of the full network, {costs[0]:.2f} ms at the reference clocks): pass a "
                              "larger budget")
        self.budget_fraction = frac
        t = self.train
        key = (s.profile.name, s.profile.n_exits, repr(s.workload), tuple(sorted(s.workload_kwargs.items())), s.fps,
               self.train_workload, tuple(sorted(t.items())), tuple(np.round(costs / costs[-1], 6)), round(frac, 9),
               self.frame_features, self.margin)
        if key not in _TRAINED:
            train, val, keys = collect_data(self._make_source(s), t["streams"], t["frames"], t["val_share"],
                                            t["seed"])
            model = fit_eenet(train, val, costs, frac, frame_features=self.frame_features, margin=self.margin,
                              hidden=t["hidden"], steps=t["steps"], seed=t["seed"])
            _TRAINED[key] = (model, frozenset(keys))
        self.model, keys = _TRAINED[key]
        self._train_keys = set(keys)
        lv = self._reference_levels(s)
        self._action = np.array([0, lv[0], lv[1]] + ([lv[2]] if s.control_memory else []), dtype=np.int64)
        self._ctx = context
        self._exits = np.zeros(self.model.n_exits, np.int64)
        self._w = list(self.model.score_weights)
        self._thr = self.model.thresholds.astype(np.float64)
        self._n_exits = self.model.n_exits
        self._block0 = 0.5 / s.profile.n_blocks
        self.reset()

    def training_streams(self) -> set[tuple]:
        """The stream keys (``FrameSource.stream_key()``) of every stream EENet trained or set thresholds on
        (valid after :meth:`bind`; the harness refuses to score it on one of them)."""
        return set(self._train_keys)

    def reset(self) -> None:
        """Forget the current frame's scores (a new episode)."""
        self._scores = []
        self._left = False

    # ------------------------------------------------------------------ acting
    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """``[exit_now, cpu_level, gpu_level(, emc_level)]``: ``exit_now`` 1 when an exit head just ran and its
        score reaches its threshold; the levels are fixed (ignored by the env under the default governors).
        ``state`` passes through.

        Raises:
            ConfigError: the policy was not bound to an env (:func:`e4gym.policy.bind_policy`).
        """
        if self._ctx is None or self.model is None:
            raise not_bound(self.name)
        obs = np.asarray(observation).reshape(-1)
        action = self._action.copy()
        if obs[self._i_at] > 0.5 and not self._left:
            k = round(float(obs[self._i_exit]) * (self._n_exits - 1))
            if k >= len(self._w):  # the last exit ends the frame by itself
                return action, state
            past = self._scores
            if len(past) != k:  # a frame seen from the middle (cannot happen in an episode): no past scores known
                past = self._scores = [0.0] * k
            w = self._w[k]
            x = np.empty(w[0].shape[0])
            x[0] = float(obs[self._i_conf])
            i = 1
            if self.frame_features:
                x[1:1 + N_FEATURES] = obs[self._i_feat]
                i += N_FEATURES
            x[i:] = past
            s = float(_score_forward(w, x))
            past.append(s)
            if s >= self._thr[k]:
                action[0] = 1
                self._exits[k] += 1
                self._left = True
        elif obs[self._i_at] <= 0.5 and obs[self._i_block] < self._block0:  # a new frame's first block
            if self._scores and not self._left:
                self._exits[-1] += 1  # the previous frame ran to the last exit
            self._scores = []
            self._left = False
        return action, state

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict[str, float]:
        """EENet's figures for the benchmark's report: the budget (fraction, ms at the reference clocks), the
        validation cost and accuracy of the thresholds, the training time (s), exit shares since :meth:`bind`
        and the cost model's offline work."""
        m = self.model
        n = max(int(self._exits.sum()), 1)
        out = {
            "eenet_budget": self.budget_fraction,
            "eenet_budget_ms": self.budget_fraction * self.reference_ms,
            "eenet_val_cost": m.val_cost if m is not None else math.nan,
            "eenet_val_accuracy": m.val_accuracy if m is not None else math.nan,
            "eenet_val_last_accuracy": m.val_last_accuracy if m is not None else math.nan,
            "eenet_train_s": m.train_s if m is not None else math.nan,
        }
        out.update({f"exit{e}_share": float(k) / n for e, k in enumerate(self._exits)})
        if getattr(self, "_cost_model", None) is not None:
            out.update(self._cost_model.stats())
        return out

    def __repr__(self) -> str:
        b = f"budget_ms={self.budget_ms}" if self.budget_ms is not None else f"budget={self.budget}"
        return f"EENetPolicy({b}, clocks={self.clocks!r})"


__all__ = ["DEFAULT_BUDGET", "ENV_ID", "EENetModel", "EENetPolicy", "ExitData", "collect_data", "first_exits",
           "fit_eenet", "quota_thresholds"]
