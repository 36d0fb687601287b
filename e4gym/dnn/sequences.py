"""Networks as ordered sequences of blocks, for ``e4gym profile --module pkg.mod:factory``.

A factory here returns an :class:`torch.nn.Sequential` whose children are the blocks in the order they run:
each takes the previous block's output (the first takes the image) and the last one's output is the network's
prediction. :func:`e4gym.dnn.profiling.profile_module` profiles any such sequence; these are the networks of
the public TX2 sweep in ``../shared/data`` (NVIDIA-AI-IOT's jetson_benchmarks list):

- :func:`resnet50_blocks`: torchvision's ResNet-50 (V1.5) split as ``stem``, ``layer1`` … ``layer4``,
  ``classifier`` (its modules, so torchvision's state-dict keys under ``<block>.``);
- :func:`tiny_yolov3_blocks`: tiny-YOLOv3 (Redmon & Farhadi, "YOLOv3: An Incremental Improvement", 2018;
  darknet's ``yolov3-tiny.cfg``) at 416×416 for COCO's 80 classes: five convolution + max-pool stages, then the
  two-scale detection head as one block (its second scale reads the fifth stage's 26×26 map, so the head cannot
  be split further as a sequence). The head's output is the raw predictions of both scales concatenated,
  ``(N, 3 · (13² + 26²), 85)``; the box decoding (a sigmoid and an exponential per value) is left out.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from e4gym.dnn.nets import resnet50

__all__ = ["TinyYoloHead", "resnet50_blocks", "tiny_yolov3_blocks"]


def resnet50_blocks(num_classes: int = 1000) -> nn.Sequential:
    """ResNet-50 as six blocks: ``stem`` (conv, BN, ReLU, max-pool), ``layer1`` … ``layer4``, ``classifier``
    (average pool, flatten, fully connected)."""
    net = resnet50(num_classes)
    return nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
            layer1=net.layer1,
            layer2=net.layer2,
            layer3=net.layer3,
            layer4=net.layer4,
            classifier=nn.Sequential(net.avgpool, nn.Flatten(1), net.fc),
        )
    )


def _conv(c_in: int, c_out: int, k: int) -> nn.Sequential:
    """darknet's ``[convolutional]`` with batch_normalize=1, activation=leaky: conv (no bias), BN, LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=1, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.1, inplace=True),
    )


def _predictions(x: Tensor, n_anchors: int) -> Tensor:
    """``(N, anchors · (5 + classes), H, W)`` → ``(N, anchors · H · W, 5 + classes)``."""
    n, c, h, w = x.shape
    return x.view(n, n_anchors, c // n_anchors, h, w).permute(0, 1, 3, 4, 2).reshape(n, -1, c // n_anchors)


class TinyYoloHead(nn.Module):
    """tiny-YOLOv3 after its fifth stage (layers 9–23 of ``yolov3-tiny.cfg``), from the 256-channel 26×26 map:
    max-pool, 512 and 1024 convs (a stride-1 max-pool between them), the 13×13 detection branch, and the 26×26
    branch that upsamples the 13×13 features and concatenates them with the input map."""

    def __init__(self, num_classes: int = 80, n_anchors: int = 3) -> None:
        super().__init__()
        out = n_anchors * (5 + num_classes)
        self.n_anchors = n_anchors
        self.pool = nn.MaxPool2d(2, 2)
        self.conv10 = _conv(256, 512, 3)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))  # darknet's size-2, stride-1 max-pool keeps the 13×13 size
        self.pool_s1 = nn.MaxPool2d(2, 1)
        self.conv12 = _conv(512, 1024, 3)
        self.conv13 = _conv(1024, 256, 1)
        self.conv14 = _conv(256, 512, 3)
        self.detect13 = nn.Conv2d(512, out, 1)  # linear, with bias
        self.conv18 = _conv(256, 128, 1)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv21 = _conv(128 + 256, 256, 3)
        self.detect26 = nn.Conv2d(256, out, 1)

    def forward(self, route: Tensor) -> Tensor:
        """The 26×26×256 map of the fifth stage → both scales' raw predictions ``(N, boxes, 5 + classes)``."""
        x = self.conv13(self.conv12(self.pool_s1(self.pad(self.conv10(self.pool(route))))))
        big = self.detect13(self.conv14(x))
        small = self.detect26(self.conv21(torch.cat([self.upsample(self.conv18(x)), route], dim=1)))
        return torch.cat([_predictions(big, self.n_anchors), _predictions(small, self.n_anchors)], dim=1)


def tiny_yolov3_blocks(num_classes: int = 80) -> nn.Sequential:
    """tiny-YOLOv3 as six blocks: ``stage0`` … ``stage4`` (16, 32, 64, 128, 256 channels: a 3×3 conv, and a
    stride-2 max-pool after the first four) and ``head`` (:class:`TinyYoloHead`). Input ``(N, 3, 416, 416)``."""
    stages: dict[str, nn.Module] = {}
    c_in = 3
    for i, c_out in enumerate((16, 32, 64, 128, 256)):
        layers: list[nn.Module] = [_conv(c_in, c_out, 3)]
        if i < 4:
            layers.append(nn.MaxPool2d(2, 2))
        stages[f"stage{i}"] = nn.Sequential(*layers)
        c_in = c_out
    return nn.Sequential(OrderedDict([*stages.items(), ("head", TinyYoloHead(num_classes))]))
