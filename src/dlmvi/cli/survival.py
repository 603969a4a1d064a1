"""CLI command ``dlmvi survival``: Kaplan-Meier curves, log-rank tests, median survival and
Cox hazard ratios of overall and recurrence-free survival."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import List, Optional

import typer

from dlmvi.cli.app import app


def _parse_date(value: Optional[str]) -> Optional[date]:
    if value is None:
        return None
    from dlmvi.errors import ConfigError

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--censor-date {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2020-12-31"
        ) from None


@app.command()
def survival(
    table: Path = typer.Argument(..., metavar="TABLE.csv", help=(
        "Clinical table (CSV, one row per patient) with patient_id, mvi_grade (M0/M1/M2) "
        "and either os_months/os_event and rfs_months/rfs_event (months from surgery; "
        "event 1 = death or recurrence, 0 = censored), or the dates surgery_date, "
        "recurrence_date, death_date and last_followup_date (YYYY-MM-DD, empty when the "
        "event did not happen).")),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Folder for survival.json, figures and CSVs."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", metavar="PREDICTIONS.csv", help=(
        "predictions.csv written by `dlmvi predict`; its dl_mvi column (MVI predicted "
        "present = 1) gives the DL-MVI groups. Without it a dl_mvi column of TABLE is used.")),
    group: Optional[List[str]] = typer.Option(None, "--group", metavar="COLUMN", help=(
        "Also compare survival between the levels of this column (0/1 or categorical, "
        "e.g. edmondson or capsule). Repeat for several columns.")),
    censor_date: Optional[str] = typer.Option(None, "--censor-date", metavar="YYYY-MM-DD", help=(
        "End of follow-up (YYYY-MM-DD) for tables with dates: events after it are "
        "ignored and follow-up stops there (31 Dec 2020 in the study). Times are "
        "converted to months as days / 30.4375.")),
    columns: Optional[Path] = typer.Option(None, "--columns", metavar="MAP.toml", help=(
        "TOML file mapping your clinical.csv column names and units onto dlmvi's (see README), "
        "as for validate and prepare.")),
) -> None:
    """Survival by pathological MVI (M1/M2 vs M0) and by predicted MVI (DL-MVI).

    Each analysis uses its complete cases: a patient without a time, an event or a group is
    left out of that analysis only, named on screen and in OUT/skipped.csv.

    For overall survival (OS) and recurrence-free survival (RFS) writes Kaplan-Meier curves
    with 95% confidence bands and numbers at risk, median survival with 95% CI, the log-rank
    test and the Cox hazard ratio (as R's survival package) to OUT/survival.json, one PNG
    figure and one CSV of the curve per analysis.
    """
    parsed_date = _parse_date(censor_date)

    from dlmvi.cli.app import echo_warnings
    from dlmvi.cli.cohort import column_map_option
    from dlmvi.io.atomic import check_output_dir, guard_output
    from dlmvi.layout import SURVIVAL_JSON
    from dlmvi.stats.survival_pipeline import run_survival

    guard_output(out, [table, predictions, columns], replaces=True)
    check_output_dir(out, SURVIVAL_JSON)
    with echo_warnings():
        result = run_survival(
            table,
            out,
            predictions=predictions,
            groups=tuple(group or ()),
            censor_date=parsed_date,
            column_map=column_map_option(columns),
        )
    _print_survival(result)
    typer.echo(f"wrote {Path(out) / 'survival.json'}")


def _print_survival(result: dict) -> None:
    """One line per analysis: groups, events, medians and the log-rank p."""
    for name in result["analyses"]:
        entry = result[name]
        if entry is None:
            typer.echo(f"{name}: not done ({result['notes'].get(name, '')})")
            continue
        parts = []
        for label, g in entry["groups"].items():
            median = "not reached" if g["median"] is None else f"{g['median']:.1f}"
            parts.append(f"{label} n={g['n']} events={g['events']} median={median}")
        p = entry["logrank"]["p"] if entry["logrank"] else None
        p_text = "n/a" if p is None else f"{p:.3g}"
        typer.echo(f"{name}: {'; '.join(parts)}; log-rank p={p_text}")
