"""Fixtures of the evaluation tests: the tiny planted-signal cache of tests/train and a tiny preset."""

import importlib.util
from pathlib import Path

import pytest
import torch

from dlmvi.model.presets import PRESETS, Preset

_spec = importlib.util.spec_from_file_location(
    "dlmvi_tests_cachefactory_eval", Path(__file__).parents[1] / "train" / "cachefactory.py"
)
cachefactory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cachefactory)

TINY = Preset(name="tiny", input_size=32, stem_width=8, widths=(4, 8), blocks=(1, 1),
              epochs=1, batch_size=8, lr=3e-3, patience=0, description="tests only")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_preset(monkeypatch):
    """Register the ``tiny`` preset (32 px, 1 epoch) for the duration of a test."""
    monkeypatch.setitem(PRESETS, "tiny", TINY)
    return TINY


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """40 patients (24 of cohort 2015, 16 of 2018), T1/T1V/T1D, 32 px, z-scored."""
    return cachefactory.write_cache(tmp_path_factory.mktemp("evalcache") / "cache")
