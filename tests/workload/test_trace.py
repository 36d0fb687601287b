"""Recorded traces: round trip, replay as FrameRecords, helpful errors on corrupt files, atomic writes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from e4gym.errors import ConfigError
from e4gym.workload import (
    TRACE_FORMAT,
    FrameRecord,
    SyntheticVideo,
    Trace,
    TraceSource,
    load_trace,
    save_trace,
)

N_EXITS = 3


def _fields(t: int = 40, e: int = N_EXITS, d: int = 6, seed: int = 0) -> dict:
    """Trace fields from a synthetic stream (predictions: the label where correct, another class otherwise)."""
    b = SyntheticVideo([0.5, 0.7, 0.8][:e] if e <= 3 else np.linspace(0.3, 0.8, e), seed=seed).batch(t)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 100, t)
    predictions = np.where(b.correct, labels[:, None], (labels[:, None] + 1) % 100)
    return {
        "model": "efficientnet_b0",
        "fps": 30.0,
        "features": b.features,
        "pooled": rng.random((t, d)).astype(np.float32),
        "predictions": predictions.astype(np.int64),
        "confidence": b.confidence,
        "correct": b.correct,
        "labels": labels.astype(np.int64),
        "scene": b.scene,
    }


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    return save_trace(tmp_path / "clip.npz", **_fields())


def _arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_npz(path: Path, arrays: dict) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_round_trip(tmp_path: Path) -> None:
    fields = _fields()
    path = save_trace(tmp_path / "clip.npz", **fields)
    assert path == tmp_path / "clip.npz" and _leftovers(tmp_path) == ["clip.npz"]
    tr = load_trace(path)
    assert isinstance(tr, Trace)
    assert tr.model == "efficientnet_b0" and tr.fps == 30.0 and tr.n_frames == 40 and tr.n_exits == N_EXITS
    for key in ("features", "pooled", "predictions", "confidence", "correct", "labels", "scene"):
        assert np.array_equal(getattr(tr, key), fields[key]), key
    assert tr.features.dtype == np.float32 and tr.pooled.dtype == np.float32
    assert tr.predictions.dtype == np.int64 and tr.correct.dtype == np.bool_
    assert tr.labels.dtype == np.int64 and tr.scene.dtype == np.int64 and tr.confidence.dtype == np.float32
    assert str(_arrays(path)["format"]) == TRACE_FORMAT
    # Saving the loaded trace again gives an equal trace.
    again = load_trace(save_trace(tmp_path / "again.npz", **{k: getattr(tr, k) for k in fields}))
    assert again.equals(tr)
    assert not again.equals(dataclasses.replace(tr, fps=25.0))


def test_round_trip_defaults_and_any_suffix(tmp_path: Path) -> None:
    f = _fields()
    f.update(pooled=None, labels=None, scene=None)
    tr = load_trace(save_trace(tmp_path / "clip.trace", **f))  # no .npz appended
    assert tr.pooled.shape == (40, 0)
    assert np.all(tr.labels == -1) and np.all(tr.scene == 0)
    assert _leftovers(tmp_path) == ["clip.trace"]


def test_trace_source_yields_the_same_record_type_as_synthetic(trace_file: Path) -> None:
    src = TraceSource(trace_file, random_start=False)
    syn = SyntheticVideo([0.5, 0.7, 0.8], seed=0)
    r, s = src.next(), syn.next()
    assert type(r) is type(s) is FrameRecord
    for field in dataclasses.fields(FrameRecord):
        a, b = getattr(r, field.name), getattr(s, field.name)
        assert type(a) is type(b), field.name
        if isinstance(a, np.ndarray):
            assert (a.dtype, a.shape) == (b.dtype, b.shape), field.name
    assert src.n_exits == syn.n_exits == N_EXITS and src.fps == 30.0
    assert src.length == len(src) == 40


def test_trace_source_replays_wraps_and_defines_difficulty(trace_file: Path) -> None:
    tr = load_trace(trace_file)
    src = TraceSource(tr, random_start=False)
    recs = [src.next() for _ in range(90)]
    for i, r in enumerate(recs):
        t = i % 40
        assert r.index == i and r.scene == tr.scene[t]
        assert np.array_equal(r.features, tr.features[t]) and np.array_equal(r.correct, tr.correct[t])
        assert np.array_equal(r.confidence, tr.confidence[t])
        assert r.difficulty == r.earliest_correct / N_EXITS
    src.reset(0)
    b = src.batch(90)
    assert np.array_equal(b.features, np.stack([r.features for r in recs]))
    assert np.array_equal(b.difficulty, [r.difficulty for r in recs])
    assert np.array_equal(b.index, np.arange(90))


def test_trace_source_random_start_is_seeded(trace_file: Path) -> None:
    starts = set()
    for seed in range(12):
        a, b = TraceSource(trace_file, seed=seed), TraceSource(trace_file, seed=seed)
        assert a.start == b.start
        ra, rb = a.next(), b.next()
        assert np.array_equal(ra.features, rb.features)
        assert np.array_equal(ra.features, a.trace.features[a.start])
        starts.add(a.start)
    assert len(starts) > 3


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.npz.*does not exist.*e4gym record"):
        load_trace(tmp_path / "nope.npz")
    with pytest.raises(ConfigError, match="does not exist"):
        TraceSource(tmp_path / "nope.npz")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ConfigError, match=r"junk\.npz.*not a readable \.npz.*corrupt or truncated.*re-record"):
        load_trace(path)


def test_random_bytes_with_zip_magic(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(2000))
    with pytest.raises(ConfigError, match=r"junk\.npz.*corrupt or truncated"):
        load_trace(path)


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_file(trace_file: Path, tmp_path: Path, keep: float) -> None:
    data = trace_file.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ConfigError, match=r"cut\.npz.*corrupt or truncated.*re-record"):
        load_trace(path)


def test_npy_instead_of_npz(tmp_path: Path) -> None:
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ConfigError, match=r"array\.npz.*single \.npy array"):
        load_trace(path)


def test_missing_key(trace_file: Path, tmp_path: Path) -> None:
    arrays = _arrays(trace_file)
    del arrays["confidence"]
    path = _write_npz(tmp_path / "partial.npz", arrays)
    with pytest.raises(ConfigError, match=r"partial\.npz.*lacks key.*confidence.*re-record"):
        load_trace(path)


def test_wrong_format_string(trace_file: Path, tmp_path: Path) -> None:
    arrays = _arrays(trace_file)
    arrays["format"] = np.array("e4gym-trace-v0")
    path = _write_npz(tmp_path / "old.npz", arrays)
    with pytest.raises(ConfigError, match=r"old\.npz.*format 'e4gym-trace-v0'.*e4gym-trace-v1"):
        load_trace(path)


@pytest.mark.parametrize(
    ("key", "change", "message"),
    [
        ("labels", lambda a: a[:-1], "labels has 39 frames but features has 40"),
        ("correct", lambda a: a[:, :2], "exits but correct has 2"),
        ("features", lambda a: np.where(np.arange(40)[:, None] == 5, np.nan, a).astype(np.float32), "NaN"),
        ("pooled", lambda a: np.full_like(a, np.nan), "pooled contains NaN"),
        ("confidence", lambda a: np.full_like(a, np.nan), "confidence contains NaN"),
        ("confidence", lambda a: a + 1.5, r"confidence must lie in \[0, 1\]"),
        ("features", lambda a: a[:, :3], r"\(T, 4\)"),
        ("correct", lambda a: a.astype(np.float32), "bool"),
        ("fps", lambda a: np.array(-1.0), "fps"),
    ],
)
def test_malformed_arrays(
    trace_file: Path, tmp_path: Path, key: str, change: Callable[[np.ndarray], np.ndarray], message: str
) -> None:
    arrays = _arrays(trace_file)
    arrays[key] = change(arrays[key])
    path = _write_npz(tmp_path / "bad.npz", arrays)
    with pytest.raises(ConfigError, match=rf"bad\.npz.*{message}.*re-record"):
        load_trace(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("confidence", lambda f: f["confidence"] * 2.0 + 0.5, "confidence must lie"),
        ("features", lambda f: f["features"][:10], "has 40 frames but features has 10"),
        ("predictions", lambda f: f["predictions"].astype(float), "predictions must be"),
        ("model", lambda f: "", "model"),
        ("fps", lambda f: 0.0, "fps"),
    ],
)
def test_save_trace_validates(tmp_path: Path, key: str, value: Callable[[dict], object], message: str) -> None:
    f = _fields()
    f[key] = value(f)
    with pytest.raises(ConfigError, match=rf"save_trace: .*{message}"):
        save_trace(tmp_path / "x.npz", **f)
    assert _leftovers(tmp_path) == []


def test_exception_mid_save_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_savez = np.savez

    def partial_then_fail(file: object, **arrays: np.ndarray) -> None:
        real_savez(file, features=arrays["features"])  # some bytes hit the temp file first
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", partial_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_trace(tmp_path / "clip.npz", **_fields())
    assert _leftovers(tmp_path) == []


def test_exception_mid_save_keeps_previous_file(trace_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = trace_file.read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(KeyboardInterrupt):
        save_trace(trace_file, **_fields(seed=1))
    assert trace_file.read_bytes() == before
    assert _leftovers(trace_file.parent) == [trace_file.name]


def test_save_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        save_trace(tmp_path / "no" / "clip.npz", **_fields())
