"""Building blocks of the segmentation + decision networks.

Everything here works with batch size 1 in training mode (the trainer accumulates
gradients over single images), so no layer depends on batch statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instance", "original")


class FeatureNorm(nn.Module):
    """Per-sample, per-channel normalisation over the spatial dims, with learnable scale and shift.

    Two formulas (the ``mode`` switch, docs/models.md):

    - ``"instance"``: y = (x - mean) / sqrt(var + eps) * scale + shift, with the population
      variance: InstanceNorm with an affine transform (unit output spread).
    - ``"original"``: y = (x - mean) / sqrt(std + eps) * scale + shift, with the unbiased
      standard deviation, as the MixSup code's FeatureNorm: the output spread is about the
      square root of the input spread.

    Both give ``shift`` for a 1x1 map (instead of NaN).
    """

    def __init__(self, channels: int, eps: float = 1e-3, mode: str = "instance") -> None:
        super().__init__()
        if mode not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {mode!r}")
        self.eps = eps
        self.mode = mode
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.shift = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3]
        if self.mode == "original":
            if n > 1:
                std, mean = torch.std_mean(x, dim=(2, 3), keepdim=True, correction=1)
            else:  # the unbiased std of one value is undefined; the centred map is 0 anyway
                mean, std = x, torch.zeros_like(x)
            return (x - mean) * torch.rsqrt(std + self.eps) * self.scale + self.shift
        if n > 1:
            # The fused kernel is about twice as fast (forward + backward) on CPU as the
            # formula below, with the same result.
            return F.instance_norm(x, weight=self.scale.view(-1), bias=self.shift.view(-1),
                                   eps=self.eps)
        # instance_norm refuses a 1x1 map in training mode; the formula gives the shift.
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.scale + self.shift


class ConvBlock(nn.Sequential):
    """Conv (no bias, Xavier-normal init, 'same' padding) -> FeatureNorm -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int = 1,
                 norm: str = "instance") -> None:
        conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False)
        nn.init.xavier_normal_(conv.weight)
        super().__init__(conv, FeatureNorm(c_out, mode=norm), nn.ReLU(inplace=True))


class OutlookAttention(nn.Module):
    """Outlook attention (VOLO), stride 1, with `heads` heads over a k x k window.

    For each position a 1x1 projection (a per-pixel linear layer) predicts, per head,
    a (k*k) x (k*k) attention: row i says how the k*k values of the window centred
    there combine into output slot i of that window. Values are a 1x1 projection,
    unfolded into windows, combined with the softmaxed weights, folded back (the
    overlapping contributions summed) and projected out.

    The weighted sum is a tensor product that layer hooks do not see; `matmul_macs`
    reports it so the MAC counter can include it.
    """

    def __init__(self, channels: int, heads: int = 4, kernel: int = 3) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.channels, self.heads, self.kernel = channels, heads, kernel
        self.scale = (channels // heads) ** -0.5
        self.v = nn.Conv2d(channels, channels, 1, bias=False)
        self.attn = nn.Conv2d(channels, heads * kernel**4, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k2 = self.kernel * self.kernel
        hd = c // self.heads
        pad = self.kernel // 2
        v = F.unfold(self.v(x), self.kernel, padding=pad)  # [B, C*k2, L]
        v = v.reshape(b, self.heads, hd, k2, h * w)
        a = self.attn(x).reshape(b, self.heads, k2, k2, h * w) * self.scale
        a = a.softmax(dim=3)  # over the k2 input slots of the window
        out = torch.einsum("bnijl,bndjl->bndil", a, v)  # [B, heads, hd, k2(out), L]
        out = F.fold(out.reshape(b, c * k2, h * w), (h, w), self.kernel, padding=pad)
        return self.proj(out)

    def matmul_macs(self, input_shape: torch.Size) -> int:
        """MACs of the windowed weighted sum for an input of this shape (B, C, H, W)."""
        b, c, h, w = input_shape
        return int(b * h * w * c * self.kernel**4)


class OutlookBlock(nn.Module):
    """Light outlooker: x + OutlookAttention(LayerNorm(x)); no MLP (see docs/models.md)."""

    def __init__(self, channels: int, heads: int = 4, kernel: int = 3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = OutlookAttention(channels, heads, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.attn(y)


class SEWeight(nn.Module):
    """Squeeze-excitation weight (EPSANet's SEWeightModule): a per-channel weight in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        mid = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, mid, 1)
        self.fc2 = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class CoordWeight(nn.Module):
    """Coordinate attention weight (Hou et al. 2021): a_h * a_w, a [B, C, H, W] map in (0, 1).

    The BatchNorm of the original is replaced by FeatureNorm over the H+W pooled
    positions of each sample: with batch size 1 BN in train mode would normalise over
    the same positions, but then behave differently in eval mode (running stats).
    """

    def __init__(self, channels: int, reduction: int = 32) -> None:
        super().__init__()
        mip = max(8, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.norm = FeatureNorm(mip)
        self.conv_h = nn.Conv2d(mip, channels, 1)
        self.conv_w = nn.Conv2d(mip, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        x_h = x.mean(dim=3, keepdim=True)  # [B, C, H, 1]
        x_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # [B, C, W, 1]
        y = F.hardswish(self.norm(self.conv1(torch.cat([x_h, x_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))  # [B, C, H, 1]
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))  # [B, C, 1, W]
        return a_h * a_w


WEIGHT_MODULES = {"ca": CoordWeight, "se": SEWeight}


class PyramidSplitAttention(nn.Module):
    """EPSANet's PSA module with a switchable branch-weight module.

    Four parallel convs (kernels 3, 5, 7, 9; groups 1, 4, 8, 16) each map C -> C/4;
    one weight module (shared by the branches, as in EPSANet) weighs each branch,
    the weights are softmaxed across the four branches, the branches re-weighted
    and concatenated back to C channels.
    """

    KERNELS = (3, 5, 7, 9)
    GROUPS = (1, 4, 8, 16)

    def __init__(self, channels: int, weight_module: str = "ca") -> None:
        super().__init__()
        if channels % 64:
            raise ValueError(f"PSA channels must be a multiple of 64, got {channels}")
        if weight_module not in WEIGHT_MODULES:
            raise ValueError(f"weight_module must be one of {sorted(WEIGHT_MODULES)}")
        split = channels // 4
        self.branches = nn.ModuleList()
        for k, g in zip(self.KERNELS, self.GROUPS):
            conv = nn.Conv2d(channels, split, k, padding=k // 2, groups=g, bias=False)
            nn.init.xavier_normal_(conv.weight)
            self.branches.append(conv)
        self.weight = WEIGHT_MODULES[weight_module](split)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([branch(x) for branch in self.branches], dim=1)  # [B, 4, C/4, H, W]
        b, n, c, h, w = feats.shape
        # The weight module is shared and per-sample, so the four branches can go through
        # it as one batch of B*4 (one call instead of four: fewer small ops).
        weights = self.weight(feats.reshape(b * n, c, h, w))
        weights = weights.reshape(b, n, c, *weights.shape[2:]).softmax(dim=1)
        out = feats * weights  # broadcasts SE's [.., 1, 1] and CA's [.., H, W] alike
        return out.flatten(1, 2)
