"""Shared fixtures: small seeded cohorts written to a temp folder in real formats."""

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _torch_threads():
    """One torch thread per test: the suite shares 2 cores and tiny nets gain nothing from more."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def tiny_preset(monkeypatch):
    """Register the ``tiny`` preset (32 px, 8-4-8 channels, 6 epochs) for one test."""
    from cachefactory import tiny_preset as make_tiny_preset
    from dlmvi.model.presets import PRESETS

    p = make_tiny_preset(6)
    monkeypatch.setitem(PRESETS, "tiny", p)
    return p


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """40 patients (24 of cohort 2015, 16 of 2018), T1/T1V/T1D, 32 px, planted signal, one excluded."""
    from cachefactory import write_cache

    return write_cache(tmp_path_factory.mktemp("cache") / "cache")


@pytest.fixture(scope="session")
def make_cache():
    """The cache writer, for tests that need a cache of their own (signature of write_cache)."""
    from cachefactory import write_cache

    return write_cache


@pytest.fixture
def small_cohort(tmp_path):
    """Six patients, three sequences, NIfTI, tumour centred at slice 6."""
    from factories import write_cohort

    return write_cohort(tmp_path / "cohort")


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A whole study (phantom of 40 patients, 2 folds, 10 epochs) run once per session.

    One torch thread, whatever OMP_NUM_THREADS and the order of the fixtures: tests state its
    seeded numbers (tests/workflow/test_transport.py), and convolutions on a CPU sum in an order
    that depends on the number of threads.
    """
    import torch

    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.workflow.study import Study, StudyConfig

    torch.set_num_threads(1)

    root = tmp_path_factory.mktemp("study")
    cohort = make_phantom(root / "cohort", n_patients=40, seed=1, size=64, progress=False)
    cfg = StudyConfig.from_options(cohort, folds=2, epochs=10, bootstrap=10, seed=0)
    logs: list[str] = []
    study = Study(cfg, root / "run", log=logs.append)
    headline = study.run()
    return {"run": root / "run", "cohort": cohort, "config": cfg, "headline": headline, "log": logs}


@pytest.fixture(scope="session")
def patient_model(tmp_path_factory):
    """(run folder, model folder, cohort folder) built once per session (~15 s on one idle core).

    A 10-patient phantom (64 px, 16 slices, T1/T1V/T1D), its patch cache, a fast-preset network trained
    for 1 epoch, the study's published nomogram, exported with ``export_model`` (tests/deploy, tests/cli).
    """
    import json
    import warnings
    from pathlib import Path

    import torch

    from factories import STUDY_NOMOGRAM
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
        prepare_cohort(cohort, run / "cache", PrepareConfig(sequences=("T1", "T1V", "T1D"), size=64), progress=False)
        run_training(run / "cache", run / "train", TrainConfig(
            preset="fast", folds=0, epochs=1, seed=0, device="cpu", num_threads=1, progress=False))
    (run / "clinical").mkdir()
    (run / "clinical" / "nomogram.json").write_text(json.dumps(STUDY_NOMOGRAM))
    export_model(run, root / "model")
    return run, root / "model", Path(cohort)


@pytest.fixture(scope="session")
def tiny_study_model(tiny_study, tmp_path_factory):
    """The tiny study's final model exported with its nomogram (``dlmvi export``)."""
    import warnings

    from dlmvi.deploy.model import export_model

    out = tmp_path_factory.mktemp("tiny_model") / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(tiny_study["run"], out)
    return out


@pytest.fixture(scope="session")
def onnx_model(patient_model, tmp_path_factory):
    """``patient_model``'s run exported with ``--backend onnx --int8`` (issue 31; ~5 s): (model
    folder, export lines printed)."""
    import warnings

    from dlmvi.deploy.model import export_model

    run = patient_model[0]
    out = tmp_path_factory.mktemp("onnx") / "model"
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(run, out, backend="onnx", int8=True, progress=lines.append)
    return out, lines
