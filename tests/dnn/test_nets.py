"""The from-scratch backbones match torchvision's structure, parameter counts and state-dict keys."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from e4gym.dnn.nets import (
    MBConv,
    StochasticDepth,
    build_backbone,
    load_torchvision_weights,
)
from e4gym.errors import ConfigError, UnknownNameError

NAMES = ("efficientnet_b0", "mobilenet_v2", "resnet18")

# torchvision's documented parameter counts (weights meta "num_params").
PARAMS = {"efficientnet_b0": 5_288_548, "mobilenet_v2": 3_504_872, "resnet18": 11_689_512}

# A hand-written sample of torchvision's state-dict keys and their shapes.
TORCHVISION_KEYS = {
    "efficientnet_b0": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.0.1.running_mean": (32,),
        "features.0.1.num_batches_tracked": (),
        "features.1.0.block.0.0.weight": (32, 1, 3, 3),  # stage 1 has no expansion: depthwise first
        "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
        "features.1.0.block.1.fc1.bias": (8,),
        "features.1.0.block.1.fc2.weight": (32, 8, 1, 1),
        "features.1.0.block.2.0.weight": (16, 32, 1, 1),
        "features.1.0.block.2.1.running_var": (16,),
        "features.2.0.block.0.0.weight": (96, 16, 1, 1),
        "features.2.0.block.1.0.weight": (96, 1, 3, 3),
        "features.2.0.block.2.fc1.weight": (4, 96, 1, 1),
        "features.2.1.block.2.fc1.weight": (6, 144, 1, 1),
        "features.3.1.block.1.0.weight": (240, 1, 5, 5),
        "features.6.3.block.3.0.weight": (192, 1152, 1, 1),
        "features.7.0.block.3.0.weight": (320, 1152, 1, 1),
        "features.8.0.weight": (1280, 320, 1, 1),
        "features.8.1.bias": (1280,),
        "classifier.1.weight": (1000, 1280),
        "classifier.1.bias": (1000,),
    },
    "mobilenet_v2": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.0.1.weight": (32,),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.1.conv.2.running_var": (16,),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),
        "features.2.conv.1.0.weight": (96, 1, 3, 3),
        "features.2.conv.2.weight": (24, 96, 1, 1),
        "features.2.conv.3.bias": (24,),
        "features.17.conv.2.weight": (320, 960, 1, 1),
        "features.18.0.weight": (1280, 320, 1, 1),
        "features.18.1.running_mean": (1280,),
        "classifier.1.weight": (1000, 1280),
        "classifier.1.bias": (1000,),
    },
    "resnet18": {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer1.1.bn2.weight": (64,),
        "layer2.0.conv1.weight": (128, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.running_var": (128,),
        "layer3.1.conv2.weight": (256, 256, 3, 3),
        "layer4.1.bn2.running_var": (512,),
        "fc.weight": (1000, 512),
        "fc.bias": (1000,),
    },
}

# Keys torchvision does not have (modules without parameters, or absent by design).
ABSENT_KEYS = {
    "efficientnet_b0": ["features.1.0.block.3.0.weight", "avgpool.weight", "classifier.0.weight"],
    "mobilenet_v2": ["features.1.conv.3.weight", "features.19.0.weight", "classifier.0.weight"],
    "resnet18": ["layer1.0.downsample.0.weight", "stem.0.weight", "avgpool.weight"],
}


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_torchvision(name):
    model = build_backbone(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_and_shapes_match_torchvision(name):
    sd = build_backbone(name).state_dict()
    for key, shape in TORCHVISION_KEYS[name].items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    for key in ABSENT_KEYS[name]:
        assert key not in sd, key
    # Stochastic depth, dropout, pooling and activations carry no state.
    assert not any("stochastic_depth" in k or "avgpool" in k for k in sd)


def test_state_dict_key_counts():
    # 20 convs + 20 BNs (weight, bias, 3 buffers) + fc (weight, bias).
    assert len(build_backbone("resnet18").state_dict()) == 20 + 20 * 5 + 2
    # MobileNet-V2: 52 convs, 52 BNs, classifier.
    assert len(build_backbone("mobilenet_v2").state_dict()) == 52 + 52 * 5 + 2


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_num_classes(name):
    model = build_backbone(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_torchvision_initialisation():
    torch.manual_seed(0)
    eff = build_backbone("efficientnet_b0")
    bn = eff.features[0][1]
    assert torch.equal(bn.weight, torch.ones(32)) and torch.equal(bn.bias, torch.zeros(32))
    assert bn.eps == 1e-5 and bn.momentum == 0.1  # B0 uses the default BatchNorm2d (unlike B5-B7)
    fc = eff.classifier[1]
    bound = 1.0 / math.sqrt(1000)
    assert fc.weight.abs().max() <= bound and torch.equal(fc.bias, torch.zeros(1000))
    assert eff.classifier[0].p == 0.2 and eff.classifier[0].inplace
    se = eff.features[1][0].block[1]
    assert torch.equal(se.fc1.bias, torch.zeros(8))
    # Stochastic depth grows linearly with the block index: 0.2 * id / 16.
    assert eff.features[1][0].stochastic_depth.p == 0.0
    assert eff.features[7][0].stochastic_depth.p == pytest.approx(0.2 * 15 / 16)

    mbv2 = build_backbone("mobilenet_v2")
    assert abs(mbv2.classifier[1].weight.std().item() - 0.01) < 0.001
    assert isinstance(mbv2.features[1].conv[0][2], nn.ReLU6)

    res = build_backbone("resnet18")
    assert res.conv1.weight.std().item() == pytest.approx(math.sqrt(2.0 / (64 * 49)), rel=0.05)


def test_unknown_backbone_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        build_backbone("vgg16")
    for name in NAMES:
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="num_classes"):
        build_backbone("resnet18", num_classes=0)


@pytest.mark.parametrize("name", NAMES)
def test_weights_roundtrip_through_a_file(name, tmp_path):
    torch.manual_seed(1)
    source = build_backbone(name).eval()
    # Make the BN statistics non-trivial so that a missed buffer would show up.
    for m in source.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)

    torch.manual_seed(2)
    target = build_backbone(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.equal(source(x), target(x))
        assert load_torchvision_weights(target, path) is target
        assert torch.equal(source(x), target(x))


def test_renamed_key_gives_a_clear_error(tmp_path):
    sd = build_backbone("resnet18").state_dict()
    sd["fc.weights"] = sd.pop("fc.weight")
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(ConfigError) as err:
        load_torchvision_weights(build_backbone("resnet18"), path)
    msg = str(err.value)
    assert "missing keys: fc.weight" in msg
    assert "unexpected keys: fc.weights" in msg
    assert str(path) in msg


def test_shape_mismatch_and_bad_files_give_clear_errors(tmp_path):
    path = tmp_path / "ten_classes.pth"
    torch.save(build_backbone("mobilenet_v2", num_classes=10).state_dict(), path)
    with pytest.raises(
        ConfigError, match=r"shape mismatches.*classifier\.1\.weight \(10, 1280\) != \(1000, 1280\)"
    ):
        load_torchvision_weights(build_backbone("mobilenet_v2"), path)

    with pytest.raises(ConfigError, match="not found"):
        load_torchvision_weights(build_backbone("resnet18"), tmp_path / "missing.pth")

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="weights_only"):
        load_torchvision_weights(build_backbone("resnet18"), junk)

    listed = tmp_path / "list.pth"
    torch.save([1, 2, 3], listed)
    with pytest.raises(ConfigError, match="expected a state dict"):
        load_torchvision_weights(build_backbone("resnet18"), listed)


def test_wrapped_checkpoint_is_unwrapped(tmp_path):
    source = build_backbone("resnet18")
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, path)
    target = load_torchvision_weights(build_backbone("resnet18"), path)
    assert torch.equal(target.fc.weight, source.fc.weight)


def test_stochastic_depth_is_identity_in_eval_and_drops_rows_in_training():
    x = torch.randn(8, 4, 3, 3)
    sd = StochasticDepth(0.5, "row").eval()
    assert sd(x) is x
    sd.train()
    torch.manual_seed(0)
    y = sd(x)
    kept = [bool(torch.equal(y[i], x[i] * 2)) for i in range(8)]
    dropped = [bool(torch.equal(y[i], torch.zeros_like(x[i]))) for i in range(8)]
    assert all(k or d for k, d in zip(kept, dropped, strict=True))
    assert any(kept) and any(dropped)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        StochasticDepth(1.5, "row")


def test_mbconv_residual_only_when_shapes_match():
    assert MBConv(16, 16, 3, 1, 6, 0.0).use_res_connect
    assert not MBConv(16, 24, 3, 1, 6, 0.0).use_res_connect
    assert not MBConv(16, 16, 3, 2, 6, 0.0).use_res_connect
