"""The normalised score of a benchmark (issue 17): one scale for every scenario and board.

Per scenario and seed, a policy's score is its energy per frame placed between two references run on the same seed:

    score = (E_default − E_policy) / (E_default − E_strict)

0 is the board's **default governors** (the ``default`` policy) and 1 is the **strict clairvoyant oracle** (the
``oracle`` policy with ``hopeless: first``, the energy bound), so a score above 1 can only come from breaking a
constraint, and such runs are never scored. A run is scored only when it meets the **constraints**:

- deadline misses at most :data:`MAX_MISS_RATE` (1 %) of frames;
- accuracy at most :data:`MAX_ACCURACY_LOSS` (1 point) below the ``default`` run's on the same seed (the default
  governors always run the last exit, so that is the last exit's accuracy).

A policy is scored in a scenario only if every one of its seeds is; otherwise the report shows which constraint
it broke and by how much. Its **suite score** is the mean over the scenarios it is scored in of its per-scenario
mean, with a 95 % bootstrap confidence interval (:data:`BOOTSTRAP_RESAMPLES` resamples of the seeds within each
scenario, seeded: the interval reflects seed-to-seed variation, not the choice of scenarios).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from e4gym.envs.core import Constraints

_DEFAULT_CONSTRAINTS = Constraints()

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "MAX_ACCURACY_LOSS",
    "MAX_MISS_RATE",
    "ScenarioScore",
    "SuiteScore",
    "experiment_scores",
    "scenario_scores",
    "strict_oracle_label",
    "suite_scores",
]

#: Largest share of frames over the deadline a scored run may have: the env's constrained formulation
#: (:class:`e4gym.envs.core.Constraints`; the mean of ``info["cost_miss"]``).
MAX_MISS_RATE = _DEFAULT_CONSTRAINTS.max_miss_rate
#: Largest accuracy loss (fraction; 0.01 = 1 percentage point) against the ``default`` run on the same seed: the
#: env's ``Constraints.max_accuracy_loss`` (the default governors run the last exit on the same frames, so this
#: is the mean of ``info["cost_accuracy"]``).
MAX_ACCURACY_LOSS = _DEFAULT_CONSTRAINTS.max_accuracy_loss
#: Bootstrap resamples of the suite score's confidence interval.
BOOTSTRAP_RESAMPLES = 2000
_EPS = 1e-12  # (tolerance of the constraint checks: the references meet them exactly)


@dataclass(frozen=True)
class ScenarioScore:
    """One policy in one scenario.

    Attributes:
        label: the policy's label. seeds: the seeds scored. scores: their scores (empty when not scored).
        broken: why the policy is not scored here (``""`` when it is), e.g. ``"miss 1.9 % > 1 %"``.
    """

    label: str
    seeds: tuple[int, ...]
    scores: tuple[float, ...]
    broken: str = ""

    @property
    def mean(self) -> float:
        """The mean score over the seeds (NaN when not scored)."""
        return float(np.mean(self.scores)) if self.scores else math.nan


@dataclass(frozen=True)
class SuiteScore:
    """One policy over the suite: mean score, its 95 % bootstrap interval, and the scenarios it is scored in."""

    label: str
    mean: float
    low: float
    high: float
    scored: int
    scenarios: int


def strict_oracle_label(policies: Sequence[Any]) -> str | None:
    """The label of the strict clairvoyant oracle among an experiment's policy entries (``oracle`` with
    ``hopeless: first``), or None."""
    return next((p.label for p in policies if p.name == "oracle" and p.args.get("hopeless") == "first"), None)


def _by_seed(rows: Sequence[Mapping[str, Any]], label: str) -> dict[int, Mapping[str, Any]]:
    return {int(r["seed"]): r for r in rows if r["label"] == label}


def scenario_scores(rows: Sequence[Mapping[str, Any]], labels: Sequence[str], strict: str | None,
                    zero: str = "default") -> dict[str, ScenarioScore]:
    """The :class:`ScenarioScore` of each label from one scenario's result rows (empty without both references)."""
    ref0, ref1 = _by_seed(rows, zero), _by_seed(rows, strict) if strict else {}
    if not ref0 or not ref1:
        return {}
    out = {}
    for label in labels:
        mine = _by_seed(rows, label)
        seeds = tuple(sorted(s for s in mine if s in ref0 and s in ref1))
        if not seeds:
            continue
        worst_miss = max(float(mine[s]["deadline_miss_rate"]) for s in seeds)
        worst_loss = max(float(ref0[s]["accuracy"]) - float(mine[s]["accuracy"]) for s in seeds)
        broken = []
        if worst_miss > MAX_MISS_RATE + _EPS:
            broken.append(f"miss {100 * worst_miss:.1f} % > {100 * MAX_MISS_RATE:g} %")
        if worst_loss > MAX_ACCURACY_LOSS + _EPS:
            broken.append(f"acc −{100 * worst_loss:.1f} pts")
        scores = []
        for s in seeds:
            e0, e1 = float(ref0[s]["energy_per_frame_j"]), float(ref1[s]["energy_per_frame_j"])
            if not e0 - e1 > 0:
                broken.append("the oracle saves nothing")
                break
            scores.append((e0 - float(mine[s]["energy_per_frame_j"])) / (e0 - e1))
        out[label] = ScenarioScore(label, seeds, () if broken else tuple(scores), "; ".join(dict.fromkeys(broken)))
    return out


def suite_scores(per_scenario: Mapping[str, Mapping[str, ScenarioScore]], labels: Sequence[str],
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, SuiteScore]:
    """Each label's :class:`SuiteScore` over the scenarios of ``per_scenario`` (scenario -> label -> score)."""
    rng = np.random.default_rng(seed)
    out = {}
    for label in labels:
        scored = [sc[label].scores for sc in per_scenario.values() if label in sc and sc[label].scores]
        present = sum(1 for sc in per_scenario.values() if label in sc)
        if not scored:
            out[label] = SuiteScore(label, math.nan, math.nan, math.nan, 0, present)
            continue
        mean = float(np.mean([np.mean(s) for s in scored]))
        boot = np.zeros(resamples)
        for s in scored:
            arr = np.asarray(s)
            boot += arr[rng.integers(0, len(arr), size=(resamples, len(arr)))].mean(axis=1)
        boot /= len(scored)
        out[label] = SuiteScore(label, mean, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)),
                                len(scored), present)
    return out


def experiment_scores(exp: Any, rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, ScenarioScore]]:
    """Per scenario name of the experiment (:class:`~e4gym.bench.config.Experiment`), each policy's
    :class:`ScenarioScore` (empty where the references are missing)."""
    strict = strict_oracle_label(exp.policies)
    labels = [p.label for p in exp.policies]
    return {sc.name: scenario_scores([r for r in rows if r["scenario"] == sc.name], labels, strict)
            for sc in exp.scenarios}
