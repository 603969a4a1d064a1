"""``dlmvi recalibrate``: fit a site's recalibration and store it in the model folder.

The site's labelled patients (a ``predictions.csv`` of ``dlmvi predict`` with ``label``, or
any table with ``patient_id``, ``label`` or ``mvi_grade`` and ``dl_prob``) update DL-MVI
and, when the model has a nomogram and its inputs are available (columns of the table or of
``--clinical``), the nomogram's linear predictor (:mod:`dlmvi.stats.recalibration`). The
result is ``MODEL_DIR/sites/NAME.json``, written atomically; the model card lists it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.deploy.model import model_thresholds
from dlmvi.errors import ConfigError, ModelError, StatisticsError, StatisticsWarning


def _model_nomogram(model_dir: Path) -> tuple[dict | None, dict]:
    """(nomogram, model.json) of an exported model folder."""
    from dlmvi.deploy.model import CONFIG_NAME

    p = model_dir / CONFIG_NAME
    if not p.is_file():
        run = (model_dir / "run.json").is_file() or (model_dir / "train" / "run.json").is_file()
        fix = (f"export it first: `dlmvi export {model_dir} MODEL_DIR`, then recalibrate MODEL_DIR" if run
               else "give the folder written by `dlmvi export RUN MODEL_DIR`")
        raise ModelError(f"{model_dir}: no {CONFIG_NAME}, so not an exported model; {fix}")
    doc = json.loads(p.read_text())
    if not str(doc.get("format", "")).startswith("dlmvi-model/"):
        raise ModelError(f"{p}: not an exported dlmvi model; export it with `dlmvi export RUN MODEL_DIR`")
    return doc.get("nomogram") or None, doc


def read_labelled(predictions, clinical=None) -> pd.DataFrame:
    """The site's labelled patients: ``patient_id, y, dl_prob`` (+ clinical columns).

    Raises:
        StatisticsError: missing columns, no labelled patient, probabilities outside [0, 1].
    """
    from dlmvi.evaluate.metrics import read_predictions
    from dlmvi.stats.clinical import mvi_outcome

    path = Path(predictions)
    df = read_predictions(path)
    if "dl_prob" not in df.columns or "patient_id" not in df.columns:
        raise StatisticsError(f"{path}: needs columns patient_id and dl_prob (the output of `dlmvi predict`)")
    if "label" in df.columns and pd.to_numeric(df["label"], errors="coerce").notna().any():
        y = pd.to_numeric(df["label"], errors="coerce")
    elif "mvi_grade" in df.columns:
        y = mvi_outcome(df)
    else:
        raise StatisticsError(f"{path}: no outcome; add a column label (0/1) or mvi_grade (M0/M1/M2) for the "
                              "site's patients")
    bad = y.notna() & ~y.isin([0, 1])
    if bad.any():
        raise StatisticsError(f"{path}: label must be 0/1; patients {df.loc[bad, 'patient_id'].head(5).tolist()} "
                              "have other values")
    p = pd.to_numeric(df["dl_prob"], errors="coerce")
    badp = p.notna() & ((p < 0) | (p > 1))
    if badp.any():
        raise StatisticsError(f"{path}: dl_prob must be a probability in [0, 1]; patients "
                              f"{df.loc[badp, 'patient_id'].head(5).tolist()} are not")
    df = df.assign(y=y, dl_prob=p)
    df = df[df["y"].notna() & df["dl_prob"].notna()].reset_index(drop=True)
    if df.empty:
        raise StatisticsError(f"{path}: no patient has both an outcome and dl_prob; the recalibration needs the "
                              "site's labelled patients")
    if clinical is not None:
        cl = pd.read_csv(clinical, dtype={"patient_id": str})
        extra = [c for c in cl.columns if c not in df.columns]
        df = df.merge(cl[["patient_id", *extra]], on="patient_id", how="left")
    return df


def recalibrate_model(model_dir, predictions, site: str, method: str = "logistic", clinical=None,
                      folds: int = 5, seed: int = 0) -> tuple[Path, dict]:
    """Fit and store ``MODEL_DIR/sites/SITE.json``; returns (path, document).

    Args:
        model_dir: exported model folder (``dlmvi export``).
        predictions: the site's labelled predictions (see the module docstring).
        site: the site's name.
        method: ``intercept`` (calibration-in-the-large) or ``logistic``.
        clinical: optional clinical.csv with the nomogram's inputs (e.g. afp), joined by
            patient_id.
        folds, seed: of the cross-validated before/after figures.
    """
    from dlmvi.deploy.card import write_model_card
    from dlmvi.stats.nomogram import NomogramModel
    from dlmvi.stats.recalibration import check_site_name, site_document, write_site

    model_dir = Path(model_dir)
    check_site_name(site)
    nomogram, doc = _model_nomogram(model_dir)
    pred_path = Path(predictions).resolve()
    if model_dir.resolve() in pred_path.parents:
        raise ConfigError(f"{predictions}: keep the site's predictions outside the model folder {model_dir}")
    data = read_labelled(predictions, clinical)
    lp = None
    if nomogram is not None:
        nm = NomogramModel.from_json(nomogram)
        missing = [c for c in nm.predictors if c not in data.columns and c != "dl_mvi"]
        if "dl_mvi" in nm.predictors and "dl_mvi" not in data.columns:
            data["dl_mvi"] = (data["dl_prob"] >= model_thresholds(doc)[0]).astype(int)
        if missing:
            warnings.warn(f"site {site}: the nomogram is not recalibrated: column(s) {missing} missing from "
                          f"{predictions}{' and ' + str(clinical) if clinical else ''} (pass --clinical clinical.csv)",
                          StatisticsWarning, stacklevel=2)
        else:
            lp = nm.predict_lp(data)
    threshold = model_thresholds(doc)[0]
    site_doc = site_document(site, data["y"].astype(int).to_numpy(), data["dl_prob"].to_numpy(), method,
                             nomogram_lp=lp, folds=folds, seed=seed, source=pred_path.name,
                             synthetic=bool(doc.get("synthetic")), threshold=threshold)
    site_doc["model_weights_sha256"] = doc.get("weights_sha256")  # the model it belongs to
    path = write_site(model_dir, site_doc)
    try:
        write_model_card(model_dir)
    except (OSError, ValueError, KeyError) as exc:  # the card is a summary: never lose the site over it
        warnings.warn(f"model card not updated: {exc}", StatisticsWarning, stacklevel=2)
    return path, site_doc


def apply_site_to_prediction(pred, site_doc: dict, *, dl_threshold: float, risk_threshold: float | None):
    """Recalibrate a cohort's predictions (``dlmvi predict --site``) in place.

    ``dl_prob`` becomes the site's probability (the model's own is kept as ``dl_prob_model``)
    and ``dl_mvi`` follows it; when the frame has the nomogram's risk and the site holds a
    nomogram update, ``nomogram_risk`` and its CI bounds are mapped through that (monotone)
    update (the model's risk kept as ``nomogram_risk_model``) and the decision follows. The
    nomogram itself was computed from the model's own DL-MVI, as it was fitted.

    Args:
        pred: a :class:`~dlmvi.model.inference.Prediction`.
        site_doc: :func:`dlmvi.stats.recalibration.read_site`'s document.
        dl_threshold, risk_threshold: the model's thresholds (the nomogram's decision needs
            ``risk_threshold``; None only for predictions without a nomogram risk).

    Raises:
        ConfigError: predictions with a nomogram risk but no ``risk_threshold``.

    Returns:
        the ``site`` entry recorded in ``pred.meta``.
    """
    from dlmvi.stats.recalibration import apply_site

    f = pred.frame
    f["dl_prob_model"] = f["dl_prob"]
    f["dl_prob"] = apply_site(f["dl_prob"].to_numpy(dtype=float), site_doc, "dl")
    f["dl_mvi"] = (f["dl_prob"] >= dl_threshold).astype(int)
    nomogram = bool(site_doc.get("nomogram")) and "nomogram_risk" in f.columns
    if nomogram and risk_threshold is None:
        raise ConfigError("the predictions hold a nomogram risk but no risk threshold was given for its decision")
    if nomogram:
        f["nomogram_risk_model"] = f["nomogram_risk"]
        bounds = np.sort(np.stack([apply_site(f[c].to_numpy(dtype=float), site_doc, "nomogram")
                                   for c in ("nomogram_ci_low", "nomogram_ci_high")]), axis=0)
        f["nomogram_risk"] = apply_site(f["nomogram_risk"].to_numpy(dtype=float), site_doc, "nomogram")
        f["nomogram_ci_low"], f["nomogram_ci_high"] = bounds[0], bounds[1]
    if "decision" in f.columns:
        by_nomogram = f["decision_basis"].eq("nomogram") if nomogram else np.zeros(len(f), dtype=bool)
        likely = np.where(by_nomogram, f.get("nomogram_risk", f["dl_prob"]) >= (risk_threshold if nomogram else 1.0),
                          f["dl_prob"] >= dl_threshold)
        f["decision"] = np.where(likely, "MVI likely", "MVI unlikely")
    f["site"] = site_doc["site"]
    info = {"site": site_doc["site"], "method": site_doc["method"], "formula": site_doc["dl"]["formula"],
            "fitted_on": f"{site_doc['n']} patients ({site_doc['n_events']} with MVI)",
            "nomogram_recalibrated": nomogram}
    pred.meta["site"] = info
    return info


__all__ = ["recalibrate_model", "read_labelled", "apply_site_to_prediction"]
