"""Shared fixtures: small seeded cohorts written to a temp folder in real formats."""

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(1)


@pytest.fixture
def small_cohort(tmp_path):
    """Six patients, three sequences, NIfTI, tumour centred at slice 6."""
    from factories import write_cohort

    return write_cohort(tmp_path / "cohort")


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A whole study (phantom of 40 patients, 2 folds, 10 epochs) run once per session."""
    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.pipeline import Study, StudyConfig

    root = tmp_path_factory.mktemp("study")
    cohort = make_phantom(root / "cohort", n_patients=40, seed=1, size=64, progress=False)
    cfg = StudyConfig(cohort=str(cohort), folds=2, epochs=10, bootstrap=10, seed=0)
    logs: list[str] = []
    study = Study(cfg, root / "run", log=logs.append)
    headline = study.run()
    return {"run": root / "run", "cohort": cohort, "config": cfg, "headline": headline, "log": logs}
