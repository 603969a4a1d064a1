"""The DICOM node's round trip against ``predict-patient`` in-process, on the same files.

Fixture: a fast-preset model (64 px, 1 epoch on a 10-patient phantom, the study's nomogram)
and one phantom patient as a DICOM study (T1, T1V, T1D: 64 x 64 x 16 each) with its tumour
as a SEG; a real Orthanc (tests/orthanc.py) as the PACS.

* node: :class:`dlmvi.deploy.listener.Listener` in this process (model loaded once, quiet
  period ``quiet`` s), the study sent by DCMTK's ``storescu``; the time from storescu's end
  (the last image received) to the SR listed by Orthanc (QIDO-RS), median of ``repeats``;
  also without the quiet period (the node's own work: retrieval from the spool, mapping,
  ROI, prediction, SR, STOW-RS).
* in-process: :func:`dlmvi.deploy.patient.predict_patient` on the study's folder (DICOM
  series + NIfTI masks), the model loaded once, median of ``repeats``.

Usage::

    .venv/bin/python benchmarks/bench_pacs.py [--repeats 3] [--quiet 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _model(root: Path) -> Path:
    import warnings

    import torch

    from factories import STUDY_NOMOGRAM
    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.deploy.model import export_model
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.prepare import prepare_cohort
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.run import run_training

    torch.set_num_threads(1)
    cohort = make_phantom(root / "cohort", n_patients=10, size=64, n_slices=16, seed=3, progress=False, workers=1)
    run = root / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_cohort(cohort, run / "cache", PrepareConfig(sequences=("T1", "T1V", "T1D"), size=64), progress=False)
        run_training(run / "cache", run / "train", TrainConfig(preset="fast", folds=0, epochs=1, seed=0, device="cpu",
                                                              num_threads=1, progress=False))
    (run / "clinical").mkdir()
    (run / "clinical" / "nomogram.json").write_text(json.dumps(STUDY_NOMOGRAM))
    export_model(run, root / "model")
    return root / "model"


def run(repeats: int = 3, quiet: float = 1.0) -> dict:
    import SimpleITK as sitk

    import orthanc as ot
    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.deploy.listener import Listener, ListenerConfig
    from dlmvi.deploy.model import load_model
    from dlmvi.deploy.patient import predict_patient
    from dlmvi.io.dicom_import import ImportMap
    from dlmvi.io.pacs import connect, read_pacs_config

    if ot.skip_reason() or not shutil.which("storescu"):
        return {"skipped": ot.skip_reason() or "storescu (dcmtk) not installed"}
    root = Path(tempfile.mkdtemp(prefix="bench_pacs_"))
    try:
        em = load_model(_model(root))
        cohort = make_phantom(root / "dcm", n_patients=1, size=64, n_slices=16, seed=5, progress=False, workers=1,
                              fmt="dicom")
        study = ot.phantom_study(cohort, 0, root / "study", "ACC1")
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(study / "T1V_roi.nii.gz")))
        seg = ot.write_seg(mask, study / "T1V", root / "seg.dcm")
        port = ot.free_port()
        server = ot.start_orthanc(root / "orthanc", {"DLMVI": ("DLMVI", port)})
        (root / "map.toml").write_text(ot.MAP_TOML)
        cfg = ot.pacs_config(root / "pacs.toml", "bench", server, root / "map.toml")
        conn = read_pacs_config(cfg, "bench")
        client = connect(conn)
        node = Listener(em, ImportMap.from_toml(root / "map.toml", patients=False),
                        ListenerConfig(spool=root / "spool", port=port, quiet_seconds=quiet, poll_seconds=0.05),
                        send_to=conn, log=lambda m: None).start()
        trips, work = [], []
        files = ot.study_files(study) + [seg]
        try:
            for i in range(repeats + 1):  # the first is a warm-up
                n_sr = sum(se.modality == "SR" for st in client.find_studies() for se in st.series)
                subprocess.run(["storescu", "-R", "-aec", "DLMVI", "127.0.0.1", str(port), *map(str, files)],
                               check=True, capture_output=True)
                t0 = time.perf_counter()
                while sum(se.modality == "SR" for st in client.find_studies() for se in st.series) == n_sr:
                    time.sleep(0.02)
                if i:
                    trips.append(time.perf_counter() - t0)
                    (st,) = [json.loads(p.read_text()) for p in (root / "spool").glob("*/state.json")]
                    work.append(st["seconds"])
        finally:
            node.stop()
            server.stop()
        direct = []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            predict_patient(em.path, study, 35.0, model=em)
            if i:
                direct.append(time.perf_counter() - t0)
        out = {"repeats": repeats, "quiet_seconds": quiet,
               "median_round_trip_s": statistics.median(trips),
               "median_round_trip_without_quiet_s": statistics.median(trips) - quiet,
               "median_node_processing_s": statistics.median(work),
               "median_predict_patient_in_process_s": statistics.median(direct),
               "note": "round trip: storescu's end (last image received) -> the SR listed by Orthanc (QIDO-RS); "
                       "node processing: mapping, ROI from the SEG, prediction, SR, STOW-RS"}
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def add_to(res: dict, rows: list, quick: bool = False) -> None:
    """benchmarks/run.py's entry (``--only pacs``)."""
    r = res["pacs"] = run(repeats=2 if quick else 3)
    if "skipped" in r:
        rows.append(("DICOM node round trip", "skipped", r["skipped"]))
        return
    rows.append((f"DICOM node: last image -> SR in Orthanc (s; quiet period {r['quiet_seconds']:g} s)",
                 f"{r['median_round_trip_s']:.2f}", ""))
    rows.append(("  ... the node's processing; predict-patient in-process (s)",
                 f"{r['median_node_processing_s']:.2f}; {r['median_predict_patient_in_process_s']:.2f}", ""))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quiet", type=float, default=1.0)
    a = ap.parse_args()
    print(json.dumps(run(a.repeats, a.quiet), indent=2))
