"""CLI commands that check and prepare a cohort folder: ``validate`` and ``prepare``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app

SEQ_HELP = "Comma-separated MRI sequences the model will use (T1, T1A, T1V, T1D, T2, DWI)."
COLUMNS_HELP = "TOML file mapping your clinical.csv column names and units onto dlmvi's (see README)."


def parse_sequences(text: str) -> tuple[str, ...]:
    """'T1, t1v,T1D' -> ('T1', 'T1V', 'T1D'); 'all' -> the six sequences."""
    from dlmvi.constants import SEQUENCES
    from dlmvi.errors import ConfigError

    if text.strip().lower() == "all":
        return SEQUENCES
    seqs = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    bad = [s for s in seqs if s not in SEQUENCES]
    if bad or not seqs:
        raise ConfigError(f"unknown sequence(s) {', '.join(bad) or '(none)'}; choose from {', '.join(SEQUENCES)}")
    return seqs


def column_map_option(path: Optional[Path]):
    from dlmvi.io.tables import ColumnMap

    return ColumnMap.from_toml(path) if path else None


@app.command()
def validate(
    cohort: Path = typer.Argument(..., help="Cohort folder holding clinical.csv and images/."),
    sequences: str = typer.Option("T1,T1V,T1D", "--sequences", "-s", help=SEQ_HELP + " 'all' checks all six."),
    columns: Optional[Path] = typer.Option(None, "--columns", help=COLUMNS_HELP),
):
    """Check a cohort folder before anything uses it.

    Prints one line per problem naming the patient, sequence and file: missing sequences or
    masks, empty masks, masks off the image grid, NaN voxels, broken DICOM series, duplicate or
    unmatched patient IDs, invalid MVI grades, bad lab values. Exit code 1 if there are
    errors, 0 if there are only warnings.
    """
    from rich.console import Console

    from dlmvi.cohort.validate import validate_cohort

    problems = validate_cohort(cohort, parse_sequences(sequences), column_map_option(columns), progress=True)
    console = Console(highlight=False, soft_wrap=True)
    for p in problems:
        console.print(str(p), style="red" if p.level == "error" else "yellow", markup=False)
    n_err = sum(p.level == "error" for p in problems)
    n_warn = len(problems) - n_err
    console.print(f"{cohort}: {n_err} error(s), {n_warn} warning(s)", markup=False)
    raise typer.Exit(1 if n_err else 0)


@app.command()
def prepare(
    cohort: Path = typer.Argument(..., help="Cohort folder holding clinical.csv and images/."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache folder to create or update."),
    sequences: str = typer.Option("T1,T1V,T1D", "--sequences", "-s", help=SEQ_HELP),
    size: int = typer.Option(320, "--size", help="Side of the square patch in pixels (the study used 320)."),
    margin: int = typer.Option(8, "--margin", help="Pixels added around the tumour box on every side (the study: 5-10)."),
    normalization: str = typer.Option("zscore", "--normalization", help="'zscore' per image, or 'none' (raw)."),
    dtype: str = typer.Option("float32", "--dtype", help="Storage of the patches: 'float32', or 'float16' "
                              "(half the disk and training memory; for 320 px caches on GPUs)."),
    columns: Optional[Path] = typer.Option(None, "--columns", help=COLUMNS_HELP),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first unusable patient instead of excluding it."),
):
    """Cut the tumour patches the network trains on and store them in a cache.

    For each patient and sequence: the 3 consecutive axial slices with the largest tumour
    diameter (from the mask, or the boxed slices of rois.csv), the tumour box enlarged by
    --margin pixels, resized to --size x --size and normalised. Reruns only redo what
    changed. Unusable patients are excluded and listed with the reason.
    """
    from dlmvi.io.atomic import guard_output
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.prepare import prepare_cohort

    cfg = PrepareConfig(sequences=parse_sequences(sequences), size=size, margin=margin, normalization=normalization,
                        dtype=dtype)
    guard_output(out, [cohort, columns])
    cache = prepare_cohort(cohort, out, cfg, column_map_option(columns), strict=strict)
    echo_skipped_cache(cache)


def echo_skipped_cache(cache) -> None:
    """Print how many patients a prepared cache holds, how many were excluded and why."""
    from dlmvi.io.skipped import SKIPPED_CSV, Skipped

    p = cache.patients
    excluded = p[p["included"] == 0]
    skipped = Skipped("the cache")
    for row in excluded.itertuples():
        skipped.add(row.patient_id, row.exclusion_reason)
    if len(skipped):
        typer.echo(f"warning: {skipped.summary(cache.root / SKIPPED_CSV)}", err=True)
    unlabelled = int((p.loc[p["included"] == 1, "mvi_grade"].astype(str) == "").sum())
    typer.echo(f"{cache.root}: {int(p['included'].sum())} patient(s) prepared"
               + (f" ({unlabelled} without mvi_grade: predicted, not trained on)" if unlabelled else "")
               + f", {len(excluded)} excluded" + (" (SYNTHETIC data)" if cache.synthetic else ""))
