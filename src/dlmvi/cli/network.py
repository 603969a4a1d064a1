"""CLI commands (network): ``dlmvi train`` and ``dlmvi predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app


PRESET_HELP = ("'paper': the published network and optimisation as written (320 px, Adam lr 0.1, batch 2; "
               "a GPU); 'recommended': the published network with a stable optimisation (AdamW, warm-up, "
               "cosine, batch 8 x 2; a GPU); 'fast': a small network that trains in minutes on a laptop.")


def optimisation_options(optimizer, weight_decay, schedule, warmup_epochs, accumulate, grad_clip, precision,
                         channels_last, compile_, workers) -> dict:
    """TrainConfig fields of the optimisation and execution options shared by train and ablate."""
    return dict(optimizer=optimizer, weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs,
                accumulate=accumulate, grad_clip=grad_clip, precision=precision, channels_last=channels_last,
                compile=compile_, workers=workers)


OPT = {
    "optimizer": lambda: typer.Option(None, help="adam or adamw (default: the preset's)."),
    "weight_decay": lambda: typer.Option(None, "--weight-decay", help="Weight decay (default: the preset's)."),
    "schedule": lambda: typer.Option(None, help="Learning rate: constant or cosine (default: the preset's)."),
    "warmup_epochs": lambda: typer.Option(None, "--warmup-epochs", help="Epochs of linear learning-rate warm-up "
                                          "(default: the preset's)."),
    "accumulate": lambda: typer.Option(None, help="Batches whose gradients make one step (gradient "
                                       "accumulation; default: the preset's)."),
    "grad_clip": lambda: typer.Option(None, "--grad-clip", help="Clip the gradient norm to this (0: off; "
                                      "default: the preset's)."),
    "precision": lambda: typer.Option("fp32", help="fp32; bf16 (autocast; Ampere or newer GPUs, CPUs); fp16 "
                                      "(autocast with loss scaling; older GPUs)."),
    "channels_last": lambda: typer.Option(False, "--channels-last", help="Channels-last memory layout (faster "
                                          "convolutions on tensor cores)."),
    "compile_": lambda: typer.Option(False, "--compile", help="torch.compile the network (a minute of "
                                     "compilation, then faster steps on a GPU)."),
    "workers": lambda: typer.Option(None, help="Processes preparing batches (default: 0 on a CPU, up to 4 on "
                                    "a GPU, with pinned memory)."),
}


@app.command()
def train(
    cache: Path = typer.Argument(..., help="Patch cache written by `dlmvi prepare`."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write (an unfinished run there is resumed)."),
    preset: str = typer.Option("fast", help=PRESET_HELP),
    sequences: Optional[str] = typer.Option(None, help="MRI sequences to combine, comma-separated "
                                            "(e.g. T1,T1V,T1D). Default: every sequence in the cache."),
    classes: int = typer.Option(2, help="2: predict MVI absent/present; 3: predict the grade M0/M1/M2."),
    folds: int = typer.Option(5, help="Cross-validation folds (by patient, balanced for MVI); 0 skips it."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same splits and the same model."),
    develop_cohort: Optional[str] = typer.Option(None, "--develop-cohort", help="Cohort used to develop the "
                                                 "model (e.g. 2015). Default: every patient in the cache."),
    epochs: Optional[int] = typer.Option(None, help="Maximum training epochs (default: the preset's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per forward pass (default: the preset's)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: the preset's)."),
    patience: Optional[int] = typer.Option(None, help="Stop after this many epochs without a better "
                                           "validation loss; 0 never stops early (default: the preset's)."),
    class_weighting: bool = typer.Option(False, "--class-weighting", help="Weight the loss by inverse class frequency."),
    intensity_augmentation: str = typer.Option("standard", "--intensity-augmentation", help="'standard' (the study's augmentation) or 'strong' (random scanner-like intensity changes per sequence, a harmonisation)."),
    holdout: float = typer.Option(0.1, help="Share of training patients kept for validation (0.1 = the study's 9:1)."),
    sequence_dropout: float = typer.Option(0.0, "--sequence-dropout", help="Probability per sample and sequence of "
                                           "blanking that sequence while training (at least one kept), so the model "
                                           "can score patients missing a sequence; 0 disables it."),
    harmonization: Optional[str] = typer.Option(None, "--harmonization", help="Fit an image harmonisation, "
                                                "'nyul' or 'global', for every model on its own training patients "
                                                "(each fold's, for honest out-of-fold figures) from a raw cache "
                                                "(`dlmvi prepare --normalization none`)."),
    optimizer: Optional[str] = OPT["optimizer"](),
    weight_decay: Optional[float] = OPT["weight_decay"](),
    schedule: Optional[str] = OPT["schedule"](),
    warmup_epochs: Optional[int] = OPT["warmup_epochs"](),
    accumulate: Optional[int] = OPT["accumulate"](),
    grad_clip: Optional[float] = OPT["grad_clip"](),
    precision: str = OPT["precision"](),
    channels_last: bool = OPT["channels_last"](),
    compile_: bool = OPT["compile_"](),
    workers: Optional[int] = OPT["workers"](),
    shard: Optional[str] = typer.Option(None, help="Train only share I/N of the folds and final model (e.g. "
                                        "2/5, one job of a job array); the last share to finish writes the "
                                        "tables, or run --merge."),
    merge: bool = typer.Option(False, "--merge", help="Combine the finished shares into cv_predictions.csv, "
                               "cv_metrics.json and run.json (as one run would write them)."),
    device: str = typer.Option("auto", help="cpu, cuda or auto (a GPU when one is available)."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
):
    """Train the DL-MVI network: cross-validation by patient, then the final model (RUN/final).

    Run it under `torchrun --nproc-per-node N -m dlmvi.cli train ...` to train each model on
    several GPUs or machines at once, or as N jobs with `--shard I/N` to train the folds in
    parallel.
    """
    from dlmvi.cli.app import echo_warnings
    from dlmvi.io.atomic import guard_output
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.engine import init_distributed
    from dlmvi.train.run import run_training

    guard_output(out, [cache])

    cfg = TrainConfig(
        preset=preset,
        sequences=tuple(s.strip() for s in sequences.split(",") if s.strip()) if sequences else None,
        classes=classes, folds=folds, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
        patience=patience, class_weighting=class_weighting, intensity_augmentation=intensity_augmentation, holdout=holdout,
        sequence_dropout=sequence_dropout, harmonization=harmonization,
        develop_cohort=develop_cohort, device=device, num_threads=threads, progress=progress,
        **optimisation_options(optimizer, weight_decay, schedule, warmup_epochs, accumulate, grad_clip, precision,
                               channels_last, compile_, workers),
    )
    rank, _ = init_distributed(device)
    with echo_warnings(show=rank == 0):
        result = run_training(cache, out, cfg, shard=shard, merge=merge)
    if rank == 0:
        _print_training(result, folds, shard)


def _print_training(result, folds: int, shard: str | None) -> None:
    if result.cv_metrics:
        m = result.cv_metrics
        typer.echo(f"cross-validated AUC {m['auc_mean']:.3f} (sd {m['auc_sd']:.3f}), "
                   f"accuracy {m['accuracy_mean']:.3f} over {folds} folds")
    if result.run.get("complete"):
        typer.echo(f"final model: {result.final}")
    else:
        typer.echo(f"share {shard} finished; other shares are still running (then `--merge`, or the "
                   "last share merges)")


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run folder written by `dlmvi train` or `dlmvi study` (or a checkpoint "
                               "folder), or a model folder written by `dlmvi export`."),
    data: Path = typer.Argument(..., help="A patch cache, or a cohort folder (prepared on the fly with "
                                "the model's own preparation settings). mvi_grade may be empty or absent "
                                "(prospective patients)."),
    out: Path = typer.Option(..., "--out", "-o", help="predictions.csv to write (a new file, outside the "
                             "inputs); the per-sequence features go to NAME.features.npz and the patients "
                             "not predicted, with the reason, to NAME.skipped.csv beside it."),
    tta: bool = typer.Option(False, "--tta", help="Average over every combination of the key slices "
                             "instead of using the first slice of each sequence (as in the study). An "
                             "exported model uses the setting it was exported with."),
    cohort: Optional[str] = typer.Option(None, help="Only patients of this cohort (e.g. 2018)."),
    columns: Optional[Path] = typer.Option(None, "--columns", help="TOML file mapping your clinical.csv "
                                           "column names and units onto dlmvi's (see README)."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    site: Optional[str] = typer.Option(None, "--site", help="Recalibrate to this site: the path of a "
                                       "sites/NAME.json written by `dlmvi recalibrate`, or NAME when RUN/sites/NAME.json "
                                       "exists. dl_prob becomes the recalibrated probability (the model's own is kept "
                                       "as dl_prob_model)."),
    backend: str = typer.Option("auto", help="With an exported model: auto (the fastest backend the folder holds: "
                                "int8, ONNX, PyTorch), onnx, or torch (forces PyTorch)."),
):
    """Predict the probability of MVI for every patient (dl_prob, dl_mvi columns).

    With a model folder from `dlmvi export` and a cohort folder, each patient is prepared as
    `dlmvi predict-patient` prepares one, and when the model holds a nomogram and
    clinical.csv has AFP the nomogram risk with its 95 % CI (nomogram_risk, nomogram_ci_low,
    nomogram_ci_high) and the decision are added: predictions for prospective patients.
    """
    from dlmvi.cli.app import echo_warnings
    from dlmvi.cli.cohort import column_map_option
    from dlmvi.deploy.batch import predict_folder

    with echo_warnings():
        done = predict_folder(run, data, out, tta=tta, cohort=cohort, columns=columns,
                              column_map=column_map_option(columns), device=device, site=site, log=typer.echo,
                              backend=backend)
    pred, paths = done.prediction, done.paths
    if done.site is not None:
        typer.echo(f"recalibrated to site {done.site['site']} ({done.site['formula']}"
                   f"{'; nomogram too' if done.site['nomogram_recalibrated'] else ''})")
    if len(pred.skipped):
        typer.echo(f"warning: {pred.skipped.summary(paths['skipped'])}", err=True)
    extra = ""
    if "nomogram_risk" in pred.frame:
        extra = f", nomogram risk for {int(pred.frame['nomogram_risk'].notna().sum())}"
    elif pred.meta.get("nomogram_note"):
        extra = f" ({pred.meta['nomogram_note']})"
    not_predicted = {r["patient_id"] for r in pred.skipped.rows if r.get("step", "prediction") == "prediction"}
    typer.echo(f"{len(pred.frame)} patients predicted{extra} -> {paths['csv']} "
               f"(features: {paths['features'].name}; not predicted: {len(not_predicted)}, "
               f"listed in {paths['skipped'].name})")
