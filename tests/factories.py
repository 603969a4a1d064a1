"""Seeded synthetic cohorts written in real formats, for the tests (TorchIO's tests/utils.py).

The tumour is an ellipsoid whose largest cross-section is at a known slice, so tests can
state which key slices and which box they expect.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SPACING = (2.0, 2.0, 5.0)  # x, y, z in mm

#: The study's nomogram, logit(p) = -3.51 + 1.53 [AFP > 20] + 3.58 DL-MVI, as nomogram.json
#: holds it; the covariance is illustrative (only its shape matters to the tests).
STUDY_NOMOGRAM = {
    "intercept": -3.51,
    "coefficients": {"afp": 1.53, "dl_mvi": 3.58},
    "cutoffs": {"afp": 20.0},
    "terms": {"afp": "afp > 20", "dl_mvi": "dl_mvi"},
    "formula": "logit(p) = -3.510 + 1.530 * [afp > 20] + 3.580 * [dl_mvi]",
    "covariance": [[0.16, -0.05, -0.10], [-0.05, 0.09, 0.01], [-0.10, 0.01, 0.23]],
    "covariance_terms": ["(Intercept)", "afp", "dl_mvi"],
}


def ras_affine(spacing=SPACING, shape_xyz=(48, 40, 12)):
    """A plain RAS affine (nibabel convention) for an (x, y, z) array."""
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = [-spacing[0] * shape_xyz[0] / 2, -spacing[1] * shape_xyz[1] / 2, 0.0]
    return aff


def tumour_volume(seed: int = 0, shape_zyx=(12, 40, 48), centre_zyx=(6, 18, 26), radii_zyx=(2.5, 6, 8)):
    """(image, mask) arrays in (z, y, x) order: a noisy liver-like background and a bright ellipsoid."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip((z, y, x), centre_zyx, radii_zyx))
    mask = (r2 <= 1.0).astype(np.uint8)
    image = 400 + 20 * rng.standard_normal(shape_zyx) + 300.0 * mask
    return image.astype(np.int16), mask


def write_nifti(path: Path, arr_zyx: np.ndarray, spacing=SPACING, dtype=None) -> Path:
    """Write a (z, y, x) array as NIfTI with a RAS affine (nibabel stores x, y, z)."""
    arr_xyz = np.transpose(arr_zyx, (2, 1, 0))
    img = nib.Nifti1Image(arr_xyz.astype(dtype or arr_zyx.dtype), ras_affine(spacing, arr_xyz.shape))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def write_cohort(
    root: Path,
    n: int = 6,
    sequences=("T1", "T1V", "T1D"),
    seed: int = 0,
    cohort_names=("2015",),
    clinical_extra: dict | None = None,
) -> Path:
    """A small NIfTI cohort: clinical.csv plus image and mask per patient and sequence."""
    root = Path(root)
    rows = []
    for i in range(n):
        pid = f"P{i:03d}"
        grade = ("M0", "M1", "M2")[i % 3]
        rows.append({
            "patient_id": pid,
            "cohort": cohort_names[i % len(cohort_names)],
            "mvi_grade": grade,
            "age": 40 + i,
            "afp": 10.0 * (i + 1),
            "rfs_months": 12.0 + i,
            "rfs_event": i % 2,
        })
        for j, seq in enumerate(sequences):
            img, mask = tumour_volume(seed=seed * 1000 + i * 10 + j)
            write_nifti(root / "images" / pid / f"{seq}.nii.gz", img)
            write_nifti(root / "images" / pid / f"{seq}_roi.nii.gz", mask)
    df = pd.DataFrame(rows)
    for k, v in (clinical_extra or {}).items():
        df[k] = v
    df.to_csv(root / "clinical.csv", index=False)
    return root
