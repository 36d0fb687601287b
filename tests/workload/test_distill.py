"""Exit heads distilled on real video (issue 16): agreement with the full network, calibration, the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e4gym.dnn.train_exits import load_exit_checkpoint
from e4gym.errors import ConfigError
from e4gym.workload.distill import augment, distill_exits, expected_calibration_error, held_out_start, video_frames


def test_expected_calibration_error_on_known_cases() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 200_000)
    calibrated = rng.uniform(0, 1, conf.size) < conf  # right with probability = confidence
    assert expected_calibration_error(conf, calibrated) < 0.01
    assert expected_calibration_error(np.ones(10), np.arange(10) % 2 == 0) == pytest.approx(0.5)
    assert expected_calibration_error(np.full(4, 0.25), np.array([1, 1, 1, 1])) == pytest.approx(0.75)


def test_augment_is_seeded_and_crops_flips_and_jitters() -> None:
    frame = video_frames("clip:carphone", every=60)[0]
    a = [augment(frame, 64, np.random.default_rng(3)) for _ in range(2)]
    b = augment(frame, 64, np.random.default_rng(4))
    assert a[0].shape == (64, 64, 3) and a[0].dtype == np.uint8
    assert np.array_equal(a[0], a[1]) and not np.array_equal(a[0], b)


def test_held_out_start_keeps_a_frame_on_each_side() -> None:
    assert held_out_start(120, 0.5) == 60 and held_out_start(10, 0.01) == 1 and held_out_start(10, 0.99) == 9


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "heads.pt"
    torch.manual_seed(0)
    res = distill_exits(out, train=["clip:carphone"], held_out=[], train_fraction=0.5, copies=2, every=3,
                        epochs=8, seed=0, progress=False)
    return out, res


def test_distilled_heads_agree_with_the_full_network_on_held_out_frames(distilled) -> None:
    """Random heads never agree with the final exit; heads distilled on the first half of the clip agree with
    it on most frames of the second half (the same man in the same car: the specialisation protocol)."""
    _, res = distilled
    assert res["n_train"] == 2 * len(range(0, 60, 3)) and res["n_held_out"] == 60
    assert res["before"][:4] == [0.0] * 4 and res["before"][4] == res["after"][4] == 1.0
    assert all(a > 0.5 for a in res["after"][:4])
    assert all(0.0 <= e <= 1.0 for e in res["ece"][:4]) and all(0.0 < c <= 1.0 for c in res["confidence"][:4])


def test_the_checkpoint_loads_without_weights_and_reproduces_the_report(distilled) -> None:
    """The checkpoint names EfficientNet-Lite0, whose weights the installed package ships: load_exit_checkpoint
    needs no --weights; its heads (standardisation and classifier folded in) agree on held-out frames as the
    report says."""
    from e4gym.workload.record import network_input

    out, res = distilled
    net = load_exit_checkpoint(out, "efficientnet_lite0")
    frames = video_frames("clip:carphone")[60:]
    with torch.inference_mode():
        outs = net.forward_all(net.normalise(np.stack([network_input(f, 224) for f in frames])))
    final = outs[-1].logits.argmax(1)
    agree = [float((o.logits.argmax(1) == final).float().mean()) for o in outs]
    assert agree == pytest.approx(res["after"], abs=0.02)
    ck = torch.load(out, weights_only=True)
    assert ck["distilled"]["train"] == ["clip:carphone"] and ck["distilled"]["train_fraction"] == 0.5
    assert ck["backbone_state"] is None and ck["weights"] == "efficientnet-lite0-57934424.pth"


def test_a_video_in_both_sets_and_bad_arguments_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="both a training and a held-out video"):
        distill_exits(tmp_path / "x.pt", train=["clip:carphone"], held_out=["clip:carphone"], progress=False)
    with pytest.raises(ConfigError, match="copies must be an integer >= 1"):
        distill_exits(tmp_path / "x.pt", copies=0, progress=False)
    with pytest.raises(ConfigError, match="train_fraction must be a number in"):
        distill_exits(tmp_path / "x.pt", train_fraction=1.5, progress=False)
    with pytest.raises(ConfigError, match="held-out frames"):
        distill_exits(tmp_path / "x.pt", held_out=[], progress=False)
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(ConfigError, match="needs its pretrained weights"):
        distill_exits(tmp_path / "x.pt", model="resnet18", progress=False)


def test_the_cli_distils_and_prints_the_table(tmp_path, capsys) -> None:
    from e4gym.cli import main

    out = tmp_path / "h.pt"
    assert main(["distill-exits", "--out", str(out), "--train", "clip:carphone", "--held-out",
                 "--train-fraction", "0.5", "--copies", "1", "--every", "6", "--epochs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "the last 50% of each training video" in printed
    assert "| exit 3 " in printed and "held-out after" in printed and out.is_file()
