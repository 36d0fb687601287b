"""Any network into the emulator: `e4gym profile --module pkg.mod:factory` (issue 15), its errors, and the
ResNet-50 and tiny-YOLOv3 profiles it wrote to configs/models."""

from __future__ import annotations

import textwrap

import gymnasium as gym
import numpy as np
import pytest
import yaml

import e4gym  # noqa: F401  (registers the envs)
from e4gym.cli import main
from e4gym.dnn.profile import load_model_profile
from e4gym.dnn.profiling import load_factory, profile_module, write_module_profile
from e4gym.dnn.sequences import resnet50_blocks, tiny_yolov3_blocks
from e4gym.errors import ConfigError
from e4gym.paths import REPO_ROOT

CHECKED_IN = REPO_ROOT / "configs" / "models"
COST_KEYS = ("name", "macs", "flops", "param_bytes", "activation_bytes", "kernels", "output_shape")

FACTORIES = """
import torch
from torch import nn

def small():  # two conv blocks and a classifier, 3x32x32 in
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.ReLU()),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(16, 10)),
    )

def empty():
    return nn.Sequential()

def not_a_sequence():
    return nn.Conv2d(3, 8, 3)

def wrong_channels():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(4, 8, 3))

class Pair(nn.Module):
    def forward(self, x):
        return x, x

def tuple_out():
    return nn.Sequential(nn.Conv2d(3, 8, 3), Pair())

def raises():
    raise RuntimeError("no weights here")

NOT_CALLABLE = 3
"""


@pytest.fixture
def factories(tmp_path, monkeypatch):
    """A module ``user_nets`` on the path, as a user's own package would be."""
    (tmp_path / "user_nets.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_nets"


def _yaml(path):
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------------------------------------- the profiles


@pytest.mark.parametrize(("name", "spec", "shape", "classes"), [
    ("resnet50", "e4gym.dnn.sequences:resnet50_blocks", (3, 224, 224), 1000),
    ("tiny_yolov3", "e4gym.dnn.sequences:tiny_yolov3_blocks", (3, 416, 416), 80),
])
def test_checked_in_profiles_are_what_the_command_writes(tmp_path, name, spec, shape, classes) -> None:
    kept = _yaml(CHECKED_IN / f"{name}.yaml")
    fresh = _yaml(write_module_profile(spec, tmp_path / f"{name}.yaml", name=name, input_shape=shape,
                                       num_classes=classes, accuracies=[0.5]))
    for key in ("name", "input_shape", "num_classes", "source", "totals"):
        assert fresh[key] == kept[key], key
    assert [{k: b[k] for k in COST_KEYS} for b in fresh["blocks"]] == [
        {k: b[k] for k in COST_KEYS} for b in kept["blocks"]]
    assert [(e["after_block"], e["head"]) for e in fresh["exits"]] == [(e["after_block"], e["head"])
                                                                       for e in kept["exits"]]
    assert f"`e4gym profile --module {spec} --name {name}" in (CHECKED_IN / f"{name}.yaml").read_text()


def test_resnet50_and_tiny_yolov3_match_their_published_cost() -> None:
    res = load_model_profile("resnet50")
    # torchvision's ResNet50_Weights.IMAGENET1K_V1: 4.09 G multiply-accumulates ("GFLOPS" there), 25,557,032
    # parameters.
    assert res.total_macs == pytest.approx(4.09e9, rel=0.005)
    assert _yaml(CHECKED_IN / "resnet50.yaml")["totals"]["params"] == 25_557_032
    assert res.n_exits == 1 and res.exits[0].accuracy == 0.7613
    yolo = load_model_profile("tiny_yolov3")
    # darknet's yolov3-tiny.cfg at 416x416: 5.56 billion FLOPs (2 per multiply-accumulate).
    assert 2 * yolo.total_macs == pytest.approx(5.56e9, rel=0.005)
    assert yolo.input_shape == (3, 416, 416) and yolo.blocks[-1].output_shape == (2535, 85)
    assert [b.name for b in yolo.blocks] == ["stage0", "stage1", "stage2", "stage3", "stage4", "head"]


@pytest.mark.parametrize("model", ["resnet50", "tiny_yolov3", str(CHECKED_IN / "tiny_yolov3.yaml")])
def test_envs_run_the_new_networks_by_name_and_by_path(model) -> None:
    env = gym.make("e4gym/EarlyExitDVFS-v1", model=model, device="jetson-tx2")
    env.reset(seed=0)
    assert env.action_space.nvec[0] == 1  # one exit: the network's own output
    _, _, _, _, fast = env.step(env.action_space.nvec - 1)
    _, _, _, _, slow = env.step(np.array([0, 0, 0]))
    assert 0 < fast["run_ms"] < slow["run_ms"] and fast["energy_j"] > 0


def test_a_deeper_network_costs_more_on_the_board() -> None:
    env = {m: gym.make("e4gym/EarlyExitDVFS-v1", model=m, device="jetson-tx2") for m in ("resnet18", "resnet50")}
    runs = {}
    for m, e in env.items():
        e.reset(seed=0)
        top = e.action_space.nvec - 1
        runs[m] = e.step(top)[4]["run_ms"]
    assert runs["resnet50"] > 1.5 * runs["resnet18"]  # 4.1 against 1.8 G multiply-accumulates


# ---------------------------------------------------------------------------------------------- any module


def test_a_users_sequence_profiles_with_early_exits_and_runs_in_an_env(factories, tmp_path) -> None:
    out = tmp_path / "small.yaml"
    path = write_module_profile(f"{factories}:small", out, input_shape=(3, 32, 32), exits=[0], num_classes=10,
                                accuracies=[0.4, 0.7], accuracy_source="ASSUMPTION: a test")
    data = _yaml(path)
    assert data["name"] == "small" and [b["name"] for b in data["blocks"]] == ["0", "1", "2"]
    # Hand-checked: 3x3 convs, 3 -> 8 at 32x32 and 8 -> 16 at 16x16 (stride 2), then the 16 -> 10 classifier.
    assert [b["macs"] for b in data["blocks"]] == [32 * 32 * 8 * 27, 16 * 16 * 16 * 72, 16 * 10]
    early, final = data["exits"]
    assert early["after_block"] == 0 and early["head"]["macs"] == 8 * 256 + 256 * 10
    assert final["after_block"] == 2 and final["head"]["kernels"] == 0 and final["head"]["output_shape"] == [10]
    assert data["totals"]["macs"] == sum(b["macs"] for b in data["blocks"])
    env = gym.make("e4gym/EarlyExitDVFS-v1", model=str(path))
    env.reset(seed=0)
    assert env.action_space.nvec[0] == 2
    assert env.step(np.array([0, 5, 5]))[4]["run_ms"] < env.step(np.array([1, 5, 5]))[4]["run_ms"]


def test_regenerating_keeps_the_hand_set_accuracies(factories, tmp_path) -> None:
    out = tmp_path / "small.yaml"
    write_module_profile(f"{factories}:small", out, input_shape=(3, 32, 32), accuracies=[0.66],
                         accuracy_source="measured on my data")
    write_module_profile(f"{factories}:small", out, input_shape=(3, 32, 32))  # no --accuracy: kept
    exit0 = _yaml(out)["exits"][0]
    assert (exit0["accuracy"], exit0["accuracy_source"]) == (0.66, "measured on my data")


def test_a_multi_exit_network_keeps_its_own_heads(factories, tmp_path, monkeypatch) -> None:
    from e4gym.dnn.multiexit import build_multiexit

    net = build_multiexit("resnet18")
    data = profile_module(net, "resnet18", (3, 64, 64))
    assert [e["after_block"] for e in data["exits"]] == net.exit_after
    assert data["exits"][-1]["head"]["name"] == "avgpool+fc" and data["exits"][0]["head"]["kernels"] == 4
    assert data["totals"]["params"] == 11_689_512  # the backbone's, not the early heads'
    with pytest.raises(ConfigError, match=r"MultiExitNet with its own exits \[1, 2, 3, 4\]; drop --exits"):
        profile_module(net, "resnet18", (3, 64, 64), exits=[1])


@pytest.mark.parametrize(("factory", "kwargs", "message"), [
    ("empty", {}, r"empty: the network has no blocks; return an nn\.Sequential"),
    ("not_a_sequence", {}, r"returned a Conv2d, not an ordered sequence of blocks"),
    ("wrong_channels", {}, r"block 1 \('1'\) fails on an input of shape \(1, 8, 30, 30\): RuntimeError: "),
    ("tuple_out", {}, r"block 1 \('1'\) fails .*returned a tuple, not a tensor"),
    ("raises", {}, r"calling the factory failed \(RuntimeError: no weights here\)"),
    ("NOT_CALLABLE", {}, r"'NOT_CALLABLE' is a int, not callable"),
    ("nothing_here", {}, r"has no attribute 'nothing_here'"),
    ("small", {"exits": [2]}, r"exits \[2\] must be increasing block indices in 0\.\.1"),
    ("small", {"exits": [1, 0]}, r"exits \[1, 0\] must be increasing"),
    ("small", {"input_shape": (3, 0, 4)}, r"input shape must be positive sizes"),
    ("small", {"accuracies": [0.5, 0.6]}, r"--accuracy needs 1 values in \(0, 1\]"),
    ("small", {"accuracies": None}, r"small: pass --accuracy with 1 value\(s\)"),
])
def test_bad_modules_get_one_line_naming_the_problem(factories, tmp_path, factory, kwargs, message) -> None:
    kwargs = {"input_shape": (3, 32, 32), "accuracies": [0.5], **kwargs}
    with pytest.raises(ConfigError, match=message) as info:
        write_module_profile(f"{factories}:{factory}", tmp_path / "x.yaml", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.yaml").exists()  # nothing half-written


def test_an_exit_needs_a_feature_map(factories, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"an exit after block 0 \('0'\) needs a \(C, H, W\) feature map, its "
                                          r"output has shape \(10,\)"):
        from torch import nn

        classifier = load_factory(f"{factories}:small")()[2]  # (16, H, W) -> (10,)
        profile_module(nn.Sequential(classifier, nn.Linear(10, 10)), "x", (16, 4, 4), exits=[0])


@pytest.mark.parametrize(("spec", "message"), [
    ("no_colon", r"expected 'package\.module:factory'"),
    ("e4gym.nope:f", r"cannot import 'e4gym\.nope' \(ModuleNotFoundError"),
    (":f", r"expected 'package\.module:factory'"),
])
def test_bad_factory_specs(spec, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_factory(spec)


def test_the_cli_profiles_a_module(factories, tmp_path, capsys) -> None:
    out = tmp_path / "small.yaml"
    assert main(["profile", "--module", f"{factories}:small", "--input", "3x32x32", "--exits", "0",
                 "--num-classes", "10", "--accuracy", "0.3", "0.6", "--out", str(out)]) == 0
    assert f"wrote {out}: 3 blocks, 2 exits" in capsys.readouterr().out
    assert load_model_profile(out).n_exits == 2
    assert main(["profile", "--module", f"{factories}:small", "--input", "3by32", "--out", str(out)]) == 2
    assert "--input '3by32': expected sizes joined by 'x'" in capsys.readouterr().err


def test_the_sequences_are_the_published_architectures() -> None:
    import torch

    with torch.no_grad():
        assert resnet50_blocks()(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
        # Both scales' predictions, 3 anchors x (13^2 + 26^2) boxes of 4 + 1 + 80 values.
        assert tiny_yolov3_blocks()(torch.zeros(1, 3, 416, 416)).shape == (1, 2535, 85)
    assert sum(p.numel() for p in tiny_yolov3_blocks().parameters()) == 8_852_366
