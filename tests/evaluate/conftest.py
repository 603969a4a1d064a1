"""Fixtures of the evaluation tests: the shared tiny cache, and the tiny preset cut to 1 epoch."""

import dataclasses

import pytest


@pytest.fixture
def tiny_preset(tiny_preset, monkeypatch):
    """The shared ``tiny`` preset with 1 epoch: evaluation tests need a model, not a good one."""
    from dlmvi.model.presets import PRESETS

    p = dataclasses.replace(tiny_preset, epochs=1)
    monkeypatch.setitem(PRESETS, "tiny", p)
    return p
