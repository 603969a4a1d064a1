"""``predictions.csv``: out-of-fold predictions for the development cohort, the final model's for the rest."""

from __future__ import annotations

import json

from dlmvi.errors import CacheError, ConfigError
from dlmvi.io.atomic import write_json
from dlmvi.workflow.stages.base import Stage


def prediction_sources(frame) -> dict:
    """``{cohort: {source: n}}`` of a predictions table: where each cohort's predictions came from."""
    return {str(c): {str(k): int(v) for k, v in g["source"].value_counts().sort_index().items()}
            for c, g in frame.groupby("cohort", sort=True)}


def record_sources(layout) -> None:
    """``study.json``'s ``prediction_sources``: per cohort, how many predictions came from where,
    and the training run's leakage audit."""
    import pandas as pd

    from dlmvi.train.leakage import audit_run

    frame = pd.read_csv(layout.predictions, dtype={"patient_id": str, "cohort": str})
    doc = json.loads(layout.study_json.read_text())
    if "source" in frame.columns:
        doc["prediction_sources"] = prediction_sources(frame)
    if layout.train.splits_json.is_file():
        doc["leakage"] = audit_run(layout.train.root).to_dict()
    write_json(layout.study_json, doc)


class PredictStage(Stage):
    """For every development patient the out-of-fold prediction (the fold model that never saw
    it), for every other patient the final model's; the final model's predictions of its own
    training patients stay in ``predict/final_predictions.csv``, labelled in-sample, and reach no
    figure."""

    name = "predict"

    def key(self, study) -> list:
        return [study.config.tta, study.key("train")]

    def outputs(self, study):
        return [study.layout.predictions]

    def run(self, study) -> None:
        import pandas as pd

        from dlmvi.constants import IN_SAMPLE, SOURCE_OUT_OF_FOLD
        from dlmvi.io.atomic import write_csv
        from dlmvi.model.inference import predict_cache, write_prediction
        from dlmvi.train.leakage import audit_run

        lay = study.layout
        pred = predict_cache(lay.train.root, study.cache, tta=study.config.tta)
        write_prediction(pred, lay.final_predictions)
        final = pred.frame
        cv = pd.read_csv(lay.train.cv_predictions, dtype={"patient_id": str, "cohort": str})
        cv["source"] = SOURCE_OUT_OF_FOLD
        in_sample = final["source"].str.endswith(IN_SAMPLE)
        missing = sorted(set(final.loc[in_sample, "patient_id"]) - set(cv["patient_id"]))
        if missing:  # cannot happen with cross-validation: every development patient is tested once
            raise ConfigError(f"{lay.train.cv_predictions}: no out-of-fold prediction for training patient(s) "
                              f"{', '.join(missing[:5])}; rerun the study in a new folder")
        frame = pd.concat([cv, final[~in_sample & ~final["patient_id"].isin(cv["patient_id"])]], ignore_index=True)
        audit = audit_run(lay.train.root)
        if not audit.ok:
            raise CacheError(f"{lay.train.root}: the training run kept its patients apart badly: "
                             + "; ".join(audit.problems) + ". Rerun the study in a new folder")
        write_csv(lay.predictions, frame)
        record_sources(lay)
