"""Tests of src/dlmvi/deploy/server.py (the application of ``dlmvi serve``) and its page.

In-process, through FastAPI's TestClient, with the session's exported phantom model
(``patient_model``, tests/conftest.py). The real server (uvicorn, headless Chromium, 20
concurrent requests) is tested in tests/cli/test_serve.py.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

SEQS = ("T1", "T1V", "T1D")


@pytest.fixture(scope="module")
def em(patient_model):
    from dlmvi.deploy.model import load_model

    return load_model(patient_model[1])


@pytest.fixture
def make_client(em, tmp_path):
    """make_client(**ServeConfig fields) -> a started TestClient (closed after the test)."""
    from fastapi.testclient import TestClient

    from dlmvi.deploy.server import ServeConfig, create_app
    from dlmvi.report.card import render_card

    clients = []

    def make(**cfg):
        cfg.setdefault("work_dir", tmp_path / "work")
        app = create_app(em, ServeConfig(**cfg), render_card=render_card)
        client = TestClient(app)
        client.__enter__()
        client.app_ = app
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _pid(cohort: Path, i: int = 0) -> str:
    return sorted(p.name for p in (cohort / "images").iterdir())[i]


def _zip(folder: Path, names=None, arc_folder: str | None = "case") -> bytes:
    """The patient folder's files (all, or ``names``) as a zip, under ``arc_folder/``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(folder.iterdir()):
            if names is None or f.name in names:
                z.write(f, f"{arc_folder}/{f.name}" if arc_folder else f.name)
    return buf.getvalue()


def _files(seqs=SEQS, masks=True) -> list[str]:
    return [f"{s}.nii.gz" for s in seqs] + ([f"{s}_roi.nii.gz" for s in seqs] if masks else [])


def _mask_boxes(folder: Path, pid: str, key_slices: dict) -> dict:
    """Boxes tight around the mask on the key slices (phantom files are LPS: file grid = LPS grid)."""
    from dlmvi.cohort.patient import Patient, SequenceSource

    boxes = {}
    for seq in SEQS:
        src = SequenceSource(seq, folder / f"{seq}.nii.gz", folder / f"{seq}_roi.nii.gz")
        mask = Patient(pid, "", "", sources={seq: src}).load(seq).mask
        rows = []
        for z in key_slices[seq]:
            ys, xs = np.nonzero(mask[z])
            rows.append([int(z), int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())])
        boxes[seq] = rows
    return boxes


def _reference(patient_model, em, i: int, afp: float):
    """(patient folder, its predict_patient result with the mask, boxes tight around the mask)."""
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    pid = _pid(cohort, i)
    folder = cohort / "images" / pid
    ref = predict_patient(model_dir, folder, afp, model=em)
    return folder, ref, _mask_boxes(folder, pid, ref.key_slices)


def _work_is_empty(client) -> bool:
    return not any(client.app_.server.work.iterdir())


# ---------------------------------------------------------------------------------------
# the JSON API
# ---------------------------------------------------------------------------------------
def test_api_predict_returns_what_predict_patient_writes_to_result_json(patient_model, em, make_client, tmp_path):
    from dlmvi.cli import run_cli
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    pid = _pid(cohort, 0)
    folder = cohort / "images" / pid
    client = make_client()
    r = client.post("/api/predict", files={"archive": ("upload", _zip(folder, _files()))},
                    data={"afp": "35", "patient_id": "case-1"})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    got = r.json()
    assert run_cli(["predict-patient", str(model_dir), str(folder), "--afp", "35", "--id", "case-1",
                    "--out", str(tmp_path / "out")]) == 0
    cli = json.loads((tmp_path / "out" / "result.json").read_text())
    assert set(got) == set(cli)  # the same document
    for key in ("patient_id", "dl_mvi", "decision", "decision_basis", "key_slices", "boxes", "sequences",
                "spacing_mm", "synthetic", "afp_ng_ml", "threshold", "notice", "synthetic_notice"):
        assert got[key] == cli[key], key
    assert got["probability"] == pytest.approx(cli["probability"], abs=1e-6)
    assert got["nomogram"]["risk"] == pytest.approx(cli["nomogram"]["risk"], abs=1e-6)
    assert len(got["combination_probabilities"]) == 27
    ref = predict_patient(model_dir, folder, 35.0, model=em)
    assert got["probability"] == pytest.approx(ref.probability, abs=1e-6)
    assert _work_is_empty(client)  # the upload's files are gone once answered


def test_api_takes_the_sequence_files_one_by_one(patient_model, make_client):
    _, _, cohort = patient_model
    folder = cohort / "images" / _pid(cohort, 1)
    client = make_client()
    whole = client.post("/api/predict", files={"archive": ("upload", _zip(folder, _files()))}, data={"afp": "10"}).json()
    files = [("files", (name, (folder / name).read_bytes())) for name in _files()]
    one = client.post("/api/predict", files=files, data={"afp": "10"})
    assert one.status_code == 200, one.text
    assert one.json()["probability"] == pytest.approx(whole["probability"], abs=1e-7)
    assert one.json()["patient_id"] == "patient" and whole["patient_id"] == "case"
    bad = client.post("/api/predict", files=[("files", ("Smith_T1.nii.gz", b"x"))], data={"afp": "10"})
    assert bad.status_code == 400
    assert bad.json()["detail"].startswith("file 'Smith_T1.nii.gz': name the sequence files T1.nii.gz, T1V.nii.gz, T1D.nii.gz")


def test_api_model_is_the_model_card_summary(make_client):
    client = make_client(site="Hepatology, site A")
    m = client.get("/api/model").json()
    assert m["site"] == "Hepatology, site A"
    assert m["sequences"] == ["T1", "T1V", "T1D"] and m["n_slices"] == 3 and m["input_size_px"] == 64
    assert m["thresholds"] == {"dl_threshold": 0.5, "risk_threshold": 0.5}
    assert m["synthetic"] is True and "SYNTHETIC" in m["synthetic_notice"]
    assert m["training_data"]["n"] == 10 and m["training_data"]["synthetic"] is True
    assert m["nomogram"]["coefficients"] == {"afp": 1.53, "dl_mvi": 3.58}
    assert m["max_upload_bytes"] == 512 * 1024**2


def test_openapi_docs_are_served_without_a_cdn(make_client):
    client = make_client()
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/model", "/api/uploads", "/api/uploads/{upload_id}/predict"} <= set(spec["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text
    js = re.search(r"""src=["']?([^"' >]*swagger-ui-bundle\.js)""", docs.text).group(1)
    assert client.get(js).status_code == 200


def test_the_page_loads_nothing_from_outside(make_client):
    from dlmvi.deploy.server import STATIC

    client = make_client()
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://", text), name
        if name != "index.html":
            assert client.get(f"/static/{name}").status_code == 200


# ---------------------------------------------------------------------------------------
# safe by default
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.20", False),
                                            ("::", False), ("ward-pc.example", False)])
def test_a_token_is_required_beyond_loopback(host, loopback):
    from dlmvi.deploy.server import is_loopback, resolve_token

    assert is_loopback(host) is loopback
    token, generated = resolve_token(host, None)
    assert (token is None) is loopback and generated is (not loopback)
    if not loopback:
        assert len(token) == 32  # 24 random bytes, URL-safe base64
    assert resolve_token(host, "a-given-token-of-20c") == ("a-given-token-of-20c", False)


def test_the_api_refuses_requests_without_the_token(make_client):
    from dlmvi.errors import ConfigError
    from dlmvi.deploy.server import ServeConfig

    client = make_client(token="t" * 24)
    r = client.get("/api/model")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "requires its access token" in r.json()["detail"]
    assert client.get("/api/model", headers={"Authorization": "Bearer " + "u" * 24}).status_code == 401
    assert client.get("/api/model", headers={"Authorization": "Bearer " + "t" * 24}).status_code == 200
    assert client.post("/api/predict", data={"afp": "1"}).status_code == 401
    assert client.get("/api/health").status_code == 200 and client.get("/").status_code == 200
    with pytest.raises(ConfigError, match="--token: use at least 16 characters"):
        ServeConfig(token="short")


def test_an_oversized_upload_gets_a_413_with_the_limit(patient_model, make_client):
    _, _, cohort = patient_model
    client = make_client(max_upload_bytes=100 * 1024)
    body = np.random.default_rng(0).bytes(150 * 1024)
    r = client.post("/api/predict", files={"archive": ("upload", body)}, data={"afp": "35"})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("the upload (150 kB) is larger than this server's limit of 100 kB; ")

    def chunks():  # no Content-Length: counted while it streams
        yield (b'--b0\r\nContent-Disposition: form-data; name="afp"\r\n\r\n35\r\n--b0\r\nContent-Disposition: '
               b'form-data; name="archive"; filename="upload"\r\n\r\n')
        for _ in range(3):
            yield body[:60 * 1024]
        yield b"\r\n--b0--\r\n"

    r = client.post("/api/predict", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b0"})
    assert r.status_code == 413 and "larger than this server's limit of 100 kB" in r.json()["detail"]
    assert _work_is_empty(client)


def test_unsafe_archives_are_refused_and_nothing_is_written(patient_model, make_client, tmp_path):
    _, _, cohort = patient_model
    client = make_client()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("case/T1.nii.gz", b"x")
        z.writestr("../../escape.txt", b"owned")
    r = client.post("/api/predict", files={"archive": ("upload", buf.getvalue())}, data={"afp": "35"})
    assert r.status_code == 400
    assert r.json()["detail"] == ("the uploaded archive: member '../../escape.txt' has a '..' component (it would "
                                  "write outside the target folder); refused (nothing was extracted)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("case/T1.nii.gz")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    r = client.post("/api/uploads", files={"archive": ("upload", buf.getvalue())})
    assert r.status_code == 400 and "is a symbolic link (to '/etc/passwd')" in r.json()["detail"]
    small = make_client(max_unpacked_bytes=1000)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("case/T1.nii.gz", b"\0" * 100_000)
    r = small.post("/api/predict", files={"archive": ("upload", bomb.getvalue())}, data={"afp": "35"})
    assert r.status_code == 413 and "zip bomb" in r.json()["detail"]
    assert not list(tmp_path.rglob("escape.txt"))
    assert _work_is_empty(client) and _work_is_empty(small)


def test_bad_uploads_get_one_clear_message_and_a_4xx(patient_model, make_client):
    _, _, cohort = patient_model
    folder = cohort / "images" / _pid(cohort, 0)
    client = make_client()
    work = str(client.app_.server.work)

    def post(files=None, afp="35", **data):
        files = {"archive": ("upload", files)} if isinstance(files, bytes) else files
        return client.post("/api/predict", files=files, data={"afp": afp, **data})

    cases = [
        (post(b"this is not an archive"), 400,
         "the uploaded archive: not a zip or tar archive; send the images as .zip, .tar or .tar.gz"),
        (post(_zip(folder, _files()), afp="abc"), 422,
         "afp: Input should be a valid number, unable to parse string as a number"),
        (post(_zip(folder, _files()), afp="-3"), 422, "AFP -3.0 must be a non-negative number in ng/mL"),
        (post(_zip(folder, _files(("T1", "T1D")))), 422,
         "patient case, T1V: sequence T1V is missing; expected the file T1V.nii.gz or the DICOM series folder "
         "T1V/ (the model uses T1, T1V, T1D)"),
        (post(_zip(folder, _files(masks=False))), 422,
         "patient case: no tumour mask for T1, T1V, T1D (expected T1_roi.nii.gz, T1V_roi.nii.gz, T1D_roi.nii.gz); "
         "send the tumour boxes as rois.csv (field 'rois'), or draw them on the web page"),
        (post(_zip(folder, _files()), patient_id="Smith, John"), 422,
         "patient id: use 1-64 letters, digits, '.', '_' or '-' (no names or record numbers: the id appears on "
         "the card and in rois.csv)"),
        (client.post("/api/predict", data={"afp": "35"}), 400,
         "no patient: send the patient's folder as a .zip/.tar.gz archive (field 'archive') or the sequence files "
         "(field 'files')"),
    ]
    for r, status, detail in cases:
        assert (r.status_code, r.json()) == (status, {"detail": detail})
        assert work not in r.text and "Traceback" not in r.text
    corrupt = io.BytesIO()
    with zipfile.ZipFile(corrupt, "w") as z:
        for s in SEQS:
            z.writestr(f"case/{s}.nii.gz", b"\x1f\x8b garbage")
            z.write(folder / f"{s}_roi.nii.gz", f"case/{s}_roi.nii.gz")
    r = post(corrupt.getvalue())
    assert r.status_code == 422 and r.json()["detail"].startswith("patient case, T1: ")
    assert work not in r.text and "T1.nii.gz" in r.json()["detail"]
    assert _work_is_empty(client)


def test_an_internal_error_is_a_500_with_a_reference_and_the_log_has_no_message(patient_model, make_client,
                                                                                  monkeypatch, caplog):
    _, _, cohort = patient_model
    client = make_client()

    def boom(*args, **kwargs):
        raise RuntimeError("/data/Smith_John/T1.nii.gz exploded")

    monkeypatch.setattr(client.app_.server, "predict", boom)
    with caplog.at_level(logging.INFO, logger="dlmvi.serve"):
        r = client.post("/api/predict", files={"archive": ("upload", _zip(cohort / "images" / _pid(cohort), _files()))},
                        data={"afp": "35"})
    assert r.status_code == 500
    ref = re.fullmatch(r"internal error \(reference ([0-9a-f]{8})\); the server's log has the details",
                       r.json()["detail"]).group(1)
    assert "Smith" not in r.text
    text = caplog.text
    assert f"internal error {ref}: RuntimeError" in text and "Smith" not in text
    assert "test_server.py:" in text and " in boom" in text  # where, for the maintainer
    assert "POST /api/predict 500" in text
    assert _work_is_empty(client)


# ---------------------------------------------------------------------------------------
# the page's path: upload, draw the boxes, predict
# ---------------------------------------------------------------------------------------
def test_boxes_drawn_on_the_viewer_volume_give_the_mask_prediction(patient_model, em, make_client, caplog):
    folder, ref, boxes = _reference(patient_model, em, 2, 35.0)
    pid = folder.name
    client = make_client()
    with caplog.at_level(logging.INFO, logger="dlmvi.serve"):
        up = client.post("/api/uploads", files={"archive": ("upload", _zip(folder, _files(masks=False)))},
                         data={"patient_id": "case-3"}).json()
        assert up["needs_boxes"] == ["T1", "T1V", "T1D"] and up["n_slices"] == 3 and up["patient_id"] == "case-3"
        t1 = up["sequences"]["T1"]
        assert t1["shape"] == [16, 64, 64] and t1["spacing"] == [5.625, 5.625, 6.0] and t1["mask"] is False
        raw = client.get(f"/api/uploads/{up['upload_id']}/volumes/T1")
        vol = t1["offset"] + t1["scale"] * np.frombuffer(raw.content, "<u2").reshape(t1["shape"])
        import nibabel as nib

        original = np.asarray(nib.load(folder / "T1.nii.gz").get_fdata()).transpose(2, 1, 0)  # (z, y, x)
        assert np.abs(vol - original).max() <= t1["scale"] / 2 * 1.0001  # 16-bit quantisation
        url = f"/api/uploads/{up['upload_id']}/predict"
        two = {**boxes, "T1V": boxes["T1V"][:2]}
        gap = {**boxes, "T1D": [boxes["T1D"][0], boxes["T1D"][1], [boxes["T1D"][2][0] + 1, *boxes["T1D"][2][1:]]]}
        out = {**boxes, "T1": [[z, 10, 10, 70, 20] for z, *_ in boxes["T1"]]}
        for bad, msg in [
            (two, "patient case-3, T1V: draw the tumour box on 3 consecutive slices (boxed slices: "
                  f"{boxes['T1V'][0][0]}, {boxes['T1V'][1][0]})"),
            (gap, "patient case-3, T1D: draw the tumour box on 3 consecutive slices"),
            (out, f"patient case-3, T1: box slice {boxes['T1'][0][0]}, (10,10)-(70,20) lies outside the image of "
                  "64x64x16 voxels"),
        ]:
            r = client.post(url, json={"afp": 35, "boxes": bad})
            assert r.status_code == 422 and r.json()["detail"].startswith(msg)
        r = client.post(url, json={"afp": 35, "boxes": boxes})
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["result"]["probability"] == pytest.approx(ref.probability, abs=1e-6)
        assert res["result"]["key_slices"] == ref.key_slices and res["result"]["patient_id"] == "case-3"
        assert res["card_html"].count('<img src="data:image/png;base64,') == 3 and "case-3" in res["card_html"]
        lines = res["rois_csv"].splitlines()
        assert lines[0] == "patient_id,sequence,slice,x0,y0,x1,y1" and len(lines) == 10
        assert lines[1] == "case-3,T1," + ",".join(str(v) for v in boxes["T1"][0])
        assert client.post(url, json={"afp": 35, "boxes": boxes}).status_code == 404  # used up
    assert _work_is_empty(client)
    assert up["upload_id"] not in caplog.text and "case-3" not in caplog.text and pid not in caplog.text
    assert "POST /api/uploads/{upload_id}/predict 200" in caplog.text


def test_boxes_are_in_the_image_files_own_grid(patient_model, em, tmp_path):
    """A NIfTI stored RAS (x and y flipped against LPS): the viewer shows the file's grid, and boxes
    drawn on it crop the same tumour as on the LPS file."""
    import nibabel as nib

    from dlmvi.cohort.patient import SequenceSource
    from dlmvi.deploy.patient import predict_patient, viewer_volume

    folder, ref, boxes = _reference(patient_model, em, 2, 35.0)
    pid = folder.name
    flipped, flipped_boxes = tmp_path / "ras", {}
    flipped.mkdir()
    for seq in SEQS:
        img = nib.load(folder / f"{seq}.nii.gz")
        data = np.asarray(img.dataobj)[::-1, ::-1, :]
        nx, ny = data.shape[:2]
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:2, 3] = [nx - 1, ny - 1]
        nib.save(nib.Nifti1Image(data, img.affine @ flip), flipped / f"{seq}.nii.gz")
        flipped_boxes[seq] = [(z, nx - 1 - x1, ny - 1 - y1, nx - 1 - x0, ny - 1 - y0) for z, x0, y0, x1, y1 in boxes[seq]]
        lps, _ = viewer_volume(SequenceSource(seq, folder / f"{seq}.nii.gz"), pid)
        ras, spacing = viewer_volume(SequenceSource(seq, flipped / f"{seq}.nii.gz"), pid)
        assert np.array_equal(ras, lps[:, ::-1, ::-1]) and spacing == (5.625, 5.625, 6.0)
    r = predict_patient(None, flipped, 35.0, boxes=flipped_boxes, model=em)
    assert r.probability == pytest.approx(ref.probability, abs=1e-6)


def test_rois_csv_through_the_api_and_kept_files(patient_model, em, make_client, tmp_path):
    from dlmvi.deploy.server import rois_csv

    folder, ref, boxes = _reference(patient_model, em, 3, 12.0)

    client = make_client(keep=tmp_path / "keep")
    r = client.post("/api/predict", files={"archive": ("upload", _zip(folder, _files(masks=False))),
                                           "rois": ("rois.csv", rois_csv("case", boxes).encode())},
                    data={"afp": "12"})
    assert r.status_code == 200, r.text
    assert r.json()["probability"] == pytest.approx(ref.probability, abs=1e-6)
    kept = list((tmp_path / "keep").iterdir())
    assert len(kept) == 1
    assert sorted(p.name for p in (kept[0] / "patient").iterdir()) == sorted(_files(masks=False))
    assert json.loads((kept[0] / "result.json").read_text()) == r.json()
    assert (kept[0] / "rois.csv").read_text() == rois_csv("case", boxes)
    other = client.post("/api/predict", files={"archive": ("upload", _zip(folder, _files(masks=False))),
                                               "rois": ("rois.csv", rois_csv("someone-else", boxes).encode())},
                        data={"afp": "12"})
    assert other.status_code == 422
    assert other.json()["detail"] == "patient case: no row for this patient in rois.csv; check patient_id (or pass --id)"
    assert _work_is_empty(client)


def test_the_model_is_loaded_once(patient_model, make_client, monkeypatch):
    import dlmvi.deploy.model

    _, _, cohort = patient_model
    client = make_client()

    def no_reload(*args, **kwargs):
        raise AssertionError("the server reloaded the model")

    monkeypatch.setattr(dlmvi.deploy.model, "load_model", no_reload)
    folder = cohort / "images" / _pid(cohort, 4)
    for afp in ("5", "50"):
        r = client.post("/api/predict", files={"archive": ("upload", _zip(folder, _files()))}, data={"afp": afp})
        assert r.status_code == 200 and r.json()["seconds"]["load_model"] < 0.01


def test_a_cancelled_or_expired_upload_is_deleted(patient_model, make_client):
    _, _, cohort = patient_model
    folder = cohort / "images" / _pid(cohort, 5)
    client = make_client()
    up = client.post("/api/uploads", files={"archive": ("upload", _zip(folder, _files(masks=False)))}).json()
    assert any(client.app_.server.work.iterdir())
    assert client.delete(f"/api/uploads/{up['upload_id']}").status_code == 204
    assert _work_is_empty(client)
    assert client.get(f"/api/uploads/{up['upload_id']}/volumes/T1").status_code == 404
    short = make_client(upload_ttl_s=0.0)
    up = short.post("/api/uploads", files={"archive": ("upload", _zip(folder, _files(masks=False)))}).json()
    r = short.get(f"/api/uploads/{up['upload_id']}/volumes/T1")
    assert r.status_code == 404 and "waited too long" in r.json()["detail"]
    assert _work_is_empty(short)


def test_work_folder_is_removed_at_shutdown(patient_model, em, tmp_path):
    from fastapi.testclient import TestClient

    from dlmvi.deploy.server import ServeConfig, create_app

    _, _, cohort = patient_model
    app = create_app(em, ServeConfig(work_dir=tmp_path / "w"))
    with TestClient(app) as client:
        folder = cohort / "images" / _pid(cohort, 6)
        up = client.post("/api/uploads", files={"archive": ("upload", _zip(folder, _files(masks=False)))})
        assert up.status_code == 200 and app.server.work.is_dir()
    assert not app.server.work.exists()
    shutil.rmtree(tmp_path / "w")


def test_warnings_reach_the_log_without_their_text(caplog):
    import warnings

    from dlmvi.deploy.server import quiet_warnings
    from dlmvi.errors import CohortWarning

    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="dlmvi.serve"):
        warnings.simplefilter("default")
        quiet_warnings()
        warnings.warn("patient P0001, T1: voxel spacing outside the training range", CohortWarning)
        warnings.warn("cannot read /uploads/Smith_John/T1.nii.gz header field", UserWarning)
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage() == (
        "UserWarning at test_server.py:" f"{caplog.records[0].args[2]} (text withheld: it may name uploaded files)")
    assert "P0001" not in caplog.text and "Smith" not in caplog.text
