"""Small helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import resource


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def parse_overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` strings (``--set``) as TrainConfig overrides; a VALUE is read as JSON
    (``true``, ``7``, ``null``, ``[128, 96]``) and else kept as text (``norm=original``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set wants KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value.strip())
        except ValueError:
            out[key.strip()] = value.strip()
    return out
