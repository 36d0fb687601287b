"""The profiler counts what it says, and the checked-in model profiles are exactly what it generates."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from e4gym.dnn import profiling
from e4gym.dnn.nets import build_backbone
from e4gym.dnn.profile import load_model_profile
from e4gym.dnn.profiling import DEFAULT_EXIT_ACCURACY, measure_module, profile_model, write_profile
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.paths import REPO_ROOT

NAMES = ("efficientnet_b0", "mobilenet_v2", "resnet18")
GENERATED = (*NAMES, "efficientnet_lite0")  # (Lite0's cost and parameters are checked in tests/dnn/test_lite.py)
CHECKED_IN = REPO_ROOT / "configs" / "models"
COST_KEYS = ("name", "macs", "flops", "param_bytes", "activation_bytes", "kernels", "output_shape")

# Published cost at 224x224 (multiply-accumulates): torchvision's "_ops" / the papers.
PUBLISHED_MACS = {"efficientnet_b0": 0.39e9, "mobilenet_v2": 0.30e9, "resnet18": 1.8e9}
PARAMS = {"efficientnet_b0": 5_288_548, "mobilenet_v2": 3_504_872, "resnet18": 11_689_512}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """Each model profiled once at 224x224 and written to a fresh directory (default accuracies)."""
    out = tmp_path_factory.mktemp("models")
    return {name: write_profile(name, out / f"{name}.yaml") for name in GENERATED}


def _yaml(path):
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("name", GENERATED)
def test_checked_in_profile_is_generated(regenerated, name):
    fresh, kept = _yaml(regenerated[name]), _yaml(CHECKED_IN / f"{name}.yaml")
    for key in ("name", "input_shape", "num_classes", "source", "totals"):
        assert fresh[key] == kept[key], key
    assert len(fresh["blocks"]) == len(kept["blocks"])
    for new, old in zip(fresh["blocks"], kept["blocks"], strict=True):
        assert {k: new[k] for k in COST_KEYS} == {k: old[k] for k in COST_KEYS}
    assert len(fresh["exits"]) == len(kept["exits"])
    for new, old in zip(fresh["exits"], kept["exits"], strict=True):
        assert (new["name"], new["after_block"]) == (old["name"], old["after_block"])
        assert {k: new["head"][k] for k in COST_KEYS} == {k: old["head"][k] for k in COST_KEYS}
    text = (CHECKED_IN / f"{name}.yaml").read_text()
    assert text.startswith("# Cost profile") and f"`e4gym profile --model {name}`" in text.splitlines()[1]


@pytest.mark.parametrize("name", NAMES)
def test_profile_loads_and_matches_published_cost(regenerated, name):
    profile = load_model_profile(regenerated[name])
    assert profile.name == name and profile.input_shape == (3, 224, 224)
    assert profile.total_macs == pytest.approx(PUBLISHED_MACS[name], rel=0.10)
    data = _yaml(regenerated[name])
    assert data["totals"]["params"] == PARAMS[name]
    assert data["totals"]["macs"] == profile.total_macs
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]
    for block in [*data["blocks"], *(e["head"] for e in data["exits"])]:
        assert block["flops"] == 2 * block["macs"]
        assert block["kernels"] > 0 and block["activation_bytes"] > 0
        assert isinstance(block["macs"], int) and isinstance(block["param_bytes"], int)
    # Every exit head ends in the classes; the blocks and the final head partition the backbone, so their
    # parameter bytes add up to its fp32 parameters and BN running statistics.
    assert all(e["head"]["output_shape"] == [1000] for e in data["exits"])
    backbone = build_backbone(name)
    floats = PARAMS[name] + sum(b.numel() for b in backbone.buffers() if b.is_floating_point())
    backbone_bytes = sum(b["param_bytes"] for b in data["blocks"]) + data["exits"][-1]["head"]["param_bytes"]
    assert backbone_bytes == 4 * floats
    assert [e.accuracy for e in profile.exits] == [a for a, _ in DEFAULT_EXIT_ACCURACY[name]]


def test_hand_checked_costs(regenerated):
    eff = _yaml(regenerated["efficientnet_b0"])
    stem = eff["blocks"][0]
    # 3x3 conv, 3 -> 32 channels, stride 2: 112 * 112 * 32 outputs of 27 MACs each.
    assert stem["macs"] == 112 * 112 * 32 * 27
    assert stem["output_shape"] == [32, 112, 112]
    # conv, BN, SiLU: three kernels; weights 864 + BN 4 * 32 floats.
    assert stem["kernels"] == 3
    assert stem["param_bytes"] == 4 * (864 + 4 * 32)
    # conv reads the image and writes the map; BN and the in-place SiLU each read and write it.
    image, fmap = 4 * 3 * 224 * 224, 4 * 32 * 112 * 112
    assert stem["activation_bytes"] == image + 5 * fmap

    res = _yaml(regenerated["resnet18"])
    assert res["blocks"][0]["macs"] == 112 * 112 * 64 * 3 * 49  # 7x7 stem conv
    assert res["blocks"][0]["kernels"] == 4  # conv, BN, ReLU, max-pool
    final = res["exits"][-1]["head"]
    assert final["name"] == "avgpool+fc" and final["macs"] == 512 * 1000
    assert final["kernels"] == 2  # mean, addmm (flatten and the weight transpose are views)
    assert final["param_bytes"] == 4 * (512 * 1000 + 1000)
    # Early head: mean, addmm, ReLU, addmm (dropout is a no-op in eval).
    assert res["exits"][0]["head"]["kernels"] == 4
    assert res["exits"][0]["head"]["macs"] == 64 * 256 + 256 * 1000


def test_measure_module_counts_kernels_bytes_and_skips_views():
    head = nn.Sequential(nn.Flatten(1), nn.Linear(12, 5)).eval()
    cost, out = measure_module(head, torch.randn(1, 3, 2, 2))
    assert out.shape == (1, 5)
    assert cost["kernels"] == 1  # addmm only; view and t are metadata
    assert cost["macs"] == 60 and cost["flops"] == 120
    assert cost["param_bytes"] == 4 * (60 + 5)
    assert cost["activation_bytes"] == 4 * (12 + 5)  # input read + output written, weights excluded
    assert cost["output_shape"] == [5]

    conv = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.ReLU(inplace=True)).eval()
    cost, _ = measure_module(conv, torch.randn(1, 2, 5, 5))
    assert cost["kernels"] == 2
    assert cost["macs"] == 5 * 5 * 4 * 2 * 9
    assert cost["activation_bytes"] == 4 * (2 * 25 + 4 * 25 + 2 * 4 * 25)


def test_profiling_is_deterministic():
    a = profile_model("resnet18", input_shape=(3, 64, 64))
    b = profile_model("resnet18", input_shape=(3, 64, 64))
    assert a == b
    assert a["blocks"][-1]["output_shape"] == [512, 2, 2]
    assert a["totals"]["macs"] < 0.1 * PUBLISHED_MACS["resnet18"]


def test_profile_model_errors():
    with pytest.raises(UnknownNameError, match="efficientnet_b0"):
        profile_model("alexnet")
    with pytest.raises(ConfigError, match="input_shape"):
        profile_model("resnet18", input_shape=(1, 64, 64))


def test_write_profile_keeps_hand_set_accuracies(regenerated, tmp_path, monkeypatch):
    cached = {"resnet18": _yaml(regenerated["resnet18"])}
    fake = profile_model("resnet18", input_shape=(3, 32, 32))
    monkeypatch.setattr(profiling, "profile_model", lambda name: fake)

    path = tmp_path / "resnet18.yaml"
    data = cached["resnet18"]
    data["exits"][1]["accuracy"] = 0.123
    data["exits"][1]["accuracy_source"] = "hand-set in a test"
    path.write_text(yaml.safe_dump(data))

    write_profile("resnet18", path)
    fresh = _yaml(path)
    assert fresh["exits"][1]["accuracy"] == 0.123
    assert fresh["exits"][1]["accuracy_source"] == "hand-set in a test"
    assert fresh["exits"][0]["accuracy"] == DEFAULT_EXIT_ACCURACY["resnet18"][0][0]
    # The costs are the new ones.
    assert fresh["blocks"][0]["macs"] == fake["blocks"][0]["macs"]
    assert load_model_profile(path).exits[1].accuracy == pytest.approx(0.123)

    data["exits"][1]["accuracy"] = 1.5
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"exits\[1\]\.accuracy"):
        write_profile("resnet18", path)


def test_default_accuracy_table():
    finals = {"efficientnet_b0": 0.7769, "mobilenet_v2": 0.7188, "resnet18": 0.6976, "efficientnet_lite0": 0.751}
    for name, rows in DEFAULT_EXIT_ACCURACY.items():
        accs = [a for a, _ in rows]
        assert accs[-1] == finals[name]
        assert accs == sorted(accs) and len(set(accs)) == len(accs)
        assert all(src.startswith("ASSUMPTION") for _, src in rows[:-1])
        assert ("Google's EfficientNet-Lite release" if name == "efficientnet_lite0" else "torchvision") in rows[-1][1]
    assert [a for a, _ in DEFAULT_EXIT_ACCURACY["efficientnet_b0"]] == [0.40, 0.56, 0.67, 0.73, 0.7769]
