"""Multi-exit networks: exits agree, the last exit is the plain backbone, weights keep torchvision keys."""

from __future__ import annotations

import math

import pytest
import torch

from e4gym.dnn.multiexit import (
    DEFAULT_EXITS,
    ExitOutput,
    MultiExitNet,
    build_multiexit,
    confidence_of,
    default_split,
)
from e4gym.dnn.nets import build_backbone, load_torchvision_weights
from e4gym.errors import ConfigError, UnknownNameError

NAMES = ("efficientnet_b0", "mobilenet_v2", "resnet18")
CLASSES = 10


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {name: build_multiexit(name, num_classes=CLASSES).eval() for name in NAMES}


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_default_structure(nets):
    eff, mbv2, res = nets["efficientnet_b0"], nets["mobilenet_v2"], nets["resnet18"]
    assert (eff.n_blocks, eff.n_exits, eff.exit_after) == (9, 5, [3, 4, 5, 6, 8])
    assert eff.block_names == [f"features.{i}" for i in range(9)]
    assert (mbv2.n_blocks, mbv2.n_exits, mbv2.exit_after) == (19, 5, [6, 10, 13, 16, 18])
    assert mbv2.block_names == [f"features.{i}" for i in range(19)]
    assert (res.n_blocks, res.n_exits, res.exit_after) == (5, 4, [1, 2, 3, 4])
    assert res.block_names == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert res.head_names == ["exits.0", "exits.1", "exits.2", "avgpool+fc"]
    # Early heads: pool, flatten, Linear(C, 256), ReLU, Dropout, Linear(256, classes).
    head = eff.exits[0]
    assert [type(m).__name__ for m in head] == [
        "AdaptiveAvgPool2d",
        "Flatten",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert (head[2].in_features, head[2].out_features, head[5].out_features) == (40, 256, CLASSES)
    assert [h[2].in_features for h in res.exits] == [64, 128, 256]
    assert [h[2].in_features for h in mbv2.exits] == [32, 64, 96, 160]


@pytest.mark.parametrize("name", NAMES)
def test_every_exit_gives_logits_and_confidence(nets, x, name):
    net = nets[name]
    with torch.no_grad():
        outs = net.forward_all(x)
    assert len(outs) == net.n_exits
    for e, out in enumerate(outs):
        assert isinstance(out, ExitOutput) and out.exit == e
        assert out.logits.shape == (2, CLASSES)
        assert out.confidence.shape == (2,)
        assert ((out.confidence >= 0) & (out.confidence <= 1)).all()


@pytest.mark.parametrize("name", NAMES)
def test_forward_to_an_exit_equals_forward_all(nets, x, name):
    net = nets[name]
    with torch.no_grad():
        every = net.forward_all(x)
        for e in range(net.n_exits):
            one = net(x, exit=e)
            assert one.exit == e
            assert torch.allclose(one.logits, every[e].logits, atol=1e-6, rtol=1e-5)
            assert torch.allclose(one.confidence, every[e].confidence, atol=1e-6)
        last = net(x)
        assert last.exit == net.n_exits - 1 and torch.allclose(last.logits, every[-1].logits, atol=1e-6)
        assert torch.allclose(net(x, exit=-1).logits, last.logits, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_final_exit_is_the_plain_backbone(nets, x, name):
    net = nets[name]
    plain = build_backbone(name, num_classes=CLASSES).eval()
    plain.load_state_dict(net.backbone_state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(net(x).logits, plain(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_block_by_block_execution(nets, x, name):
    net = nets[name]
    with torch.no_grad():
        h = x
        logits = []
        for i in range(net.n_blocks):
            h = net.run_block(i, h)
            if i in net.exit_after:
                logits.append(net.run_head(net.exit_after.index(i), h))
        every = net.forward_all(x)
    for e, lg in enumerate(logits):
        assert torch.equal(lg, every[e].logits)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keeps_torchvision_keys(nets, name):
    net = nets[name]
    sd = net.state_dict()
    backbone_keys = set(build_backbone(name).state_dict())
    head_keys = {k for k in sd if k.startswith("exits.")}
    assert set(sd) == backbone_keys | head_keys
    assert {k.split(".")[1] for k in head_keys} == {str(i) for i in range(net.n_exits - 1)}
    assert set(net.backbone_state_dict()) == backbone_keys


def test_torchvision_weights_load_strict_into_the_backbone(tmp_path):
    torch.manual_seed(3)
    tv = build_backbone("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)

    net = build_multiexit("resnet18")
    heads_before = {k: v.clone() for k, v in net.exits.state_dict().items()}
    load_torchvision_weights(net, path)
    assert torch.equal(net.state_dict()["layer4.1.conv2.weight"], tv.layer4[1].conv2.weight)
    assert torch.equal(net.fc.weight, tv.fc.weight)
    for k, v in net.exits.state_dict().items():
        assert torch.equal(v, heads_before[k])

    # The whole network's state dict (backbone + heads) round-trips strictly too.
    other = build_multiexit("resnet18")
    other.load_state_dict(net.state_dict(), strict=True)
    assert torch.equal(other.exits[1][5].weight, net.exits[1][5].weight)


def test_load_backbone_state_dict_names_bad_keys():
    net = build_multiexit("resnet18", num_classes=CLASSES)
    sd = build_backbone("resnet18", num_classes=CLASSES).state_dict()
    sd["exits.0.2.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match=r"unexpected keys: exits\.0\.2\.weight"):
        net.load_backbone_state_dict(sd)
    del sd["exits.0.2.weight"]
    del sd["bn1.running_var"]
    with pytest.raises(ConfigError, match=r"missing keys: bn1\.running_var"):
        net.load_backbone_state_dict(sd)


def test_freeze_backbone_trains_only_the_heads(x):
    net = build_multiexit("resnet18", num_classes=CLASSES)
    net.freeze_backbone()
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert all(p.requires_grad for p in net.exits.parameters())
    net.train()
    loss = sum(o.logits.sum() for o in net.forward_all(x))
    loss.backward()
    assert net.conv1.weight.grad is None and net.fc.weight.grad is None
    assert all(p.grad is not None for p in net.exits.parameters())
    net.freeze_backbone(False)
    assert all(p.requires_grad for p in net.parameters())


def test_bad_exit_index_lists_the_allowed_range(nets, x):
    net = nets["efficientnet_b0"]
    for bad in (5, -6, 1.0, True):
        with pytest.raises(UnknownNameError, match=r"exits 0\.\.4"):
            net(x, exit=bad)
    with pytest.raises(UnknownNameError, match=r"blocks 0\.\.8"):
        net.run_block(9, x)
    with pytest.raises(UnknownNameError, match=r"exits 0\.\.4"):
        net.run_head(7, x)


def test_confidence_kinds():
    uniform = torch.zeros(3, 8)
    sharp = torch.tensor([[100.0] + [0.0] * 7])
    assert torch.allclose(confidence_of(uniform, "max_softmax"), torch.full((3,), 1 / 8))
    assert torch.allclose(confidence_of(uniform, "entropy"), torch.zeros(3), atol=1e-6)
    assert confidence_of(sharp, "entropy").item() == pytest.approx(1.0, abs=1e-6)
    assert confidence_of(sharp, "max_softmax").item() == pytest.approx(1.0, abs=1e-6)
    # Two classes at p = (0.75, 0.25): 1 - H / log 2.
    logits = torch.tensor([[math.log(3.0), 0.0]])
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert confidence_of(logits, "entropy").item() == pytest.approx(1 - h / math.log(2), abs=1e-6)
    with pytest.raises(ConfigError, match="max_softmax"):
        confidence_of(uniform, "margin")


def test_entropy_confidence_network(x):
    torch.manual_seed(0)
    net = build_multiexit("resnet18", num_classes=CLASSES, confidence="entropy").eval()
    with torch.no_grad():
        out = net(x, exit=0)
    assert torch.allclose(out.confidence, confidence_of(out.logits, "entropy"))
    with pytest.raises(ConfigError, match="allowed"):
        build_multiexit("resnet18", confidence="margin")


def test_custom_exits_and_invalid_splits():
    net = build_multiexit("mobilenet_v2", num_classes=CLASSES, hidden=32, exit_after=[2, 18])
    assert net.n_exits == 2 and net.exits[0][2].in_features == 24 and net.exits[0][2].out_features == 32
    with pytest.raises(ConfigError, match="last block index 18"):
        build_multiexit("mobilenet_v2", exit_after=[2, 17])
    with pytest.raises(ConfigError, match="strictly increasing"):
        build_multiexit("mobilenet_v2", exit_after=[5, 3, 18])
    with pytest.raises(UnknownNameError, match="resnet18"):
        build_multiexit("vgg16")
    backbone = build_backbone("resnet18")
    blocks, head = default_split("resnet18", backbone)
    foreign = build_backbone("resnet18").layer1
    with pytest.raises(ConfigError, match="not part of the backbone"):
        MultiExitNet(backbone, [blocks[0], ("layer1", foreign), *blocks[2:]], head, DEFAULT_EXITS["resnet18"])
