"""Where data came from: the one check for dlmvi's synthetic phantom.

The phantom writes ``{"synthetic": true}`` into its cohort's ``cohort.json``; ``dlmvi prepare``
copies the flag into the cache's ``cache.json``, training into checkpoints, export into
``model.json``. Every output made from synthetic data must say so, and they all ask here.
"""

from __future__ import annotations

import json
from pathlib import Path

#: The cohort folder's description file (written by the phantom; optional for real cohorts).
COHORT_JSON = "cohort.json"


def _flag(doc_path: Path) -> bool | None:
    if not doc_path.is_file():
        return None
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return bool(doc.get("synthetic", False)) if isinstance(doc, dict) else None


def is_synthetic(path) -> bool:
    """True when the data at ``path`` are dlmvi's synthetic phantom.

    Args:
        path: a cohort folder or a file in one (``clinical.csv``, one folder down at most),
            a patch cache, a study run folder, or a file in one (``predictions.csv``).

    Returns:
        the ``synthetic`` flag of the nearest ``cohort.json`` / ``cache.json`` (a run's
        ``cache/cache.json``); False when there is none.
    """
    if path is None:
        return False
    p = Path(path)
    start = p if p.is_dir() else p.parent
    for folder in (start, start.parent):
        for doc in (folder / COHORT_JSON, folder / "cache.json", folder / "cache" / "cache.json"):
            flag = _flag(doc)
            if flag is not None:
                return flag
    return False


__all__ = ["is_synthetic", "COHORT_JSON"]
