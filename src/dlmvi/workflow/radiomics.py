"""The radiomics comparison of a study run: ``dlmvi study --radiomics`` and ``dlmvi compare RUN``.

Writes ``RUN/radiomics/``::

    features/          dlmvi radiomics (features.csv, reproducibility.csv, rois.csv, radiomics.json, cache/)
    radscore/          the rad-score in the DL-MVI folds (radscore_predictions.csv, radscore.json)
    reproducibility/   feature_icc.csv, icc_summary.csv (tumour and ring), dl_perturbation.csv
    comparison/        comparison.csv, comparison_pairs.csv, comparison_lr_tests.csv,
                       comparison_predictions.csv, comparison_decision_curves.csv, comparison_<cohort>.png
    learning_curve.csv learning_curve_auc.csv learning_curve.png
    samplesize.json    Riley et al. 2020 against the development cohort
    radiomics_summary.json  the stage's result (written last)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.errors import ConfigError, StatisticsError
from dlmvi.io.atomic import make_dirs, write_csv, write_json
from dlmvi.layout import RADIOMICS_SUMMARY_JSON as SUMMARY_JSON
from dlmvi.layout import RunLayout
from dlmvi.preprocess.radiomics import RadiomicsConfig
from dlmvi.train.radscore import RadScoreConfig

RADIOMICS_DIR = "radiomics"


@dataclass(frozen=True)
class ComparisonConfig:
    """Settings of the radiomics stage (saved in ``radiomics_summary.json``)."""

    radiomics: RadiomicsConfig = field(default_factory=RadiomicsConfig)
    radscore: RadScoreConfig = field(default_factory=RadScoreConfig)
    risk_cutoffs: tuple[float, ...] = (0.3, 0.7)
    fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    dl_learning_curve: bool = True
    workers: int = 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["radiomics"], d["radscore"] = self.radiomics.to_dict(), self.radscore.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ComparisonConfig":
        d = dict(d)
        return cls(radiomics=RadiomicsConfig.from_dict(d.pop("radiomics")),
                   radscore=RadScoreConfig(**d.pop("radscore")),
                   **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def radiomics_dir(run) -> Path:
    return RunLayout(run).radiomics


def features_dir(run) -> Path:
    return radiomics_dir(run) / "features"


def extract_for_run(run, cohort, config: ComparisonConfig, column_map=None, progress: bool = True):
    """``dlmvi radiomics`` into ``RUN/radiomics/features`` (incremental)."""
    from dlmvi.preprocess.radiomics import extract_cohort

    return extract_cohort(cohort, features_dir(run), config.radiomics, column_map=column_map,
                          workers=config.workers, progress=progress)


def _study_inputs(run: Path, column_map):
    """(study.json config, clinical table with mvi, DL predictions, splits) of a study run."""
    from dlmvi.stats.clinical import load_clinical_table
    from dlmvi.train.radscore import read_splits

    lay = RunLayout(run)
    if not lay.study_json.is_file() or not lay.predictions.is_file():
        raise ConfigError(f"{run}: not a finished study run (no study.json / predictions.csv); run "
                          "`dlmvi study COHORT --out RUN` first")
    study = json.loads(lay.study_json.read_text())["config"]
    table, synthetic = load_clinical_table(Path(study["cohort"]) / "clinical.csv", column_map=column_map,
                                           skipped=_quiet_skipped())
    pred = pd.read_csv(lay.predictions, dtype={"patient_id": str, "cohort": str})
    return study, table, pred, read_splits(lay.train.splits_json), synthetic


def _quiet_skipped():
    from dlmvi.io.skipped import Skipped

    return Skipped("the comparison")


def _comparison_data(table, pred, rad, splits) -> pd.DataFrame:
    fold = {p: i for i, s in enumerate(splits["folds"]) for p in s["test"]}
    data = table.merge(pred[["patient_id", "dl_prob"] + (["dl_mvi"] if "dl_mvi" in pred else [])],
                       on="patient_id", how="left", suffixes=("_table", ""))
    if "dl_mvi" not in pred:
        data["dl_mvi"] = (data["dl_prob"] >= 0.5).astype(float)
    data = data.merge(rad[["patient_id", "rad_score", "rad_prob"]], on="patient_id", how="left")
    data["fold"] = data["patient_id"].map(fold).fillna(-1).astype(int)
    return data


def run_compare(run, config: ComparisonConfig | None = None, features=None, column_map=None, log=print) -> dict:
    """The rad-score, reproducibility, comparison, sample size and learning curves of a study run.

    Args:
        run: a finished study run (``dlmvi study``).
        config: the stage's settings (default: those of an earlier extraction, else defaults).
        features: a ``dlmvi radiomics`` output folder; None: ``RUN/radiomics/features``.

    Raises:
        ConfigError: not a study run, or a run without radiomics features (names the fix).
    """
    from dlmvi.preprocess.radiomics import read_features

    run = Path(run)
    feat_dir = Path(features) if features is not None else features_dir(run)
    if not (feat_dir / "radiomics.json").is_file():
        raise ConfigError(f"{run}: the run has no radiomics features ({feat_dir}/radiomics.json is missing); run "
                          f"`dlmvi study ... --radiomics`, or `dlmvi radiomics COHORT --out {feat_dir}` and then "
                          f"`dlmvi compare {run}`")
    feats, meta = read_features(feat_dir)
    if config is None:
        config = ComparisonConfig(radiomics=RadiomicsConfig.from_dict(meta["config"]))
    study, table, pred, splits, synthetic = _study_inputs(run, column_map)
    synthetic = synthetic or bool(meta.get("synthetic"))
    out = make_dirs(radiomics_dir(run))
    outcome = table.set_index("patient_id")["mvi"]
    repro = _read_repro(feat_dir)
    rad = _radscore(feats, outcome, splits, config, repro, out)
    data = _comparison_data(table, pred, rad.predictions, splits)
    summary = {"config": config.to_dict(), "features": str(feat_dir), "synthetic": synthetic,
               "n_features": meta.get("n_features"), "radiomics_skipped": meta.get("n_skipped"),
               "radscore_selected": len(rad.final.selected_)}
    summary["comparison"] = _comparison(data, study, config, synthetic, out / "comparison", log)
    summary["reproducibility"] = _reproducibility(run, study, repro, meta, out / "reproducibility", column_map, log)
    summary["samplesize"] = _samplesize(data, study, out)
    summary["learning_curve"] = _learning_curve(run, study, feats, outcome, splits, config, out, synthetic, log)
    write_json(out / SUMMARY_JSON, summary)
    return summary


def _read_repro(feat_dir: Path) -> pd.DataFrame | None:
    p = feat_dir / "reproducibility.csv"
    if not p.is_file() or p.stat().st_size < 5:
        return None
    frame = pd.read_csv(p, dtype={"patient_id": str, "cohort": str, "mvi_grade": str})
    return frame if not frame.empty else None


def _radscore(feats, outcome, splits, config: ComparisonConfig, repro, out: Path):
    from dlmvi.stats.reproducibility import feature_icc
    from dlmvi.train.radscore import cross_validate_radscore

    if config.radscore.min_icc is not None and repro is None:
        raise ConfigError("--min-icc needs the reproducibility features (readers > 0 in the extraction)")

    def icc_of(ids):
        t = feature_icc(repro, patient_ids=ids)
        return t.set_index("feature")["icc"]

    rad = cross_validate_radscore(feats, outcome, splits, config.radscore, icc_of if repro is not None else None)
    rad.write(out / "radscore")
    return rad


def _clinical_predictors(study: dict) -> list[str]:
    from dlmvi.stats.nomogram import DEFAULT_PREDICTORS

    preds = study.get("clinical", {}).get("nomogram_predictors") or DEFAULT_PREDICTORS
    return [p for p in preds if p not in ("dl_mvi", "dl_prob")]


def _comparison(data, study, config: ComparisonConfig, synthetic: bool, out: Path, log) -> dict:
    from dlmvi.stats.compare import analyse_comparison

    clin = study.get("clinical", {})
    res = analyse_comparison(data, _clinical_predictors(study), study.get("develop_cohort"),
                             cutoffs=clin.get("cutoffs"), risk_cutoffs=config.risk_cutoffs,
                             method=clin.get("method", "ml"), synthetic=synthetic)
    files = res.write(out)
    for note in res.meta["notes"]:
        log(f"[radiomics] note: {note}")
    return {"files": {k: str(v) for k, v in files.items()}, "table": res.table.to_dict("records"),
            "pairs": res.pairs.to_dict("records"), "lr_tests": res.lr_tests.to_dict("records"),
            "notes": res.meta["notes"]}


def _reproducibility(run: Path, study: dict, repro, meta: dict, out: Path, column_map, log) -> dict:
    """Feature ICCs (tumour and ring) and DL-MVI under the same perturbed ROIs."""
    from dlmvi.evaluate.roi_perturbation import dl_under_perturbation
    from dlmvi.preprocess.radiomics_masks import Perturbation
    from dlmvi.stats.reproducibility import dl_reproducibility, feature_icc, icc_summary

    if repro is None:
        return {"skipped": "no perturbed readers in the extraction (readers 0)"}
    out = make_dirs(out)
    table = feature_icc(repro)
    summary = icc_summary(table)
    write_csv(out / "feature_icc.csv", table)
    write_csv(out / "icc_summary.csv", summary)
    readers = [Perturbation(d["reader"], tuple(d["shift"]), d["grow"], d["contour"], d["noise"], d["seed"])
               for d in meta.get("perturbations", [])]
    ids = sorted(repro["patient_id"].unique())
    dl, left_out = dl_under_perturbation(RunLayout(run).train.root, study["cohort"], readers, ids, column_map)
    write_csv(out / "dl_perturbation.csv", dl)
    for pid, msg in left_out:
        log(f"[radiomics] DL-MVI perturbation: {msg}")
    try:
        dl_doc = dl_reproducibility(dl)
    except StatisticsError as exc:
        dl_doc = {"error": str(exc)}
    doc = {"form": "ICC2 = ICC(2,1) = ICC(A,1): two-way random effects, single rater, absolute agreement "
                   "(R psych::ICC)", "readers": len(readers), "patients": len(ids),
           "features": len(table), "share_good": float((table["icc"] >= 0.75).mean()),
           "median_icc": float(table["icc"].median()), "by_region": summary.to_dict("records"),
           "dl_mvi": {**dl_doc, "model": "the final DL-MVI model (trained on all development patients)"}}
    write_json(out / "reproducibility.json", doc)
    return doc


def _samplesize(data: pd.DataFrame, study: dict, out: Path) -> dict:
    """Riley 2020 for the nomogram's predictors against the development cohort."""
    from dlmvi.stats.nomogram import NomogramModel
    from dlmvi.stats.samplesize import cox_snell_r2, riley_sample_size

    clinical = _clinical_predictors(study)
    preds = [*clinical, "dl_mvi"]
    dev = data[(data["fold"] >= 0) & data["mvi"].notna()].dropna(subset=preds)
    n, events = len(dev), int(dev["mvi"].sum())
    phi = events / n
    try:
        m = NomogramModel(preds, cutoffs=study.get("clinical", {}).get("cutoffs")).fit(dev, outcome="mvi")
        llnull = n * (phi * np.log(phi) + (1 - phi) * np.log(1 - phi))
        r2 = cox_snell_r2(m.result_.llf, llnull, n)
        ss = riley_sample_size(len(preds), phi, r2).to_dict()
    except StatisticsError as exc:
        ss = {"error": str(exc)}
    doc = {**ss, "predictors": preds, "r2_cs_source": "the nomogram fitted on the development cohort (apparent)",
           "cohort_n": n, "cohort_events": events, "cohort_events_per_parameter": events / len(preds),
           "enough": bool(ss.get("n", np.inf) <= n)}
    write_json(out / "samplesize.json", doc)
    return doc


def _learning_curve(run: Path, study: dict, feats, outcome, splits, config: ComparisonConfig, out: Path,
                    synthetic: bool, log) -> dict:
    from dlmvi.train.learning import dl_learning_curve, radscore_learning_curve

    frames = [radscore_learning_curve(feats, outcome, splits, config.fractions, config.radscore)]
    if config.dl_learning_curve:
        from dlmvi.train.config import TrainConfig

        lay = RunLayout(run)
        cache = lay.cache_raw if study.get("normalization", "zscore") != "zscore" else lay.cache
        log("[radiomics] learning curve of DL-MVI (retrains each fold below 100 %) ...")
        frames.append(dl_learning_curve(cache, lay.train.root, radiomics_dir(run) / "learning_curve_runs",
                                        TrainConfig.from_dict(study["train"]), config.fractions))
    curve = pd.concat(frames, ignore_index=True)
    aucs = learning_curve_aucs(curve)
    write_csv(out / "learning_curve.csv", curve)
    write_csv(out / "learning_curve_auc.csv", aucs.assign(synthetic=True) if synthetic else aucs)
    _learning_figure(aucs, out / "learning_curve.png", synthetic)
    return {"auc": aucs.to_dict("records"), "same_test_folds": True}


def learning_curve_aucs(curve: pd.DataFrame) -> pd.DataFrame:
    """Pooled out-of-fold AUC (DeLong CI) per model and fraction of the training patients."""
    from dlmvi.evaluate.roc import delong_auc_ci

    rows = []
    for (model, f), g in curve.groupby(["model", "fraction"], sort=True):
        try:
            auc, lo, hi = delong_auc_ci(g["mvi"].to_numpy(float), g["prob"].to_numpy(float))
        except StatisticsError:
            auc = lo = hi = float("nan")
        rows.append({"model": model, "fraction": f, "n_train_mean": float(g.groupby("fold")["n_train"].first().mean()),
                     "n_test": len(g), "auc": auc, "auc_ci_low": lo, "auc_ci_high": hi})
    return pd.DataFrame(rows)


def _learning_figure(aucs: pd.DataFrame, path: Path, synthetic: bool) -> None:
    from dlmvi.evaluate.display import subplots
    from dlmvi.io.atomic import save_figure

    fig, ax = subplots(figsize=(5.5, 4))
    for model, g in aucs.groupby("model"):
        ax.errorbar(g["fraction"] * 100, g["auc"], yerr=[g["auc"] - g["auc_ci_low"], g["auc_ci_high"] - g["auc"]],
                    marker="o", capsize=3, label=model)
    ax.axhline(0.5, color="0.6", lw=1, ls="--")
    ax.set_xlabel("% of each fold's training patients")
    ax.set_ylabel("out-of-fold AUC (95 % CI)")
    ax.set_title(("SYNTHETIC - " if synthetic else "") + "learning curve (same test folds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def read_summary(run) -> dict | None:
    """``radiomics_summary.json`` of a run, or None."""
    p = radiomics_dir(run) / SUMMARY_JSON
    return json.loads(p.read_text()) if p.is_file() else None


__all__ = ["ComparisonConfig", "run_compare", "extract_for_run", "read_summary", "radiomics_dir", "features_dir",
           "learning_curve_aucs", "RADIOMICS_DIR", "SUMMARY_JSON"]
