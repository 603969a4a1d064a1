"""Tests of the backend options of src/dlmvi/cli/patient.py and src/dlmvi/cli/serve.py (issue 31):
``dlmvi export --backend onnx --int8`` and ``predict-patient --backend`` as subprocesses, and a real
``dlmvi serve`` on the ONNX model answering ``POST /api/predict/first`` before the rest
(``GET /api/followups/{id}``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from test_serve import _start, _stop

SEQS = ("T1", "T1V", "T1D")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "dlmvi.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def _zip(folder, dest, masks=True):
    with zipfile.ZipFile(dest, "w") as z:
        for s in SEQS:
            for n in [f"{s}.nii.gz"] + ([f"{s}_roi.nii.gz"] if masks else []):
                z.write(folder / n, f"case/{n}")
    return dest


def test_export_and_predict_patient_with_the_onnx_backends(patient_model, tmp_path, capsys):
    from dlmvi.cli import run_cli
    from dlmvi.deploy.patient import predict_patient

    run, torch_dir, cohort = patient_model
    out = tmp_path / "model"
    done = _cli("export", run, out, "--backend", "onnx", "--int8")
    assert done.returncode == 0, done.stderr
    assert "backend onnx: max |dP|" in done.stdout and "backend onnx-int8: max |dP|" in done.stdout
    assert (out / "encoder.int8.onnx").is_file()
    pdir = sorted((cohort / "images").iterdir())[1]
    res = _cli("predict-patient", out, pdir, "--afp", "35", "--threads", "1", "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    assert "backend               onnx-int8 (int8; max |dP|" in res.stdout
    got = json.loads((tmp_path / "r" / "result.json").read_text())
    assert got["backend"]["backend"] == "onnx-int8" and got["backend"]["agreement"]["flips"] == 0
    ref = predict_patient(torch_dir, pdir, 35.0)
    limit = got["backend"]["agreement"]["limit_dp"]
    assert abs(got["probability"] - ref.probability) <= limit
    assert (tmp_path / "r" / "card.html").is_file()  # Grad-CAM on the PyTorch network, built on demand
    forced = _cli("predict-patient", out, pdir, "--afp", "35", "--backend", "torch", "--threads", "1")
    assert forced.returncode == 0 and "backend  " not in forced.stdout
    assert f"DL-MVI probability    {ref.probability:.3f}" in forced.stdout
    capsys.readouterr()
    assert run_cli(["predict-patient", str(torch_dir), str(pdir), "--afp", "35", "--backend", "onnx"]) == 2
    assert "error: --backend onnx: this model folder has no ONNX backend" in capsys.readouterr().err


@pytest.fixture(scope="module")
def served_onnx(onnx_model, patient_model, tmp_path_factory):
    model_dir, _ = onnx_model
    root = tmp_path_factory.mktemp("serve_onnx")
    proc, url, printed = _start([str(model_dir), "--threads", "1"], root / "server.log")
    yield {"url": url, "printed": printed, "cohort": patient_model[2], "root": root, "model_dir": model_dir}
    _stop(proc)


def test_serve_answers_first_then_the_rest(served_onnx):
    import httpx2 as httpx

    from dlmvi.deploy.model import load_model
    from dlmvi.deploy.patient import predict_patient

    url, cohort = served_onnx["url"], served_onnx["cohort"]
    assert "backend onnx-int8" in served_onnx["printed"]
    assert httpx.get(url + "/api/model").json()["backend"]["backend"] == "onnx-int8"
    pdir = sorted((cohort / "images").iterdir())[2]
    data = _zip(pdir, served_onnx["root"] / "case.zip").read_bytes()
    r = httpx.post(url + "/api/predict/first", files={"archive": ("upload", data)}, data={"afp": "35"}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    first = body["first"]
    assert set(first) >= {"probability", "nomogram", "decision", "dl_mvi", "backend", "seconds"}
    assert "spread" not in first and first["complete"] is False
    assert body["followup_url"] == f"/api/followups/{body['followup']}"
    full = httpx.get(url + body["followup_url"], params={"wait": 60}, timeout=120)
    assert full.status_code == 200
    res = full.json()
    assert res["probability"] == first["probability"] and res["decision"] == first["decision"]
    assert res["nomogram"] == first["nomogram"] and res["spread"]["n"] == 27
    assert first["seconds"] <= res["seconds"]["total"]
    expected = predict_patient(None, pdir, 35.0, model=load_model(served_onnx["model_dir"]))
    assert res["probability"] == pytest.approx(expected.probability, abs=1e-6)
    again = httpx.get(url + body["followup_url"], timeout=30)
    assert again.status_code == 404 and "already collected" in again.json()["detail"]
    # an error before the first answer is the first answer's error, with the usual message
    bare = _zip(pdir, served_onnx["root"] / "bare.zip", masks=False).read_bytes()
    r = httpx.post(url + "/api/predict/first", files={"archive": ("upload", bare)}, data={"afp": "35"}, timeout=300)
    assert r.status_code == 422 and "no tumour mask for T1, T1V, T1D" in r.json()["detail"]
