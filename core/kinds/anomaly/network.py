"""The cold-start anomaly model: a frozen teacher and a student that learns its features.

Design (choices in docs/models.md "Anomaly model"):
reverse distillation. The frozen EfficientNet-Lite0 teacher (defect_studio.kinds.anomaly.teacher)
gives features at 1/4 (24 ch), 1/8 (40 ch) and 1/16 (112 ch). A one-class bottleneck squeezes
the three into one compact 1/16 embedding; the student decoder rebuilds the teacher's three
maps from it. Trained on good parts only, the student reproduces normal texture and fails
on what it never saw: the per-pixel disagreement 1 - cos(teacher, student) at each scale,
upsampled to the input and summed, Gaussian-smoothed, is the anomaly map; its maximum is
the image score.

Two switchable additions of the seed paper live in the bottleneck/decoder:
``SSPCAB`` (a masked-centre convolution that must predict its input from the context
around each position; its reconstruction MSE is an extra loss) and ``SimAM``
(parameter-free attention after each decoder stage).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from defect_studio.kinds.anomaly.teacher import Teacher

SIMAM_LAMBDA = 1e-4


class SimAM(nn.Module):
    """Parameter-free attention: x * sigmoid((x - mu)^2 / (4 (var + lambda)) + 0.5), per channel
    over the spatial positions (var with n - 1 in the denominator, as in the SimAM paper)."""

    def __init__(self, lam: float = SIMAM_LAMBDA) -> None:
        super().__init__()
        self.lam = lam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = max(1, x.shape[2] * x.shape[3] - 1)
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        var = d.sum(dim=(2, 3), keepdim=True) / n
        return x * torch.sigmoid(d / (4 * (var + self.lam)) + 0.5)


class SSPCAB(nn.Module):
    """Self-supervised predictive convolutional attentive block.

    Four k x k convolutions look at the corners of a (2k + 2d + 1)-wide window whose
    centre (d pixels around the position) is hidden; their sum, after ReLU and a
    squeeze-excitation channel attention, must reconstruct the input at the centre.
    ``forward`` returns the output and keeps ``last_loss`` = MSE(output, input).
    """

    def __init__(self, channels: int, kernel: int = 1, dilation: int = 1,
                 reduction: int = 8) -> None:
        super().__init__()
        self.k, self.d = kernel, dilation
        self.border = kernel + dilation
        self.corners = nn.ModuleList(nn.Conv2d(channels, channels, kernel) for _ in range(4))
        hidden = max(1, channels // reduction)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1),
                                nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid())
        self.last_loss: torch.Tensor | None = None
        self.last_per_image: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.border
        h, w = x.shape[-2:]
        p = F.pad(x, [b, b, b, b])
        far = self.k + 2 * self.d + 1  # offset of the far corner kernels
        # top-left, top-right, bottom-left, bottom-right corners of the masked window
        offsets = ((0, 0), (0, far), (far, 0), (far, far))
        y = sum(conv(p[..., r:r + h + self.k - 1, c:c + w + self.k - 1])
                for conv, (r, c) in zip(self.corners, offsets))
        y = F.relu(y)
        y = y * self.se(y)
        # per image, so that a share of a batch can be weighed (train --gpus N)
        self.last_per_image = (y - x).pow(2).flatten(1).mean(1)
        self.last_loss = F.mse_loss(y, x)
        return y


def _conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Bottleneck(nn.Module):
    """One-class bottleneck: the three teacher maps fused into one 1/16 embedding."""

    def __init__(self, chans: tuple[int, ...], width: int, sspcab: bool) -> None:
        super().__init__()
        c4, c8, c16 = chans
        self.down4 = nn.Sequential(_conv_bn(c4, 48, 3, 2), _conv_bn(48, 64, 3, 2))
        self.down8 = _conv_bn(c8, 64, 3, 2)
        self.fuse = nn.Sequential(_conv_bn(64 + 64 + c16, width, 1), _conv_bn(width, width, 3))
        self.sspcab = SSPCAB(width) if sspcab else None

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        f4, f8, f16 = feats
        z = self.fuse(torch.cat([self.down4(f4), self.down8(f8), f16], 1))
        return self.sspcab(z) if self.sspcab is not None else z


class Decoder(nn.Module):
    """Student decoder: the embedding -> the teacher's 1/16, 1/8 and 1/4 maps."""

    def __init__(self, chans: tuple[int, ...], width: int, simam: bool) -> None:
        super().__init__()
        c4, c8, c16 = chans
        self.s16 = nn.Sequential(_conv_bn(width, 128), _conv_bn(128, 128))
        self.s8 = nn.Sequential(_conv_bn(128, 64), _conv_bn(64, 64))
        self.s4 = nn.Sequential(_conv_bn(64, 48), _conv_bn(48, 48))
        self.out16, self.out8 = nn.Conv2d(128, c16, 1), nn.Conv2d(64, c8, 1)
        self.out4 = nn.Conv2d(48, c4, 1)
        self.att = nn.ModuleList(SimAM() for _ in range(3)) if simam else None

    def _stage(self, i: int, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = block(x)
        return self.att[i](y) if self.att is not None else y

    def forward(self, z: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        y16 = self._stage(0, self.s16, z)
        y8 = self._stage(1, self.s8, F.interpolate(y16, size=sizes[1], mode="bilinear",
                                                   align_corners=False))
        y4 = self._stage(2, self.s4, F.interpolate(y8, size=sizes[0], mode="bilinear",
                                                   align_corners=False))
        return [self.out4(y4), self.out8(y8), self.out16(y16)]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of [B, 1, H, W] maps (reflect padding); sigma 0 = none."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    r = min(r, (min(x.shape[-2:]) - 1))
    if r < 1:
        return x
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, [r, r, 0, 0], mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, [0, 0, r, r], mode="reflect"), k.view(1, 1, -1, 1))


def disagreement(teacher: list[torch.Tensor], student: list[torch.Tensor],
                 size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Anomaly maps [B, H, W] at ``size``: sum over scales of 1 - cos(t, s), upsampled, smoothed."""
    total = None
    for t, s in zip(teacher, student):
        d = 1 - F.cosine_similarity(t.float(), s.float(), dim=1, eps=1e-6)
        d = F.interpolate(d[:, None], size=size, mode="bilinear", align_corners=False)
        total = d if total is None else total + d
    return gaussian_blur(total, sigma)[:, 0]


def kd_loss(teacher: list[torch.Tensor], student: list[torch.Tensor],
            total: int | None = None) -> torch.Tensor:
    """Mean over scales and pixels of 1 - cos(teacher, student) (the reverse-distillation loss).

    With ``total``: these images' share of the mean over a batch of ``total`` images (the
    sum of their per-image losses / ``total``; 0 for no image).
    """
    if total is None:
        return sum((1 - F.cosine_similarity(t.float(), s.float(), dim=1, eps=1e-6)).mean()
                   for t, s in zip(teacher, student)) / len(teacher)
    return sum((1 - F.cosine_similarity(t.float(), s.float(), dim=1, eps=1e-6))
               .flatten(1).mean(1).sum() for t, s in zip(teacher, student)) / (
                   len(teacher) * total)


class AnomalyNet(nn.Module):
    """Teacher (frozen, not saved) + student (bottleneck and decoder, saved).

    ``forward(x)`` on images in [0, 1] ([B, 1 or 3, H, W]) returns the raw anomaly maps
    [B, H, W]; ``raw_threshold`` (a buffer, saved with the student) is the raw map value
    that calibration put at score 0.5 (see ``to_score``).
    """

    input_multiple = 16
    min_input_size = 32

    def __init__(self, sspcab: bool = True, simam: bool = True, width: int = 256,
                 sigma: float = 4.0, teacher: Teacher | None = None,
                 map_taps: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.teacher = teacher if teacher is not None else Teacher()
        chans = self.teacher.channels
        self.switches = {"sspcab": bool(sspcab), "simam": bool(simam), "width": int(width)}
        self.sigma = float(sigma)
        # taps whose disagreement makes up the anomaly map (the loss always uses all three)
        self.map_taps = tuple(map_taps) if map_taps else self.teacher.taps
        unknown = set(self.map_taps) - set(self.teacher.taps)
        if unknown:
            raise ValueError(f"unknown map taps {sorted(unknown)}; taps: {self.teacher.taps}")
        self.bottleneck = Bottleneck(chans, width, sspcab)
        self.decoder = Decoder(chans, width, simam)
        self.register_buffer("raw_threshold", torch.tensor(1.0))

    # only the student is saved: the teacher comes from its package
    def student_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items()
                if not k.startswith("teacher.")}

    def load_student_state(self, sd: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing[:5]}, "
                               f"unexpected keys {list(unexpected)[:5]}")

    def train(self, mode: bool = True) -> AnomalyNet:
        super().train(mode)
        self.teacher.eval()  # frozen: batch norm keeps its ImageNet statistics
        return self

    def student(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Teacher features -> the student's reconstruction of them."""
        z = self.bottleneck(feats)
        return self.decoder(z, [tuple(f.shape[-2:]) for f in feats])

    def sspcab_loss(self, total: int | None = None) -> torch.Tensor | None:
        """The SSPCAB loss of the last forward (None without SSPCAB); with ``total``, the
        share of its images in the mean over a batch of ``total`` (as kd_loss)."""
        block = self.bottleneck.sspcab
        if block is None:
            return None
        return block.last_loss if total is None else block.last_per_image.sum() / total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.teacher(x)
        keep = [self.teacher.taps.index(t) for t in self.map_taps]
        student = self.student(feats)
        return disagreement([feats[i] for i in keep], [student[i] for i in keep],
                            tuple(x.shape[-2:]), self.sigma)

    def to_score(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw map values -> [0, 1): 1 - 2^(-raw / raw_threshold); the calibrated raw threshold
        maps to 0.5, monotone, 0 at no disagreement."""
        t = self.raw_threshold.clamp_min(1e-8)
        return 1 - torch.pow(2.0, -raw.clamp_min(0) / t)

    def spec(self) -> dict:
        return {"name": "anomaly", "switches": dict(self.switches), "sigma": self.sigma,
                "map_taps": list(self.map_taps),
                "teacher": "efficientnet-lite0", "taps": list(self.teacher.taps)}
