"""Tests of src/dlmvi/train/run.py and the `dlmvi train` / `dlmvi predict` commands."""

import json
import sys
import types

import pandas as pd
import pytest
import torch

from dlmvi.cli import run_cli
from dlmvi.model.checkpoint import load_checkpoint
from dlmvi.preprocess.cache import PatchCache, PrepareConfig
from dlmvi.train.config import TrainConfig
from dlmvi.train.run import run_training


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_cache):
    from cachefactory import tiny_preset
    from dlmvi.model.presets import PRESETS

    PRESETS["tiny"] = tiny_preset(6)
    try:
        out = tmp_path_factory.mktemp("run") / "run"
        res = run_training(tiny_cache, out, TrainConfig(preset="tiny", folds=3, seed=0, device="cpu", progress=False))
    finally:
        PRESETS.pop("tiny")
    return out, res


def test_cross_validation_outputs(run_dir, tiny_cache):
    out, res = run_dir
    ids = PatchCache(tiny_cache).patient_ids()
    cv = pd.read_csv(out / "cv_predictions.csv", dtype={"patient_id": str, "cohort": str})
    assert sorted(cv["patient_id"]) == sorted(ids) and set(cv["fold"]) == {0, 1, 2}
    assert list(cv.columns) == ["patient_id", "cohort", "mvi_grade", "label", "dl_prob", "dl_mvi", "fold"]
    m = json.loads((out / "cv_metrics.json").read_text())
    assert len(m["folds"]) == 3
    # chance is 0.5; the planted signal gives out-of-fold AUC >= 0.85 in every fold
    assert min(f["auc"] for f in m["folds"]) >= 0.85 and m["auc_mean"] >= 0.9
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] and run["n_patients"] == 40 and run["synthetic"] is True
    assert run["final"]["n_train"] == 36 and run["final"]["n_val"] == 4


def test_cost_of_each_missing_sequence_is_measured_out_of_fold(run_dir):
    """cv_metrics.json records the pooled out-of-fold AUC with each sequence blanked; the planted
    signal is in every sequence, so blanking one costs little, and run.json carries it."""
    out, _ = run_dir
    m = json.loads((out / "cv_metrics.json").read_text())["sequence_removed"]
    assert m["auc_all_sequences"] == pytest.approx(json.loads((out / "cv_metrics.json").read_text())["pooled_auc"])
    assert set(m["auc_without"]) == {"T1", "T1V", "T1D"} and m["sequence_dropout"] == 0.0
    for s, v in m["auc_without"].items():
        assert 0.0 <= v["auc"] <= 1.0 and v["cost"] == pytest.approx(m["auc_all_sequences"] - v["auc"])
    assert json.loads((out / "run.json").read_text())["cv"]["sequence_removed"] == m


def test_no_patient_straddles_a_split(run_dir):
    out, _ = run_dir
    splits = json.loads((out / "splits.json").read_text())
    cv = pd.read_csv(out / "cv_predictions.csv", dtype={"patient_id": str})
    for i, s in enumerate(splits["folds"]):
        tr, va, te = set(s["train"]), set(s["val"]), set(s["test"])
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert te == set(cv.loc[cv["fold"] == i, "patient_id"])
        # the checkpoint records the split it was trained on
        assert load_checkpoint(out / f"fold_{i}").meta["split"] == s
    final = splits["final"]
    assert not set(final["train"]) & set(final["val"]) and final["test"] == []
    assert load_checkpoint(out).meta["split"] == final


def test_final_checkpoint_config(run_dir):
    out, _ = run_dir
    ck = load_checkpoint(out)  # RUN -> RUN/final/model
    assert ck.path == out / "final" / "model.json"
    assert ck.sequences == ("T1", "T1V", "T1D") and ck.classes == 2
    assert ck.prepare == PrepareConfig(size=32)
    assert ck.meta["training"]["preset"] == "tiny" and ck.meta["normalization"]["cache"] == "zscore"


def test_rerun_resumes_without_retraining(run_dir, tiny_cache, tiny_preset):
    out, res = run_dir
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")}
    again = run_training(tiny_cache, out, TrainConfig(preset="tiny", folds=3, seed=0, device="cpu", progress=False))
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")} == before
    assert again.cv_metrics["auc_mean"] == res.cv_metrics["auc_mean"]


def test_cli_train_and_predict(tmp_path, tiny_cache, tiny_preset):
    run = tmp_path / "run"
    code = run_cli(["train", str(tiny_cache), "--out", str(run), "--preset", "tiny", "--folds", "2",
                    "--develop-cohort", "2015", "--epochs", "2", "--no-progress", "--device", "cpu",
                    "--sequences", "T1,T1D"])
    assert code == 0
    assert json.loads((run / "run.json").read_text())["n_patients"] == 24
    out = tmp_path / "pred" / "predictions.csv"
    assert run_cli(["predict", str(run), str(tiny_cache), "--out", str(out), "--cohort", "2018", "--tta",
                    "--device", "cpu"]) == 0
    pred = pd.read_csv(out, dtype={"patient_id": str, "cohort": str})
    assert len(pred) == 16 and set(pred["cohort"]) == {"2018"}
    assert (tmp_path / "pred" / "predictions.features.npz").is_file()


def test_cli_errors(tmp_path, tiny_cache):
    assert run_cli(["train", str(tiny_cache), "--out", str(tmp_path / "r"), "--preset", "huge"]) == 2
    assert run_cli(["train", str(tiny_cache), "--out", str(tmp_path / "r"), "--sequences", "T1,T9"]) == 2
    assert run_cli(["predict", str(tmp_path / "nothing"), str(tiny_cache), "--out", str(tmp_path / "p.csv")]) == 2


def test_predict_prepares_a_cohort_folder(run_dir, tiny_cache, tmp_path, monkeypatch):
    """A cohort folder is prepared with the checkpoint's PrepareConfig (prepare_cohort is faked here)."""
    out, _ = run_dir
    calls = []

    def fake_prepare(cohort_dir, cache_dir, config, column_map=None):
        calls.append(config)
        import shutil

        shutil.copytree(tiny_cache, cache_dir)
        return PatchCache(cache_dir)

    monkeypatch.setitem(sys.modules, "dlmvi.preprocess.prepare",
                        types.SimpleNamespace(prepare_cohort=fake_prepare))
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    assert run_cli(["predict", str(out), str(cohort), "--out", str(tmp_path / "p.csv"), "--device", "cpu"]) == 0
    assert calls == [PrepareConfig(size=32)]
    assert len(pd.read_csv(tmp_path / "p.csv")) == 40
    # the 41st patient of the cache (excluded when prepared) is named, with the reason
    skipped = pd.read_csv(tmp_path / "p.skipped.csv", dtype=str)
    assert skipped.to_dict("records") == [{"patient_id": "P040",
                                          "reason": "excluded when prepared: no tumour mask"}]


def test_unlabelled_patients_are_left_out_of_training_and_listed(tiny_cache, tmp_path, tiny_preset):
    """Prospective patients in the cache are not trained on; training says how many and who."""
    import shutil

    from dlmvi.errors import CohortWarning

    cache = tmp_path / "cache"
    shutil.copytree(tiny_cache, cache)
    p = pd.read_csv(cache / "patients.csv", dtype=str, keep_default_na=False)
    p.loc[p["patient_id"].isin(["P000", "P005"]), "mvi_grade"] = ""  # both of cohort 2015
    p.to_csv(cache / "patients.csv", index=False)
    with pytest.warns(CohortWarning, match=r"2 patients left out of training: 2: no mvi_grade \(unlabelled\) "
                                           r"\(P000, P005\); full list in .*run/skipped.csv"):
        res = run_training(cache, tmp_path / "run", TrainConfig(preset="tiny", folds=0, epochs=1, seed=0,
                                                                develop_cohort="2015", device="cpu", progress=False))
    assert res.run["n_patients"] == 22 and res.run["n_unlabelled_left_out"] == 2  # 24 of cohort 2015, 2 unlabelled
    assert pd.read_csv(tmp_path / "run" / "skipped.csv")["patient_id"].tolist() == ["P000", "P005"]
    split = json.loads((tmp_path / "run" / "splits.json").read_text())["final"]
    assert not {"P000", "P005"} & set(split["train"] + split["val"])


def test_shards_merged_equal_one_run(tmp_path, tiny_cache, tiny_preset):
    """Folds 0, 1 and the final model in 2 shares: share 1/2 trains fold_0 and final, share 2/2
    fold_1 and, finding everything finished, writes the run's files: the same as one process."""
    from safetensors.torch import load_file

    from dlmvi.errors import ConfigError

    cfg = TrainConfig(preset="tiny", folds=2, seed=0, epochs=2, device="cpu", progress=False)
    one = run_training(tiny_cache, tmp_path / "one", cfg)
    out = tmp_path / "sharded"
    first = run_training(tiny_cache, out, cfg, shard="1/2")
    assert first.cv_metrics is None and not first.run["complete"] and first.run["shard"] == "1/2"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["final", "fold_0"]
    assert not (out / "cv_predictions.csv").exists()
    with pytest.raises(ConfigError, match="fold_1 are not finished"):
        run_training(tiny_cache, out, cfg, merge=True)
    assert run_cli(["train", str(tiny_cache), "--out", str(out), "--preset", "tiny", "--folds", "2",
                    "--epochs", "2", "--device", "cpu", "--no-progress", "--shard", "2/2"]) == 0
    for name in ("cv_predictions.csv", "splits.json"):
        assert (out / name).read_text() == (tmp_path / "one" / name).read_text(), name
    assert json.loads((out / "cv_metrics.json").read_text()) == one.cv_metrics
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] and "shard" not in run and run["final"] == one.run["final"]
    for folder in ("fold_0", "fold_1", "final"):
        a = load_file(str(tmp_path / "one" / folder / "model.safetensors"))
        b = load_file(str(out / folder / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), folder
    # an explicit merge of finished shares rewrites the same tables
    again = run_training(tiny_cache, out, cfg, merge=True)
    assert again.cv_metrics == one.cv_metrics
    with pytest.raises(ConfigError, match="I/N with 1 <= I <= N"):
        run_training(tiny_cache, out, cfg, shard="3/2")


def test_predict_with_a_site_applies_its_recalibration(run_dir, tiny_cache, tmp_path):
    """`dlmvi predict --site FILE`: dl_prob is the site's update of the model's probability
    (kept as dl_prob_model), dl_mvi follows it, and the JSON beside the CSV names the site."""
    import numpy as np

    from dlmvi.stats.recalibration import Recalibration, site_document, write_site

    out, _ = run_dir
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    site = write_site(tmp_path / "model", site_document("siteB", y, np.clip(0.3 + 0.4 * y + rng.normal(0, 0.35, 40),
                                                                          0.05, 0.95), "logistic", threshold=0.5))
    csv = tmp_path / "pred.csv"
    assert run_cli(["predict", str(out), str(tiny_cache), "--out", str(csv), "--device", "cpu",
                    "--site", str(site)]) == 0
    pred = pd.read_csv(csv, dtype={"patient_id": str, "cohort": str})
    upd = Recalibration.from_dict(json.loads(site.read_text())["dl"])
    assert np.allclose(pred["dl_prob"], upd.predict_proba(pred["dl_prob_model"]), atol=1e-9)
    assert (pred["dl_mvi"] == (pred["dl_prob"] >= 0.5).astype(int)).all() and set(pred["site"]) == {"siteB"}
    assert json.loads((tmp_path / "pred.json").read_text())["site"]["site"] == "siteB"
    assert run_cli(["predict", str(out), str(tiny_cache), "--out", str(csv), "--site", "nowhere"]) == 2
