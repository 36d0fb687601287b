"""EfficientNet-B0, MobileNet-V2 and ResNet-18 in plain PyTorch, state-dict compatible with torchvision.

torchvision is not a dependency of e4gym (its compiled ops do not load on every board image), so the three
backbones are written here from scratch. Module structure, hyper-parameters and initialisation follow
torchvision's ``efficientnet_b0``, ``mobilenet_v2`` and ``resnet18`` exactly, so a state dict saved from
torchvision (e.g. a local copy of the ImageNet weights file ``efficientnet_b0_rwightman-*.pth``) loads with
``load_state_dict(sd, strict=True)`` and gives the same outputs.

Parameter counts (1000 classes): EfficientNet-B0 5,288,548; MobileNet-V2 3,504,872; ResNet-18 11,689,512.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from e4gym.errors import ConfigError, UnknownNameError

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "Bottleneck",
    "Conv2dNormActivation",
    "EfficientNet",
    "InvertedResidual",
    "MBConv",
    "MobileNetV2",
    "ResNet",
    "SqueezeExcitation",
    "StochasticDepth",
    "build_backbone",
    "check_state_dict",
    "efficientnet_b0",
    "load_torchvision_weights",
    "make_divisible",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count ``v`` to a multiple of ``divisor`` (torchvision's ``_make_divisible``).

    Never goes below ``min_value`` (default ``divisor``) nor more than 10 % below ``v``.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# --------------------------------------------------------------------------------------------------------
# Building blocks (torchvision.ops.misc / torchvision.ops.stochastic_depth)
# --------------------------------------------------------------------------------------------------------


def _init_conv_or_norm(m: nn.Module) -> bool:
    """torchvision's initialisation of convolutions and norms; returns whether ``m`` was one."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
        return True
    if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
        return True
    return False


class Conv2dNormActivation(nn.Sequential):
    """Conv2d → BatchNorm2d → activation, as ``torchvision.ops.misc.Conv2dNormActivation``.

    Children are ``0`` (conv, no bias), ``1`` (norm) and ``2`` (activation, omitted when
    ``activation_layer`` is None). Padding keeps the spatial size at stride 1.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        dilation: int = 1,
        inplace: bool = True,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=norm_layer is None,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=inplace))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (torchvision's ``SqueezeExcitation``): ``x * sigmoid(fc2(act(fc1(pool(x)))))``.

    Children: ``avgpool``, ``fc1`` (1×1 conv, with bias), ``fc2`` (1×1 conv, with bias), ``activation``,
    ``scale_activation``.
    """

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
        scale_activation: Callable[[], nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: Tensor) -> Tensor:
        """Scale the channels of ``x`` (N, C, H, W) by their excitation in (0, 1)."""
        scale = self.avgpool(x)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        scale = self.scale_activation(scale)
        return scale * x


class StochasticDepth(nn.Module):
    """Randomly drop a residual branch in training (``torchvision.ops.StochasticDepth``); identity in eval.

    Args:
        p: probability of dropping (zeroing) the branch, in [0, 1].
        mode: ``"row"`` drops per sample, ``"batch"`` the whole batch at once.
    """

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"stochastic depth probability must be in [0, 1], got {p}")
        if mode not in ("row", "batch"):
            raise ValueError(f"stochastic depth mode must be 'row' or 'batch', got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` (eval, or p == 0) or ``x`` times a Bernoulli(1-p)/(1-p) mask."""
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


# --------------------------------------------------------------------------------------------------------
# EfficientNet (torchvision.models.efficientnet)
# --------------------------------------------------------------------------------------------------------


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation (torchvision's ``MBConv``).

    ``block`` holds: expand 1×1 (only if ``expand_ratio != 1``), depthwise k×k, SE, project 1×1.
    """

    def __init__(
        self,
        input_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand_ratio: float,
        stochastic_depth_prob: float,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MBConv stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and input_channels == out_channels
        expanded = make_divisible(input_channels * expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded != input_channels:
            layers.append(
                Conv2dNormActivation(
                    input_channels, expanded, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.SiLU
                )
            )
        layers.append(
            Conv2dNormActivation(
                expanded,
                expanded,
                kernel_size=kernel,
                stride=stride,
                groups=expanded,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        )
        squeeze = max(1, input_channels // 4)
        layers.append(SqueezeExcitation(expanded, squeeze, activation=lambda: nn.SiLU(inplace=True)))
        layers.append(
            Conv2dNormActivation(
                expanded, out_channels, kernel_size=1, norm_layer=norm_layer, activation_layer=None
            )
        )
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) → (N, C_out, H/stride, W/stride), adding the input when the shapes match."""
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result


# (expand_ratio, kernel, stride, input_channels, out_channels, num_layers) of EfficientNet-B0.
_EFFICIENTNET_B0_SETTING = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


class EfficientNet(nn.Module):
    """EfficientNet (torchvision's ``EfficientNet``) for width and depth multiplier 1 (B0).

    ``features.0`` stem, ``features.1``..``features.7`` MBConv stages, ``features.8`` 1×1 head conv,
    ``avgpool``, ``classifier`` = (Dropout, Linear).
    """

    def __init__(
        self,
        setting: tuple[tuple[int, int, int, int, int, int], ...] = _EFFICIENTNET_B0_SETTING,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3, setting[0][3], kernel_size=3, stride=2, norm_layer=norm_layer, activation_layer=nn.SiLU
            )
        ]
        total_blocks = sum(s[5] for s in setting)
        block_id = 0
        for expand, kernel, stride, cin, cout, n in setting:
            stage: list[nn.Module] = []
            for i in range(n):
                sd_prob = stochastic_depth_prob * float(block_id) / total_blocks
                stage.append(
                    MBConv(
                        cin if i == 0 else cout,
                        cout,
                        kernel,
                        stride if i == 0 else 1,
                        expand,
                        sd_prob,
                        norm_layer,
                    )
                )
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = setting[-1][4]
        last_out = 4 * last_in
        layers.append(
            Conv2dNormActivation(
                last_in, last_out, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.SiLU
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last_out, num_classes))

        for m in self.modules():
            if _init_conv_or_norm(m):
                continue
            if isinstance(m, nn.Linear):
                init_range = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -init_range, init_range)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) → logits (N, num_classes)."""
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def efficientnet_b0(num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B0 as ``torchvision.models.efficientnet_b0()`` (dropout 0.2, default BatchNorm2d)."""
    return EfficientNet(_EFFICIENTNET_B0_SETTING, dropout=0.2, num_classes=num_classes)


# --------------------------------------------------------------------------------------------------------
# MobileNet-V2 (torchvision.models.mobilenetv2)
# --------------------------------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """MobileNet-V2 inverted residual (torchvision's ``InvertedResidual``); layers live in ``conv``."""

    def __init__(
        self,
        inp: int,
        oup: int,
        stride: int,
        expand_ratio: int,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        self.stride = stride
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(
                Conv2dNormActivation(
                    inp, hidden, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6
                )
            )
        layers.extend(
            [
                Conv2dNormActivation(
                    hidden,
                    hidden,
                    stride=stride,
                    groups=hidden,
                    norm_layer=norm_layer,
                    activation_layer=nn.ReLU6,
                ),
                nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
                norm_layer(oup),
            ]
        )
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        """(N, inp, H, W) → (N, oup, H/stride, W/stride)."""
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


# (t = expand ratio, c = channels, n = repeats, s = stride) of MobileNet-V2.
_MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNet-V2 (torchvision's ``MobileNetV2``, width 1.0).

    ``features.0`` stem, ``features.1``..``features.17`` inverted residuals, ``features.18`` 1×1 conv to 1280,
    then a functional global average pool and ``classifier`` = (Dropout, Linear). No ``avgpool`` module.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        dropout: float = 0.2,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [
            Conv2dNormActivation(3, input_channel, stride=2, norm_layer=norm_layer, activation_layer=nn.ReLU6)
        ]
        for t, c, n, s in _MOBILENET_V2_SETTING:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(
                    InvertedResidual(
                        input_channel, output_channel, s if i == 0 else 1, t, norm_layer=norm_layer
                    )
                )
                input_channel = output_channel
        features.append(
            Conv2dNormActivation(
                input_channel,
                self.last_channel,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.ReLU6,
            )
        )
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))

        for m in self.modules():
            if _init_conv_or_norm(m):
                continue
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) → logits (N, num_classes)."""
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """MobileNet-V2 as ``torchvision.models.mobilenet_v2()`` (width 1.0, dropout 0.2, default BatchNorm2d)."""
    return MobileNetV2(num_classes=num_classes)


# --------------------------------------------------------------------------------------------------------
# ResNet-18 (torchvision.models.resnet)
# --------------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block (torchvision's ``BasicBlock``): two 3×3 convs and an optional ``downsample``."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """(N, inplanes, H, W) → (N, planes, H/stride, W/stride)."""
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet bottleneck block (torchvision's ``Bottleneck``, ResNet V1.5: the stride on the 3×3 conv): 1×1,
    3×3 and 1×1 convs widening to ``planes · 4`` channels, and an optional ``downsample``."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """(N, inplanes, H, W) → (N, 4 · planes, H/stride, W/stride)."""
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet (torchvision's ``ResNet``): ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``..``layer4``,
    ``avgpool``, ``fc``; basic blocks (ResNet-18) or bottlenecks (ResNet-50)."""

    def __init__(self, layers: tuple[int, int, int, int] = (2, 2, 2, 2), num_classes: int = 1000,
                 block: type[BasicBlock] | type[Bottleneck] = BasicBlock) -> None:
        super().__init__()
        self.block = block
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        block, downsample = self.block, None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) → logits (N, num_classes)."""
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 as ``torchvision.models.resnet18()``."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 as ``torchvision.models.resnet50()`` (V1.5; 25,557,032 parameters at 1000 classes)."""
    return ResNet((3, 4, 6, 3), num_classes=num_classes, block=Bottleneck)


# --------------------------------------------------------------------------------------------------------
# Registry and weights
# --------------------------------------------------------------------------------------------------------

BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    "efficientnet_b0": efficientnet_b0,
    "mobilenet_v2": mobilenet_v2,
    "resnet18": resnet18,
}


def build_backbone(name: str, num_classes: int = 1000) -> nn.Module:
    """Build a randomly initialised backbone by its torchvision name.

    Args:
        name: ``efficientnet_b0``, ``mobilenet_v2`` or ``resnet18``.
        num_classes: size of the classifier's output (1000 for ImageNet weights).

    Raises:
        UnknownNameError: ``name`` is not one of the known backbones (the message lists them).
        ConfigError: ``num_classes`` is not a positive integer.
    """
    if name not in BACKBONES:
        raise UnknownNameError(f"unknown backbone '{name}'; known backbones: {sorted(BACKBONES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return BACKBONES[name](num_classes)


def _unwrap_state_dict(obj: object, path: Path) -> Mapping[str, Tensor]:
    """Accept a plain state dict, or one wrapped under ``state_dict`` or ``model`` (common checkpoints)."""
    if isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                return inner
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ConfigError(
            f"{path}: expected a state dict (a mapping of parameter names to tensors, as saved by "
            f"torch.save(model.state_dict(), path)), got {type(obj).__name__}"
        )
    return obj


def _names(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], source: str = "state dict") -> None:
    """Check that ``state_dict`` matches ``model``'s keys and shapes exactly.

    Raises:
        ConfigError: names the missing keys, the unexpected keys and the keys whose shapes differ.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_names(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches (file != model): {_names(shapes)}")
        raise ConfigError(
            f"{source} does not match {type(model).__name__} ({len(expected)} keys expected); "
            + "; ".join(parts)
            + ". Use a torchvision state dict of the same architecture and number of classes."
        )


def load_torchvision_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a local torchvision ``.pth`` state dict into ``model`` strictly and return ``model``.

    ``model`` is a backbone from :func:`build_backbone`, or a multi-exit network (anything with a
    ``load_backbone_state_dict`` method), in which case the weights go into its backbone part and the exit
    heads keep their values. The file is read with ``torch.load(weights_only=True, map_location="cpu")``;
    nothing is downloaded.

    Raises:
        ConfigError: the file is missing or unreadable, is not a state dict, or its keys or shapes do not
            match the model (the message names the missing and unexpected keys).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found (pass the path of a local torchvision .pth file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (UnpicklingError, RuntimeError, ...)
        raise ConfigError(
            f"{path}: cannot read it as a PyTorch state dict with weights_only=True ({exc}); save the "
            f"weights with torch.save(model.state_dict(), path)"
        ) from exc
    state_dict = _unwrap_state_dict(obj, path)
    loader = getattr(model, "load_backbone_state_dict", None)
    target = getattr(model, "backbone", model) if loader is not None else model
    check_state_dict(target, state_dict, source=str(path))
    if loader is not None:
        loader(state_dict)
    else:
        model.load_state_dict(state_dict, strict=True)
    return model
