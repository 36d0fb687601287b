"""Headline numbers hold: 95 % confidence intervals over seeds and paired changes against a reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from e4gym.bench.report import PolicySummary, ci95_halfwidth, paired_change


def test_ci95_uses_students_t() -> None:
    v = [1.0, 2.0, 3.0, 4.0, 5.0]
    # t(0.975, 4) = 2.776, sd = 1.5811, n = 5
    assert ci95_halfwidth(v) == pytest.approx(2.776 * 1.5811388 / math.sqrt(5), rel=1e-4)
    assert math.isnan(ci95_halfwidth([1.0]))
    big = np.arange(100.0)
    assert ci95_halfwidth(big) == pytest.approx(1.96 * big.std(ddof=1) / 10.0)


def _summary(label: str, seeds: tuple[int, ...], energy: list[float]) -> PolicySummary:
    vals = {"energy_per_frame_j": np.array(energy)}
    return PolicySummary(label, label, False, seeds, {"energy_per_frame_j": float(np.mean(energy))},
                         {"energy_per_frame_j": float(np.std(energy))}, vals)


def test_paired_change_compares_the_same_seeds() -> None:
    ref = _summary("default", (0, 1, 2), [1.0, 2.0, 4.0])
    pol = _summary("e4", (2, 0, 1), [2.0, 0.5, 1.0])  # -50 % on every seed, in another order
    m, h = paired_change(pol, ref, "energy_per_frame_j")
    assert m == pytest.approx(-50.0) and h == pytest.approx(0.0)
    one = _summary("x", (0,), [0.9])
    m1, h1 = paired_change(one, ref, "energy_per_frame_j")
    assert m1 == pytest.approx(-10.0) and math.isnan(h1)
    assert all(math.isnan(x) for x in paired_change(pol, None, "energy_per_frame_j"))
