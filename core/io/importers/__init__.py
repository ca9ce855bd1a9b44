"""Dataset importers: read a folder (or annotation file) in one of the known layouts
and add its images, labels and masks to a project.

    report = import_dataset("/data/tiles", project, fmt="auto", copy=True)

Formats (module per family): folders, pairs, mvtec, dagm, yolo, labelme, coco, voc,
rle-csv. `detect_format` documents how "auto" picks one (see detect.py).
"""

from .base import ImportItem, ImportReport, label_from_name
from .detect import DETECTION_ORDER, READERS, AmbiguousFormatError, detect_format
from .runner import import_dataset

FORMATS = tuple(READERS)
# What `import --format` and the GUI's Import dialog offer, in the order they show it.
IMPORT_FORMATS = ("auto", "folders", "pairs", "mvtec", "yolo", "labelme", "coco", "voc", "dagm",
                  "rle-csv")

__all__ = ["import_dataset", "detect_format", "ImportReport", "ImportItem", "FORMATS",
           "IMPORT_FORMATS", "READERS", "AmbiguousFormatError", "DETECTION_ORDER",
           "label_from_name"]
