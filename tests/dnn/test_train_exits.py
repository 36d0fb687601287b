"""Exit-head training on a frozen backbone: the heads learn, checkpoints round-trip, bad inputs are refused."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from e4gym.dnn.imagefolder import ImageFolder, load_image
from e4gym.dnn.multiexit import build_multiexit
from e4gym.dnn.train_exits import (
    CHECKPOINT_FORMAT,
    _split,
    add_train_exits_parser,
    load_exit_checkpoint,
    train_exits,
)
from e4gym.errors import ConfigError

COLOURS = ((200, 50, 50), (50, 190, 60), (60, 60, 210))
SIZE = 32


def make_dataset(root: Path, per_class: int = 24, colours=COLOURS, seed: int = 0) -> Path:
    """Classes separable by colour (and a class-specific stripe pattern), with strong pixel noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for c, colour in enumerate(colours):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        pattern = (((xx if c % 2 else yy) // (2 + c)) % 2)[..., None] * 30
        for i in range(per_class):
            img = np.asarray(colour)[None, None] + pattern + rng.normal(0, 35, (SIZE, SIZE, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img_{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "images")


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "exits.pt"
    res = train_exits(
        "efficientnet_b0", dataset, out, image_size=SIZE, epochs=5, val_fraction=0.25, seed=0, progress=False
    )
    return res, out


def test_early_heads_learn_above_chance(trained):
    res, _ = trained
    assert res["num_classes"] == 3 and res["classes"] == ["class_0", "class_1", "class_2"]
    assert (res["n_train"], res["n_val"]) == (54, 18)
    assert res["trained_final"] is True
    early_before, early_after = np.array(res["before"][:-1]), np.array(res["after"][:-1])
    assert len(early_after) == 4
    assert early_after.min() > 0.5  # chance is 1/3
    assert early_after.mean() >= 0.6
    assert early_after.mean() > early_before.mean() + 0.2


@pytest.mark.slow  # about 10 s on 2 shared cores
def test_checkpoint_loads_weights_only_and_reproduces_predictions(trained, dataset):
    res, out = trained
    ck = torch.load(out, map_location="cpu", weights_only=True)
    assert ck["format"] == CHECKPOINT_FORMAT and ck["model"] == "efficientnet_b0"
    assert ck["num_classes"] == 3 and ck["classes"] == res["classes"] and ck["image_size"] == SIZE
    assert ck["epoch"] == 5 and ck["val_accuracy"] == pytest.approx(res["after"])
    assert all(k.startswith(("exits.", "classifier.")) for k in ck["head_state"])

    net = load_exit_checkpoint(out, "efficientnet_b0")
    assert not net.training and net.classes == res["classes"] and net.image_size == SIZE
    data = ImageFolder(dataset, size=SIZE)
    _, val_idx = _split(data.targets, 3, 0.25, 0)
    x = torch.stack([data[i][0] for i in val_idx])
    y = torch.tensor([data.targets[i] for i in val_idx])
    with torch.inference_mode():
        outs = net.forward_all(x)
    acc = [float((o.logits.argmax(1) == y).float().mean()) for o in outs]
    assert acc == pytest.approx(res["after"], abs=1e-6)

    # Loading into an existing network gives the same outputs.
    torch.manual_seed(123)
    other = load_exit_checkpoint(out, build_multiexit("efficientnet_b0", num_classes=3))
    with torch.inference_mode():
        outs2 = other.forward_all(x)
    for a, b in zip(outs, outs2):
        torch.testing.assert_close(a.logits, b.logits)


def test_final_classifier_trained_without_weights(trained):
    _, out = trained
    ck = torch.load(out, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    fresh = build_multiexit("efficientnet_b0", num_classes=3)
    assert not torch.equal(ck["head_state"]["classifier.1.weight"], fresh.state_dict()["classifier.1.weight"])
    # The random backbone the heads were trained on travels with them.
    assert ck["backbone_state"] is not None
    torch.testing.assert_close(ck["backbone_state"]["features.0.0.weight"], fresh.state_dict()["features.0.0.weight"])


@pytest.mark.slow  # about 6 s on 2 shared cores
def test_with_weights_final_classifier_stays_frozen(tmp_path):
    data = make_dataset(tmp_path / "small", per_class=4, colours=COLOURS[:2])
    torch.manual_seed(7)
    backbone = build_multiexit("efficientnet_b0", num_classes=2).backbone_state_dict()
    weights = tmp_path / "w.pth"
    torch.save(backbone, weights)
    out = tmp_path / "ck.pt"
    res = train_exits("efficientnet_b0", data, out, weights=weights, image_size=SIZE, epochs=2, progress=False)
    assert res["trained_final"] is False
    assert res["before"][-1] == res["after"][-1]
    ck = torch.load(out, weights_only=True)
    assert ck["backbone_state"] is None and ck["weights"] == "w.pth"
    torch.testing.assert_close(ck["head_state"]["classifier.1.weight"], backbone["classifier.1.weight"])
    with pytest.raises(ConfigError, match="--weights"):
        load_exit_checkpoint(out)
    net = load_exit_checkpoint(out, weights=weights)
    torch.testing.assert_close(net.state_dict()["features.8.0.weight"], backbone["features.8.0.weight"])

    # Weights whose classifier has another number of classes than the data has folders.
    torch.save(build_multiexit("efficientnet_b0", num_classes=10).backbone_state_dict(), weights)
    with pytest.raises(ConfigError, match=r"classifier\.1\.weight"):
        train_exits("efficientnet_b0", data, out, weights=weights, image_size=SIZE, epochs=1, progress=False)


def _write_png(path: Path, colour=(10, 20, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda root: None, "not found"),
        (lambda root: _write_png(root / "only" / "a.png"), "need at least 2"),
        (lambda root: [_write_png(root / "a" / f"{i}.png") for i in range(2)] + [(root / "b").mkdir()],
         r"b: class folder holds 0 image"),
        (lambda root: [_write_png(root / p) for p in ("a/0.png", "a/1.png", "b/0.png")],
         r"b: class folder holds 1 image"),
        (lambda root: [_write_png(root / c / f"{i}.png") for i in range(2) for c in "ab"]
         + [(root / "b" / "broken.jpg").write_bytes(b"not an image at all")], r"broken\.jpg: cannot read"),
    ],
    ids=["missing", "one-class", "empty-class", "one-image", "unreadable"],
)
def test_bad_data_folder(tmp_path, setup, match):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(ConfigError, match=match):
        train_exits("efficientnet_b0", root, tmp_path / "ck.pt", image_size=SIZE, epochs=1, progress=False)
    assert not (tmp_path / "ck.pt").exists()


def test_load_image_normalises(tmp_path):
    _write_png(tmp_path / "x.png", colour=(124, 116, 104))  # ≈ the ImageNet mean
    x = load_image(tmp_path / "x.png", 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.abs().max() < 0.02


@pytest.mark.slow  # about 8 s on 2 shared cores
def test_bad_checkpoints(trained, tmp_path):
    _, out = trained
    bad = tmp_path / "bad.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ConfigError, match="corrupt or truncated"):
        load_exit_checkpoint(bad)
    bad.write_bytes(out.read_bytes()[:5000])
    with pytest.raises(ConfigError, match="corrupt or truncated"):
        load_exit_checkpoint(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_exit_checkpoint(tmp_path / "nope.pt")

    ck = torch.load(out, weights_only=True)
    torch.save({**ck, "format": "other"}, bad)
    with pytest.raises(ConfigError, match="not an e4gym exit checkpoint"):
        load_exit_checkpoint(bad)
    with pytest.raises(ConfigError, match="for model 'efficientnet_b0', not 'resnet18'"):
        load_exit_checkpoint(out, "resnet18")
    heads = dict(ck["head_state"])
    heads.pop("exits.0.2.weight")
    torch.save({**ck, "head_state": heads}, bad)
    with pytest.raises(ConfigError, match=r"missing: exits\.0\.2\.weight"):
        load_exit_checkpoint(bad)
    torch.save({**ck, "num_classes": 4, "classes": ["a", "b", "c", "d"]}, bad)
    with pytest.raises(ConfigError, match=r"bad\.pt: its stored backbone does not fit.*classifier\.1\.weight"):
        load_exit_checkpoint(bad)
    torch.save({**ck, "backbone_state": None, "weights": "w.pth"}, bad)
    with pytest.raises(ConfigError, match=r"'w\.pth'.*pass them"):
        load_exit_checkpoint(bad)
    torch.manual_seed(0)
    four = build_multiexit("efficientnet_b0", num_classes=4)
    torch.save(four.backbone_state_dict(), tmp_path / "w4.pth")
    torch.save({**ck, "num_classes": 4, "classes": list("abcd"), "backbone_state": None}, bad)
    with pytest.raises(ConfigError, match=r"wrong shape.*exits\.0\.5\.weight"):
        load_exit_checkpoint(bad, weights=tmp_path / "w4.pth")
    torch.save({**ck, "num_classes": "3"}, bad)
    with pytest.raises(ConfigError, match="num_classes"):
        load_exit_checkpoint(bad)


def test_cli_verb(tmp_path, capsys):
    data = make_dataset(tmp_path / "d", per_class=3, colours=COLOURS[:2])
    parser = argparse.ArgumentParser()
    add_train_exits_parser(parser.add_subparsers(dest="cmd"))
    out = tmp_path / "ck.pt"
    args = parser.parse_args(
        ["train-exits", "--data", str(data), "--out", str(out), "--image-size", "32", "--epochs", "1", "--quiet"]
    )
    assert args.model == "efficientnet_b0" and args.batch_size == 32
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "val acc before" in text and text.count("\n| ") >= 5
    assert out.is_file()
    with pytest.raises(SystemExit):
        parser.parse_args(["train-exits", "--out", str(out)])  # --data is required
