"""CLI commands (evaluation): ``dlmvi evaluate``, ``dlmvi ablate``, ``dlmvi shift``, ``dlmvi harmonize``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app
from dlmvi.cli.network import OPT


@app.command()
def evaluate(
    predictions: Path = typer.Argument(..., help="predictions.csv written by `dlmvi predict` (or the "
                                       "cv_predictions.csv of a training run)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.json, metrics.csv, confusion "
                             "matrices and ROC curves."),
    cohort: Optional[Path] = typer.Option(None, "--cohort", help="Cohort folder: adds the figures per scanner "
                                          "(scanners.csv, or clinical.csv columns scanner_vendor, field_strength) "
                                          "to groups.csv."),
    min_group_size: int = typer.Option(30, "--min-group-size", help="Groups with fewer patients are flagged small."),
    columns: Optional[Path] = typer.Option(None, "--columns", help="TOML file mapping the --cohort's clinical.csv "
                                           "column names onto dlmvi's (see README)."),
):
    """Accuracy, precision, recall, F1, sensitivity, specificity, AUC with 95 % CI and ROC curve, per cohort.

    For models that predict the grade (M0/M1/M2) also per-grade and averaged (macro) figures.
    """
    from dlmvi.cli.app import echo_warnings
    from dlmvi.evaluate.metrics import run_evaluate
    from dlmvi.io.atomic import check_output_dir, guard_output
    from dlmvi.io.tables import prediction_threshold, read_predictions
    from dlmvi.layout import METRICS_JSON
    from dlmvi.cli.cohort import column_map_option
    from dlmvi.errors import CohortError
    from dlmvi.stats.sites import group_table, read_scanners, scanner_source, write_groups

    column_map = column_map_option(columns)
    if cohort is not None and not (cohort / "clinical.csv").is_file() and not (cohort / "scanners.csv").is_file():
        raise CohortError(f"--cohort {cohort}: not a cohort folder (no clinical.csv or scanners.csv there); give "
                          "the folder the predictions came from, for the figures per scanner")
    guard_output(out, [predictions, cohort, columns], replaces=True)
    check_output_dir(out, METRICS_JSON)
    with echo_warnings():  # the groups first: a bad scanners.csv stops before anything is written
        scanners = read_scanners(cohort, column_map=column_map) if cohort else None
        groups = group_table(read_predictions(predictions), "dl_prob", scanners, min_size=min_group_size,
                             threshold=prediction_threshold(predictions), decision_column="dl_mvi")
        doc = run_evaluate(predictions, out)
    if cohort is not None and scanners is None:
        typer.echo(f"warning: {cohort} records no scanner (no scanners.csv, no clinical.csv columns "
                   "scanner_vendor and field_strength): figures per cohort only", err=True)
    for name, r in doc["cohorts"].items():
        b = r["binary"]
        auc = "n/a" if b.get("auc") is None or b["auc"] != b["auc"] else (
            f"{b['auc']:.3f} ({b['auc_ci_low']:.3f}-{b['auc_ci_high']:.3f})")
        typer.echo(f"cohort {name}: n = {b['n']}, accuracy {b['accuracy']:.3f}, F1 {b['f1']:.3f}, AUC {auc}")
    write_groups(groups, out, scanner_source=scanner_source(cohort, column_map), min_size=min_group_size,
                 synthetic=bool(doc.get("synthetic")))
    for g in groups.to_dict("records"):
        if g["group_type"] == "scanner":
            typer.echo(f"scanner {g['group']}: n = {g['n']}{' (small)' if g['small'] else ''}, AUC {g['auc']:.3f}, "
                       f"calibration intercept {g['calibration_intercept']:.3f}, slope {g['calibration_slope']:.3f}")
    typer.echo(f"written to {out}")


@app.command()
def ablate(
    cache: Path = typer.Argument(..., help="Patch cache written by `dlmvi prepare` with every sequence to compare."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; rerunning it skips finished combinations."),
    combos: str = typer.Option("default", help="'default': the 6 single sequences and the study's "
                               "combinations; 'all3': every set of 3 sequences; or your own list, e.g. "
                               "'T1+T1V+T1D,T1V+T1D' ('+' joins sequences, ',' separates combinations)."),
    preset: str = typer.Option("fast", help="Network preset: 'fast' (minutes on a laptop), 'paper' or "
                               "'recommended' (the published network; a GPU)."),
    folds: int = typer.Option(5, help="Cross-validation folds (by patient, balanced for MVI)."),
    seed: int = typer.Option(0, help="Random seed (same seed = same folds and models)."),
    develop_cohort: Optional[str] = typer.Option("2015", "--develop-cohort", help="Cohort to cross-validate on."),
    classes: int = typer.Option(2, help="2: MVI absent/present; 3: grade M0/M1/M2."),
    epochs: Optional[int] = typer.Option(None, help="Maximum epochs per model (default: the preset's)."),
    precision: str = OPT["precision"](),
    channels_last: bool = OPT["channels_last"](),
    compile_: bool = OPT["compile_"](),
    workers: Optional[int] = OPT["workers"](),
    shard: Optional[str] = typer.Option(None, help="Train only share I/N of the combinations (e.g. 2/13, one "
                                        "job of a job array); the last share to finish writes the tables, "
                                        "or run --merge."),
    merge: bool = typer.Option(False, "--merge", help="Write ablation.csv and the tables from the finished "
                               "combinations of every share."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
):
    """Which MRI sequences carry the signal? Cross-validate every sequence combination.

    Writes ablation.csv (mean, sd and 95 % CI of accuracy, AUC, sensitivity, specificity and
    F1 per combination), a ranked table (ablation.md/.html) and a chart.
    """
    from dlmvi.evaluate.ablation import ranked_text_table, run_ablation
    from dlmvi.io.atomic import guard_output
    from dlmvi.train.config import TrainConfig

    guard_output(out, [cache])

    cfg = TrainConfig(preset=preset, classes=classes, folds=folds, seed=seed, epochs=epochs,
                      develop_cohort=develop_cohort, device=device, progress=progress, precision=precision,
                      channels_last=channels_last, compile=compile_, workers=workers)
    table = run_ablation(cache, out, combos=combos, base_config=cfg, folds=folds, seed=seed, shard=shard,
                         merge=merge)
    if table is None:
        typer.echo(f"share {shard} finished; other shares are still running (then `--merge`, or the last "
                   "share writes the tables)")
        return
    typer.echo(ranked_text_table(table)[["rank", "combination", "auc", "accuracy"]].to_string(index=False))
    typer.echo(f"written to {out}")


@app.command()
def shift(
    run: Path = typer.Argument(..., help="Run folder written by `dlmvi train` (or a checkpoint)."),
    cache: Path = typer.Argument(..., help="Patch cache with every cohort to compare."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for shift.json, the t-SNE figure and tables."),
    seed: int = typer.Option(0, help="Random seed of t-SNE, cross-validation and permutations."),
    reference: Optional[str] = typer.Option(None, help="Reference cohort (default: the model's development cohort)."),
    permutations: int = typer.Option(200, help="Permutations of the MMD test."),
):
    """Do the cohorts look different to the network? Per-sequence t-SNE and shift scores.

    For each sequence: how well a simple classifier tells the cohorts apart from the
    network's features (AUC; 0.5 = alike) and the maximum mean discrepancy with a p-value.
    """
    from dlmvi.evaluate.shift import run_shift
    from dlmvi.io.atomic import guard_output
    from dlmvi.model.checkpoint import load_checkpoint

    guard_output(out, [load_checkpoint(run).path.parent, cache])
    doc = run_shift(run, cache, out, seed=seed, reference=reference, n_permutations=permutations)
    for seq, d in doc["sequences"].items():
        for cohort, s in d.items():
            typer.echo(f"{seq}: {doc['reference_cohort']} vs {cohort}: separability AUC "
                       f"{s['separability_auc']:.3f}, MMD^2 {s['mmd2']:.4f} (p = {s['mmd_p_value']:.3f})")
    typer.echo(f"written to {out}")


@app.command()
def harmonize(
    cache: Path = typer.Argument(..., help="Patch cache prepared with `dlmvi prepare --normalization none`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder of the harmonised cache to write."),
    method: str = typer.Option("nyul", help="'nyul': histogram standardisation fitted on the development "
                               "cohort and applied unchanged to the others; 'zscore': each image scaled to "
                               "mean 0, sd 1; 'global': one scale per sequence from the development cohort "
                               "(no per-image correction, the no-harmonisation baseline)."),
    develop_cohort: Optional[str] = typer.Option("2015", "--develop-cohort", help="Cohort the standardisation is fitted on."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
):
    """Harmonise image intensities across cohorts (scanners) into a new patch cache.

    Train and predict on the new cache as usual; its cache.json records the method and the
    fitted landmarks.
    """
    from dlmvi.io.atomic import guard_output
    from dlmvi.preprocess.harmonize import harmonize_cache

    guard_output(out, [cache])
    c = harmonize_cache(cache, out, method=method, develop_cohort=develop_cohort, progress=progress)
    typer.echo(f"harmonised cache ({method}) with {len(c.index)} patches written to {out}")
