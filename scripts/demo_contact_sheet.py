"""Contact sheet of generated demo images, to look at the generator's output.

    .venv/bin/python scripts/demo_contact_sheet.py --out /tmp/demo_sheet.png

Defective images get their mask outlined in red and a caption with the defect kinds;
OK images are captioned with their texture only. Not a test: a tool for the eye.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_studio.demo import generate_demo_images  # noqa: E402


def tile_of(item, outline: bool) -> np.ndarray:
    """One cell of the sheet: the image (BGR), mask outline, caption."""
    bgr = cv2.cvtColor(item.image, cv2.COLOR_RGB2BGR)
    if outline and item.mask is not None:
        contours, _ = cv2.findContours(item.mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(bgr, contours, -1, (0, 0, 255), 1, cv2.LINE_8)
    caption = item.texture + (": " + ",".join(item.defects) if item.defects else " (ok)")
    bar = np.full((16, bgr.shape[1], 3), 32, np.uint8)
    cv2.putText(bar, caption, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (230, 230, 230), 1,
                cv2.LINE_AA)
    return np.vstack([bgr, bar])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/demo_sheet.png")
    p.add_argument("--cols", type=int, default=6)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--size", default="256x256", help="image size WxH")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--defect-rate", type=float, default=0.5,
                   help="share of defective images on the sheet (default 0.5: see both kinds)")
    p.add_argument("--no-outline", action="store_true", help="show defects without mask outline")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    n = args.cols * args.rows
    cells = [tile_of(it, not args.no_outline)
             for it in generate_demo_images(n, (w, h), args.seed, args.defect_rate)]
    gap = 4
    ch, cw = cells[0].shape[:2]
    sheet = np.full((args.rows * (ch + gap) + gap, args.cols * (cw + gap) + gap, 3), 255, np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, args.cols)
        y, x = gap + r * (ch + gap), gap + c * (cw + gap)
        sheet[y:y + ch, x:x + cw] = cell
    cv2.imwrite(args.out, sheet)
    print(f"wrote {args.out} ({args.cols}x{args.rows} images of {w}x{h}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
