"""Data files of the product (icons, demo-data recipe): the package ``defect_studio.resources``.

``RESOURCE_DIR`` is the folder they are in, the same in a source checkout, an installed
wheel and the one-folder bundle."""

from pathlib import Path

RESOURCE_DIR = Path(__file__).resolve().parent
