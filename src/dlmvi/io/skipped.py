"""Patients a command leaves out: counted and named on screen, listed in full beside the output.

Every command that skips patients (unlabelled patients in evaluation, a patient without
images in prediction, a missing survival time in one analysis, ...) collects them in a
:class:`Skipped` list, prints :meth:`Skipped.summary` (how many, why, the first few IDs)
and writes the full list with :meth:`Skipped.write`: ``skipped.csv`` in an output folder, or
``<output>.skipped.csv`` beside an output file (:func:`skipped_path`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: File name of the list inside an output folder.
SKIPPED_CSV = "skipped.csv"


def skipped_path(output: str | Path) -> Path:
    """Where the list of skipped patients goes: ``DIR/skipped.csv`` for a folder output,
    ``NAME.skipped.csv`` beside a file output (``preds.csv`` -> ``preds.skipped.csv``). An
    existing folder is a folder output whatever its name (``runs/v1.2``)."""
    output = Path(output)
    if output.suffix and not output.is_dir():
        return output.with_name(output.stem + ".skipped.csv")
    return output / SKIPPED_CSV


@dataclass
class Skipped:
    """Patients left out of one command's output, each with the reason.

    Attributes:
        what: what they were left out of, for messages (e.g. ``"the evaluation"``).
        rows: ``{"patient_id", "reason", ...}`` per left-out patient (and step, when several
            steps of a command skip patients).
    """

    what: str
    rows: list[dict] = field(default_factory=list)

    def add(self, patient_id, reason: str, **extra) -> None:
        self.rows.append({"patient_id": str(patient_id), "reason": reason, **extra})

    def extend(self, patient_ids, reason: str, **extra) -> None:
        for pid in patient_ids:
            self.add(pid, reason, **extra)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        return list(dict.fromkeys(r["patient_id"] for r in self.rows))

    def frame(self) -> pd.DataFrame:
        cols = ["patient_id", "reason"]
        extra = [k for r in self.rows for k in r if k not in cols]
        return pd.DataFrame(self.rows, columns=cols + list(dict.fromkeys(extra)))

    def summary(self, where: str | Path | None = None, show: int = 5) -> str:
        """``"3 patients left out of the evaluation: 2: no mvi_grade (P001, P002); 1: ..."``."""
        if not self.rows:
            return f"no patient left out of {self.what}"
        by_reason: dict[str, list[str]] = {}
        for r in self.rows:
            by_reason.setdefault(r["reason"], []).append(r["patient_id"])
        parts = []
        for reason, ids in list(by_reason.items())[:show]:
            shown = ", ".join(ids[:show]) + (", ..." if len(ids) > show else "")
            parts.append(f"{len(ids)}: {reason} ({shown})")
        if len(by_reason) > show:
            parts.append(f"{len(by_reason) - show} more reasons")
        n = len(self.ids)
        text = f"{n} patient{'s' if n != 1 else ''} left out of {self.what}: " + "; ".join(parts)
        return text + (f"; full list in {where}" if where else "")

    def write(self, path: str | Path) -> Path:
        """Write the list (a header only when nobody was left out, so no stale list survives)."""
        from dlmvi.io.atomic import write_csv

        return write_csv(path, self.frame())

    def warn(self, category, where: str | Path | None = None, stacklevel: int = 2) -> None:
        """Emit :meth:`summary` as a warning (the CLI prints dlmvi's warnings) when non-empty."""
        if self.rows:
            warnings.warn(self.summary(where), category, stacklevel=stacklevel + 1)


__all__ = ["Skipped", "skipped_path", "SKIPPED_CSV"]
