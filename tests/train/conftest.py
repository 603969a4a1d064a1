"""Fixtures of the training tests: a tiny cache with a planted signal and a tiny preset."""

import pytest
import torch

from cachefactory import write_cache

from dlmvi.model.presets import PRESETS, Preset

TINY = Preset(name="tiny", input_size=32, stem_width=8, widths=(4, 8), blocks=(1, 1),
              epochs=6, batch_size=8, lr=3e-3, patience=0, description="tests only")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_preset(monkeypatch):
    """Register the ``tiny`` preset (32 px, 8-4-8 channels) for the duration of a test."""
    monkeypatch.setitem(PRESETS, "tiny", TINY)
    return TINY


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """40 patients (24 of cohort 2015, 16 of 2018), 3 sequences, 32 px, one excluded patient."""
    return write_cache(tmp_path_factory.mktemp("cache") / "cache")


@pytest.fixture(scope="session")
def make_cache():
    """The cache writer, for tests that need a cache of their own (signature of write_cache)."""
    return write_cache
