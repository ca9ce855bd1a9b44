"""PaDiM-style baseline with the same teacher: a Gaussian per feature-map location.

Features at 1/4, 1/8 and 1/16 are upsampled to 1/4 and concatenated (176 channels); on the
good training images every location gets a mean and a covariance (+ ``eps`` I); the anomaly
map is the Mahalanobis distance per location, upsampled to the input, Gaussian-smoothed
(as the KD model's map), image score = max. Used by benchmarks/anomaly_magnetic_tile.py.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from defect_studio.kinds.anomaly.network import gaussian_blur
from defect_studio.kinds.anomaly.teacher import Teacher


class PaDiM:
    def __init__(self, teacher: Teacher, sigma: float = 4.0, eps: float = 0.01) -> None:
        self.teacher, self.sigma, self.eps = teacher, sigma, eps
        self.mean: torch.Tensor | None = None  # [L, D]
        self.inv_cov: torch.Tensor | None = None  # [L, D, D]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] in [0, 1] -> embeddings [B, D, H/4, W/4]."""
        f4, f8, f16 = self.teacher(x)
        size = f4.shape[-2:]
        up = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in (f8, f16)]
        return torch.cat([f4, *up], 1)

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> PaDiM:
        n, s1, s2 = 0, None, None
        for x in batches:
            e = self.embed(x).double()  # [B, D, h, w]
            e = e.flatten(2).permute(2, 0, 1)  # [L, B, D]
            s1 = e.sum(1) if s1 is None else s1 + e.sum(1)
            outer = torch.einsum("lbd,lbe->lde", e, e)
            s2 = outer if s2 is None else s2 + outer
            n += x.shape[0]
        if n < 2:
            raise ValueError("PaDiM needs at least two good images")
        mean = s1 / n
        cov = (s2 - n * torch.einsum("ld,le->lde", mean, mean)) / (n - 1)
        cov += self.eps * torch.eye(cov.shape[-1], dtype=cov.dtype)
        self.mean, self.inv_cov = mean.float(), torch.linalg.inv(cov).float()
        return self

    @torch.no_grad()
    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly maps [B, H, W] at the input size."""
        e = self.embed(x)
        b, d, h, w = e.shape
        diff = e.flatten(2).permute(2, 0, 1) - self.mean[:, None, :]  # [L, B, D]
        m = torch.einsum("lbd,lde,lbe->lb", diff, self.inv_cov, diff).clamp_min(0).sqrt()
        m = m.permute(1, 0).reshape(b, 1, h, w)
        m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return gaussian_blur(m, self.sigma)[:, 0]
