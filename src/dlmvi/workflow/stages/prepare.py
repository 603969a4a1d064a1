"""``cache/``: key slices, crops, normalisation (incremental by itself, so always called)."""

from __future__ import annotations

import time

from dlmvi.io.atomic import write_json
from dlmvi.preprocess.cache import CACHE_JSON, INDEX_CSV, PATIENTS_CSV
from dlmvi.workflow.config import file_hash, hash_key
from dlmvi.workflow.stages.base import Stage


class PrepareStage(Stage):
    """Prepares (or updates) the training cache; a fitted harmonisation is not fitted here but by
    the training, inside each fold. Its key is the cache's own index and settings."""

    name = "prepare"

    def run(self, study) -> None:
        from dlmvi.preprocess.prepare import prepare_cohort

        cfg = study.config
        study.log("[prepare] checking the cache ...")
        t0 = time.perf_counter()
        raw = study.training_cache
        prepare_cohort(study.cohort, raw, cfg.prepare, study.column_map, progress=True)
        key = hash_key([file_hash(raw / INDEX_CSV, raw / PATIENTS_CSV, raw / CACHE_JSON),
                        cfg.prepare.to_dict(), cfg.normalization])
        study.stages_doc["prepare"] = {"key": key, "raw": file_hash(raw / INDEX_CSV, raw / PATIENTS_CSV),
                                       "seconds": round(time.perf_counter() - t0, 1)}
        write_json(study.layout.stages_json, study.stages_doc)
