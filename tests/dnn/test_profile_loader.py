"""Model profiles: the checked-in YAMLs load, works are consistent, malformed files are refused."""

from __future__ import annotations

import copy

import pytest

from e4gym._yaml import load_yaml
from e4gym.dnn import available_models, load_model_profile
from e4gym.dnn.profile import parse_model_profile
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.paths import config_dir


def test_checked_in_profiles_load() -> None:
    assert {"efficientnet_b0", "mobilenet_v2", "resnet18"} <= set(available_models())
    p = load_model_profile("efficientnet_b0")
    assert p.n_exits == 5  # E4: EfficientNet-B0 with five exits
    accs = [e.accuracy for e in p.exits]
    assert accs == sorted(accs)


def test_frame_work_is_prefix_plus_head() -> None:
    p = load_model_profile("efficientnet_b0")
    for e, spec in enumerate(p.exits):
        w = p.frame_work(e)
        assert w.n_blocks == spec.after_block + 2
        assert w.total_flops == pytest.approx(sum(b.flops for b in p.blocks[: spec.after_block + 1]) + spec.head.flops)
    assert p.frame_work(-1).key == p.frame_work(p.n_exits - 1).key
    blocks = sum((p.block_work(i) for i in range(1, p.n_blocks)), p.block_work(0)) + p.head_work(p.n_exits - 1)
    assert blocks.total_flops == pytest.approx(p.frame_work().total_flops)


def test_unknown_model_and_exit() -> None:
    with pytest.raises(UnknownNameError, match="known models"):
        load_model_profile("efficientnet_b9")
    with pytest.raises(UnknownNameError, match=r"exits 0\.\.4"):
        load_model_profile("efficientnet_b0").frame_work(7)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d["blocks"][0].__setitem__("flops", -5), r"'blocks\[0\]\.flops' must be >= 0"),
        (lambda d: d["exits"][1].__setitem__("after_block", 0), "larger than the previous exit"),
        (lambda d: d["exits"][0].__setitem__("after_block", 99), "an index < 9"),
        (lambda d: d["exits"][0].__setitem__("accuracy", 1.5), r"accuracy' must be <= 1\.0"),
        (lambda d: d.__setitem__("blocks", []), "'blocks' must be a non-empty list"),
        (lambda d: d["blocks"][0].__setitem__("kernelz", 1), "unknown field"),
    ],
)
def test_malformed_profile(mutate, match) -> None:
    data = copy.deepcopy(load_yaml(config_dir() / "models" / "efficientnet_b0.yaml"))
    mutate(data)
    with pytest.raises(ConfigError, match=match):
        parse_model_profile(data, "bad.yaml")
