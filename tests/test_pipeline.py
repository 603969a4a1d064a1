"""The whole study: every stage's output exists, reruns skip, predictions are honest."""

import json

import pandas as pd

from dlmvi.pipeline import Study, headline


def test_every_stage_wrote_its_outputs(tiny_study):
    run = tiny_study["run"]
    for rel in ("cache/cache.json", "train/run.json", "train/cv_predictions.csv", "predictions.csv",
                "evaluate/metrics.json", "shift/shift.json", "clinical/nomogram.json",
                "survival/survival.json", "report.html", "study.json", "stages.json"):
        assert (run / rel).is_file(), rel
    stages = json.loads((run / "stages.json").read_text())
    assert {"prepare", "train", "predict", "evaluate", "shift", "clinical", "survival"} <= set(stages)


def test_development_predictions_are_out_of_fold(tiny_study):
    """No development patient is scored by a model that trained on it."""
    run = tiny_study["run"]
    pred = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str, "cohort": str})
    cv = pd.read_csv(run / "train" / "cv_predictions.csv", dtype={"patient_id": str, "cohort": str})
    dev = pred[pred["cohort"] == "2015"]
    assert set(dev["source"]) == {"cross-validation (out of fold)"}
    merged = dev.merge(cv, on="patient_id", suffixes=("", "_cv"))
    assert len(merged) == len(dev) and (merged["dl_prob"] == merged["dl_prob_cv"]).all()
    ext = pred[pred["cohort"] == "2018"]
    assert len(ext) > 0 and set(ext["source"]) == {"final model"}
    assert pred["patient_id"].is_unique


def test_rerun_skips_finished_stages(tiny_study):
    logs = []
    study = Study(tiny_study["config"], tiny_study["run"], log=logs.append)
    before = (tiny_study["run"] / "train" / "run.json").stat().st_mtime_ns
    study.run()
    skipped = [line for line in logs if "up to date, skipped" in line]
    assert len(skipped) == 6  # train, predict, evaluate, shift, clinical, survival
    assert (tiny_study["run"] / "train" / "run.json").stat().st_mtime_ns == before


def test_headline_numbers_come_from_the_outputs(tiny_study):
    run = tiny_study["run"]
    h = headline(run)
    cvm = json.loads((run / "train" / "cv_metrics.json").read_text())
    assert h["cv_auc_mean"] == cvm["auc_mean"]
    nom = json.loads((run / "clinical" / "nomogram.json").read_text())
    assert h["nomogram_formula"] == nom["formula"]
    assert set(h["evaluate"]) >= {"2015", "2018"}
