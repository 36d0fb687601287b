"""The spatial-channel attention of the edge-cloud split (e4gym.dnn.attention) and its importance statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e4gym.dnn.attention import SpatialChannelAttention, importance_concentration, offloaded_mass
from e4gym.errors import ConfigError


def test_importance_is_a_distribution_over_channels_that_follows_the_activations() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 32, 7, 7)
    x[:, 5] *= 20.0  # one loud channel
    y, imp = SpatialChannelAttention(32)(x)
    assert y.shape == x.shape and imp.shape == (3, 32)
    assert torch.all(imp >= 0) and torch.allclose(imp.sum(dim=1), torch.ones(3))
    assert torch.all(imp.argmax(dim=1) == 5)
    learned = SpatialChannelAttention(32, learned=True)
    assert sum(p.numel() for p in learned.parameters()) == (32 * 2 + 2) + (2 * 32 + 32) + 2 * 49  # MLP C->C/16->C, conv
    assert learned(x)[1].shape == (3, 32)


def test_concentration_is_one_for_uniform_importance_and_grows_with_concentration() -> None:
    uniform = np.full((1, 100), 0.01)
    assert importance_concentration(uniform)[0] == pytest.approx(1.0, abs=0.02)
    assert offloaded_mass(uniform, 0.5)[0] == pytest.approx(0.5)
    # A power law m(s) = s**3 sampled over 1000 channels: its fit recovers 3.
    s = np.linspace(0, 1, 1001)
    imp = np.diff(s**3)[None]
    assert importance_concentration(imp)[0] == pytest.approx(3.0, rel=0.02)
    skewed = np.sort(np.random.default_rng(0).pareto(1.5, size=(4, 200)), axis=1)
    assert np.all(importance_concentration(skewed) > 2.0)


def test_bad_inputs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        SpatialChannelAttention(8)(torch.zeros(8, 4, 4))
    with pytest.raises(ConfigError, match="odd kernel"):
        SpatialChannelAttention(8, kernel=4)
    with pytest.raises(ConfigError, match="at least 10 channels"):
        importance_concentration(np.ones((1, 4)))


@pytest.mark.slow
def test_the_fit_on_real_frames_is_what_the_emulator_draws() -> None:
    """benchmarks/importance_fit.py on every 8th frame: the pretrained Lite0's split gives the fitted beta."""
    import importlib.util
    from pathlib import Path

    from e4gym.dnn.offload import CONCENTRATION_SPREAD, DEFAULT_CONCENTRATION

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "importance_fit.py"
    spec = importlib.util.spec_from_file_location("importance_fit", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    with torch.random.fork_rng(devices=[]):
        threads = torch.get_num_threads()
        try:
            imp = mod.split_importance(every=8)
        finally:
            torch.set_num_threads(threads)
    beta = importance_concentration(np.concatenate(list(imp.values())))
    assert np.median(beta) == pytest.approx(DEFAULT_CONCENTRATION, abs=0.1)
    assert np.std(np.log(beta)) < 3 * CONCENTRATION_SPREAD
