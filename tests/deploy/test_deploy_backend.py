"""Tests of src/dlmvi/deploy/backend.py (and the backends of deploy/model.py, deploy/patient.py):
``export_model(..., backend="onnx", int8=True)`` on the session's phantom run, agreement recorded
and enforced, identity checked at loading, the same answers from every backend, the first answer."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from dlmvi.deploy.model import export_model, load_model
from dlmvi.deploy.patient import predict_patient
from dlmvi.errors import ConfigError, ModelError


def _patient(patient_model, i=0):
    cohort = patient_model[2]
    return sorted((cohort / "images").iterdir())[i]


def test_export_writes_both_backends_with_identity_and_agreement(onnx_model, patient_model):
    model_dir, lines = onnx_model
    doc = json.loads((model_dir / "model.json").read_text())
    b = doc["backends"]
    assert set(b) == {"onnx", "onnx-int8"}
    from dlmvi.model.backend import file_sha256

    for name, fname in (("onnx", "encoder.onnx"), ("onnx-int8", "encoder.int8.onnx")):
        e = b[name]
        assert e["accepted"] and e["file"] == fname
        assert e["file_sha256"] == file_sha256(model_dir / fname)
        assert e["weights_sha256"] == doc["weights_sha256"]
        a = e["agreement"]
        assert a["n_patients"] == 10 and a["n_probabilities"] == 270  # every combination of every patient
        assert a["max_abs_dp"] <= a["limit_dp"] and a["flips"] == 0
    assert b["onnx"]["agreement"]["max_abs_dp"] < 1e-4 and b["onnx-int8"]["agreement"]["max_abs_dp"] < 0.03
    assert b["onnx-int8"]["agreement"]["max_abs_dp"] > 0  # quantised: not bit-equal
    assert b["onnx-int8"]["calibration"]["patients"] == 8  # the training patients of the split
    assert b["onnx-int8"]["calibration"]["crops"] == 64
    assert any(line.startswith("onnx-int8: max |dP|") for line in lines)
    card = json.loads((model_dir / "model_card.json").read_text())
    assert [r["backend"] for r in card["backends"]] == ["torch", "onnx", "onnx-int8"]
    html = (model_dir / "model_card.html").read_text()
    assert "onnx-int8 (int8): accepted, max |dP|" in html
    # the torch-only export of the same run is unchanged: no backends, no ONNX files
    torch_dir = patient_model[1]
    assert "backends" not in json.loads((torch_dir / "model.json").read_text())
    assert not list(torch_dir.glob("*.onnx"))


def test_every_backend_gives_the_same_answer(onnx_model, patient_model):
    model_dir, _ = onnx_model
    doc = json.loads((model_dir / "model.json").read_text())
    pdir = _patient(patient_model)
    res = {}
    for b in ("torch", "onnx", "auto"):
        em = load_model(model_dir, backend=b)
        firsts = []
        res[b] = predict_patient(None, pdir, 35.0, model=em, on_first=firsts.append)
        assert firsts[0].probability == res[b].probability == res[b].probability_first_slice
        assert firsts[0].decision == res[b].decision and firsts[0].nomogram == res[b].nomogram
        assert firsts[0].backend == em.backend and firsts[0].seconds <= res[b].seconds["total"]
    assert res["torch"].backend["backend"] == "torch"
    assert res["onnx"].backend["backend"] == res["auto"].backend["backend"] == "onnx-int8"
    lim = doc["backends"]["onnx-int8"]["agreement"]["limit_dp"]
    assert abs(res["auto"].probability - res["torch"].probability) <= lim
    assert np.abs(res["auto"].combination_probabilities - res["torch"].combination_probabilities).max() <= lim
    assert res["auto"].to_dict()["backend"]["agreement"]["max_abs_dp"] == \
        doc["backends"]["onnx-int8"]["agreement"]["max_abs_dp"]
    # ONNX float32 alone (int8 left out): PyTorch's numbers to 1e-4
    em = load_model(model_dir, backend="onnx")
    em.backend = "onnx"
    p = predict_patient(None, pdir, 35.0, model=em)
    assert np.abs(p.combination_probabilities - res["torch"].combination_probabilities).max() < 1e-4
    # the ONNX path builds the PyTorch network only when Grad-CAM needs it
    em = load_model(model_dir)
    predict_patient(None, pdir, 35.0, model=em)
    assert em.module is None
    g = predict_patient(None, pdir, 35.0, model=em, explain=True)
    assert em.module is not None and g.gradcam.shape[0] == 3


def test_a_modified_or_missing_backend_file_is_refused(onnx_model, tmp_path):
    src, _ = onnx_model
    copy = tmp_path / "model"
    shutil.copytree(src, copy)
    with open(copy / "encoder.int8.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="encoder.int8.onnx: its checksum differs from model.json"):
        load_model(copy)
    assert load_model(copy, backend="torch").backend == "torch"  # torch needs no ONNX file
    (copy / "encoder.int8.onnx").unlink()
    with pytest.raises(ModelError, match=r"encoder.int8.onnx \(backend onnx-int8\) is missing"):
        load_model(copy)
    with pytest.raises(ConfigError, match="--backend 'gpu': choose one of auto, torch, onnx"):
        load_model(copy, backend="gpu")


def test_int8_outside_its_limits_is_refused_with_the_figures(patient_model, tmp_path):
    run = patient_model[0]
    out = tmp_path / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ModelError, match=r"backend onnx-int8: max \|dP\| [0-9.e-]+ over 270 probabilities of 10 "
                           r"development patients \(limit 1e-09\).*not written.*written with the backends that agree "
                           r"\(torch, onnx\)"):
            export_model(run, out, backend="onnx", int8=True, backend_limits={"onnx-int8": {"dp": 1e-9}})
    doc = json.loads((out / "model.json").read_text())
    assert doc["backends"]["onnx-int8"]["accepted"] is False and doc["backends"]["onnx-int8"]["file"] is None
    assert not (out / "encoder.int8.onnx").exists() and (out / "encoder.onnx").is_file()
    assert "REFUSED" in (out / "model_card.html").read_text()
    assert load_model(out).backend == "onnx"  # auto: the float32 backend that agrees
    with pytest.raises(ConfigError, match="--int8 quantises the ONNX encoder"):
        export_model(run, tmp_path / "m2", int8=True)
