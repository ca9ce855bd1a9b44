"""How much of a thin line the anomaly model's teacher maps see, by the line's width.

The anomaly map is the teacher/student disagreement at the 1/8 and 1/16 taps; the student
can only fail where the teacher's features change. This draws dark lines of a given width
(input px, anti-aliased: drawn 8x larger and area-resized) on good magnetic-tile parts
resized to 256x256, and prints the change of the teacher's features at each tap
(max over cells of 1 - cos(clean, with line)), relative to a 16 px wide line, and over a
noise floor (the same change for the part with Gaussian noise of sigma 0.02 instead of a
line: a rough reference, the noise touches every cell). It supports the anomaly model's
size rule (defect_studio.kinds.anomaly.config.AnomalyConfig.defect_rule: the small defects
keep a quarter of the coarsest map tap's stride, 4 px). A few seconds on a CPU:

    OMP_NUM_THREADS=1 python benchmarks/anomaly_line_visibility.py [--images 8] [--contrast 0.1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

DATA = Path("/work/shared/datasets/magnetic-tile/MT_Free/Imgs")
WIDTHS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)
SIDE = 256


def with_line(img: np.ndarray, width: float, contrast: float = 0.35) -> np.ndarray:
    """A dark horizontal line of ``width`` px across the middle (area-resized from 8x)."""
    big = np.zeros((SIDE * 8, SIDE * 8), np.float32)
    h = max(1, int(round(width * 8)))
    y = SIDE * 4 - h // 2
    big[y:y + h, SIDE:SIDE * 7] = 1.0
    cover = cv2.resize(big, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return img * (1 - contrast * cover)


def change(feats: list[torch.Tensor], k: int) -> list[float]:
    """Per tap: the largest 1 - cos over cells between image 0 and image ``k``."""
    return [float((1 - F.cosine_similarity(f[0], f[k], dim=0)).max()) for f in feats]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--contrast", type=float, default=0.35,
                    help="the line darkens the part by this fraction (default 0.35)")
    args = ap.parse_args()
    from defect_studio.kinds.anomaly.teacher import Teacher

    torch.set_num_threads(1)
    files = sorted(DATA.glob("*.jpg"))[:: max(1, len(sorted(DATA.glob("*.jpg"))) // args.images)]
    imgs = []
    for f in files[: args.images]:
        g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        imgs.append(cv2.resize(g, (SIDE, SIDE), interpolation=cv2.INTER_AREA))
    teacher = Teacher(taps=("1/8", "1/16"))
    rows: dict[float, list[list[float]]] = {w: [] for w in WIDTHS}
    noise = []
    rng = np.random.default_rng(0)
    for img in imgs:
        # the noise floor: the same part with sensor-like noise (sigma 2% of full scale)
        noisy = (img + rng.normal(0, 0.02, img.shape)).astype(np.float32)
        batch = np.stack([img, noisy] + [with_line(img, w, args.contrast) for w in WIDTHS])
        feats = teacher(torch.from_numpy(batch)[:, None])

        noise.append(change(feats, 1))
        for k, w in enumerate(WIDTHS):
            rows[w].append(change(feats, k + 2))
    ref = np.mean(rows[WIDTHS[-1]], axis=0)
    floor = np.mean(noise, axis=0)
    print(f"{len(imgs)} good magnetic tiles at {SIDE}x{SIDE}, lines of contrast "
          f"{args.contrast:g}: teacher change (max over cells of 1 - cos) by line width; "
          f"relative to a {WIDTHS[-1]:g} px line, and over the noise floor")
    print("   width   1/8 rel  1/16 rel   1/8 /noise  1/16 /noise")
    for w in WIDTHS:
        m = np.mean(rows[w], axis=0)
        print(f"  {w:5.1f} px  {m[0] / ref[0]:6.2f}  {m[1] / ref[1]:8.2f}  "
              f"{m[0] / floor[0]:10.1f}  {m[1] / floor[1]:10.1f}")


if __name__ == "__main__":
    main()
