"""Tests of src/dlmvi/train/engine.py: learning, logging, early stopping, resume."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cachefactory import TINY_NET, cpu_config, train_val_parts
from dlmvi.errors import ConfigError, ModelError
from dlmvi.model.network import NetworkConfig
from dlmvi.preprocess.cache import PatchCache
from dlmvi.preprocess.patches import load_patches
from dlmvi.train.data import CombinationDataset
from dlmvi.train.engine import class_weights, classification_metrics, fit

NET = NetworkConfig(**TINY_NET)
SEQ = ("T1", "T1V", "T1D")


def test_learns_planted_signal_and_logs(tmp_path, tiny_cache):
    (xt, yt), val = train_val_parts(tiny_cache)
    res = fit(CombinationDataset(xt, yt, SEQ, seed=0), val, NET, cpu_config(epochs=6), tmp_path / "m")
    log = pd.read_csv(tmp_path / "m" / "log.csv")
    assert list(log.columns) == ["epoch", "train_loss", "train_acc", "train_auc", "val_loss", "val_acc",
                                 "val_auc", "best", "seconds"]
    assert log["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    # chance is 0.5; the planted disk is learnt within 6 epochs
    assert log["val_auc"].iloc[res.best_epoch - 1] >= 0.9
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]
    assert res.best_val_loss == pytest.approx(log["val_loss"].min())
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "last.optim.safetensors").is_file()


def test_resume_after_interruption_gives_identical_weights(tmp_path, tiny_cache):
    (xt, yt), val = train_val_parts(tiny_cache)
    full = fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cpu_config(seed=3), tmp_path / "a")

    class Interrupt(Exception):
        pass

    def stop_at_2(epoch, row):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cpu_config(seed=3), tmp_path / "b", on_epoch_end=stop_at_2)
    assert len(pd.read_csv(tmp_path / "b" / "log.csv")) == 2
    resumed = fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cpu_config(seed=3), tmp_path / "b")
    assert resumed.resumed_from == 2 and resumed.epochs_run == 4 and resumed.best_epoch == full.best_epoch
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    pd.testing.assert_frame_equal(resumed.log.drop(columns="seconds"), full.log.drop(columns="seconds"))
    # a finished model is not retrained
    again = fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cpu_config(seed=3), tmp_path / "b")
    assert again.resumed_from == 4 and torch.equal(
        again.model.classifier.weight, full.model.classifier.weight)
    # other settings on an unfinished folder are refused
    with pytest.raises(Interrupt):
        fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cpu_config(seed=3), tmp_path / "c", on_epoch_end=stop_at_2)
    with pytest.raises(ModelError, match="different training setting"):
        fit(CombinationDataset(xt, yt, SEQ, seed=3), val, NET, cpu_config(seed=3, lr=1e-2), tmp_path / "c")


def test_early_stopping(tmp_path, make_cache):
    cache = make_cache(tmp_path / "noise", n_patients=24, signal=0.0, seed=5)
    c = PatchCache(cache)
    ids = c.patient_ids()
    x, y = load_patches(c, ids, SEQ, 32), c.labels(ids)
    res = fit(CombinationDataset(x[:18], y[:18], SEQ, seed=0), (x[18:], y[18:]), NET,
              cpu_config(epochs=30, patience=2, lr=1e-2), tmp_path / "m")
    assert res.epochs_run < 30 and res.epochs_run == res.best_epoch + 2


def test_no_validation_keeps_last_epoch(tmp_path, tiny_cache):
    (xt, yt), _ = train_val_parts(tiny_cache)
    res = fit(CombinationDataset(xt, yt, SEQ, seed=0), None, NET, cpu_config(epochs=2), tmp_path / "m")
    assert res.best_epoch == 2 and math.isnan(res.best_val_loss)


def test_metrics_and_class_weights():
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    m = classification_metrics(probs, np.array([0, 1, 1, 1]))
    assert m["acc"] == 0.75 and m["auc"] == pytest.approx(1.0)
    assert m["loss"] == pytest.approx(-np.log([0.8, 0.6, 0.7, 0.4]).mean())
    three = classification_metrics(np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]), np.array([0, 2]))
    assert three["auc"] == 1.0
    assert class_weights([0, 0, 0, 1], 2).tolist() == pytest.approx([2 / 3, 2.0])
    with pytest.raises(ConfigError, match="every class"):
        class_weights([0, 0, 1], 3)
