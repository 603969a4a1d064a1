"""Tests of ``dlmvi clinical`` and the pipeline behind it (dlmvi.stats.clinical)."""

import json

import numpy as np
import pandas as pd
import pytest

from dlmvi.cli import run_cli
from dlmvi.constants import CUTOFFS, SYNTHETIC_NOTICE


def _cohort(n, cohort, seed):
    rng = np.random.default_rng(seed)
    mvi = rng.random(n) < 0.57
    return pd.DataFrame({
        "patient_id": [f"0{cohort[-2:]}{i:03d}" for i in range(n)],  # leading zeros kept
        "cohort": cohort,
        "mvi_grade": np.where(mvi, rng.choice(["M1", "M2"], n), "M0"),
        "age": rng.normal(55, 10, n).round(),
        "sex": rng.integers(0, 2, n),
        "afp": np.exp(rng.normal(2.5 + 1.0 * mvi, 1.5)).round(1),
        "alt": rng.gamma(4, 10 + 5 * mvi).round(1),
        "tumor_size_cm": rng.gamma(4, 1 + 0.5 * mvi).round(1),
        "capsule": rng.integers(0, 2, n),
        "_dl": np.clip((rng.random(n) < np.where(mvi, 0.8, 0.2)) * 0.6 + 0.2
                       + rng.normal(0, 0.1, n), 0.01, 0.99),
    })


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    df = pd.concat([_cohort(149, "2015", 1), _cohort(172, "2018", 2)], ignore_index=True)
    df.drop(columns="_dl").to_csv(root / "clinical.csv", index=False)
    pred = df[["patient_id", "cohort", "mvi_grade"]].assign(
        dl_prob=df["_dl"].round(4), dl_mvi=(df["_dl"] >= 0.5).astype(int))
    pred.to_csv(root / "predictions.csv", index=False)
    (root / "cohort.json").write_text(json.dumps({"synthetic": True}))
    return root


@pytest.fixture(scope="module")
def develop_run(cohort_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out_dev")
    code = run_cli(["clinical", str(cohort_dir / "clinical.csv"), "--out", str(out),
                    "--predictions", str(cohort_dir / "predictions.csv"),
                    "--develop-cohort", "2015", "--bootstrap", "20", "--seed", "3"])
    assert code == 0
    return out


def test_develop_and_validate(develop_run, cohort_dir):
    from dlmvi.stats.calibration import val_prob
    from dlmvi.evaluate.roc import delong_auc_ci

    nomo = json.loads((develop_run / "nomogram.json").read_text())
    assert set(nomo["coefficients"]) == {"afp", "dl_mvi"} and nomo["synthetic"] is True
    assert nomo["develop_cohort"] == "2015"
    assert {k: v["role"] for k, v in nomo["validation"].items()} == {
        "2015": "development", "2018": "validation"}
    assert nomo["formula"].startswith("logit(p) = ")
    # the validation numbers are those of the published formulas on the 2018 patients
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype={"patient_id": str, "cohort": str})
    pred = pd.read_csv(cohort_dir / "predictions.csv", dtype={"patient_id": str, "cohort": str})
    v = clin.merge(pred[["patient_id", "dl_mvi"]], on="patient_id")
    v = v[v["cohort"] == "2018"]
    lp = (nomo["intercept"] + nomo["coefficients"]["afp"] * (v["afp"] > 20)
          + nomo["coefficients"]["dl_mvi"] * v["dl_mvi"])
    prob = 1 / (1 + np.exp(-lp.to_numpy()))
    y = v["mvi_grade"].ne("M0").to_numpy().astype(float)
    auc, lo, hi = delong_auc_ci(y, prob)
    m = nomo["validation"]["2018"]
    assert m["n"] == 172 and m["n_events"] == int(y.sum())
    assert m["auc"] == pytest.approx(auc, rel=1e-12)
    assert m["auc_ci"] == pytest.approx([lo, hi], rel=1e-12)
    vp = val_prob(y, prob)
    for k in ("brier", "calibration_intercept", "calibration_slope", "spiegelhalter_z",
              "spiegelhalter_p"):
        assert m[k] == pytest.approx(vp[k], rel=1e-9), k
    # development cohort: the MLE is perfectly calibrated in-sample
    assert nomo["validation"]["2015"]["calibration_slope"] == pytest.approx(1.0, rel=1e-6)
    assert nomo["bootstrap"]["B"] == 20


def test_output_tables(develop_run, cohort_dir):
    from dlmvi.stats.clinical import load_clinical_table
    from dlmvi.stats.table1 import univariate_table

    univ = pd.read_csv(develop_run / "univariate.csv")
    assert list(univ.columns[:5]) == ["variable", "odds_ratio", "ci_low", "ci_high", "p_value"]
    assert set(univ["variable"]) == {"age", "sex", "afp", "alt", "capsule", "tumor_size_cm",
                                     "dl_mvi"}
    multi = pd.read_csv(develop_run / "multivariate.csv", dtype={"cohort": str})
    assert multi["variable"].iloc[0] == "(Intercept)"
    assert "dl_mvi" in set(multi["variable"]) and "coef" in multi.columns
    # --develop-cohort: screened and fitted on the 149 patients of 2015 only (issue 16.3)
    assert set(multi["cohort"]) == {"2015"} and set(multi["n"]) == {149}
    data, _ = load_clinical_table(cohort_dir / "clinical.csv", cohort_dir / "predictions.csv")
    dev = univariate_table(data[data["cohort"] == "2015"], "mvi", list(univ["variable"]),
                           CUTOFFS)
    selected = set(dev.loc[dev["p_value"] < 0.05, "variable"]) | {"dl_mvi"}
    assert set(multi["variable"][1:]) == selected
    cmp = pd.read_csv(develop_run / "roc_comparison.csv")
    # DeLong only between non-nested curves: AFP > 20 vs DL-MVI, per cohort (issue 16.2)
    assert len(cmp) == 2 and set(cmp["cohort"].astype(str)) == {"2015", "2018"}
    assert set(cmp["curve_a"]) == {"AFP > 20"} and set(cmp["curve_b"]) == {"DL-MVI"}
    assert cmp["p_value"].between(0, 1).all()
    dca = pd.read_csv(develop_run / "dca.csv")
    assert list(dca.columns[:5]) == ["cohort", "model", "threshold", "net_benefit", "treat_all"]
    assert set(dca["model"]) == {"nomogram", "AFP > 20", "DL-MVI"}
    assert len(dca) == 2 * 3 * 99 and dca["threshold"].min() == 0.01
    assert (develop_run / "table1.md").read_text().startswith(f"**{SYNTHETIC_NOTICE}**")
    for f in ("nomogram.png", "roc.png", "calibration.png", "dca.png", "roc_curves.csv",
              "calibration.csv", "calibration_smooth.csv", "nomogram_points.csv",
              "bootstrap_validation.csv", "clinical_summary.json", "table1.html"):
        assert (develop_run / f).stat().st_size > 0, f


def test_pooled_with_bootstrap_is_seeded(cohort_dir, tmp_path):
    from dlmvi.stats.clinical import run_clinical
    from dlmvi.stats.config import ClinicalConfig

    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype={"patient_id": str, "cohort": str})
    pred = pd.read_csv(cohort_dir / "predictions.csv", dtype={"patient_id": str, "cohort": str})
    cfg = ClinicalConfig(n_bootstrap=15, seed=7, variables=("afp", "alt"))
    a = run_clinical(clin, tmp_path / "a", predictions=pred, config=cfg)
    b = run_clinical(clin, tmp_path / "b", predictions=pred, config=cfg)
    assert a["nomogram"]["bootstrap"] == b["nomogram"]["bootstrap"]
    assert a["nomogram"]["synthetic"] is False  # DataFrame input: no cohort.json to see
    assert set(a["nomogram"]["validation"]) == {"all", "2015", "2018"}
    boot = pd.read_csv(tmp_path / "a" / "bootstrap_validation.csv").set_index("index")
    assert boot.loc["auc", "corrected"] <= boot.loc["auc", "apparent"] + 0.01
    assert a["nomogram"]["bootstrap"]["auc"] == pytest.approx(boot.loc["auc", "corrected"])
    univ = pd.read_csv(tmp_path / "a" / "univariate.csv")
    assert univ["variable"].tolist() == ["afp", "alt", "dl_mvi"]


def _run(cohort_dir, tmp_path, table, *extra):
    path = tmp_path / "clinical.csv"
    table.to_csv(path, index=False)
    return run_cli(["clinical", str(path), "--out", str(tmp_path / "out"),
                    "--bootstrap", "0", *extra])


def test_bad_inputs(cohort_dir, tmp_path, capsys):
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype={"patient_id": str, "cohort": str})
    assert _run(cohort_dir, tmp_path, clin.assign(mvi_grade="M0")) == 2
    assert "same MVI status" in capsys.readouterr().err
    bad = clin.astype({"afp": object})
    bad.loc[5, "afp"] = "high"
    assert _run(cohort_dir, tmp_path, bad) == 2
    assert "patient 015005, afp: not a number: 'high' (row 7)" in capsys.readouterr().err
    assert _run(cohort_dir, tmp_path, clin, "--develop-cohort", "2016") == 2
    assert "'2016' not in the table" in capsys.readouterr().err
    grade = clin.copy()
    grade.loc[0, "mvi_grade"] = "M3"
    assert _run(cohort_dir, tmp_path, grade) == 2
    assert "invalid mvi_grade 'M3' (row 2)" in capsys.readouterr().err
    const = clin.copy()
    const.loc[const["cohort"] == "2015", "afp"] = 3.0  # AFP <= 20 for every 2015 patient
    assert _run(cohort_dir, tmp_path, const, "--develop-cohort", "2015") == 2
    assert "predictor 'afp' is constant" in capsys.readouterr().err
    toml = tmp_path / "variables.toml"
    toml.write_text('variables = ["afp", "ggt"]\n[nomogram]\npredictors = ["afp"]\n')
    assert _run(cohort_dir, tmp_path, clin, "--config", str(toml)) == 2
    assert "['ggt'] requested by the configuration" in capsys.readouterr().err
    toml.write_text('[nomogram]\npredictors = ["afp", "dl_mvi"]\n')
    assert _run(cohort_dir, tmp_path, clin, "--config", str(toml)) == 2
    assert "['dl_mvi'] requested by the configuration" in capsys.readouterr().err
    toml.write_text('p_treshold = 0.1\n')
    assert _run(cohort_dir, tmp_path, clin, "--config", str(toml)) == 2
    assert "unknown keys ['p_treshold']" in capsys.readouterr().err


def test_without_predictions_and_constant_cohort(cohort_dir, tmp_path, capsys):
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype={"patient_id": str, "cohort": str})
    # AFP <= 20 for everyone in 2018: constant there, still fine for validation
    clin.loc[clin["cohort"] == "2018", "afp"] = 5.0
    assert _run(cohort_dir, tmp_path, clin, "--develop-cohort", "2015") == 0
    err = capsys.readouterr().err
    assert "nomogram built without ['dl_mvi']" in err
    assert "predictions are constant" in err
    nomo = json.loads((tmp_path / "out" / "nomogram.json").read_text())
    assert nomo["coefficients"].keys() == {"afp"}
    assert nomo["validation"]["2018"]["auc"] == 0.5
    assert nomo["validation"]["2018"]["calibration_slope"] is None  # NaN -> null


def test_help_is_plain():
    from typer.testing import CliRunner

    from dlmvi.cli import app

    res = CliRunner().invoke(app, ["clinical", "--help"])
    assert res.exit_code == 0 and "--develop-cohort" in res.output and "nomogram" in res.output


def test_columns_map_with_units_gives_the_plain_result(cohort_dir, tmp_path):
    """`dlmvi clinical --columns`: a ';'-separated table with decimal commas, grades 0/1/2, its
    own names and AFP in IU/mL gives the nomogram of the same data written plainly."""
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype={"patient_id": str, "cohort": str})
    eu = clin.rename(columns={"patient_id": "Nr", "mvi_grade": "MVI", "afp": "AFP IU"})
    eu["MVI"] = eu["MVI"].str[1]
    eu["AFP IU"] = [repr(v / 1.21).replace(".", ",") for v in clin["afp"]]
    eu["alt"] = [repr(v).replace(".", ",") for v in clin["alt"]]
    (tmp_path / "eu.csv").write_bytes(b"\xef\xbb\xbf" + eu.to_csv(sep=";", index=False).encode())
    (tmp_path / "map.toml").write_text('[columns]\nNr = "patient_id"\nMVI = "mvi_grade"\n"AFP IU" = "afp"\n'
                                       '[units]\nafp = "IU/mL"\n')
    plain = clin.assign(afp=[(v / 1.21) * 1.21 for v in clin["afp"]])
    plain.to_csv(tmp_path / "plain.csv", index=False)
    common = ["--predictions", str(cohort_dir / "predictions.csv"), "--develop-cohort", "2015", "--bootstrap", "0"]
    assert run_cli(["clinical", str(tmp_path / "eu.csv"), "--out", str(tmp_path / "a"),
                    "--columns", str(tmp_path / "map.toml"), *common]) == 0
    assert run_cli(["clinical", str(tmp_path / "plain.csv"), "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (json.loads((tmp_path / d / "nomogram.json").read_text()) for d in ("a", "b"))
    assert a["intercept"] == pytest.approx(b["intercept"], abs=1e-12)
    assert a["coefficients"] == pytest.approx(b["coefficients"], abs=1e-12)
    np.testing.assert_allclose(a["covariance"], b["covariance"], rtol=0, atol=1e-12)
    ua = pd.read_csv(tmp_path / "a" / "univariate.csv")
    ub = pd.read_csv(tmp_path / "b" / "univariate.csv")
    pd.testing.assert_frame_equal(ua, ub, rtol=1e-12)  # Table 1 too (AFP median in ng/mL, ALT)
