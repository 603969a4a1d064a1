"""Fixtures of the model tests; the cache writer lives in tests/train/cachefactory.py."""

import importlib.util
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location(
    "dlmvi_tests_cachefactory", Path(__file__).parents[1] / "train" / "cachefactory.py"
)
cachefactory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cachefactory)
write_cache = cachefactory.write_cache

@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return write_cache(tmp_path_factory.mktemp("cache") / "cache")


@pytest.fixture(scope="session")
def make_cache():
    """The cache writer, for tests that need a cache of their own (signature of write_cache)."""
    return write_cache
