"""CLI command for taking the model to another hospital: ``dlmvi recalibrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app


@app.command("recalibrate")
def recalibrate(
    model_dir: Path = typer.Argument(..., help="Model folder written by `dlmvi export`; the site's update is "
                                     "stored in MODEL_DIR/sites/NAME.json."),
    predictions: Path = typer.Argument(..., help="The site's labelled patients: predictions.csv of `dlmvi predict` "
                                       "(patient_id, dl_prob, label or mvi_grade)."),
    site: str = typer.Option(..., "--site", help="Name of the site (letters, digits, '-', '_', '.')."),
    method: str = typer.Option("logistic", "--method", help="'intercept': calibration-in-the-large (slope fixed at "
                               "1); 'logistic': intercept and slope on the logit."),
    clinical: Optional[Path] = typer.Option(None, "--clinical", help="clinical.csv with the nomogram's inputs "
                                            "(e.g. afp) to recalibrate the nomogram too."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds of the before/after figures."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fold assignment."),
):
    """Recalibrate DL-MVI (and the nomogram) to a new site's labelled patients.

    Prints AUC, calibration intercept and slope and Brier score before and after, the 'after'
    estimated by cross-validation within the site's sample (each patient scored by an update
    fitted on the other folds). `dlmvi predict-patient --site NAME` then applies the update.
    """
    from dlmvi.cli.app import echo_warnings
    from dlmvi.deploy.site import recalibrate_model

    with echo_warnings():
        path, doc = recalibrate_model(model_dir, predictions, site, method=method, clinical=clinical,
                                      folds=folds, seed=seed)
    if doc.get("synthetic"):
        typer.echo("*** SYNTHETIC model: these numbers describe synthetic data only ***")
    typer.echo(f"site {doc['site']}: {doc['n']} labelled patients ({doc['n_events']} with MVI), method {doc['method']}")
    for key, name in (("dl", "DL-MVI"), ("nomogram", "nomogram")):
        if not doc.get(key):
            continue
        cv = doc[f"{key}_cv"]
        typer.echo(f"  {name}: {doc[key]['formula']}")
        typer.echo(f"    {'':8s} {'AUC':>7s} {'cal. intercept':>15s} {'cal. slope':>11s} {'Brier':>7s}")
        for when in ("before", "after"):
            m = cv[when]
            typer.echo(f"    {when:8s} {m['auc']:7.3f} {m['calibration_intercept']:15.3f} "
                       f"{m['calibration_slope']:11.3f} {m['brier']:7.3f}")
    typer.echo(f"  after = {cv['folds']}-fold cross-validation within the site (seed {cv['seed']})")
    typer.echo(f"written to {path}")
