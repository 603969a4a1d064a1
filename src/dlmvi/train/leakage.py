"""Checks that a training run kept its patients apart: :func:`audit_run`.

Read from the run's own files (``splits.json``, every fold's and the final model's checkpoint,
``cv_predictions.csv``), it verifies what honest out-of-fold figures need:

* every fold's training, early-stopping and test patients are disjoint, and every development
  patient is tested by exactly one fold;
* each fold's checkpoint was trained on the patients ``splits.json`` says (so no fold model
  saw its test patients);
* a harmonisation fitted for a model (``--harmonization``) was fitted on that model's training
  patients only: never on its test patients;
* every out-of-fold prediction comes from the fold that tested the patient.

A study runs it after its predictions and records the verdict (``study.json``: ``leakage``);
a problem stops the study, naming the fold and the patients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dlmvi.errors import CacheError
from dlmvi.layout import TrainLayout


@dataclass
class LeakageAudit:
    """What :func:`audit_run` checked and found.

    Attributes:
        checked: one line per check that ran.
        problems: one line per leak found (empty: none).
    """

    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"passed": self.ok, "checked": self.checked, "problems": self.problems}


def _names(ids, limit: int = 5) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _split_sets(d: dict) -> tuple[set, set, set]:
    return tuple({str(p) for p in d.get(k, ())} for k in ("train", "val", "test"))


def audit_run(run_dir) -> LeakageAudit:
    """Audit a finished training run folder (``dlmvi train`` or ``RUN/train`` of a study).

    Raises:
        CacheError: the folder is not a finished training run (no ``splits.json``).
    """
    import pandas as pd

    lay = TrainLayout(run_dir)
    if not lay.splits_json.is_file():
        raise CacheError(f"{lay.root}: no splits.json; audit a finished training run")
    splits = json.loads(lay.splits_json.read_text())
    folds = splits.get("folds") or []
    audit = LeakageAudit()
    tested: dict[str, int] = {}
    for i, d in enumerate(folds):
        train, val, test = _split_sets(d)
        for a, b, what in ((train, test, "training and test"), (val, test, "early-stopping and test"),
                           (train, val, "training and early-stopping")):
            if a & b:
                audit.problems.append(f"fold {i + 1}: patients on both its {what} sides: {_names(a & b)}")
        for p in test:
            tested[p] = tested.get(p, 0) + 1
        _audit_checkpoint(lay.fold(i), f"fold {i + 1}", train, val, test, audit)
    if folds:
        audit.checked.append(f"{len(folds)} folds: training, early-stopping and test patients disjoint")
        twice = [p for p, k in tested.items() if k > 1]
        if twice:
            audit.problems.append(f"patients tested by more than one fold: {_names(twice)}")
        audit.checked.append("every development patient tested by exactly one fold")
    if "final" in splits:
        train, val, _ = _split_sets(splits["final"])
        _audit_checkpoint(lay.final, "final model", train, val, set(), audit)
    if lay.cv_predictions.is_file() and folds:
        cv = pd.read_csv(lay.cv_predictions, dtype={"patient_id": str})
        for i, d in enumerate(folds):
            rows = set(cv.loc[cv["fold"] == i, "patient_id"].astype(str))
            wrong = rows - _split_sets(d)[2]
            if wrong:
                audit.problems.append(f"fold {i + 1}: out-of-fold predictions of patients it did not test: {_names(wrong)}")
        audit.checked.append("every out-of-fold prediction from the fold that tested the patient")
    return audit


def _audit_checkpoint(folder: Path, name: str, train: set, val: set, test: set, audit: LeakageAudit) -> None:
    """The checkpoint of one model: trained on its split, harmonised on its training patients."""
    doc_path = folder / "model.json"
    if not doc_path.is_file():
        audit.problems.append(f"{name}: no checkpoint ({doc_path}) to check")
        return
    meta = json.loads(doc_path.read_text())
    m = meta.get("meta", meta)
    if "split" in m:
        ck_train, ck_val, _ = _split_sets(m["split"])
        if ck_train != train or ck_val != val:
            audit.problems.append(f"{name}: its checkpoint was trained on other patients than splits.json records")
        if ck_train & test:
            audit.problems.append(f"{name}: trained on its own test patients: {_names(ck_train & test)}")
        audit.checked.append(f"{name}: trained on the patients of its split")
    h = m.get("harmonization") or {}
    fitted = {str(p) for p in (h.get("fit_patients") or [])}
    if h.get("method") in ("nyul", "global") and "fit_patients" in h:
        if fitted & test:
            audit.problems.append(f"{name}: its {h['method']} harmonisation was fitted with its test patients: "
                                  f"{_names(fitted & test)}")
        outside = fitted - train - val
        if outside:
            audit.problems.append(f"{name}: its {h['method']} harmonisation was fitted on patients outside its "
                                  f"training data: {_names(outside)}")
        audit.checked.append(f"{name}: {h['method']} harmonisation fitted on its training patients only")


__all__ = ["LeakageAudit", "audit_run"]
