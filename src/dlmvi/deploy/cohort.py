"""Predictions for a whole cohort from an exported model (``dlmvi predict MODEL_DIR COHORT``).

Prospective patients (no ``mvi_grade`` yet, the tool's purpose) are predicted exactly as one
patient is by ``dlmvi predict-patient``: each patient's images go through
:func:`dlmvi.deploy.patient.prepare_patient` (the model's preparation, normalisation and
harmonisation; acquisition-plane and spacing checks), then the network. When the model holds a
nomogram and the cohort's ``clinical.csv`` has its inputs (``afp``, read with the value policy
and the ``--columns`` units map), each patient also gets the nomogram risk with its 95 % CI
and the decision at the model's threshold.

Columns written (``predictions.csv`` convention plus): ``nomogram_risk``,
``nomogram_ci_low``, ``nomogram_ci_high`` (0-1, delta method on the logit, as predict-patient),
``decision`` ("MVI likely"/"MVI unlikely") and ``decision_basis`` ("nomogram" or "DL-MVI").
Patients that cannot be predicted (a missing sequence, an unreadable mask, an error in their
table row) or get no nomogram risk (no AFP) are listed with the reason in ``skipped``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.errors import CohortError, DlmviWarning, ModelError


def is_exported_model(path) -> bool:
    """True when ``path`` is a folder written by ``dlmvi export`` (not a training run)."""
    from dlmvi.deploy.model import CONFIG_NAME, MODEL_FORMAT_NAME

    p = Path(path)
    j = p / CONFIG_NAME if p.is_dir() else p
    if j.name != CONFIG_NAME or not j.is_file():
        return False
    try:
        doc = json.loads(j.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False
    return isinstance(doc, dict) and str(doc.get("format", "")).startswith(MODEL_FORMAT_NAME + "/")


def predict_cohort(model, cohort_dir, column_map=None, cohort: str | None = None, batch_size: int = 16,
                   backend: str = "auto"):
    """Predict every patient of a cohort folder with an exported model.

    Args:
        model: an exported model folder or a loaded :class:`~dlmvi.deploy.model.ExportedModel`.
        cohort_dir: the cohort folder (clinical.csv, images/); ``mvi_grade`` may be absent.
        column_map: the hospital's column names and units (``--columns``).
        cohort: only patients of this cohort.
        batch_size: patients per forward pass (their images are held in memory meanwhile).
        backend: when the model is loaded here: ``auto``, ``onnx`` or ``torch``
            (:func:`dlmvi.deploy.model.load_model`).

    Returns:
        :class:`~dlmvi.model.inference.Prediction` (frame, features, skipped, meta).

    Raises:
        CohortError: no patient could be predicted (the reasons of the first few).
        ModelError: ``model`` is not an exported model.
    """
    from dlmvi.cohort.cohort import Cohort
    from dlmvi.deploy.model import ExportedModel, load_model
    from dlmvi.io.skipped import Skipped
    from dlmvi.model.inference import Prediction, predictions_frame

    em = model if isinstance(model, ExportedModel) else load_model(model, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DlmviWarning)  # table warnings: `dlmvi validate` lists them
        co = Cohort.from_folder(cohort_dir, column_map)
    patients = [p for p in co if cohort is None or p.cohort == str(cohort)]
    if cohort is not None and not patients:
        raise CohortError(f"{cohort_dir}: no patient of cohort {cohort!r} in clinical.csv "
                          f"(cohorts: {', '.join(sorted({p.cohort for p in co}))})")
    skipped = Skipped("the predictions")
    rows, probs, feats = _predict_batches(em, co, patients, skipped, batch_size)
    ids, cohorts, grades, missing = (list(c) for c in zip(*rows)) if rows else ([], [], [], [])
    if not ids:
        raise CohortError(f"no patient of {cohort_dir} could be predicted ({skipped.summary(show=3)}); "
                          f"run `dlmvi validate {cohort_dir}` for every problem")
    prob = np.concatenate(probs)
    frame = predictions_frame(ids, cohorts, grades, prob, threshold=em.dl_threshold)
    if any(missing):  # which sequences each patient lacked (their branch blanked), and what that costs
        frame["sequences_missing"] = missing
    nomogram_note = _add_nomogram(frame, em, co.table.frame, skipped)
    return Prediction(frame=frame, features=np.concatenate(feats).astype(np.float32),
                      sequences=tuple(em.sequences), meta=_cohort_meta(em, co, cohort_dir, nomogram_note, skipped, missing),
                      skipped=skipped)


def _table_errors(co) -> dict[str, list[str]]:
    """clinical.csv's errors per patient (such a patient is skipped, with them as the reason)."""
    errors: dict[str, list[str]] = {}
    for level, pid, col, msg in co.table.problems:
        if level == "error":
            errors.setdefault(pid, []).append(f"{col}: {msg}")
    return errors


def _predict_batches(em, co, patients, skipped, batch_size: int):
    """Prepare each patient as predict-patient does and predict ``batch_size`` at a time; returns
    (rows of (id, cohort, grade, missing sequences), probability arrays, feature arrays)."""
    from dlmvi.deploy.patient import prepare_patient
    from dlmvi.model.inference import predict_arrays

    encoder = em.encoder()
    table_errors = _table_errors(co)
    rows, probs, feats, batch = [], [], [], []

    def flush():
        if batch:
            p, f = predict_arrays(em.model if encoder is None else em.fusion, np.stack(batch), tta=em.tta,
                                  batch_size=batch_size, encoder=encoder)
            probs.append(p)
            feats.append(f)
            batch.clear()

    for patient in patients:
        pid = patient.patient_id
        if pid in table_errors:
            skipped.add(pid, "clinical.csv: " + "; ".join(table_errors[pid]), step="prediction")
            continue
        try:  # the sources as the cohort found them (its rois.csv and volumes.toml)
            prepared = prepare_patient(em, co.root / "images" / pid, pid, sources=patient.sources)
        except CohortError as exc:
            skipped.add(pid, str(exc), step="prediction")
            continue
        # a model trained with sequence dropout may score a patient without a sequence
        rows.append((pid, patient.cohort, patient.mvi_grade, ",".join(prepared["missing"])))
        batch.append(prepared["patches"])
        if len(batch) >= batch_size:
            flush()
    flush()
    return rows, probs, feats


def _cohort_meta(em, co, cohort_dir, nomogram_note, skipped, missing) -> dict:
    meta = {
        "model": str(em.path),
        "cohort": str(Path(cohort_dir)),
        "tta": bool(em.tta),
        "input": "mean over all slice combinations" if em.tta else "first slice of each sequence",
        "sequences": list(em.sequences),
        "classes": em.classes,
        "threshold": em.dl_threshold,
        "risk_threshold": em.risk_threshold,
        "nomogram": (em.nomogram or {}).get("formula"),
        "nomogram_note": nomogram_note,
        "backend": em.backend_info,
        "synthetic": bool(co.synthetic or em.synthetic),
        "n_skipped": len(skipped),
    }
    if any(missing):
        meta["sequences_missing"] = {"patients": sum(map(bool, missing)),
                                     "development_auc": (em.config.get("robustness") or {}).get("sequence_removed")}
    return meta



def _add_nomogram(frame: pd.DataFrame, em, table: pd.DataFrame, skipped) -> str | None:
    """Add nomogram risk, CI and decision columns; returns why there is no risk, or None."""
    from dlmvi.stats.nomogram import NomogramModel

    frame["decision_basis"] = "DL-MVI"
    frame["decision"] = np.where(frame["dl_mvi"] == 1, "MVI likely", "MVI unlikely")
    if not em.nomogram:
        return "the model was exported without a nomogram"
    try:
        nomo = NomogramModel.from_json(em.nomogram)
    except Exception as exc:  # load_model checked it; a failure here is a corrupt model
        raise ModelError(f"{em.path}: the nomogram cannot be used ({exc}); re-export the model") from None
    clinical_inputs = [c for c in nomo.predictors if c not in ("dl_mvi", "dl_prob")]
    absent = [c for c in clinical_inputs if c not in table.columns]
    if absent:
        note = (f"no nomogram risk: clinical.csv has no column {', '.join(absent)} "
                "(the nomogram's inputs; map your own column names with --columns)")
        warnings.warn(note, DlmviWarning, stacklevel=3)
        return note
    values = frame[["patient_id", "dl_prob", "dl_mvi"]].merge(
        table[["patient_id", *clinical_inputs]], on="patient_id", how="left")
    for c in clinical_inputs:
        values[c] = pd.to_numeric(values[c], errors="coerce")
    complete = values[list(nomo.predictors)].notna().all(axis=1).to_numpy()
    frame["nomogram_risk"] = np.nan
    frame["nomogram_ci_low"] = np.nan
    frame["nomogram_ci_high"] = np.nan
    if complete.any():
        iv = nomo.predict_interval(values.loc[complete, list(nomo.predictors)])
        frame.loc[complete, "nomogram_risk"] = iv["prob"].to_numpy()
        frame.loc[complete, "nomogram_ci_low"] = iv["ci_low"].to_numpy()
        frame.loc[complete, "nomogram_ci_high"] = iv["ci_high"].to_numpy()
        likely = frame.loc[complete, "nomogram_risk"] >= em.risk_threshold
        frame.loc[complete, "decision"] = np.where(likely, "MVI likely", "MVI unlikely")
        frame.loc[complete, "decision_basis"] = "nomogram"
    for pid in frame.loc[~complete, "patient_id"]:
        skipped.add(pid, f"no nomogram risk: {', '.join(clinical_inputs)} empty in clinical.csv "
                    "(DL-MVI prediction written)", step="nomogram")
    return None


__all__ = ["predict_cohort", "is_exported_model"]
