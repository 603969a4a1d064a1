"""``train/``: k-fold cross-validation and the final model on the development cohort."""

from __future__ import annotations

from dlmvi.preprocess.cache import CACHE_JSON
from dlmvi.workflow.config import settings_key
from dlmvi.workflow.stages.base import Stage


class TrainStage(Stage):
    """Trains the folds and the final model; with a fitted harmonisation, also writes ``cache/``:
    the raw patches under the final model's own harmonisation (what later stages read)."""

    name = "train"

    def key(self, study) -> list:
        return [settings_key(study.config.train), study.key("prepare")]

    def outputs(self, study):
        lay = study.layout
        return [lay.train.run_json] + ([lay.cache / CACHE_JSON] if study.config.normalization != "zscore" else [])

    def run(self, study) -> None:
        from dlmvi.train.run import run_training

        run_training(study.training_cache, study.layout.train.root, study.config.train)
        if study.config.normalization != "zscore":
            from dlmvi.model.checkpoint import load_checkpoint
            from dlmvi.preprocess.harmonize import harmonize_cache

            final = load_checkpoint(study.layout.train.root)
            harmonize_cache(study.training_cache, study.cache, method=study.config.normalization,
                            params=final.meta["harmonization"])
