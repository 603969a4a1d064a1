"""Training input pipeline: the real loop (cache patches, augmentation, step) vs the bare model
step on ready tensors, at the same batch, size and threads; and the per-epoch speed-up over a
plain MONAI pipeline that loads the NIfTI files and crops every epoch."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _model_and_opt(preset: str, k: int):
    import torch

    from dlmvi.model.network import NetworkConfig, build_network
    from dlmvi.model.presets import get_preset

    p = get_preset(preset)
    cfg = NetworkConfig(in_channels=1, stem_width=p.stem_width, widths=p.widths, blocks=p.blocks,
                        n_sequences=k, n_classes=2, input_size=p.input_size)
    torch.manual_seed(0)
    model = build_network(cfg).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), cfg


def _step(model, opt, x, y):
    import torch.nn.functional as F

    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def loop_vs_bare(preset: str = "fast", n_patients: int = 192, steps: int = 12, threads: int = 2) -> dict:
    """samples/s of the real training loop divided by samples/s of the bare step."""
    import torch

    from dlmvi.model.presets import get_preset
    from dlmvi.train.data import CombinationDataset

    torch.set_num_threads(threads)
    p = get_preset(preset)
    seqs = ("T1", "T1V", "T1D")
    rng = np.random.default_rng(0)
    patches = rng.standard_normal((n_patients, 3, 3, p.input_size, p.input_size)).astype(np.float32)
    labels = rng.integers(0, 2, n_patients)
    ds = CombinationDataset(patches, labels, seqs, seed=0, augment=True)
    model, opt, _ = _model_and_opt(preset, 3)
    b = p.batch_size
    steps = min(steps, n_patients // b)

    def real():
        n = 0
        for i, (x, y, _) in enumerate(ds.batches(epoch=1, batch_size=b)):
            if i == steps:
                break
            _step(model, opt, x, y)
            n += len(y)
        return n

    x0 = torch.from_numpy(patches[:b, :, :1].copy())  # (B, k, 1, S, S)
    y0 = torch.from_numpy(labels[:b])

    def bare():
        for _ in range(steps):
            _step(model, opt, x0, y0)
        return steps * b

    real(), bare()  # warm-up
    # Alternate the two and keep each one's best round: drift on a shared machine hits both.
    t_real = t_bare = float("inf")
    for _ in range(2):
        t0 = time.perf_counter(); n_real = real(); t_real = min(t_real, time.perf_counter() - t0)
        t0 = time.perf_counter(); n_bare = bare(); t_bare = min(t_bare, time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i, _ in enumerate(ds.batches(epoch=2, batch_size=b)):
        if i == steps:
            break
    t_input = time.perf_counter() - t0
    return {
        "preset": preset, "size": p.input_size, "batch": b, "threads": threads, "steps": steps,
        "loop_samples_per_s": n_real / t_real, "bare_samples_per_s": n_bare / t_bare,
        "input_only_samples_per_s": steps * b / t_input,
        "ratio": (n_real / t_real) / (n_bare / t_bare), "target": 0.90,
    }


def versus_monai(n_patients: int = 24, threads: int = 2) -> dict:
    """Seconds per epoch (fast preset): dlmvi's cache vs MONAI loading and cropping NIfTI every epoch."""
    import torch
    from monai.transforms import (Compose, CropForegroundd, EnsureChannelFirstd, LoadImaged,
                                  RandFlipd, RandGaussianNoised, RandScaleCropd, RandScaleIntensityd, Resized)

    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.model.presets import get_preset
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.prepare import prepare_cohort
    from dlmvi.preprocess.cache import load_patches
    from dlmvi.train.data import CombinationDataset

    torch.set_num_threads(threads)
    p = get_preset("fast")
    seqs = ("T1", "T1V", "T1D")
    with tempfile.TemporaryDirectory() as tmp:
        cohort = make_phantom(Path(tmp) / "c", n_patients=n_patients, seed=0, size=128, progress=False)
        cache = prepare_cohort(cohort, Path(tmp) / "cache", PrepareConfig(sequences=seqs, size=p.input_size), progress=False)
        ids = cache.patient_ids()
        labels = cache.labels(ids)
        model, opt, _ = _model_and_opt("fast", 3)

        def ours():
            ds = CombinationDataset(load_patches(cache, ids, seqs, p.input_size), labels, seqs, seed=0)
            for x, y, _ in ds.batches(epoch=1, batch_size=p.batch_size):
                _step(model, opt, x, y)

        keys = [*seqs, *(f"{s}_roi" for s in seqs)]
        tf = Compose([
            LoadImaged(keys=keys, image_only=True), EnsureChannelFirstd(keys=keys),
            CropForegroundd(keys=keys, source_key="T1_roi", margin=8, allow_smaller=True),
            Resized(keys=list(seqs), spatial_size=(p.input_size, p.input_size, 3)),
            RandFlipd(keys=list(seqs), prob=0.5, spatial_axis=0),
            RandScaleCropd(keys=list(seqs), roi_scale=(0.75, 0.75, 1.0), random_size=True),
            Resized(keys=list(seqs), spatial_size=(p.input_size, p.input_size, 3)),
            RandScaleIntensityd(keys=list(seqs), factors=0.1, prob=0.5),
            RandGaussianNoised(keys=list(seqs), prob=0.5, std=0.05),
        ])
        tf.set_random_state(0)
        files = [{**{s: str(cohort / "images" / pid / f"{s}.nii.gz") for s in seqs},
                  **{f"{s}_roi": str(cohort / "images" / pid / f"{s}_roi.nii.gz") for s in seqs}} for pid in ids]

        def plain_monai():
            for start in range(0, len(files), p.batch_size):
                items = [tf(f) for f in files[start:start + p.batch_size]]
                x = torch.stack([torch.stack([torch.as_tensor(it[s])[..., 0] for s in seqs]) for it in items]).float()
                _step(model, opt, x, torch.from_numpy(labels[start:start + len(items)]))

        ours()
        t0 = time.perf_counter(); ours(); t_ours = time.perf_counter() - t0
        t0 = time.perf_counter(); plain_monai(); t_monai = time.perf_counter() - t0
    return {"patients": len(ids), "epoch_s_dlmvi": t_ours, "epoch_s_plain_monai": t_monai,
            "speedup": t_monai / t_ours}
