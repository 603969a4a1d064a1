"""CLI command ``dlmvi clinical``: Table 1, multivariate model, nomogram, ROC, calibration, DCA."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app


@app.command("clinical")
def clinical(
    table: Path = typer.Argument(
        ..., help="The cohort's clinical.csv (one row per patient, with mvi_grade M0/M1/M2)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the tables and figures."),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", "-p",
        help="predictions.csv from 'dlmvi predict' (adds the deep-learning prediction DL-MVI)."),
    develop_cohort: Optional[str] = typer.Option(
        None, "--develop-cohort",
        help="Build the nomogram on this cohort (e.g. 2015) and test it on the others. "
             "Without it the nomogram is built on all patients and checked by bootstrap."),
    config: Optional[Path] = typer.Option(
        None, "--config",
        help="variables.toml: variables, cut-offs, p-value threshold, nomogram predictors."),
    bootstrap: Optional[int] = typer.Option(
        None, "--bootstrap", help="Bootstrap repetitions (default 200; overrides the config)."),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="Seed of the bootstrap (default 0; overrides the config)."),
    columns: Optional[Path] = typer.Option(
        None, "--columns",
        help="TOML file mapping your clinical.csv column names and units onto dlmvi's (see README), "
             "as for validate and prepare."),
) -> None:
    """Clinical statistics of MVI: univariate Table 1 (odds ratios at the study's cut-offs),
    multivariate logistic regression, the nomogram (AFP > 20 ng/mL and DL-MVI by default)
    with AUC (95% CI), calibration and decision curves, written as CSV, HTML and PNG."""
    import dataclasses

    from dlmvi.cli.app import echo_warnings
    from dlmvi.cli.cohort import column_map_option
    from dlmvi.io.atomic import check_output_dir, guard_output
    from dlmvi.layout import NOMOGRAM_JSON
    from dlmvi.stats.clinical import run_clinical
    from dlmvi.stats.config import ClinicalConfig, load_config

    guard_output(out, [table, predictions, config, columns], replaces=True)
    check_output_dir(out, NOMOGRAM_JSON)
    column_map = column_map_option(columns)
    cfg = load_config(config) if config is not None else ClinicalConfig()
    changes = {}
    if bootstrap is not None:
        changes["n_bootstrap"] = bootstrap
    if seed is not None:
        changes["seed"] = seed
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    from dlmvi.stats.sites import nomogram_groups

    with echo_warnings():
        result = run_clinical(table, out, predictions=predictions,
                              develop_cohort=develop_cohort, config=cfg, column_map=column_map)
        groups = nomogram_groups(table, predictions, out, column_map=column_map)  # per cohort and scanner
    nomo = result["nomogram"]
    typer.echo(nomo["formula"])
    for name, m in nomo["validation"].items():
        lo, hi = m["auc_ci"]
        typer.echo(f"  {name} ({m['role']}, n = {m['n']}): AUC {m['auc']:.3f} "
                   f"({lo:.3f}-{hi:.3f}), Brier {m['brier']:.3f}")
    for g in ([] if groups is None else groups.to_dict("records")):
        if g["group_type"] == "scanner":
            typer.echo(f"  scanner {g['group']}: n = {g['n']}{' (small)' if g['small'] else ''}, AUC {g['auc']:.3f}, "
                       f"calibration intercept {g['calibration_intercept']:.3f}, slope {g['calibration_slope']:.3f}")
    typer.echo(f"wrote {len(result['files'])} files to {out}")
