"""Format detection for `--format auto`.

Rules, tried in this order (the first that matches wins):

1. A file: *.yaml/*.yml -> yolo; *.csv with an EncodedPixels column -> rle-csv;
   *.json with "images" -> coco, with "shapes" -> labelme; *.xml with <annotation> -> voc.
2. A folder:
   - rle-csv: a CSV with an EncodedPixels column at the top (or one level down);
   - yolo:    data.yaml (dataset.yaml), or images/ + labels/*.txt folders;
   - mvtec:   train/good/ (or category folders that each have one);
   - dagm:    Train/ or Test/ folders with a Label/ folder of *_label masks;
   - coco:    a JSON with "images" (and "annotations"), up to two levels down;
   - labelme: JSON files with "shapes";
   - voc:     XML files with an <annotation> root;
   - pairs:   at least one image with a mask (X_mask, X_GT, X_label, NAME.png beside
              NAME.jpg, images/ + masks/ folders);
   - folders: images in folders named OK/NG, good/bad, pass/fail, defect(s)...
   - any other folder with images: folders, every image unlabeled (to label in the app).
   A folder without images in any of these layouts -> ImportFormatError listing
   the formats and what each expects.
The specific layouts come first because they also look like the generic ones
(MVTec's ground_truth/*_mask.png would pass as pairs, DAGM's Label/ too).

Detection never overrides the folder names' labels: when "pairs" matches because a
NAME.png lies beside NAME.jpg and that .png is more likely the part saved twice than a
mask (it would mark defect pixels in a folder named OK, or it looks like a photo),
AmbiguousFormatError asks for `--format folders` (every file a part, labelled by its
folder) or `--format pairs`.
"""

from __future__ import annotations

from pathlib import Path

from defect_studio.errors import ImportFormatError

from . import coco, dagm, folders, labelme, mvtec, pairs, rle_csv, voc, yolo
from .base import SourceTree

# name -> reader module (each has NAME, EXPECTS, detect(tree), read(src, report))
READERS = {m.NAME: m for m in (folders, pairs, mvtec, dagm, yolo, labelme, coco, voc, rle_csv)}
DETECTION_ORDER = ("rle-csv", "yolo", "mvtec", "dagm", "coco", "labelme", "voc", "pairs",
                   "folders")


class AmbiguousFormatError(ImportFormatError):
    """The source reads as more than one format with different labels: the user picks one
    (``choices``, best guess first); "auto" never guesses."""

    def __init__(self, message: str, choices: tuple[str, ...]) -> None:
        super().__init__(message)
        self.choices = choices


def detect_format(src: Path | str) -> str:
    """The name of the format `src` is in (see the module docstring for the rules);
    ImportFormatError naming every format tried and what it expects otherwise."""
    src = Path(src).expanduser()
    if not src.exists():
        raise ImportFormatError(f"'{src}' does not exist")
    if src.is_file():
        fmt = _detect_file(src)
        if fmt:
            return fmt
        raise ImportFormatError(
            f"'{src}' is not an annotation file Defect Studio knows: expected a data.yaml "
            "(YOLO), a COCO or labelme .json, a Pascal VOC .xml or a run-length .csv with an "
            "EncodedPixels column; or give the folder that holds the images")
    tree = SourceTree.scan(src)
    for name in DETECTION_ORDER:
        if READERS[name].detect(tree):
            if name == "pairs":
                _refuse_doubtful_pairs(src, tree)
            return name
    if tree.images:
        return "folders"  # plain images: imported unlabeled, to be labelled in the app
    tried = "\n".join(f"  {name}: {READERS[name].EXPECTS}" for name in DETECTION_ORDER)
    what = "no files" if not tree.files else f"{len(tree.files)} files, no images"
    raise ImportFormatError(
        f"cannot tell the format of '{src}' ({what}). Formats tried, and what each "
        f"expects:\n{tried}\nPick one with --format if the layout is close to one of them.")


def _refuse_doubtful_pairs(src: Path, tree: SourceTree) -> None:
    doubtful = pairs.doubtful_pairs(tree)
    if not doubtful:
        return
    img, png, why = doubtful[0]
    more = f" (and {len(doubtful) - 1} more such pairs)" if len(doubtful) > 1 else ""
    raise AmbiguousFormatError(
        f"'{src}' can be read two ways: {png} beside {img} {why}{more}; it may be a second "
        "copy of the part rather than its mask. Choose the format: folders (every file is a "
        "part, labelled by its folder) or pairs (the .png files are masks; a mask with "
        "defect pixels in an OK folder is reported and its image imported unlabeled); on "
        "the command line --format folders or --format pairs",
        ("folders", "pairs"))


def _detect_file(src: Path) -> str | None:
    suffix = src.suffix.lower()
    tree = SourceTree(src, [])
    if suffix in (".yaml", ".yml"):
        return "yolo"
    for name in ("rle-csv", "coco", "labelme", "voc"):
        if READERS[name].detect(tree):
            return name
    return None
