"""The two-stage segmentation + decision network: MixSup baseline and the MFFPA changes.

One class with two switches covers the four variants of the seed paper's ablation:

- mff=False, pa=False: MixSup (Bozic et al. 2021), seg features 1024 ch.
- mff=True:  multi-scale feature fusion (outlook attention) + 15x15 branch, seg features 512 ch.
- pa=True:   pyramid split attention decision head at 1/16 resolution.
- pa=True, mff=False: MixSup seg net with a 64->512 15x15 conv (see docs/models.md: the
  published +PA size cannot hold the 1024-channel conv).

Shapes: input [B, C, H, W] with H, W multiples of 8 -> seg logits [B, 1, H/8, W/8],
decision logits [B].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from defect_studio.errors import UserError
from defect_studio.kinds.segdec.blocks import (
    NORMS,
    WEIGHT_MODULES,
    ConvBlock,
    FeatureNorm,
    OutlookBlock,
    PyramidSplitAttention,
)


class ModelConfigError(UserError):
    """Unknown model name or switch value."""


class ModelInputError(UserError):
    """An input tensor the network cannot take (channels, size)."""


def canonical_name(mff: bool, pa: bool) -> str:
    """The variant name for a switch combination."""
    return {(False, False): "mixsup", (True, False): "mixsup+mff",
            (False, True): "mixsup+pa", (True, True): "mffpa"}[(bool(mff), bool(pa))]


def padded_size(height: int, width: int, multiple: int = 8, min_size: int = 0) -> tuple[int, int]:
    """(H, W) rounded up to a multiple of `multiple` and to at least `min_size`."""
    def up(n: int) -> int:
        n = max(int(n), int(min_size), 1)
        return -(-n // multiple) * multiple
    return up(height), up(width)


def pad_to_multiple(x: torch.Tensor, multiple: int = 8, min_size: int = 0) -> torch.Tensor:
    """Pad [B, C, H, W] at the bottom and right to padded_size(), repeating the edge pixels.

    Edge replication (not zeros) so the padding adds no artificial edge a defect filter
    could fire on; crop outputs back to ceil(H/8) x ceil(W/8) cells afterwards.
    """
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w, multiple, min_size)
    if (ph, pw) == (h, w):
        return x
    return F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")


class MixSupDecisionHead(nn.Module):
    """MixSup decision net: pool, 5x5 1025->8, pool, 8->16, pool, 16->32 (1/64 resolution)."""

    out_channels = 32
    min_input = 64  # three 2x2 pools after the 1/8 seg output

    def __init__(self, in_channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.MaxPool2d(2), ConvBlock(in_channels, 8, 5, norm=norm),
            nn.MaxPool2d(2), ConvBlock(8, 16, 5, norm=norm),
            nn.MaxPool2d(2), ConvBlock(16, 32, 5, norm=norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PADecisionHead(nn.Module):
    """MFFPA decision net at 1/16: pool, 3x3 conv C->384, PSA(384), norm+ReLU, 3x3 conv 384->32.

    The widths are not published; 384 and 3x3 kernels reproduce the paper's size of the
    head (about 2.8 M parameters / 1.6 G MACs at 3x640x232) to within 1 %.
    """

    out_channels = 32
    min_input = 16  # one 2x2 pool after the 1/8 seg output
    width = 384

    def __init__(self, in_channels: int, weight_module: str, norm: str = "instance") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.MaxPool2d(2),
            ConvBlock(in_channels, self.width, 3, norm=norm),
            PyramidSplitAttention(self.width, weight_module),
            FeatureNorm(self.width, mode=norm),
            nn.ReLU(inplace=True),
            ConvBlock(self.width, 32, 3, norm=norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SegDecNet(nn.Module):
    """Segmentation net + decision net, trained end to end (see module docstring)."""

    input_multiple = 8

    def __init__(self, in_channels: int = 3, *, mff: bool = True, pa: bool = True,
                 weight_module: str = "ca", grad_adjust: bool = True,
                 norm: str = "instance") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ModelConfigError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
        if weight_module not in WEIGHT_MODULES:
            raise ModelConfigError(
                f"unknown weight_module {weight_module!r}; choose one of {sorted(WEIGHT_MODULES)}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ModelConfigError(f"in_channels must be a positive integer, got {in_channels!r}")
        self.in_channels = in_channels
        self.mff, self.pa = bool(mff), bool(pa)
        self.weight_module = weight_module
        self.grad_adjust = bool(grad_adjust)
        self.norm = norm
        self.name = canonical_name(self.mff, self.pa)

        def block(c_in: int, c_out: int, k: int) -> ConvBlock:
            return ConvBlock(c_in, c_out, k, norm=norm)

        self.stem = block(in_channels, 32, 5)
        self.stage1 = nn.Sequential(
            nn.MaxPool2d(2), block(32, 64, 5), block(64, 64, 5), block(64, 64, 5))
        self.stage2 = nn.Sequential(nn.MaxPool2d(2), *[block(64, 64, 5) for _ in range(4)])
        if self.mff:
            self.stage3 = nn.Sequential(nn.MaxPool2d(2), block(64, 128, 5))
            self.fusion = OutlookBlock(64 + 64 + 128, heads=4, kernel=3)
            self.large = block(128, 256, 15)
            features = 512
        else:
            self.stage3 = nn.MaxPool2d(2)
            self.fusion = None
            features = 512 if self.pa else 1024
            self.large = block(64, features, 15)
        self.seg_features = features
        self.seg_out = nn.Conv2d(features, 1, 1, bias=False)
        nn.init.xavier_normal_(self.seg_out.weight)
        # The MixSup code also normalises the 1x1 seg output (FeatureNorm over the map; its
        # "no bias" shift is still an nn.Parameter, so it trains): only with norm="original".
        self.seg_norm = FeatureNorm(1, mode="original") if norm == "original" else None

        if self.pa:
            self.dec_body: nn.Module = PADecisionHead(features + 1, weight_module, norm)
        else:
            self.dec_body = MixSupDecisionHead(features + 1, norm)
        self.dec_fc = nn.Linear(2 * self.dec_body.out_channels + 2, 1)
        self.min_input_size = max(self.input_multiple, self.dec_body.min_input)

    # -- the two sub-networks, for parameter accounting and freezing --
    def seg_modules(self) -> list[nn.Module]:
        """Modules of the segmentation net."""
        mods = [self.stem, self.stage1, self.stage2, self.stage3, self.large, self.seg_out]
        mods += [self.seg_norm] if self.seg_norm is not None else []
        return mods + ([self.fusion] if self.fusion is not None else [])

    def dec_modules(self) -> list[nn.Module]:
        """Modules of the decision net."""
        return [self.dec_body, self.dec_fc]

    def spec(self) -> dict:
        """Everything needed to rebuild this exact architecture (see build_from_spec)."""
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "switches": {"mff": self.mff, "pa": self.pa, "weight_module": self.weight_module,
                         "grad_adjust": self.grad_adjust, "norm": self.norm},
        }

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ModelInputError when x is not [B, in_channels, H, W] with usable H, W."""
        if x.dim() != 4:
            raise ModelInputError(f"expected a [B, C, H, W] tensor, got shape {tuple(x.shape)}")
        _, c, h, w = x.shape
        if c != self.in_channels:
            raise ModelInputError(
                f"the model takes {self.in_channels}-channel images, got {c} channels "
                f"(convert the images or build the model with in_channels={c})")
        m, lo = self.input_multiple, self.min_input_size
        if h % m or w % m or h < lo or w < lo:
            raise ModelInputError(
                f"input size {w}x{h} (WxH) does not fit {self.name}: width and height must be "
                f"multiples of {m} and at least {lo}; pad or resize the image")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] in [0, 1] -> (seg_logits [B, 1, H/8, W/8], dec_logits [B])."""
        self.check_input(x)
        s1 = self.stage1(self.stem(x))
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        if self.fusion is not None:
            fused = self.fusion(torch.cat([F.avg_pool2d(s1, 4), F.avg_pool2d(s2, 2), s3], dim=1))
            feats = torch.cat([fused, self.large(s3)], dim=1)
        else:
            feats = self.large(s3)
        seg = self.seg_out(feats)
        if self.seg_norm is not None:
            seg = self.seg_norm(seg)

        # Gradient-flow adjustment: the decision loss must not shape the seg net, on all
        # three paths (features, seg map into the head, seg map into the global pools).
        f_in, s_in = (feats.detach(), seg.detach()) if self.grad_adjust else (feats, seg)
        d = self.dec_body(torch.cat([f_in, s_in], dim=1))
        pooled = torch.cat([
            d.amax(dim=(2, 3)), d.mean(dim=(2, 3)),
            s_in.amax(dim=(2, 3)), s_in.mean(dim=(2, 3)),
        ], dim=1)
        return seg, self.dec_fc(pooled).squeeze(1)
