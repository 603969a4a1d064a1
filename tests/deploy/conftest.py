"""Fixtures of the deploy tests: one exported model built once per session."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from factories import STUDY_NOMOGRAM

SEQS = ("T1", "T1V", "T1D")
NOMOGRAM = STUDY_NOMOGRAM


@pytest.fixture(scope="session")
def patient_model(tmp_path_factory):
    """(run folder, model folder, cohort folder) built once per session (~15 s on one idle core)."""
    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.deploy.model import export_model
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.prepare import prepare_cohort
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.run import run_training

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("patient")
    cohort = make_phantom(root / "cohort", n_patients=10, size=64, n_slices=16, seed=3,
                          progress=False, workers=1)
    run = root / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_cohort(cohort, run / "cache", PrepareConfig(sequences=SEQS, size=64), progress=False)
        run_training(run / "cache", run / "train", TrainConfig(
            preset="fast", folds=0, epochs=1, seed=0, device="cpu", num_threads=1, progress=False))
    (run / "clinical").mkdir()
    (run / "clinical" / "nomogram.json").write_text(json.dumps(NOMOGRAM))
    export_model(run, root / "model")
    return run, root / "model", Path(cohort)


