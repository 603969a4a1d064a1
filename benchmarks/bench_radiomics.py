"""Radiomics extraction speed (issue 27): dlmvi's per-patient extraction against MIRP's own bare
call on the same image, and a rerun with an unchanged cache.

* ``ratio`` = seconds of MIRP's bare ``extract_features`` on a patient's NIfTI image and mask
  (one call per sequence, with a 2-label tumour+ring mask written once beforehand) divided by
  seconds of :func:`dlmvi.preprocess.radiomics.patient_features` on the same patient (reading,
  checking, the ring, temporary files, MIRP, assembling); target >= 0.8.
* ``cached_rerun_s``: :func:`dlmvi.preprocess.radiomics.extract_cohort` again on an unchanged
  cache (target: seconds).
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path


def run(n_patients: int = 6, families=("statistics", "intensity_histogram", "glcm", "glrlm", "glszm")) -> dict:
    import numpy as np
    import SimpleITK as sitk
    from mirp import extract_features

    from dlmvi.cohort.cohort import Cohort
    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.preprocess.radiomics import RadiomicsConfig, extract_cohort, patient_features
    from dlmvi.preprocess.radiomics_masks import tumour_and_ring

    tmp = Path(tempfile.mkdtemp(prefix="bench_radiomics_"))
    cohort = make_phantom(tmp / "cohort", n_patients=n_patients, seed=2, size=128, progress=False)
    cfg = RadiomicsConfig(families=tuple(families), readers=0)
    patients = Cohort.from_folder(cohort).patients
    ids = sorted(patients)
    # MIRP bare: the cohort's own image files and a tumour+ring label file per sequence
    bare_inputs = []
    for pid in ids:
        for seq in cfg.sequences:
            ls = patients[pid].load(seq, notes=[])
            reg = tumour_and_ring(ls.mask, ls.spacing, cfg.ring_mm, min_voxels=1)
            lab = ls.mask.astype(np.uint8)
            lab[reg.ring] = 2
            img = sitk.GetImageFromArray(ls.image)
            img.SetSpacing(ls.spacing)
            m = sitk.GetImageFromArray(lab)
            m.CopyInformation(img)
            ip, mp = tmp / f"{pid}_{seq}.nii.gz", tmp / f"{pid}_{seq}_mask.nii.gz"
            sitk.WriteImage(img, str(ip))
            sitk.WriteImage(m, str(mp))
            bare_inputs.append((ip, mp))
    settings = cfg.mirp_settings()
    logging.disable(logging.INFO)
    warnings.simplefilter("ignore")
    extract_features(image=str(bare_inputs[0][0]), mask=str(bare_inputs[0][1]), export_features=True,
                     write_features=False, **settings)  # warm-up (imports, first call)
    # interleaved per patient, so that a change of the machine's load hits both alike
    bare = ours = 0.0
    per = len(cfg.sequences)
    for i, pid in enumerate(ids):
        t = time.perf_counter()
        for ip, mp in bare_inputs[i * per:(i + 1) * per]:
            extract_features(image=str(ip), mask=str(mp), export_features=True, write_features=False, **settings)
        bare += time.perf_counter() - t
        t = time.perf_counter()
        patient_features(patients[pid], cfg, [], "bench")
        ours += time.perf_counter() - t
    bare, ours = bare / len(ids), ours / len(ids)
    extract_cohort(cohort, tmp / "features", cfg, progress=False)
    t = time.perf_counter()
    res = extract_cohort(cohort, tmp / "features", cfg, progress=False)
    rerun = time.perf_counter() - t
    return {"patients": len(ids), "sequences": list(cfg.sequences), "families": list(families),
            "bare_mirp_s_per_patient": bare, "dlmvi_s_per_patient": ours, "ratio": bare / ours,
            "cached_rerun_s": rerun, "cached_recomputed": res.computed}
