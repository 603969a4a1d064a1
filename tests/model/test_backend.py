"""Tests of src/dlmvi/model/backend.py: the agreement figures (closed form), the choice of backend,
and the ONNX encoders against PyTorch's on a tiny network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlmvi.errors import ConfigError, ModelError
from dlmvi.model.backend import (FP32_MAX_DP, INT8_MAX_DP, INT8_MAX_FLIP_SHARE, OnnxEncoder, analyse_agreement,
                                 combination_probabilities_of, export_encoder_onnx, quantize_encoder, select_backend)
from dlmvi.model.network import NetworkConfig, build_network


def test_agreement_figures_by_hand():
    """Three patients, two combinations; patient 2's first-slice decision flips (0.49 -> 0.51)."""
    ref = np.array([[0.10, 0.20], [0.49, 0.60], [0.90, 0.80]])
    new = np.array([[0.11, 0.20], [0.51, 0.58], [0.90, 0.80]])
    a = analyse_agreement("onnx-int8", ref, new, threshold=0.5)
    assert a.max_abs_dp == pytest.approx(0.02)
    assert a.mean_abs_dp == pytest.approx((0.01 + 0.02 + 0.02) / 6)
    assert a.max_abs_dp_model == pytest.approx(0.02)
    assert (a.flips, a.n_patients, a.n_probabilities) == (1, 3, 6)
    assert a.flip_share == pytest.approx(1 / 3)
    assert (a.limit_dp, a.limit_flip_share) == (INT8_MAX_DP, INT8_MAX_FLIP_SHARE)
    assert not a.accepted  # |dP| within 0.03 but a third of the decisions flip
    # the model's probability as the mean over the combinations (TTA): (0.545 vs 0.545) no flip
    t = analyse_agreement("onnx-int8", ref, new, threshold=0.5, tta=True)
    assert t.flips == 0 and t.accepted
    assert analyse_agreement("onnx", ref, ref + 5e-5, 0.5).accepted
    f = analyse_agreement("onnx", ref, ref + 2e-4, 0.5)
    assert not f.accepted and f.limit_dp == FP32_MAX_DP
    assert "REFUSED" not in f.summary() and "limit 0.0001" in f.summary()
    with pytest.raises(ModelError, match="cannot be compared"):
        analyse_agreement("onnx", ref, ref[:2], 0.5)


def test_select_backend():
    assert select_backend("auto", ["onnx", "onnx-int8"]) == "onnx-int8"
    assert select_backend("auto", ["onnx"]) == "onnx"
    assert select_backend("auto", []) == "torch"
    assert select_backend("onnx", ["onnx", "onnx-int8"]) == "onnx-int8"
    assert select_backend("torch", ["onnx-int8"]) == "torch"
    with pytest.raises(ConfigError, match="no ONNX backend"):
        select_backend("onnx", [])
    with pytest.raises(ConfigError, match="choose one of auto, torch, onnx"):
        select_backend("openvino", ["onnx"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = NetworkConfig(stem_width=8, widths=(4, 8), blocks=(1, 1), n_sequences=2, n_classes=2, input_size=32)
    torch.manual_seed(0)
    net = build_network(cfg).eval()
    with torch.no_grad():  # batch-norm statistics that are not the identity: folding them must hold
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        net.classifier.weight.mul_(0.05)  # probabilities away from 0 and 1
    root = tmp_path_factory.mktemp("backend")
    x = np.random.default_rng(1).standard_normal((6, 2, 3, 32, 32)).astype(np.float32)
    fp32 = export_encoder_onnx(net, 32, root / "encoder.onnx")
    int8 = quantize_encoder(fp32, root / "encoder.int8.onnx", x[:4].reshape(-1, 1, 32, 32))
    return net, x, fp32, int8


def test_onnx_float32_encoder_equals_pytorch(tiny):
    net, x, fp32, _ = tiny
    enc = OnnxEncoder(fp32, threads=1)
    crops = torch.from_numpy(x.reshape(-1, 1, 32, 32))
    with torch.inference_mode():
        ref = net.encoder(crops)
    got = enc(crops)
    assert got.shape == ref.shape == (36, 32)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)
    p_ref = combination_probabilities_of(net, x)
    p = combination_probabilities_of(net, x, encoder=enc)
    assert p.shape == (6, 9) and 0.05 < p_ref.min() and p_ref.max() < 0.95
    assert np.abs(p - p_ref).max() < FP32_MAX_DP


def test_int8_encoder_is_quantised_and_close(tiny):
    import onnx

    net, x, fp32, int8 = tiny
    graph = onnx.load(str(int8)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)  # int8 weights
    p_ref = combination_probabilities_of(net, x)
    p = combination_probabilities_of(net, x, encoder=OnnxEncoder(int8, threads=1))
    d = np.abs(p - p_ref).max()
    assert 0 < d < INT8_MAX_DP  # quantised: not bit-equal, but close


def test_an_unreadable_graph_is_refused(tmp_path):
    bad = tmp_path / "encoder.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="ONNX Runtime cannot load the encoder.*re-export"):
        OnnxEncoder(bad)
