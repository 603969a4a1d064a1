"""Write a tiny patch cache in the documented format, with a learnable planted signal.

Used by tests/train/conftest.py and tests/model/conftest.py (loaded there by file path).
Patients with MVI present carry a large bright disk in every slice and sequence, patients
without MVI a small one, on Gaussian noise; the disk's position jitters per slice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.preprocess.cache import CACHE_FORMAT, PrepareConfig

GRADE_CYCLE = ("M0", "M1", "M0", "M2", "M0", "M1")


def write_cache(root, n_patients: int = 40, size: int = 32, sequences=("T1", "T1V", "T1D"),
                cohorts=("2015", "2018"), seed: int = 0, signal: float = 1.0,
                normalization: str = "zscore", n_slices: int = 3, excluded: int = 1) -> Path:
    """Create ``root`` as a complete dlmvi cache and return it.

    ``signal`` scales the contrast of the planted disk (0: labels are unlearnable).
    The first ``len(cohorts)`` ... patients alternate cohorts 60 % / 40 %; ``excluded``
    extra patients are listed with included = 0 and have no patches.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    cfg = PrepareConfig(sequences=tuple(sequences), size=size, margin=8, n_slices=n_slices,
                        normalization=normalization)
    yy, xx = np.mgrid[:size, :size]
    pats, idx = [], []
    for i in range(n_patients + excluded):
        pid = f"P{i:03d}"
        cohort = cohorts[0] if (i % 5) < 3 else cohorts[-1]
        grade = GRADE_CYCLE[i % len(GRADE_CYCLE)]
        inc = int(i < n_patients)
        pats.append({"patient_id": pid, "cohort": cohort, "mvi_grade": grade, "included": inc,
                     "exclusion_reason": "" if inc else "no tumour mask", "synthetic": 1})
        if not inc:
            continue
        radius = size * (0.3 if grade != "M0" else 0.12)
        for seq in sequences:
            arr = rng.normal(0.0, 1.0, size=(n_slices, size, size))
            for s in range(n_slices):
                cy, cx = size / 2 + rng.normal(0, 1.5, 2)
                disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
                arr[s] += 2.0 * signal * disk
            if normalization == "zscore":
                arr = (arr - arr.mean(axis=(1, 2), keepdims=True)) / arr.std(axis=(1, 2), keepdims=True)
            else:
                arr = 300.0 + 50.0 * arr
            path = root / "patches" / pid / f"{seq}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, arr.astype(np.float32), allow_pickle=False)
            idx.append({"patient_id": pid, "sequence": seq, "source": f"{pid}/{seq}.nii.gz",
                        "fingerprint": f"{i:08x}", "slices": "10;11;12", "box": f"4;4;{4 + size};{4 + size}",
                        "spacing_mm": "0.8;0.8;5.0", "file": f"patches/{pid}/{seq}.npy"})
    pd.DataFrame(pats).to_csv(root / "patients.csv", index=False)
    pd.DataFrame(idx).to_csv(root / "index.csv", index=False)
    meta = {"format": CACHE_FORMAT, "complete": True, "params": cfg.to_dict(), "synthetic": True,
            "n_patients": n_patients}
    (root / "cache.json").write_text(json.dumps(meta, indent=2))
    return root


def tiny_preset(epochs: int):
    """A tiny network preset for tests (32 px input, 8-4-8 channels)."""
    from dlmvi.model.presets import Preset

    return Preset(name="tiny", input_size=32, stem_width=8, widths=(4, 8), blocks=(1, 1),
                  epochs=epochs, batch_size=8, lr=3e-3, patience=0, description="tests only")


#: A tiny network for engine tests (32 px input, 8-4-8 channels, 3 sequences).
TINY_NET = {"stem_width": 8, "widths": (4, 8), "blocks": (1, 1), "n_sequences": 3, "input_size": 32}


def train_val_parts(cache_dir, n_train: int = 30, sequences=("T1", "T1V", "T1D"), size: int = 32):
    """((x, y) of the first ``n_train`` included patients, (x, y) of the others) from a cache."""
    from dlmvi.preprocess.cache import PatchCache
    from dlmvi.preprocess.patches import load_patches

    cache = PatchCache(cache_dir)
    ids = cache.patient_ids()
    x = load_patches(cache, ids, sequences, size)
    y = cache.labels(ids)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def cpu_config(**kw):
    """A TrainConfig for engine tests: 4 epochs of batch 8 at lr 3e-3 on the CPU, quietly."""
    from dlmvi.train.config import TrainConfig

    base = dict(preset="fast", epochs=4, batch_size=8, lr=3e-3, patience=0, device="cpu", progress=False)
    return TrainConfig(**{**base, **kw})
