"""CLI commands (network): ``dlmvi train`` and ``dlmvi predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app


@app.command()
def train(
    cache: Path = typer.Argument(..., help="Patch cache written by `dlmvi prepare`."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write (an unfinished run there is resumed)."),
    preset: str = typer.Option("fast", help="'paper': the published network and settings (320 px, 200 epochs; "
                               "needs a GPU); 'fast': a small network that trains in minutes on a laptop."),
    sequences: Optional[str] = typer.Option(None, help="MRI sequences to combine, comma-separated "
                                            "(e.g. T1,T1V,T1D). Default: every sequence in the cache."),
    classes: int = typer.Option(2, help="2: predict MVI absent/present; 3: predict the grade M0/M1/M2."),
    folds: int = typer.Option(5, help="Cross-validation folds (by patient, balanced for MVI); 0 skips it."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same splits and the same model."),
    develop_cohort: Optional[str] = typer.Option(None, "--develop-cohort", help="Cohort used to develop the "
                                                 "model (e.g. 2015). Default: every patient in the cache."),
    epochs: Optional[int] = typer.Option(None, help="Maximum training epochs (default: the preset's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per step (default: the preset's)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default: the preset's)."),
    patience: Optional[int] = typer.Option(None, help="Stop after this many epochs without a better "
                                           "validation loss; 0 never stops early (default: the preset's)."),
    class_weighting: bool = typer.Option(False, "--class-weighting", help="Weight the loss by inverse class frequency."),
    intensity_augmentation: str = typer.Option("standard", "--intensity-augmentation", help="'standard' (the study's augmentation) or 'strong' (random scanner-like intensity changes per sequence, a harmonisation)."),
    holdout: float = typer.Option(0.1, help="Share of training patients kept for validation (0.1 = the study's 9:1)."),
    sequence_dropout: float = typer.Option(0.0, "--sequence-dropout", help="Probability per sample and sequence of "
                                           "blanking that sequence while training (at least one kept), so the model "
                                           "can score patients missing a sequence; 0 disables it."),
    device: str = typer.Option("auto", help="cpu, cuda or auto (a GPU when one is available)."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
):
    """Train the DL-MVI network: cross-validation by patient, then the final model (RUN/final).

    Run it under `torchrun --nproc-per-node N dlmvi train ...` to train on several GPUs or
    machines at once.
    """
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.engine import init_distributed
    from dlmvi.train.run import run_training

    cfg = TrainConfig(
        preset=preset,
        sequences=tuple(s.strip() for s in sequences.split(",") if s.strip()) if sequences else None,
        classes=classes, folds=folds, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
        patience=patience, class_weighting=class_weighting, intensity_augmentation=intensity_augmentation, holdout=holdout,
        sequence_dropout=sequence_dropout,
        develop_cohort=develop_cohort, device=device, num_threads=threads, progress=progress,
    )
    rank, _ = init_distributed(device)
    result = run_training(cache, out, cfg)
    if rank == 0:
        if result.cv_metrics:
            m = result.cv_metrics
            typer.echo(f"cross-validated AUC {m['auc_mean']:.3f} (sd {m['auc_sd']:.3f}), "
                       f"accuracy {m['accuracy_mean']:.3f} over {folds} folds")
        typer.echo(f"final model: {result.final}")


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run folder written by `dlmvi train` (or a checkpoint folder)."),
    data: Path = typer.Argument(..., help="A patch cache, or a cohort folder (prepared on the fly with "
                                "the model's own preparation settings)."),
    out: Path = typer.Option(..., "--out", "-o", help="predictions.csv to write; the per-sequence "
                             "features go to NAME.features.npz beside it."),
    tta: bool = typer.Option(False, "--tta", help="Average over every combination of the key slices "
                             "instead of using the first slice of each sequence (as in the study)."),
    cohort: Optional[str] = typer.Option(None, help="Only patients of this cohort (e.g. 2018)."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    site: Optional[str] = typer.Option(None, "--site", help="Recalibrate to this site: the path of a "
                                       "sites/NAME.json written by `dlmvi recalibrate`, or NAME when RUN/sites/NAME.json "
                                       "exists. dl_prob becomes the recalibrated probability (the model's own is kept "
                                       "as dl_prob_model)."),
):
    """Predict the probability of MVI for every patient (dl_prob, dl_mvi columns)."""
    from dlmvi.model.checkpoint import load_checkpoint
    from dlmvi.model.inference import predict_cache, write_prediction
    from dlmvi.train.engine import resolve_device

    ck = load_checkpoint(run)
    cache_dir = data
    if not (Path(data) / "cache.json").is_file():
        from dlmvi.preprocess.prepare import prepare_cohort

        prep = ck.prepare
        if prep is None:
            from dlmvi.errors import ModelError

            raise ModelError(f"{ck.path}: the checkpoint does not record how its cache was prepared; "
                             "run `dlmvi prepare` on the cohort first and pass the cache")
        cache_dir = Path(out).with_name(Path(out).stem + "_cache")
        typer.echo(f"preparing {data} into {cache_dir} with the model's settings")
        prepare_cohort(data, cache_dir, prep)
    dev = str(resolve_device(device))
    pred = predict_cache(ck, cache_dir, cohort=cohort, tta=tta, device=dev)
    if site is not None:
        from dlmvi.model.inference import THRESHOLD
        from dlmvi.stats.recalibration import apply_site, read_site

        doc = read_site(run, site)
        pred.frame["dl_prob_model"] = pred.frame["dl_prob"]
        pred.frame["dl_prob"] = apply_site(pred.frame["dl_prob"].to_numpy(), doc, "dl")
        pred.frame["dl_mvi"] = (pred.frame["dl_prob"] >= THRESHOLD).astype(int)
        pred.frame["site"] = doc["site"]
        pred.meta["site"] = {"site": doc["site"], "method": doc["method"], "formula": doc["dl"]["formula"]}
        typer.echo(f"recalibrated to site {doc['site']} ({doc['dl']['formula']})")
    paths = write_prediction(pred, out)
    typer.echo(f"{len(pred.frame)} patients -> {paths['csv']} (features: {paths['features'].name})")
