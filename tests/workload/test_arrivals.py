"""Request arrivals of the batching env (issue 19): seeded processes, their rates and burstiness, CSV traces."""

from __future__ import annotations

import numpy as np
import pytest

from e4gym.errors import ConfigError
from e4gym.workload.arrivals import (
    ArrivalTrace,
    bursty_arrivals,
    load_arrival_trace,
    make_arrivals,
    poisson_arrivals,
)

MODELS = ("resnet18", "mobilenet_v2")


def _dispersion(times: np.ndarray, duration: float) -> float:
    """Variance / mean of the counts per second (1 for a homogeneous Poisson process)."""
    counts = np.histogram(times, bins=int(duration), range=(0.0, duration))[0]
    return counts.var() / counts.mean()


@pytest.mark.parametrize("kind", ["poisson", "poisson-constant", "bursty"])
def test_same_seed_same_arrivals_and_seeds_differ(kind: str) -> None:
    proc = make_arrivals(kind, MODELS, (20.0, 50.0))
    a = proc.generate(np.random.default_rng(5), 60.0)
    b = proc.generate(np.random.default_rng(5), 60.0)
    c = proc.generate(np.random.default_rng(6), 60.0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(len(x) != len(z) or not np.array_equal(x, z) for x, z in zip(a, c))
    for x in a:
        assert np.all(np.diff(x) >= 0) and x[0] >= 0 and x[-1] < 60.0


@pytest.mark.parametrize("kind", ["poisson", "poisson-constant", "bursty"])
def test_long_run_mean_rate_is_the_given_rate(kind: str) -> None:
    duration = 20000.0
    (t,) = make_arrivals(kind, ("m",), (10.0,)).generate(np.random.default_rng(0), duration)
    assert len(t) / duration == pytest.approx(10.0, rel=0.06)


def test_bursty_and_drifting_are_overdispersed_constant_is_not() -> None:
    rng = np.random.default_rng(1)
    duration = 2000.0
    (const,) = poisson_arrivals(rng, (30.0,), duration, drift=False)
    (drift,) = poisson_arrivals(rng, (30.0,), duration)
    (burst,) = bursty_arrivals(rng, (30.0,), duration)
    assert 0.8 < _dispersion(const, duration) < 1.2
    assert _dispersion(drift, duration) > 2.0
    assert _dispersion(burst, duration) > _dispersion(drift, duration)


def test_trace_replays_and_loops(tmp_path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("# a request log\ntime_s,model\n0.1,resnet18\n0.1,mobilenet_v2\n0.7,resnet18\n\n1.5,resnet18\n")
    trace = load_arrival_trace(path, MODELS)
    assert trace.period_s == 2.0 and trace.mean_rates_rps == (1.5, 0.5)
    r, m = trace.arrivals(5.0)
    np.testing.assert_allclose(r, [0.1, 0.7, 1.5, 2.1, 2.7, 3.5, 4.1, 4.7])
    np.testing.assert_allclose(m, [0.1, 2.1, 4.1])
    proc = make_arrivals(str(path), MODELS, None)
    assert proc.kind == "trace" and proc.mean_rates_rps == (1.5, 0.5)
    np.testing.assert_array_equal(proc.generate(np.random.default_rng(0), 5.0)[0], r)
    # column order does not matter
    path.write_text("model,time_s\nresnet18,0.2\nmobilenet_v2,0.3\n")
    assert load_arrival_trace(path, MODELS).times_s[1][0] == 0.3


@pytest.mark.parametrize(("text", "match"), [
    ("time_s\n0.1\n", r"line 1: missing column 'model'"),
    ("time_s,model,user\n0.1,resnet18,a\n", r"line 1: columns must be exactly"),
    ("time_s,model\n0.1,resnet18\n-0.2,resnet18\n", r"line 3: time_s is '-0.2'"),
    ("time_s,model\n0.5,resnet18\n0.2,mobilenet_v2\n", r"line 3: time_s 0.2 is earlier than the row before"),
    ("time_s,model\nsoon,resnet18\n", r"line 2: time_s is not a number: 'soon'"),
    ("time_s,model\n0.1,resnet50\n", r"line 2: unknown model 'resnet50'"),
    ("time_s,model\n0.1,resnet18,extra\n", r"line 2: has 3 values"),
    ("time_s,model\n0.1,resnet18\n", r"no requests for model\(s\) \['mobilenet_v2'\]"),
    ("time_s,model\n", r"has a header but no requests"),
    ("", r"is empty"),
])
def test_malformed_traces_are_one_line_errors_naming_file_and_line(tmp_path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_arrival_trace(path, MODELS)
    msg = str(err.value)
    assert "\n" not in msg and "bad.csv" in msg and "fix:" in msg


def test_missing_trace_and_bad_kinds_and_rates(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        make_arrivals(str(tmp_path / "none.csv"), MODELS, None)
    with pytest.raises(ConfigError, match="arrivals must be one of"):
        make_arrivals("uniform", MODELS, (1.0, 1.0))
    with pytest.raises(ConfigError, match="one rate per model"):
        make_arrivals("poisson", MODELS, (1.0,))
    with pytest.raises(ConfigError, match=">= 0"):
        make_arrivals("bursty", MODELS, (1.0, -2.0))
    trace = ArrivalTrace(MODELS, (np.array([0.1]), np.array([0.2])), 1.0)
    with pytest.raises(ConfigError, match="rates_rps does not apply"):
        make_arrivals(trace, MODELS, (1.0, 1.0))
    with pytest.raises(ConfigError, match="differ from the env's"):
        make_arrivals(trace, ("resnet18",), None)


def test_the_walk_matrix_is_the_ar1_recursion() -> None:
    from e4gym.workload import arrivals as a

    eps = np.random.default_rng(0).standard_normal((3, 40))
    spread = a.RATE_WALK_SIGMA / np.sqrt(1 - a.RATE_WALK_RHO**2)
    x = np.empty((3, 40))
    x[:, 0] = spread * eps[:, 0]
    for k in range(1, 40):
        x[:, k] = a.RATE_WALK_RHO * x[:, k - 1] + a.RATE_WALK_SIGMA * eps[:, k]
    np.testing.assert_allclose(eps @ a._walk_matrix(40), x, atol=1e-12)
    # past the matrix's size the loop gives the same process (same draws, same long-run rate)
    (t,) = poisson_arrivals(np.random.default_rng(0), (5.0,), (a._WALK_MATRIX_MAX + 10) * a.RATE_SEGMENT_S)
    assert len(t) / ((a._WALK_MATRIX_MAX + 10) * a.RATE_SEGMENT_S) == pytest.approx(5.0, rel=0.1)
