"""The emulator meets every published figure of CALIBRATION.md (what `e4gym calibrate` prints)."""

from __future__ import annotations

import copy

import pytest

from e4gym.dnn import load_model_profile
from e4gym.hardware import calibration as cal
from e4gym.hardware.spec import available_devices, load_device, parse_device


@pytest.fixture(scope="module")
def rows() -> list[cal.CalibrationRow]:
    return cal.calibrate()


def test_every_calibration_row_passes(rows) -> None:
    failed = [f"{r.device}: {r.target}: {r.value} (expected {r.expected})" for r in rows if not r.passed]
    assert not failed, "\n".join(failed)


def test_every_device_and_target_is_covered(rows) -> None:
    devices = {r.device for r in rows}
    assert set(available_devices()) <= devices
    targets = " ".join(r.target for r in rows)
    for needle in ("latency at top clocks", "board power", "interior minimum", "best static pair",
                   "energy on nano / on xavier-nx", "throttles within minutes", "stays below the trip",
                   "cools back", "spread", "same seed"):
        assert needle in targets
    for r in rows:
        assert r.source  # every target cites where it comes from


def test_table_renders(rows) -> None:
    text = cal.format_rows(rows)
    assert text.count("\n") == len(rows) + 1 and "PASS" in text


def test_a_miscalibrated_device_fails_the_power_row(monkeypatch) -> None:
    """The rows can fail: doubling static power breaks E4's 8.6 W figure."""
    spec = load_device("xavier-nx")
    from e4gym._yaml import load_yaml

    data = copy.deepcopy(load_yaml(spec.source_file))
    data["model"]["static_w"] *= 2
    broken = parse_device(data, "broken.yaml")
    monkeypatch.setattr(cal, "load_device", lambda name: broken)
    rows = cal.rows_e4_fig1({"efficientnet_b0": load_model_profile("efficientnet_b0")})
    assert [r.passed for r in rows] == [True, False]


def test_each_row_says_whether_it_rests_on_a_measurement_of_that_board(rows) -> None:
    assert {r.evidence for r in rows} == {cal.MEASURED, cal.STRUCTURAL}
    measured = {(r.device, r.target) for r in rows if r.evidence == cal.MEASURED}
    assert ("xavier-nx", "EfficientNet-B0 latency at top clocks") in measured
    assert all(r.evidence == cal.STRUCTURAL for r in rows if "monotonic" in r.expected or "same seed" in r.target)
    # Only the boards Dutt et al. and the E4 poster measured have measured rows.
    boards = {d for r in rows if r.evidence == cal.MEASURED for d in r.device.split("/")}
    assert boards == {"jetson-nano", "xavier-nx"}
    summary = cal.evidence_summary(rows)
    lines = {line.split(" | ")[0].strip("| "): line for line in summary.splitlines()[2:]}
    assert set(lines) == set(available_devices())
    assert "| 0 |" in lines["jetson-tx2"] and "structural checks only" in lines["jetson-tx2"]
    assert "fitted to published measurements" in lines["xavier-nx"]
    assert "| evidence |" in cal.format_rows(rows).splitlines()[0]

