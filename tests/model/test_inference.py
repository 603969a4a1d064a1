"""Tests of src/dlmvi/model/inference.py."""

import json

import numpy as np
import pytest
import torch

from dlmvi.errors import CacheError
from dlmvi.model.checkpoint import load_checkpoint, save_checkpoint
from dlmvi.model.inference import features_path, load_features, predict_arrays, predict_cache, write_prediction
from dlmvi.model.network import NetworkConfig, build_network
from dlmvi.preprocess.cache import PatchCache
from dlmvi.model.inference import all_combinations
from dlmvi.preprocess.patches import load_patches


def _checkpoint(tmp_path, cache, n_classes=2):
    cfg = NetworkConfig(stem_width=8, widths=(4, 8), blocks=(1, 1), n_sequences=3, n_classes=n_classes, input_size=32)
    torch.manual_seed(1)
    net = build_network(cfg).eval()
    meta = {"network": cfg.to_dict(), "sequences": ["T1", "T1V", "T1D"], "classes": n_classes,
            "prepare": PatchCache(cache).meta["params"]}
    save_checkpoint(tmp_path / f"ck{n_classes}" / "model", net, meta)
    return load_checkpoint(tmp_path / f"ck{n_classes}")


def test_predict_first_slice_and_tta(tmp_path, tiny_cache):
    ck = _checkpoint(tmp_path, tiny_cache)
    plain = predict_cache(ck, tiny_cache)
    tta = predict_cache(ck, tiny_cache, tta=True)
    f = plain.frame
    assert len(f) == 40 and list(f.columns) == ["patient_id", "cohort", "mvi_grade", "label", "dl_prob", "dl_mvi",
                                                "source"]
    # the checkpoint records no split (saved by hand): no patient is in-sample
    assert set(f["source"]) == {"ck2 model"} and plain.meta["in_sample"] == 0
    assert f["patient_id"].iloc[0] == "P000"  # leading zeros kept
    assert f["dl_prob"].between(0, 1).all() and (f["dl_mvi"] == (f["dl_prob"] >= 0.5)).all()
    assert (f["label"] == (f["mvi_grade"] != "M0")).all()
    assert plain.features.shape == (40, 3, 32) and tta.features.shape == (40, 3, 32)
    assert not np.allclose(plain.frame["dl_prob"], tta.frame["dl_prob"])
    # TTA equals the brute-force mean over all 27 full forward passes
    cache = PatchCache(tiny_cache)
    x = load_patches(cache, cache.patient_ids()[:4], ck.sequences, 32)
    combos = all_combinations(3, 3)
    assert combos.shape == (27, 3)
    with torch.no_grad():
        brute = np.mean([torch.softmax(ck.model(torch.from_numpy(x[:, [0, 1, 2], c]).unsqueeze(2)), 1).numpy()
                         for c in combos], axis=0)
    fast, _ = predict_arrays(ck.model, x, tta=True)
    np.testing.assert_allclose(fast, brute, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tta.frame["dl_prob"].to_numpy()[:4], brute[:, 1], rtol=1e-5, atol=1e-6)


def test_write_prediction_files(tmp_path, tiny_cache):
    ck = _checkpoint(tmp_path, tiny_cache, n_classes=3)
    pred = predict_cache(ck, tiny_cache, cohort="2018")
    paths = write_prediction(pred, tmp_path / "out" / "predictions.csv")
    assert paths["features"] == features_path(tmp_path / "out" / "predictions.csv")
    assert paths["features"].name == "predictions.features.npz"
    f = pred.frame
    assert len(f) == 16 and set(f["cohort"]) == {"2018"}
    np.testing.assert_allclose(f[["p_M0", "p_M1", "p_M2"]].sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(f["dl_prob"], f["p_M1"] + f["p_M2"], rtol=1e-6)
    feats = load_features(paths["features"])  # allow_pickle=False inside
    assert feats["features"].shape == (16, 3, 32) and feats["features"].dtype == np.float32
    assert feats["patient_id"].tolist() == f["patient_id"].tolist()
    assert feats["sequences"].tolist() == ["T1", "T1V", "T1D"]
    meta = json.loads(paths["json"].read_text())
    assert meta["synthetic"] is True and "SYNTHETIC" in meta["notice"]


def test_missing_sequence_in_cache(tmp_path, tiny_cache, make_cache):
    small = make_cache(tmp_path / "c2", n_patients=6, sequences=("T1", "T1V"))
    ck = _checkpoint(tmp_path, tiny_cache)
    with pytest.raises(CacheError, match=r"needs sequence\(s\) \['T1D'\]"):
        predict_cache(ck, small)


def test_compiled_inference_encoder_gives_the_same_features():
    """The encoder compiled for one patient at a time (conv + batch norm folded) agrees with the
    eager encoder to float precision, for any batch size."""
    import torch

    from dlmvi.model.inference import inference_encoder, slice_features
    from dlmvi.model.network import NetworkConfig, build_network

    torch.manual_seed(0)
    net = build_network(NetworkConfig(in_channels=1, stem_width=8, widths=(8, 16), blocks=(1, 1),
                                      n_sequences=3, n_classes=2, input_size=32)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    enc = inference_encoder(net, 32)
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.inference_mode():
        eager = slice_features(net, x, range(3))
        fast = slice_features(net, x, range(3), encoder=enc)
    assert fast.shape == eager.shape == (2, 3, 3, net.config.feature_dim)
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
