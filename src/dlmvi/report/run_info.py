"""What a study folder says about itself, read by every part of the report."""

from __future__ import annotations

import json
from pathlib import Path

from dlmvi.layout import RunLayout


def read_json(path: Path):
    """A JSON file's content, or None when the file is absent."""
    return json.loads(path.read_text()) if path.is_file() else None


def develop_cohort(run: Path):
    """The study's development cohort (``study.json``'s config), or None when not recorded."""
    study = read_json(RunLayout(run).study_json) or {}
    return (study.get("config") or {}).get("develop_cohort")
