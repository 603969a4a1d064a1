"""CLI commands that run the whole study: ``study``, ``report`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app


def _print_headline(h: dict) -> None:
    typer.echo("")
    typer.echo("Headline numbers" + (" (SYNTHETIC data: not clinical evidence)" if h.get("synthetic") else ""))
    if "cv_auc_mean" in h:
        typer.echo(f"  DL-MVI cross-validated AUC (development): {h['cv_auc_mean']:.3f} (sd {h['cv_auc_sd']:.3f})")
    for cohort, m in (h.get("evaluate") or {}).items():
        ci = m.get("auc_ci") or [None, None]
        ci_txt = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if None not in ci else ""
        auc = m.get("auc")
        typer.echo(f"  DL-MVI cohort {cohort}: n={m.get('n')}, AUC {auc:.3f}{ci_txt}, accuracy {m.get('accuracy', float('nan')):.1%}"
                   if auc is not None else f"  DL-MVI cohort {cohort}: n={m.get('n')}")
    if h.get("nomogram_formula"):
        typer.echo(f"  Nomogram: {h['nomogram_formula']}")
        for cohort, auc in (h.get("nomogram_auc") or {}).items():
            if auc is not None:
                typer.echo(f"    AUC {cohort}: {auc:.3f}")
    typer.echo(f"Report: {h['report']}")


@app.command()
def study(
    cohort: Path = typer.Argument(..., help="Cohort folder holding clinical.csv and images/."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (rerunning resumes where it stopped)."),
    preset: str = typer.Option("fast", "--preset", help="'fast' (minutes on a CPU), 'paper' (the published network and optimisation as written: 320 px, Adam lr 0.1, batch 2; wants a GPU) or 'recommended' (the published network with a stable optimisation; wants a GPU)."),
    sequences: str = typer.Option("T1,T1V,T1D", "--sequences", "-s", help="Sequences the network fuses."),
    develop_cohort: Optional[str] = typer.Option("2015", "--develop-cohort", help="Cohort used to develop the models; the others are external validation. 'none': all patients, no external validation."),
    folds: int = typer.Option(5, "--folds", help="Patient-level cross-validation folds."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step (same seed, same results)."),
    normalization: str = typer.Option("zscore", "--normalization", help="Intensity harmonisation across scanners: zscore (per image), nyul (histogram standardisation fitted on the development cohort) or global (one scale per sequence from the development cohort: no harmonisation)."),
    intensity_augmentation: str = typer.Option("standard", "--intensity-augmentation", help="'standard' (the study's augmentation) or 'strong' (random scanner-like intensity changes per sequence)."),
    ablate: bool = typer.Option(False, "--ablate", help="Also run the sequence ablation (one cross-validation per combination; slow)."),
    tta: bool = typer.Option(False, "--tta", help="Average predictions over all slice combinations."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum training epochs per model (default: the preset's)."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap resamples for the nomogram's optimism correction (default 200, or the --clinical-config's)."),
    transport: bool = typer.Option(False, "--transport", help="Also compare, on the external cohort(s): no image "
                                   "harmonisation, Nyul, ComBat on the network's features, and recalibration on half "
                                   "(trains the final model once more per image harmonisation)."),
    sequence_dropout: float = typer.Option(0.0, "--sequence-dropout", help="Train with sequence dropout (probability "
                                           "per sequence of blanking it) so the model tolerates a missing sequence."),
    clinical_config: Optional[Path] = typer.Option(None, "--clinical-config", help="variables.toml for the clinical stage: Table 1 variables, cut-offs, p-value threshold, nomogram predictors (as `dlmvi clinical --config`)."),
    columns: Optional[Path] = typer.Option(None, "--columns", help="TOML file mapping your clinical.csv column names and units onto dlmvi's (see README); used by every stage."),
    radiomics: bool = typer.Option(False, "--radiomics", help="Also compare DL-MVI with a radiomics rad-score (MIRP "
                                   "features, same folds) and the clinical model: table, figures, NRI/IDI, "
                                   "reproducibility, sample size, learning curves (RUN/radiomics/)."),
    ring_mm: float = typer.Option(5.0, "--ring-mm", help="With --radiomics: peritumoural ring width in mm."),
    min_icc: Optional[float] = typer.Option(None, "--min-icc", help="With --radiomics: keep features with ICC >= "
                                            "this under ROI perturbation (inside each fold), e.g. 0.75."),
):
    """Run the whole study: prepare, train, predict, evaluate, (ablate,) shift, clinical
    statistics, survival and the HTML report.

    Each stage is skipped when its outputs are up to date, so rerunning after a crash resumes.
    Every input is checked first (clinical table, column map, configuration, development
    cohort, images), so a mistake stops the study in seconds, before any training.
    """
    from dlmvi.cli.cohort import parse_sequences
    from dlmvi.stats.config import load_config
    from dlmvi.workflow.study import Study, StudyConfig

    dev = None if develop_cohort in (None, "", "none", "None") else develop_cohort
    cfg = StudyConfig.from_options(
        cohort, preset=preset, sequences=parse_sequences(sequences), develop_cohort=dev, folds=folds, seed=seed,
        normalization=normalization, intensity_augmentation=intensity_augmentation, ablate=ablate, tta=tta,
        epochs=epochs, bootstrap=bootstrap, clinical=load_config(clinical_config) if clinical_config else None,
        columns=columns, transport=transport, sequence_dropout=sequence_dropout,
        radiomics=_radiomics_config(radiomics, sequences, ring_mm, min_icc, seed))
    _print_headline(Study(cfg, out, log=typer.echo).run())


def _radiomics_config(on: bool, sequences: str, ring_mm: float, min_icc, seed: int):
    if not on:
        return None
    from dlmvi.cli.radiomics import comparison_config

    return comparison_config(sequences, ring_mm, min_icc=min_icc, seed=seed)


@app.command()
def report(run: Path = typer.Argument(..., help="Run folder written by `dlmvi study`.")):
    """Write RUN/report.html: one self-contained file with every table and figure of the study."""
    from dlmvi.report.build import build_report

    typer.echo(str(build_report(run)))


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Where the synthetic cohort and the run are written."),
    patients: int = typer.Option(321, "--patients", help="Number of synthetic patients (2015 and 2018 cohorts in the study's proportions)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the phantom and of the study."),
    ablate: bool = typer.Option(False, "--ablate", help="Also run the sequence ablation (slow)."),
    folds: int = typer.Option(5, "--folds", help="Patient-level cross-validation folds."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum training epochs (default: the fast preset's)."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap resamples for the nomogram's optimism correction (default 200)."),
):
    """The whole study on the built-in SYNTHETIC cohort (fast preset, a few minutes on a CPU).

    The synthetic phantom mimics the study's data so every stage can be seen working; its
    results say nothing about real patients.
    """
    from dlmvi.workflow.demo import run_demo

    typer.echo("dlmvi demo: SYNTHETIC data only; nothing here is clinical evidence.")
    _print_headline(run_demo(out, patients=patients, seed=seed, ablate=ablate, folds=folds, epochs=epochs,
                             bootstrap=bootstrap, log=typer.echo))
