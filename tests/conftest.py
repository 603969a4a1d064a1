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
