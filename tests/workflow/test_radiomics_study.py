"""``dlmvi study --radiomics`` on the phantom: the comparison's table and figures reach the report."""

import json
import shutil

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def radiomics_run(tiny_study, tmp_path_factory):
    """The tiny study resumed with the radiomics stage (every other stage is up to date)."""
    import torch

    from dlmvi.preprocess.radiomics import RadiomicsConfig
    from dlmvi.workflow.radiomics import ComparisonConfig
    from dlmvi.workflow.study import Study, StudyConfig

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("radiomics_study") / "run"
    shutil.copytree(tiny_study["run"], run)
    rad = ComparisonConfig(radiomics=RadiomicsConfig(sequences=("T1V",), families=("statistics", "intensity_histogram"),
                                                     readers=2, reproducibility_patients=8, min_voxels=8),
                           fractions=(0.5, 1.0))
    cfg = StudyConfig.from_options(tiny_study["cohort"], folds=2, epochs=10, bootstrap=10, seed=0, radiomics=rad)
    logs = []
    Study(cfg, run, log=logs.append).run()
    return run, logs


def test_only_the_radiomics_stage_ran(radiomics_run):
    _, logs = radiomics_run
    ran = [line for line in logs if line.endswith("running ...")]
    assert ran == ["[radiomics] running ..."]


def test_comparison_table_predictions_and_report(radiomics_run):
    run, _ = radiomics_run
    base = run / "radiomics"
    table = pd.read_csv(base / "comparison" / "comparison.csv", dtype={"cohort": str})
    assert table["model"].nunique() == 6 and table["cohort"].nunique() == 2
    assert table["synthetic"].all()
    assert table["fitted"].str.startswith(("development: out-of-fold", "external:")).all()
    pred = pd.read_csv(base / "comparison" / "comparison_predictions.csv", dtype={"patient_id": str})
    assert {"clinical", "rad-score", "DL-MVI", "clinical + DL-MVI", "clinical + rad-score",
            "clinical + rad-score + DL-MVI", "source", "mvi"} <= set(pred.columns)
    assert set(pred["source"].str.split(":").str[0]) == {"development", "external"}
    pairs = pd.read_csv(base / "comparison" / "comparison_pairs.csv")
    assert pairs.loc[~pairs["nested"], "delong_p"].between(0, 1).all()
    assert pairs["idi"].notna().all()
    html = (run / "report.html").read_text()
    section = html[html.index('id="radiomics"'):html.index('id="checklists"')]
    assert "Six models on the same patients" in section and "SYNTHETIC" in section
    assert section.count("<img") == 3  # ROC + decision curves per cohort, learning curves
    assert "Riley et al. 2020" in section and "ICC of <code>dl_prob</code>" in section


def test_reproducibility_sample_size_and_learning_curves(radiomics_run):
    run, _ = radiomics_run
    s = json.loads((run / "radiomics" / "radiomics_summary.json").read_text())
    dl = s["reproducibility"]["dl_mvi"]
    assert dl["readers"] == 2 and 0 <= dl["flip_share"] <= 1 and dl["n"] >= 6
    regions = {r["region"] for r in s["reproducibility"]["by_region"]}
    assert regions == {"tumour", "ring"}
    ss = s["samplesize"]
    assert ss["parameters"] == 2 and ss["n"] >= ss["n_criterion_3"] and ss["enough"] is False
    lc = pd.DataFrame(s["learning_curve"]["auc"])
    assert set(lc["model"]) == {"DL-MVI", "rad-score"} and set(lc["fraction"]) == {0.5, 1.0}
    half, full = (lc[(lc["model"] == "DL-MVI") & (lc["fraction"] == f)].iloc[0] for f in (0.5, 1.0))
    assert half["n_test"] == full["n_test"] and half["n_train_mean"] < full["n_train_mean"]


def test_model_card_carries_the_comparison_line(radiomics_run, tmp_path):
    import warnings

    from dlmvi.deploy.model import export_model

    run, _ = radiomics_run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(run, tmp_path / "model")
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["comparison"].startswith("SYNTHETIC - DL-MVI, rad-score and clinical model on the same patients")
    assert "DeLong p" in card["comparison"]
    assert "Against radiomics and the clinical model" in (tmp_path / "model" / "model_card.html").read_text()
