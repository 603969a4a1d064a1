"""Tests of src/dlmvi/deploy/site.py, src/dlmvi/cli/transport.py and `--site` of predict-patient."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import ConfigError, StatisticsError


def _site_predictions(path, n=60, seed=5):
    """A site's labelled predictions: DL-MVI too extreme and too high (log odds 2 x + 1)."""
    from dlmvi.stats.recalibration import expit

    rng = np.random.default_rng(seed)
    lp = rng.normal(-0.2, 1.0, n)
    y = (rng.random(n) < expit(lp)).astype(int)
    pd.DataFrame({"patient_id": [f"S{i:03d}" for i in range(n)], "cohort": "siteB", "label": y,
                  "dl_prob": expit(1.0 + 2.0 * lp), "afp": np.where(rng.random(n) < 0.5, 35.0, 5.0)}).to_csv(path, index=False)
    return path


@pytest.fixture
def model_copy(patient_model, tmp_path):
    _, model_dir, cohort = patient_model
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    return dst, cohort


def test_recalibrate_writes_the_site_and_the_card(model_copy, tmp_path):
    from dlmvi.deploy.site import recalibrate_model
    from dlmvi.stats.nomogram import NomogramModel
    from dlmvi.stats.recalibration import Recalibration

    model_dir, _ = model_copy
    preds = _site_predictions(tmp_path / "siteB.csv")
    path, doc = recalibrate_model(model_dir, preds, "siteB", method="logistic")
    assert path == model_dir / "sites" / "siteB.json" and json.loads(path.read_text()) == doc
    data = pd.read_csv(preds)
    want = Recalibration("logistic").fit(data["label"], data["dl_prob"])
    assert (doc["dl"]["intercept"], doc["dl"]["slope"]) == pytest.approx((want.intercept_, want.slope_), abs=1e-10)
    # a model twice too extreme: true slope 1/2; this seeded sample of 60 gives 0.289
    assert doc["dl"]["slope"] == pytest.approx(0.2887, abs=1e-3)
    # the nomogram (afp from the table, dl_mvi at the model's threshold) is recalibrated on its lp
    nm = NomogramModel.from_json(json.loads((model_dir / "model.json").read_text())["nomogram"])
    lp = nm.predict_lp(data.assign(dl_mvi=(data["dl_prob"] >= 0.5).astype(int)))
    nw = Recalibration("logistic").fit(data["label"], lp=lp)
    assert doc["nomogram"]["intercept"] == pytest.approx(nw.intercept_, abs=1e-10)
    assert doc["dl_cv"]["after"]["calibration_slope"] == pytest.approx(1.0, abs=0.35)
    card = json.loads((model_dir / "model_card.json").read_text())
    assert [s["site"] for s in card["sites"]] == ["siteB"]
    assert "siteB" in (model_dir / "model_card.html").read_text()


def test_recalibrate_refuses_what_it_cannot_use(model_copy, tmp_path):
    from dlmvi.deploy.site import recalibrate_model

    model_dir, _ = model_copy
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"patient_id": ["A", "B"], "dl_prob": [0.2, 0.7]}).to_csv(bad, index=False)
    with pytest.raises(StatisticsError, match="no outcome; add a column label"):
        recalibrate_model(model_dir, bad, "x")
    inside = _site_predictions(model_dir / "preds.csv")
    with pytest.raises(ConfigError, match="keep the site's predictions outside the model folder"):
        recalibrate_model(model_dir, inside, "x")
    with pytest.raises(ConfigError, match="--site 'a b'"):
        recalibrate_model(model_dir, _site_predictions(tmp_path / "p.csv"), "a b")
    run = tmp_path / "run"  # a training run is not a model folder: the message says how to export it
    (run / "train").mkdir(parents=True)
    (run / "train" / "run.json").write_text("{}")
    from dlmvi.errors import ModelError

    with pytest.raises(ModelError, match=f"export it first: `dlmvi export {run} MODEL_DIR`"):
        recalibrate_model(run, _site_predictions(tmp_path / "p.csv"), "x")


def test_cli_recalibrate_prints_before_and_after_then_predict_patient_applies_it(model_copy, tmp_path):
    from dlmvi.deploy.patient import predict_patient
    from dlmvi.stats.recalibration import read_site

    model_dir, cohort = model_copy
    preds = _site_predictions(tmp_path / "siteB.csv")
    r = subprocess.run([sys.executable, "-m", "dlmvi.cli", "recalibrate", str(model_dir), str(preds), "--site",
                        "siteB", "--method", "intercept"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "before" in r.stdout and "after" in r.stdout and "5-fold cross-validation" in r.stdout
    assert "calibration-in-the-large" not in r.stderr
    site = read_site(model_dir, "siteB")
    assert site["dl"]["slope"] == 1.0 and site["method"] == "intercept"
    pid = sorted(p.name for p in (cohort / "images").iterdir())[0]
    plain = predict_patient(model_dir, cohort / "images" / pid, afp=35.0)
    res = predict_patient(model_dir, cohort / "images" / pid, afp=35.0, site="siteB")
    lp = np.log(plain.probability / (1 - plain.probability))
    assert res.probability == pytest.approx(1 / (1 + np.exp(-(lp + site["dl"]["intercept"]))), abs=1e-9)
    assert res.site["model_probability"] == pytest.approx(plain.probability)
    assert res.spread.median == pytest.approx(
        1 / (1 + np.exp(-(np.log(plain.spread.median / (1 - plain.spread.median)) + site["dl"]["intercept"]))),
        abs=1e-9)
    # the nomogram keeps the model's own DL-MVI as input, then takes the site's update
    assert res.to_dict()["site"]["site"] == "siteB" and res.nomogram.formula.endswith("recalibrated to site siteB")
    r = subprocess.run([sys.executable, "-m", "dlmvi.cli", "predict-patient", str(model_dir),
                        str(cohort / "images" / pid), "--afp", "35", "--site", "siteC"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "site 'siteC'" in r.stderr and "Traceback" not in r.stderr


def test_cli_predict_a_cohort_with_a_site_recalibrates_dl_mvi_and_the_nomogram(model_copy, tmp_path):
    """`dlmvi predict MODEL COHORT --site siteB` (an exported model): dl_prob and the nomogram's
    risk and CI are the site's updates of the model's own (kept as *_model), the decision follows
    the recalibrated risk, and the JSON beside the CSV names the site."""
    from dlmvi.stats.recalibration import Recalibration, read_site

    model_dir, cohort = model_copy
    preds = _site_predictions(tmp_path / "siteB.csv")
    r = subprocess.run([sys.executable, "-m", "dlmvi.cli", "recalibrate", str(model_dir), str(preds), "--site",
                        "siteB", "--method", "logistic"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    site = read_site(model_dir, "siteB")
    assert site["nomogram"], "the site table has AFP: the nomogram is recalibrated too"
    out = tmp_path / "pred" / "p.csv"
    r = subprocess.run([sys.executable, "-m", "dlmvi.cli", "predict", str(model_dir), str(cohort), "--out", str(out),
                        "--site", "siteB"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "recalibrated to site siteB" in r.stdout and "nomogram too" in r.stdout
    p = pd.read_csv(out, dtype={"patient_id": str, "cohort": str})
    dl, nom = Recalibration.from_dict(site["dl"]), Recalibration.from_dict(site["nomogram"])
    assert np.allclose(p["dl_prob"], dl.predict_proba(p["dl_prob_model"].to_numpy()), atol=1e-9)
    has = p["nomogram_risk"].notna()
    assert has.sum() >= 10
    assert np.allclose(p.loc[has, "nomogram_risk"], nom.predict_proba(p.loc[has, "nomogram_risk_model"].to_numpy()),
                       atol=1e-9)
    assert (p.loc[has, "nomogram_ci_low"] <= p.loc[has, "nomogram_risk"]).all()
    assert (p.loc[has, "nomogram_risk"] <= p.loc[has, "nomogram_ci_high"]).all()
    thr = json.loads((model_dir / "model.json").read_text())["decision"]["risk_threshold"]
    want = np.where(p.loc[has, "nomogram_risk"] >= thr, "MVI likely", "MVI unlikely")
    assert (p.loc[has, "decision"] == want).all()
    assert set(p["site"]) == {"siteB"} and json.loads(out.with_suffix(".json").read_text())["site"]["site"] == "siteB"


def test_predict_a_cohort_with_a_dropout_model_names_each_patients_missing_sequence(model_copy, tmp_path):
    """A cohort where one patient has no T1D, predicted with a model trained with sequence dropout:
    that patient is scored with the T1D branch blanked and the table says so; the others are not."""
    from dlmvi.deploy.cohort import predict_cohort
    from dlmvi.errors import CohortWarning

    model_dir, cohort = model_copy
    doc = json.loads((model_dir / "model.json").read_text())
    doc["robustness"] = {"sequence_dropout": 0.2, "sequence_removed": {
        "auc_all_sequences": 0.81, "auc_without": {"T1D": {"auc": 0.79, "cost": 0.02}}}}  # illustrative
    (model_dir / "model.json").write_text(json.dumps(doc))
    new = tmp_path / "cohort"
    shutil.copytree(cohort, new)
    pids = sorted(p.name for p in (new / "images").iterdir())
    for f in (new / "images" / pids[1]).glob("T1D*"):
        f.unlink()
    with pytest.warns(CohortWarning, match=f"patient {pids[1]}: sequence\\(s\\) T1D missing"):
        pred = predict_cohort(model_dir, new)
    f = pred.frame.set_index("patient_id")
    assert f.loc[pids[1], "sequences_missing"] == "T1D"
    assert (f.drop(index=pids[1])["sequences_missing"] == "").all()
    assert pred.meta["sequences_missing"]["patients"] == 1
    assert pred.meta["sequences_missing"]["development_auc"]["auc_all_sequences"] == 0.81


def test_a_site_fitted_on_another_model_is_refused(model_copy, tmp_path):
    """A site file records the weights of the model it was fitted on; after the folder is
    re-exported from another run (sites/ kept), predict-patient refuses the stale update instead of
    applying another model's intercept and slope."""
    from dlmvi.deploy.patient import predict_patient
    from dlmvi.deploy.site import recalibrate_model

    model_dir, cohort = model_copy
    path, doc = recalibrate_model(model_dir, _site_predictions(tmp_path / "p.csv"), "siteB", method="intercept")
    assert doc["model_weights_sha256"] == json.loads((model_dir / "model.json").read_text())["weights_sha256"]
    pid = sorted(p.name for p in (cohort / "images").iterdir())[0]
    predict_patient(model_dir, cohort / "images" / pid, afp=35.0, site="siteB")  # its own model: applied
    site = json.loads(path.read_text())
    site["model_weights_sha256"] = "f" * 64  # as if fitted before the folder was re-exported from another run
    path.write_text(json.dumps(site))
    with pytest.raises(ConfigError, match="site 'siteB' was fitted on the predictions of another model"):
        predict_patient(model_dir, cohort / "images" / pid, afp=35.0, site="siteB")
