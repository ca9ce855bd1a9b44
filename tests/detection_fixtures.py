"""A tiny project with typed boxes for detector tests: 64x64 gray images, bright
square "spot"s and dark "bar"s, a quarter of the images OK; images 0-7 train, then
val (an OK image and a bar) and test (two spots)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defect_studio.io.images import write_png_atomic
from defect_studio.project import Project


def make_box_project(root: Path, n: int = 12, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    src = root.parent / f"{root.name}_src"
    src.mkdir(parents=True, exist_ok=True)
    with Project.create(root) as p:
        p.add_type("spot")
        p.add_type("bar")
        for i in range(n):
            img = rng.normal(120, 10, (size, size)).clip(0, 255).astype(np.uint8)
            boxes = []
            if i % 4:
                x, y = (int(v) for v in rng.integers(4, size - 24, 2))
                if i % 2:
                    img[y:y + 12, x:x + 12] = 230
                    boxes.append(("spot", x, y, 12, 12))
                else:
                    img[y:y + 6, x:x + 20] = 20
                    boxes.append(("bar", x, y, 20, 6))
            f = src / f"img{i:02d}.png"
            write_png_atomic(f, img)
            rec = p.add_image(f, label="unlabeled" if boxes else "ok",
                              split="train" if i < 8 else ("val", "test")[i % 2])
            if boxes:
                p.set_boxes(rec.id, boxes)
    return root
