"""``ablation/``: the sequence ablation with cross-validation (optional, costly)."""

from __future__ import annotations

from dlmvi.workflow.config import settings_key
from dlmvi.workflow.stages.base import Stage


class AblateStage(Stage):
    name = "ablate"

    def enabled(self, study) -> bool:
        return study.config.ablate

    def key(self, study) -> list:
        cfg = study.config
        return [cfg.ablation_combos, settings_key(cfg.train), study.key("prepare")]

    def outputs(self, study):
        return [study.layout.ablation_csv]

    def run(self, study) -> None:
        from dlmvi.evaluate.ablation import run_ablation

        cfg = study.config
        run_ablation(study.training_cache, study.layout.ablation, combos=cfg.ablation_combos, base_config=cfg.train,
                     folds=cfg.train.folds, seed=cfg.seed)
