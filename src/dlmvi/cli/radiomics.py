"""CLI commands of the radiomics comparison: ``dlmvi radiomics`` and ``dlmvi compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app


def comparison_config(sequences: str = "T1,T1V,T1D", ring_mm: float = 5.0, families: str = "", bins: int = 32,
                      readers: int = 4, reproducibility_patients: int = 40, min_icc: Optional[float] = None,
                      dl_learning_curve: bool = True, workers: int = 1, seed: int = 0):
    """The :class:`~dlmvi.workflow.radiomics.ComparisonConfig` of the command-line options."""
    from dlmvi.cli.cohort import parse_sequences
    from dlmvi.preprocess.radiomics import FAMILIES, RadiomicsConfig
    from dlmvi.train.radscore import RadScoreConfig
    from dlmvi.workflow.radiomics import ComparisonConfig

    fams = tuple(f.strip() for f in families.split(",") if f.strip()) or FAMILIES
    rad = RadiomicsConfig(sequences=parse_sequences(sequences), ring_mm=ring_mm, families=fams, bins=bins,
                          readers=readers, reproducibility_patients=reproducibility_patients, seed=seed)
    return ComparisonConfig(radiomics=rad, radscore=RadScoreConfig(min_icc=min_icc, seed=seed),
                            dl_learning_curve=dl_learning_curve, workers=workers)


FAMILIES_HELP = ("MIRP feature families, comma-separated (default: statistics, intensity_histogram, glcm, glrlm, "
                 "glszm, morphology).")


@app.command("radiomics")
def radiomics(
    cohort: Path = typer.Argument(..., help="Cohort folder (clinical.csv, images/ with masks or rois.csv boxes)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder FEATURES (features.csv, reproducibility.csv, "
                             "rois.csv, radiomics.json, skipped.csv, cache/); a rerun only computes what changed."),
    sequences: str = typer.Option("T1,T1V,T1D", "--sequences", "-s", help="Sequences to read."),
    ring_mm: float = typer.Option(5.0, "--ring-mm", help="Width of the peritumoural ring in mm (at least one pixel; "
                                  "clipped to the image and to SEQ_liver.nii.gz where present); 0: tumour only."),
    families: str = typer.Option("", "--families", help=FAMILIES_HELP),
    bins: int = typer.Option(32, "--bins", help="Fixed number of bins of the intensity discretisation."),
    readers: int = typer.Option(4, "--readers", help="Perturbed readers (translation, grow/shrink, contour, noise) "
                                "for the reproducibility analysis; 0: none."),
    reproducibility_patients: int = typer.Option(40, "--reproducibility-patients", help="Patients perturbed."),
    workers: int = typer.Option(1, "--workers", help="Patients computed at once (processes)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the perturbations."),
    columns: Optional[Path] = typer.Option(None, "--columns", help="TOML column map of clinical.csv (see README)."),
):
    """IBSI-compliant radiomics features (MIRP) of the tumour and a peritumoural ring, per sequence.

    Patients whose features cannot be computed are listed in FEATURES/skipped.csv, naming
    patient, sequence and file, and left out (never imputed).
    """
    from dlmvi.cli.app import echo_warnings
    from dlmvi.io.atomic import guard_output
    from dlmvi.io.tables import ColumnMap
    from dlmvi.preprocess.radiomics import extract_cohort

    guard_output(out, [cohort, columns])
    cfg = comparison_config(sequences, ring_mm, families, bins, readers, reproducibility_patients, workers=workers,
                            seed=seed)
    with echo_warnings():
        res = extract_cohort(cohort, out, cfg.radiomics, ColumnMap.from_toml(columns) if columns else None,
                             workers=workers)
    if res.settings.get("synthetic"):
        typer.echo("*** SYNTHETIC cohort: features of the phantom ***")
    typer.echo(f"{len(res.features)} patients, {res.settings['n_features']} features "
               f"({res.computed} computed, {len(res.features) + len(res.skipped) - res.computed} from the cache), "
               f"{len(res.skipped)} left out; written to {out}")


@app.command("compare")
def compare(
    run: Path = typer.Argument(..., help="A finished study run (`dlmvi study`)."),
    features: Optional[Path] = typer.Option(None, "--features", help="A `dlmvi radiomics` output of the run's "
                                            "cohort (default: RUN/radiomics/features)."),
    min_icc: Optional[float] = typer.Option(None, "--min-icc", help="Keep only features with ICC >= this under ROI "
                                            "perturbation (computed inside each fold), e.g. 0.75."),
    no_dl_learning_curve: bool = typer.Option(False, "--no-dl-learning-curve", help="Skip DL-MVI's learning "
                                              "curve (it retrains each fold at 25/50/75 %)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the rad-score's inner cross-validation."),
    columns: Optional[Path] = typer.Option(None, "--columns", help="TOML column map of clinical.csv (see README)."),
):
    """Compare the clinical model, rad-score, DL-MVI and their combinations on the same patients and folds.

    Writes RUN/radiomics/ (comparison table, pairs with DeLong / LR test / NRI / IDI, per-patient
    predictions, figures, reproducibility, sample size, learning curves) and rebuilds the report.
    """
    import json

    from dlmvi.cli.app import echo_warnings
    from dlmvi.io.tables import ColumnMap
    from dlmvi.preprocess.radiomics import RadiomicsConfig
    from dlmvi.report.build import build_report
    from dlmvi.train.radscore import RadScoreConfig
    from dlmvi.workflow.radiomics import ComparisonConfig, features_dir, run_compare

    feat = features if features is not None else features_dir(run)
    meta = feat / "radiomics.json"
    rad = RadiomicsConfig.from_dict(json.loads(meta.read_text())["config"]) if meta.is_file() else RadiomicsConfig()
    cfg = ComparisonConfig(radiomics=rad, radscore=RadScoreConfig(min_icc=min_icc, seed=seed),
                           dl_learning_curve=not no_dl_learning_curve)
    with echo_warnings():
        summary = run_compare(run, cfg, features=features, column_map=ColumnMap.from_toml(columns) if columns else None,
                              log=typer.echo)
    print_comparison(summary)
    typer.echo(f"Report: {build_report(run)}")


def print_comparison(summary: dict) -> None:
    """The comparison table on the terminal."""
    if summary.get("synthetic"):
        typer.echo("*** SYNTHETIC data: not clinical evidence ***")
    typer.echo(f"{'cohort':34s} {'model':30s} {'n':>4s} {'AUC (95% CI)':>20s} {'slope':>6s} {'Brier':>6s}")
    for r in summary["comparison"]["table"]:
        typer.echo(f"{r['cohort']:34s} {r['model']:30s} {r['n']:4d} {r['auc']:7.3f} ({r['auc_ci_low']:.3f}-"
                   f"{r['auc_ci_high']:.3f}) {r['calibration_slope']:6.2f} {r['brier']:6.3f}")
