"""The whole study: every stage's output exists, reruns skip, predictions are honest."""

import json

import pandas as pd

from dlmvi.workflow.study import Study, headline


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


def test_study_config_is_composed_of_the_stages_configs():
    """One source per setting: the study holds the stages' own configurations."""
    import pytest

    from dlmvi.errors import ConfigError
    from dlmvi.stats.config import ClinicalConfig
    from dlmvi.workflow.study import StudyConfig

    cfg = StudyConfig.from_options("/c", preset="fast", sequences=("T1", "T1V"), develop_cohort="2015", folds=3,
                                   seed=7, epochs=4, intensity_augmentation="strong", normalization="nyul",
                                   bootstrap=20, clinical=ClinicalConfig(nomogram_predictors=("afp",)))
    assert cfg.prepare.size == 64 and cfg.prepare.normalization == "none"  # fitted harmonisation: raw patches
    assert (cfg.train.epochs, cfg.train.intensity_augmentation, cfg.train.seed) == (4, "strong", 7)
    assert (cfg.clinical.seed, cfg.clinical.n_bootstrap, cfg.clinical.nomogram_predictors) == (7, 20, ("afp",))
    again = StudyConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ConfigError, match="normalization"):
        StudyConfig.from_options("/c", normalization="histogram")


def test_every_stage_gets_its_whole_configuration(tiny_study, tmp_path, monkeypatch):
    """The ablation trains with the study's epochs and augmentation; the clinical stage with its
    variables file; each stage's resume key changes with its own settings."""
    import dataclasses

    import dlmvi.evaluate.ablation as ablation
    import dlmvi.stats.clinical as clinical
    from dlmvi.stats.config import ClinicalConfig
    from dlmvi.workflow.config import StudyConfig, settings_key as _key

    seen = {}
    monkeypatch.setattr(ablation, "run_ablation", lambda *a, **k: seen.setdefault("ablation", k))
    monkeypatch.setattr(clinical, "run_clinical", lambda *a, **k: seen.setdefault("clinical", k))
    cfg = StudyConfig.from_options(tiny_study["cohort"], epochs=3, intensity_augmentation="strong", ablate=True,
                                   clinical=ClinicalConfig(nomogram_predictors=("afp",)))
    study = Study(cfg, tmp_path / "run", log=lambda m: None)
    from dlmvi.workflow.stages.ablate import AblateStage
    from dlmvi.workflow.stages.clinical import ClinicalStage

    AblateStage().run(study)
    ClinicalStage().run(study)
    base = seen["ablation"]["base_config"]
    assert (base.epochs, base.intensity_augmentation) == (3, "strong")
    assert seen["clinical"]["config"].nomogram_predictors == ("afp",)
    standard = dataclasses.replace(cfg.train, intensity_augmentation="standard")
    assert _key(standard) != _key(cfg.train)  # the ablation's resume key sees the augmentation
    assert _key(dataclasses.replace(cfg.train, progress=False)) == _key(cfg.train)  # display only


def test_settings_added_later_leave_older_runs_resume_keys_unchanged():
    """A run trained before sequence dropout and the optimisation/precision options existed is
    not retrained on resume: at their defaults those settings are not in the key, which is then
    the older version's key (literal below); set to anything else, they are."""
    import dataclasses

    from dlmvi.workflow.config import StudyConfig, settings_key as _key

    cfg = StudyConfig.from_options("/c", develop_cohort="2015", normalization="zscore").train
    assert _key(cfg) == {"preset": "fast", "sequences": ["T1", "T1V", "T1D"], "classes": 2, "folds": 5, "seed": 0,
                         "epochs": None, "batch_size": None, "lr": None, "patience": None, "class_weighting": False,
                         "intensity_augmentation": "standard", "holdout": 0.1, "develop_cohort": "2015"}
    # harmonisation fitted per fold (issue 25) changes what the model is trained on, so a
    # fitted method is in the key and an older run trained on globally harmonised patches retrains
    fitted = StudyConfig.from_options("/c", develop_cohort="2015", normalization="global").train
    assert _key(fitted) == {**_key(cfg), "harmonization": "global"}
    for change in ({"sequence_dropout": 0.2}, {"precision": "bf16"}, {"optimizer": "adamw"}, {"accumulate": 2}):
        assert _key(dataclasses.replace(cfg, **change)) != _key(cfg), change
