"""The project store: a folder with an SQLite database, masks and training runs.

See docs/ARCHITECTURE.md ("Project on disk", "defect_studio.project", "Runs").
"""

from defect_studio.project.runs import RunInfo, list_runs, read_run, write_json_atomic
from defect_studio.project.store import (
    LABEL_SOURCES,
    LABELS,
    SPLITS,
    ImageRecord,
    Project,
    is_project,
)

__all__ = [
    "LABELS", "LABEL_SOURCES", "SPLITS", "ImageRecord", "Project", "RunInfo", "is_project",
    "list_runs", "read_run", "write_json_atomic",
]
