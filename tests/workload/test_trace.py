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
    COMPLEXITY_FEATURES,
    TRACE_FORMAT,
    TRACE_FORMAT_V1,
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
        "feature_change": b.feature_change,
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
    for key in ("features", "feature_change", "pooled", "predictions", "confidence", "correct", "labels", "scene"):
        assert np.array_equal(getattr(tr, key), fields[key]), key
    assert tr.features.dtype == np.float32 and tr.pooled.dtype == np.float32
    assert tr.features.shape == (40, 3) and tr.feature_change.shape == (40, N_EXITS)
    assert tr.feature_change.dtype == np.float32 and tr.source_format == TRACE_FORMAT == "e4gym-trace-v2"
    assert tr.predictions.dtype == np.int64 and tr.correct.dtype == np.bool_
    assert tr.labels.dtype == np.int64 and tr.scene.dtype == np.int64 and tr.confidence.dtype == np.float32
    assert str(_arrays(path)["format"]) == TRACE_FORMAT
    assert _arrays(path)["feature_change"].shape == (40, N_EXITS)
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
        assert np.array_equal(r.feature_change, tr.feature_change[t])
        assert r.difficulty == r.earliest_correct / N_EXITS
    src.reset(0)
    b = src.batch(90)
    assert np.array_equal(b.features, np.stack([r.features for r in recs]))
    assert np.array_equal(b.feature_change, np.stack([r.feature_change for r in recs]))
    assert np.array_equal(b.difficulty, [r.difficulty for r in recs])
    assert np.array_equal(b.index, np.arange(90))


def test_trace_source_random_start_is_seeded(trace_file: Path) -> None:
    starts = set()
    for seed in range(12):
        a, b = TraceSource(trace_file, seed=seed), TraceSource(trace_file, seed=seed)
        assert a.first_row == b.first_row and a.start == 0 and a.stop == 40
        ra, rb = a.next(), b.next()
        assert np.array_equal(ra.features, rb.features)
        assert np.array_equal(ra.features, a.trace.features[a.first_row])
        starts.add(a.first_row)
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
    with pytest.raises(ConfigError, match=r"old\.npz.*format 'e4gym-trace-v0'.*e4gym-trace-v2.*re-record"):
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
        ("features", lambda a: a[:, :2], r"\(T, 3\)"),
        ("feature_change", lambda a: a[:, :2], "feature_change has 2 exits but correct has 3"),
        ("feature_change", lambda a: a + 1.5, r"feature_change must lie in \[0, 1\]"),
        ("feature_change", lambda a: np.full_like(a, np.inf), "feature_change contains an infinite"),
        ("feature_change", lambda a: a[:-1], "feature_change has 39 frames"),
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


# ------------------------------------------------------------------------------------------ format v1


def _v1_arrays(fields: dict, change: np.ndarray) -> dict:
    """The arrays of an ``e4gym-trace-v1`` file: 4 feature columns, the 4th the last block's change."""
    return {
        "format": np.array(TRACE_FORMAT_V1),
        "model": np.array(fields["model"]),
        "fps": np.array(fields["fps"]),
        "features": np.concatenate([fields["features"], change[:, None]], axis=1).astype(np.float32),
        **{k: fields[k] for k in ("pooled", "predictions", "confidence", "correct", "labels", "scene")},
    }


def test_v1_trace_loads(tmp_path: Path) -> None:
    f = _fields()
    change = np.linspace(0.0, 0.9, 40).astype(np.float32)
    path = _write_npz(tmp_path / "v1.npz", _v1_arrays(f, change))
    tr = load_trace(path)
    assert tr.source_format == TRACE_FORMAT_V1
    np.testing.assert_array_equal(tr.features, f["features"])
    assert tr.features.shape == (40, len(COMPLEXITY_FEATURES))
    assert tr.feature_change.shape == (40, N_EXITS) and tr.feature_change.dtype == np.float32
    for e in range(N_EXITS):  # the last exit's change, broadcast to every exit
        np.testing.assert_array_equal(tr.feature_change[:, e], change)
    for key in ("pooled", "predictions", "confidence", "correct", "labels", "scene"):
        assert np.array_equal(getattr(tr, key), f[key]), key
    src = TraceSource(path, random_start=False)
    assert src.next().features.shape == (3,) and src.batch(5).feature_change.shape == (5, N_EXITS)
    # Saving it again writes a v2 file with the same content (and the same stream identity).
    again = load_trace(save_trace(tmp_path / "v2.npz", **{k: getattr(tr, k) for k in f}))
    assert again.source_format == TRACE_FORMAT and again.equals(tr) and again.sha256 == tr.sha256
    assert TraceSource(again).stream_key() == src.stream_key()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {**a, "features": a["features"][:, :3]}, r"v1\.npz.*\(T, 4\).*e4gym-trace-v1.*re-record"),
        (lambda a: {k: v for k, v in a.items() if k != "scene"}, r"v1\.npz.*lacks key.*scene.*re-record"),
        (lambda a: {**a, "features": np.where(np.arange(4) == 3, 1.5, a["features"])}, "feature_change must lie"),
    ],
)
def test_v1_errors(tmp_path: Path, change: Callable[[dict], dict], message: str) -> None:
    arrays = change(_v1_arrays(_fields(), np.full(40, 0.2, np.float32)))
    path = _write_npz(tmp_path / "v1.npz", arrays)
    with pytest.raises(ConfigError, match=message):
        load_trace(path)


def test_truncated_v1_file(tmp_path: Path) -> None:
    data = _write_npz(tmp_path / "v1.npz", _v1_arrays(_fields(), np.full(40, 0.2, np.float32))).read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(ConfigError, match=r"cut\.npz.*corrupt or truncated.*re-record"):
        load_trace(path)


def test_v2_file_without_feature_change_is_refused(trace_file: Path, tmp_path: Path) -> None:
    arrays = _arrays(trace_file)
    del arrays["feature_change"]
    path = _write_npz(tmp_path / "partial.npz", arrays)
    with pytest.raises(ConfigError, match=r"partial\.npz.*lacks key.*feature_change.*e4gym-trace-v2.*re-record"):
        load_trace(path)


# ------------------------------------------------------------------------------------------ frame ranges


def test_trace_source_serves_only_its_range(trace_file: Path) -> None:
    tr = load_trace(trace_file)
    src = TraceSource(tr, 10, 25, random_start=False)
    assert (src.start, src.stop, src.length, len(src)) == (10, 25, 15, 15)
    recs = [src.next() for _ in range(40)]
    rows = [10 + i % 15 for i in range(40)]
    assert [r.index for r in recs] == list(range(40))
    for r, t in zip(recs, rows):
        assert np.array_equal(r.features, tr.features[t]) and np.array_equal(r.correct, tr.correct[t])
        assert np.array_equal(r.feature_change, tr.feature_change[t]) and r.scene == tr.scene[t]
    src.reset(0)
    b = src.batch(40)
    np.testing.assert_array_equal(b.features, tr.features[rows])
    np.testing.assert_array_equal(b.confidence, tr.confidence[rows])
    # Random starts stay inside the range and wrap inside it.
    firsts = set()
    for seed in range(30):
        s = TraceSource(tr, 10, 25, seed=seed)
        firsts.add(s.first_row)
        got = s.batch(31).features
        want = tr.features[[10 + (s.first_row - 10 + i) % 15 for i in range(31)]]
        np.testing.assert_array_equal(got, want)
    assert firsts <= set(range(10, 25)) and len(firsts) > 5
    assert TraceSource(tr, stop=5).length == 5 and TraceSource(tr, 35).length == 5


@pytest.mark.parametrize(
    ("start", "stop"), [(-1, None), (0, 41), (5, 5), (20, 10), (40, None), (1.5, None), (0, 2.0), (True, None)]
)
def test_bad_ranges(trace_file: Path, start: object, stop: object) -> None:
    with pytest.raises(ConfigError, match=r"TraceSource: .*(range|integers)"):
        TraceSource(trace_file, start, stop)  # type: ignore[arg-type]


def test_trace_split_and_subset(trace_file: Path) -> None:
    tr = load_trace(trace_file)
    train, test = tr.split(0.75)
    assert (train.n_frames, test.n_frames) == (30, 10)
    for key in ("features", "feature_change", "pooled", "predictions", "confidence", "correct", "labels", "scene"):
        np.testing.assert_array_equal(getattr(train, key), getattr(tr, key)[:30])
        np.testing.assert_array_equal(getattr(test, key), getattr(tr, key)[30:])
    assert train.model == tr.model and train.fps == tr.fps
    assert train.sha256 != test.sha256 != tr.sha256
    assert tr.subset(5, 9).equals(TraceSource(tr, 5, 9).trace.subset(5, 9))
    assert TraceSource(test, seed=0).stream_key() != TraceSource(train, seed=0).stream_key()
    for bad in (0, 1, 1.5, -0.2, 0.001, 0.999, "half", True):
        with pytest.raises(ConfigError, match=r"Trace\.split: .*fraction"):
            tr.split(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Trace\.subset"):
        tr.subset(30, 20)


def test_trace_source_split(trace_file: Path) -> None:
    src = TraceSource(trace_file, 4, 36, random_start=False)
    a, b = src.split(0.5, seed=1)
    assert (a.start, a.stop, b.start, b.stop) == (4, 20, 20, 36)
    assert a.stream_key() != b.stream_key() and a.stream_key()[1] == b.stream_key()[1] == src.trace.sha256
    assert not a.random_start and a.trace is src.trace
    with pytest.raises(ConfigError, match=r"TraceSource\.split"):
        src.split(0.01)


# ------------------------------------------------------------------------------------------ spawn and keys


def _served(src: TraceSource, n: int) -> np.ndarray:
    return src.batch(n).features


def test_trace_source_spawn(trace_file: Path) -> None:
    src = TraceSource(trace_file, 5, 30, seed=0)
    a, b, c = src.spawn(3), src.spawn(3), src.spawn(4)
    for s in (a, b, c):
        assert s is not src and s.trace is src.trace and (s.start, s.stop) == (5, 30) and s.random_start
    assert a.first_row == b.first_row
    first = _served(a, 60)
    np.testing.assert_array_equal(first, _served(b, 60))
    np.testing.assert_array_equal(first, _served(TraceSource(trace_file, 5, 30, seed=3), 60))
    # Different seeds start elsewhere (for some seed; each start is one of 25 frames).
    assert any(src.spawn(k).first_row != a.first_row for k in range(4, 12))
    # Cursors are independent.
    ref = TraceSource(trace_file, 5, 30, seed=0)
    a.batch(7)
    np.testing.assert_array_equal(_served(src, 10), _served(ref, 10))
    np.testing.assert_array_equal(_served(b, 5), _served(TraceSource(trace_file, 5, 30, seed=3), 65)[60:])
    assert TraceSource(trace_file, random_start=False).spawn(9).first_row == 0
    assert c.stream_key() == src.stream_key()
    with pytest.raises(ConfigError, match="seed"):
        src.spawn(-1)


def test_trace_stream_key(trace_file: Path, tmp_path: Path) -> None:
    a = TraceSource(trace_file, seed=0)
    key = a.stream_key()
    assert key == ("trace", load_trace(trace_file).sha256, 0, 40) and hash(key) == hash(a.stream_key())
    assert len(key[1]) == 64
    assert TraceSource(load_trace(trace_file), seed=5).stream_key() == key  # any replay of the same frames
    a.batch(17)
    a.reset(9)
    assert a.stream_key() == key
    assert TraceSource(trace_file, 0, 20).stream_key() != key
    assert TraceSource(trace_file, 0, 20).stream_key() != TraceSource(trace_file, 20, 40).stream_key()
    other = save_trace(tmp_path / "other.npz", **_fields(seed=3))
    assert TraceSource(other).stream_key() != key
    copy = save_trace(tmp_path / "copy.npz", **_fields())
    assert TraceSource(copy).stream_key() == key  # the content, not the file name


def test_base_source_without_spawn_or_key() -> None:
    from e4gym.workload import FrameSource

    class Bare(FrameSource):
        n_exits, fps, length = 1, 30.0, None

        def reset(self, seed: int | None = None) -> None: ...

        def next(self):  # type: ignore[override]
            raise NotImplementedError

        def batch(self, frames: int):  # type: ignore[override]
            raise NotImplementedError

    assert isinstance(Bare().spawn(0), Bare)  # the default deep-copies it
    with pytest.raises(ConfigError, match=r"Bare has no stream identity.*implement stream_key"):
        Bare().stream_key()


# ------------------------------------------------------------------------------------------ importance_beta (issue 18)


def _beta(t: int = 40) -> np.ndarray:
    return np.linspace(1.5, 2.5, t)


def _legacy_sha256(tr: Trace) -> str:
    """The hash as it was before the optional ``importance_beta`` key existed (the eight required arrays)."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr((tr.model, float(tr.fps))).encode())
    for name in ("features", "feature_change", "pooled", "predictions", "confidence", "correct", "labels", "scene"):
        arr = np.ascontiguousarray(getattr(tr, name))
        h.update(f"|{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def test_importance_beta_round_trips(tmp_path: Path) -> None:
    f = _fields()
    path = save_trace(tmp_path / "beta.npz", **f, importance_beta=_beta())
    raw = _arrays(path)
    assert str(raw["format"]) == TRACE_FORMAT == "e4gym-trace-v2"  # an optional key of the same version
    assert raw["importance_beta"].dtype == np.float32 and raw["importance_beta"].shape == (40,)
    tr = load_trace(path)
    assert tr.importance_beta is not None and tr.importance_beta.dtype == np.float32
    np.testing.assert_array_equal(tr.importance_beta, _beta().astype(np.float32))
    assert not tr.importance_beta.flags.writeable
    again = load_trace(save_trace(tmp_path / "again.npz", **f, importance_beta=tr.importance_beta))
    assert again.equals(tr) and again.sha256 == tr.sha256
    # The array is content: a trace without it, or with other values, is another trace.
    plain = load_trace(save_trace(tmp_path / "plain.npz", **f))
    assert plain.importance_beta is None and "importance_beta" not in _arrays(tmp_path / "plain.npz")
    assert not plain.equals(tr) and not tr.equals(plain) and plain.sha256 != tr.sha256
    other = load_trace(save_trace(tmp_path / "other.npz", **f, importance_beta=_beta() + 0.1))
    assert not other.equals(tr) and other.sha256 != tr.sha256
    assert dataclasses.replace(tr, importance_beta=None).equals(plain)
    # subset and split carry it.
    np.testing.assert_array_equal(tr.subset(5, 9).importance_beta, tr.importance_beta[5:9])
    first, rest = tr.split(0.75)
    np.testing.assert_array_equal(first.importance_beta, tr.importance_beta[:30])
    np.testing.assert_array_equal(rest.importance_beta, tr.importance_beta[30:])
    assert plain.subset(5, 9).importance_beta is None and plain.split(0.5)[1].importance_beta is None


def test_a_trace_without_importance_beta_hashes_as_before(trace_file: Path) -> None:
    """Result caches and stream keys of traces recorded before the key existed stay valid."""
    tr = load_trace(trace_file)
    assert tr.importance_beta is None and tr.sha256 == _legacy_sha256(tr)
    with_beta = dataclasses.replace(tr, importance_beta=_beta().astype(np.float32))
    assert with_beta.sha256 != _legacy_sha256(tr)


def test_old_files_load_without_importance_beta(trace_file: Path, tmp_path: Path) -> None:
    """A v2 file written before the key existed (it has exactly the required keys) and a v1 file."""
    raw = _arrays(trace_file)
    assert set(raw) == {"format", "model", "fps", "features", "feature_change", "pooled", "predictions",
                        "confidence", "correct", "labels", "scene"}
    tr = load_trace(trace_file)
    assert tr.importance_beta is None and tr.source_format == TRACE_FORMAT
    src = TraceSource(tr, seed=0)
    assert not src.has_importance_beta and src.recorded_beta(np.arange(5)) is None
    v1 = load_trace(_write_npz(tmp_path / "v1.npz", _v1_arrays(_fields(), np.full(40, 0.2, np.float32))))
    assert v1.source_format == TRACE_FORMAT_V1 and v1.importance_beta is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (lambda b: b[:-1], "importance_beta has 39 frames but features has 40"),
        (lambda b: np.where(np.arange(40) == 7, np.nan, b), r"importance_beta contains NaN \(first at frame 7\)"),
        (lambda b: np.where(np.arange(40) == 3, np.inf, b), "importance_beta contains an infinite value"),
        (lambda b: np.where(np.arange(40) == 12, 0.0, b), r"importance_beta must be > 0 .* found 0 at frame 12"),
        (lambda b: -b, "importance_beta must be > 0"),
        (lambda b: b[:, None], r"importance_beta must be a \(T,\) float array .* shape \(40, 1\)"),
        (lambda b: b > 2, "importance_beta must be a .* dtype bool"),
    ],
)
def test_corrupt_importance_beta_is_a_one_line_config_error(
    trace_file: Path, tmp_path: Path, value: Callable[[np.ndarray], np.ndarray], message: str
) -> None:
    arrays = _arrays(trace_file)
    arrays["importance_beta"] = value(_beta())
    path = _write_npz(tmp_path / "bad.npz", arrays)
    with pytest.raises(ConfigError, match=rf"trace file '.*bad\.npz': {message}.*re-record") as err:
        load_trace(path)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=rf"save_trace: {message}"):
        save_trace(tmp_path / "x.npz", **_fields(), importance_beta=value(_beta()))
    assert not (tmp_path / "x.npz").exists()


def test_trace_source_serves_the_recorded_beta_by_frame_index(tmp_path: Path) -> None:
    beta = _beta().astype(np.float32)
    tr = load_trace(save_trace(tmp_path / "beta.npz", **_fields(), importance_beta=beta))
    src = TraceSource(tr, 10, 25, seed=4)
    assert src.has_importance_beta
    b = src.batch(40)  # wraps around the 15-frame range
    rows = [10 + (src.first_row - 10 + i) % 15 for i in range(40)]
    got = src.recorded_beta(b.index)
    assert got.dtype == np.float64 and got.shape == (40,)
    np.testing.assert_array_equal(got, beta[rows])
    np.testing.assert_array_equal(b.features, tr.features[rows])  # the same frames as the batch
    assert src.recorded_beta(3) == beta[rows[3]]
    src.reset(4)  # the cursor does not matter: frame index i is the same row after the same reset
    np.testing.assert_array_equal(src.recorded_beta(np.arange(40)), beta[rows])
    for bad in (-1, np.array([0.5]), np.array([2, -3])):
        with pytest.raises(ConfigError, match=r"TraceSource\.recorded_beta: frame indices must be integers >= 0"):
            src.recorded_beta(bad)


def test_the_shipped_clip_traces_carry_the_recorded_beta() -> None:
    """Recorded with the importance at EfficientNet-Lite0's default split: one beta per frame, near the
    emulator's fitted draw (per clip 1.99-2.13 in benchmarks/importance_fit.py), varying from frame to frame."""
    from e4gym.dnn.offload import DEFAULT_CONCENTRATION

    medians = {}
    for name in ("bikes", "bigbuckbunny", "carphone"):
        tr = load_trace(f"clip:{name}")
        assert tr.importance_beta is not None and tr.importance_beta.shape == (tr.n_frames,)
        assert np.all((tr.importance_beta > 1.8) & (tr.importance_beta < 2.4)) and tr.importance_beta.std() > 0
        medians[name] = float(np.median(tr.importance_beta))
    assert abs(np.median(list(medians.values())) - DEFAULT_CONCENTRATION) < 0.05
    assert medians["carphone"] < medians["bikes"] < medians["bigbuckbunny"]  # as the benchmark's table
