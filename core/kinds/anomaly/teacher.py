"""The frozen teacher of the anomaly model: ImageNet EfficientNet-Lite0 feature taps."""

from __future__ import annotations

import torch
from torch import nn

from defect_studio.backbones.efficientnet_lite import TAPS, load_efficientnet_lite0, normalize


class Teacher(nn.Module):
    """Frozen EfficientNet-Lite0: images in [0, 1] (gray or RGB) -> features at 1/4, 1/8, 1/16.

    ``pretrained=False`` gives random weights (tests of shapes only).
    """

    def __init__(self, taps: tuple[str, ...] = ("1/4", "1/8", "1/16"),
                 pretrained: bool = True) -> None:
        super().__init__()
        self.taps = tuple(taps)
        self.net = load_efficientnet_lite0(pretrained)
        self.net._conv_head = self.net._bn1 = self.net._fc = None  # classifier unused
        del self.net._blocks[max(TAPS[t][0] for t in self.taps) + 1:]
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(TAPS[t][1] for t in self.taps)

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # always in eval mode

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net.features(normalize(x), self.taps)
