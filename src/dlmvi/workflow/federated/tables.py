"""Table 1 and events per site, as counts only, small cells suppressed before they leave.

Each site counts its labelled patients by MVI (absent / present) for every dichotomised variable
of the study (the published cut-offs, :data:`dlmvi.constants.CUTOFFS`, and the 0/1 columns) and
its events (MVI present, recurrences, deaths). A count from 1 to ``min_cell - 1`` is replaced by
:data:`SUPPRESSED` at the site (primary suppression, the usual rule of statistical disclosure
control); a variable the site does not record is :data:`NOT_RECORDED`. Only the arrays travel; the
coordinator writes them as one table per site (:func:`tables_frame`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlmvi.constants import BINARY_COLUMNS, CUTOFFS

SUPPRESSED = -1
NOT_RECORDED = -2
#: The variables, in the fixed order of the arrays: (column, level-0 label, level-1 label).
VARIABLES: tuple[tuple[str, str, str], ...] = tuple(
    [(c, f"<= {v:g}", f"> {v:g}") for c, v in CUTOFFS.items()] + [(c, "0", "1") for c in BINARY_COLUMNS])
EVENTS = ("patients", "mvi_present", "rfs_events", "os_events")


def suppress(counts: np.ndarray, min_cell: int) -> np.ndarray:
    """Counts with every cell from 1 to ``min_cell - 1`` replaced by :data:`SUPPRESSED` (0 and
    the markers are kept)."""
    c = np.asarray(counts, dtype=np.int64).copy()
    c[(c > 0) & (c < int(min_cell))] = SUPPRESSED
    return c


def site_counts(clinical: pd.DataFrame, present: np.ndarray, min_cell: int) -> tuple[np.ndarray, np.ndarray]:
    """(table1, events) of one site's labelled patients, suppressed.

    Args:
        clinical: the site's clinical rows of its labelled patients (dlmvi column names), in
            the order of ``present``.
        present: 1 where MVI is present (M1/M2), 0 where absent.
        min_cell: smallest count that may leave the site.

    Returns:
        ``table1`` of shape (variables, 2 levels, 2 outcomes) and ``events`` (:data:`EVENTS`).
    """
    y = np.asarray(present, dtype=np.int64)
    table = np.full((len(VARIABLES), 2, 2), NOT_RECORDED, dtype=np.int64)
    for i, (col, _, _) in enumerate(VARIABLES):
        if col not in clinical.columns or clinical[col].isna().all():
            continue
        v = pd.to_numeric(clinical[col], errors="coerce").to_numpy(dtype=float)
        level = (v > CUTOFFS[col]).astype(int) if col in CUTOFFS else (v >= 0.5).astype(int)
        known = ~np.isnan(v)
        for lv in (0, 1):
            for out in (0, 1):
                table[i, lv, out] = int(((level == lv) & (y == out) & known).sum())
    events = np.array([len(y), int(y.sum()), _event_count(clinical, "rfs_event"), _event_count(clinical, "os_event")],
                      dtype=np.int64)
    recorded = table != NOT_RECORDED
    table[recorded] = suppress(table[recorded], min_cell)
    return table, suppress(events, min_cell) if len(y) else events


def _event_count(clinical: pd.DataFrame, col: str) -> int:
    if col not in clinical.columns or clinical[col].isna().all():
        return NOT_RECORDED
    return int((pd.to_numeric(clinical[col], errors="coerce") == 1).sum())


def _cell(v: int, min_cell: int) -> str:
    if v == SUPPRESSED:
        return f"<{min_cell}"
    if v == NOT_RECORDED:
        return "not recorded"
    return str(int(v))


def tables_frame(per_site: dict[str, tuple[np.ndarray, np.ndarray]], min_cell: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Table 1, events) of every site as text tables (suppressed cells as ``<min_cell``)."""
    rows = []
    for site, (table, _) in per_site.items():
        t = np.asarray(table)
        for i, (col, l0, l1) in enumerate(VARIABLES):
            for lv, label in ((0, l0), (1, l1)):
                rows.append({"site": site, "variable": col, "level": label,
                             "mvi_absent": _cell(t[i, lv, 0], min_cell), "mvi_present": _cell(t[i, lv, 1], min_cell)})
    ev = [{"site": site, **{k: _cell(v, min_cell) for k, v in zip(EVENTS, np.asarray(e))}}
          for site, (_, e) in per_site.items()]
    return pd.DataFrame(rows), pd.DataFrame(ev)


__all__ = ["site_counts", "suppress", "tables_frame", "VARIABLES", "EVENTS", "SUPPRESSED", "NOT_RECORDED"]
