"""Small data sets in every import format, written at test time (32x32 images).

Each `make_<format>(root)` writes one data set under `root` and returns a `Fixture`
saying what a correct import gives: label counts, masks, and the reasons the report
must list for the deliberately broken files (a corrupt image, a wrong-size mask, a
mask without image, an unknown class... wherever the format allows them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

SIZE = 32


@dataclass
class Fixture:
    source: Path
    fmt: str
    ok: int
    defective: int
    unlabeled: int
    masked: int
    rough: int = 0
    skipped: list[str] = field(default_factory=list)  # a substring of each expected reason
    splits: dict[str, int] | None = None  # pinned splits the source gives
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # image name -> exact mask


def image(path: Path, seed: int, size: tuple[int, int] = (SIZE, SIZE), gray: bool = True
          ) -> Path:
    """A distinct random texture (distinct content: imports deduplicate by hash)."""
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w) if gray else (h, w, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), rng.integers(40, 200, shape, dtype=np.uint8))
    assert ok, path
    return path


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image" * 5)
    return path


def rect_mask(x0: int, y0: int, x1: int, y1: int, size: tuple[int, int] = (SIZE, SIZE)
              ) -> np.ndarray:
    w, h = size
    m = np.zeros((h, w), bool)
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


def write_mask(path: Path, mask: np.ndarray, value: int = 255) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask.astype(np.uint8) * value), path
    return path


def make_folders(root: Path) -> Fixture:
    src = root / "folders"
    for i in range(3):
        image(src / "train" / "OK" / f"ok{i}.png", 100 + i)
    image(src / "test" / "good" / "ok3.png", 103)
    for i in range(2):
        image(src / "train" / "NG" / f"ng{i}.png", 110 + i)
    image(src / "test" / "Defects" / "ng2.png", 112)
    image(src / "test" / "scratch" / "ng3.png", 113)  # beside test/good: a defect type
    image(src / "misc" / "u0.png", 114)
    corrupt(src / "train" / "NG" / "broken.png")
    return Fixture(src, "folders", ok=4, defective=4, unlabeled=1, masked=0,
                   skipped=["unreadable image"], splits={"train": 5, "test": 3})


def make_pairs(root: Path) -> Fixture:
    src = root / "pairs"
    image(src / "x0.png", 200)
    m0 = rect_mask(4, 4, 10, 12)
    write_mask(src / "x0_mask.png", m0)
    image(src / "x1.png", 201)
    write_mask(src / "x1_GT.png", np.zeros((SIZE, SIZE), bool))  # clean mask: OK
    image(src / "x2.jpg", 202)
    m2 = rect_mask(20, 2, 30, 5)
    # soft-edged gray mask as in magnetic-tile: only >= 128 is defect
    soft = m2.astype(np.uint8) * 200
    soft[0, :] = 100
    src.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(src / "x2.png"), soft)
    image(src / "good" / "x3.png", 203)
    image(src / "x4.png", 204)
    image(src / "x5.png", 205)
    write_mask(src / "x5_label.bmp", rect_mask(1, 1, 3, 3, size=(16, 16)), value=1)
    write_mask(src / "orphan_mask.png", rect_mask(1, 1, 3, 3))
    corrupt(src / "c.png")
    write_mask(src / "c_mask.png", rect_mask(1, 1, 3, 3))
    return Fixture(src, "pairs", ok=2, defective=2, unlabeled=2, masked=3,
                   skipped=["unreadable image", "mask of the wrong size", "mask without image"],
                   masks={"x0.png": m0, "x2.jpg": m2})


def make_mvtec(root: Path) -> Fixture:
    src = root / "bottle"
    image(src / "train" / "good" / "000.png", 300, gray=False)
    image(src / "train" / "good" / "001.png", 301, gray=False)
    image(src / "test" / "good" / "000.png", 302, gray=False)
    image(src / "test" / "scratch" / "000.png", 303, gray=False)
    image(src / "test" / "scratch" / "001.png", 304, gray=False)
    corrupt(src / "test" / "scratch" / "002.png")
    m = rect_mask(5, 5, 9, 20)
    write_mask(src / "ground_truth" / "scratch" / "000_mask.png", m)
    write_mask(src / "ground_truth" / "scratch" / "001_mask.png", rect_mask(1, 1, 2, 2, (20, 20)))
    write_mask(src / "ground_truth" / "scratch" / "007_mask.png", m)
    return Fixture(src, "mvtec", ok=3, defective=2, unlabeled=0, masked=1,
                   skipped=["unreadable image", "mask of the wrong size", "mask without image"],
                   splits={"train": 2, "test": 3}, masks={"scratch/000.png": m})


def make_dagm(root: Path) -> Fixture:
    src = root / "Class1"
    tr, te = src / "Train", src / "Test"
    for i in range(3):
        image(tr / f"000{i}.PNG", 400 + i)
    m = rect_mask(3, 3, 12, 8)
    write_mask(tr / "Label" / "0001_label.PNG", m)
    (tr / "Label" / "Labels.txt").write_text(
        "1\n1\t0\t0000.PNG\t0\n2\t1\t0001.PNG\t0\t0001_label.PNG\n3\t1\t0002.PNG\t0\n")
    image(te / "0003.PNG", 403)
    image(te / "0004.PNG", 404)
    write_mask(te / "Label" / "0004_label.PNG", rect_mask(1, 1, 2, 2, (8, 8)))
    write_mask(te / "Label" / "0009_label.PNG", m)
    corrupt(te / "0005.PNG")
    return Fixture(src, "dagm", ok=2, defective=3, unlabeled=0, masked=1,
                   skipped=["unreadable image", "mask of the wrong size", "mask without image"],
                   splits={"train": 3, "test": 2}, masks={"0001.PNG": m})


def make_yolo(root: Path) -> Fixture:
    src = root / "yolo"
    (src).mkdir(parents=True)
    (src / "data.yaml").write_text(
        "# a YOLO data set\npath: .\ntrain: images/train\nval: images/val\n"
        "names:\n  0: scratch\n  1: 'dent'\n")
    lab = src / "labels"
    for name, seed in (("a", 500), ("b", 501), ("c", 502), ("d", 503)):
        image(src / "images" / "train" / f"{name}.png", seed)
    (lab / "train").mkdir(parents=True)
    # polygon through the pixel centres of the square x 8..15, y 4..11
    (lab / "train" / "a.txt").write_text(
        "0 0.265625 0.140625 0.484375 0.140625 0.484375 0.359375 0.265625 0.359375\n")
    (lab / "train" / "b.txt").write_text("")
    (lab / "train" / "c.txt").write_text("1 0.5 0.5 0.25 0.25\n")
    (lab / "train" / "d.txt").write_text("7 0.5 0.5 0.25 0.25\n")
    image(src / "images" / "val" / "e.png", 504)
    corrupt(src / "images" / "val" / "f.png")
    (lab / "val").mkdir()
    (lab / "val" / "f.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    return Fixture(src, "yolo", ok=2, defective=2, unlabeled=1, masked=2, rough=1,
                   skipped=["unknown class", "unreadable image"],
                   splits={"train": 4, "val": 1}, masks={"a.png": rect_mask(8, 4, 15, 11),
                                                         "c.png": rect_mask(12, 12, 19, 19)})


def make_yolo_plain(root: Path) -> Fixture:
    """YOLO detection without data.yaml: images/ + labels/ only."""
    src = root / "yolo_plain"
    image(src / "images" / "p0.png", 550)
    image(src / "images" / "p1.png", 551)
    (src / "labels").mkdir(parents=True)
    (src / "labels" / "p0.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (src / "labels" / "p1.txt").write_text("0 0.5 oops 0.5 0.5\n")
    return Fixture(src, "yolo", ok=0, defective=1, unlabeled=1, masked=1, rough=1,
                   skipped=["malformed line"], masks={"p0.png": rect_mask(8, 8, 23, 23)})


def _labelme(path: Path, image_path: str, shapes: list) -> None:
    path.write_text(json.dumps({"version": "5.2.1", "flags": {}, "shapes": shapes,
                                "imagePath": image_path, "imageData": None,
                                "imageHeight": SIZE, "imageWidth": SIZE}))


def make_labelme(root: Path) -> Fixture:
    src = root / "labelme"
    image(src / "a.png", 600)
    _labelme(src / "a.json", "a.png", [{"label": "scratch", "shape_type": "polygon",
                                        "points": [[2, 2], [10, 2], [10, 6], [2, 6]]}])
    image(src / "b.png", 601)
    _labelme(src / "b.json", "b.png", [
        {"label": "dent", "shape_type": "rectangle", "points": [[20, 20], [25, 28]]},
        {"label": "pit", "shape_type": "circle", "points": [[6, 24], [8, 24]]}])
    image(src / "c.png", 602)
    _labelme(src / "c.json", "c.png", [])
    image(src / "d.png", 603)
    _labelme(src / "e.json", "gone.png", [{"label": "x", "shape_type": "polygon",
                                           "points": [[1, 1], [5, 1], [5, 5]]}])
    corrupt(src / "f.png")
    _labelme(src / "f.json", "f.png", [{"label": "x", "shape_type": "polygon",
                                        "points": [[1, 1], [5, 1], [5, 5]]}])
    image(src / "g.png", 606)
    _labelme(src / "g.json", "g.png", [{"label": "x", "shape_type": "mask", "points": []}])
    return Fixture(src, "labelme", ok=1, defective=2, unlabeled=2, masked=2, rough=1,
                   skipped=["image not found", "unreadable image", "unsupported shape type"],
                   masks={"a.png": rect_mask(2, 2, 10, 6)})


def mask_to_rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major, first run background) of a bool mask:
    written independently of pycocotools, to check the importer against."""
    flat = np.asarray(mask, bool).T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return ([0] + runs if flat.size and flat[0] else runs)


def make_coco(root: Path) -> Fixture:
    from defect_studio.io.importers.coco import encode_rle

    src = root / "coco"
    names = ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png", "g.png", "h.png"]
    for i, n in enumerate(names):
        if n == "f.png":
            corrupt(src / "images" / n)
        elif n != "g.png":
            image(src / "images" / n, 700 + i)
    mb, mc = rect_mask(3, 5, 7, 20), rect_mask(10, 10, 30, 12)
    mc[11, 20] = False  # a hole: only RLE can say that
    anns = [
        {"image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 5], "area": 40, "iscrowd": 0,
         "segmentation": [[2.5, 2.5, 9.5, 2.5, 9.5, 6.5, 2.5, 6.5]]},
        {"image_id": 2, "category_id": 1, "iscrowd": 1,
         "segmentation": {"size": [SIZE, SIZE], "counts": mask_to_rle_counts(mb)}},
        {"image_id": 3, "category_id": 1, "iscrowd": 1,
         "segmentation": {"size": [SIZE, SIZE],
                          "counts": encode_rle(mc)["counts"]}},
        {"image_id": 4, "category_id": 1, "bbox": [4, 4, 6, 3], "area": 18, "iscrowd": 0},
        {"image_id": 6, "category_id": 1, "bbox": [4, 4, 6, 3]},
        {"image_id": 99, "category_id": 1, "bbox": [4, 4, 6, 3]},
        {"image_id": 1, "category_id": 5, "bbox": [0, 0, 3, 3]},
        {"image_id": 8, "category_id": 1, "iscrowd": 1,
         "segmentation": {"size": [SIZE, 2 * SIZE], "counts": [5, 5, 2 * SIZE * SIZE - 10]}},
    ]
    for i, a in enumerate(anns, 1):
        a["id"] = i
    doc = {"images": [{"id": i, "file_name": n, "width": SIZE, "height": SIZE}
                      for i, n in enumerate(names, 1)],
           "annotations": anns, "categories": [{"id": 1, "name": "defect"}]}
    (src / "annotations.json").write_text(json.dumps(doc))
    return Fixture(src, "coco", ok=1, defective=5, unlabeled=0, masked=4, rough=1,
                   skipped=["unreadable image", "image not found", "unknown image id",
                            "unknown class", "bad mask"],
                   masks={"a.png": rect_mask(2, 2, 9, 6), "b.png": mb, "c.png": mc,
                          "d.png": rect_mask(4, 4, 9, 6)})


def _voc(path: Path, filename: str, boxes: list[tuple[int, int, int, int]]) -> None:
    objs = "".join(
        f"<object><name>defect</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>" for x0, y0, x1, y1 in boxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>x</folder><filename>{filename}</filename><size>"
                    f"<width>{SIZE}</width><height>{SIZE}</height><depth>1</depth></size>"
                    f"{objs}</annotation>")


def make_voc(root: Path) -> Fixture:
    src = root / "voc"
    ann, img = src / "Annotations", src / "JPEGImages"
    image(img / "a.jpg", 800)
    _voc(ann / "a.xml", "a.jpg", [(3, 3, 10, 6)])
    image(img / "b.jpg", 801)
    _voc(ann / "b.xml", "b.jpg", [])
    image(img / "c.jpg", 802)
    _voc(ann / "c.xml", "c", [(1, 1, 4, 4), (20, 20, 32, 32)])  # filename without extension
    image(img / "d.jpg", 803)
    _voc(ann / "e.xml", "gone.jpg", [(1, 1, 4, 4)])
    corrupt(img / "f.jpg")
    _voc(ann / "f.xml", "f.jpg", [(1, 1, 4, 4)])
    (ann / "g.xml").write_text("<annotation><filename>a.jpg")
    return Fixture(src, "voc", ok=1, defective=2, unlabeled=1, masked=2, rough=2,
                   skipped=["image not found", "unreadable image", "unreadable XML"],
                   masks={"a.jpg": rect_mask(2, 2, 9, 5),
                          "c.jpg": rect_mask(0, 0, 3, 3) | rect_mask(19, 19, 31, 31)})


def make_rle_csv(root: Path) -> Fixture:
    from defect_studio.io.importers.rle_csv import mask_to_rle_pairs

    src = root / "severstal"
    imgs = src / "train_images"
    for i, n in enumerate("abcd"):
        image(imgs / f"{n}.jpg", 900 + i, size=(48, SIZE))
    corrupt(imgs / "e.jpg")
    m1, m3 = rect_mask(2, 2, 5, 9, (48, SIZE)), rect_mask(30, 20, 40, 25, (48, SIZE))
    rows = ["ImageId,ClassId,EncodedPixels",
            f"a.jpg,1,{mask_to_rle_pairs(m1)}", f"a.jpg,3,{mask_to_rle_pairs(m3)}",
            "b.jpg,1,", "missing.jpg,2,1 5", f"d.jpg,1,{48 * SIZE - 2} 10", "e.jpg,1,1 4"]
    src.mkdir(parents=True, exist_ok=True)
    (src / "train.csv").write_text("\n".join(rows) + "\n")
    return Fixture(src, "rle-csv", ok=2, defective=2, unlabeled=0, masked=1,
                   skipped=["image not found", "bad mask", "unreadable image"],
                   masks={"a.jpg": m1 | m3})


MAKERS = {
    "folders": make_folders, "pairs": make_pairs, "mvtec": make_mvtec, "dagm": make_dagm,
    "yolo": make_yolo, "yolo_plain": make_yolo_plain, "labelme": make_labelme,
    "coco": make_coco, "voc": make_voc, "rle-csv": make_rle_csv,
}
