"""Training speed on this machine.

* the real loop (cache patches, loader, augmentation, step: what ``fit`` runs) vs the bare
  optimisation step on ready tensors, at the same batch, size and threads, from float32 and
  from float16 patches;
* mixed precision and memory layout: bf16 / fp16 autocast and channels-last vs fp32 (and
  ``torch.compile`` vs eager, on request: its compilation takes minutes on a small CPU);
* a float16 cache at 320 px: disk and training memory vs float32;
* the per-epoch speed-up over a plain MONAI pipeline that loads the NIfTI files and crops every
  epoch, and over the fair anchor: MONAI ``CacheDataset`` + ``DataLoader`` with the deterministic
  transforms cached, the same network, step and augmentation.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _stepper(preset: str, k: int, precision: str = "fp32", channels_last: bool = False, size: int | None = None):
    """The engine's optimisation step (dlmvi.train.engine.Stepper) for a preset's network."""
    import torch

    from dlmvi.model.network import NetworkConfig, build_network
    from dlmvi.model.presets import get_preset
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.engine import Stepper, make_optimizer
    from dlmvi.train.precision import prepare_model, resolve_precision

    p = get_preset(preset)
    cfg = NetworkConfig(in_channels=1, stem_width=p.stem_width, widths=p.widths, blocks=p.blocks,
                        n_sequences=k, n_classes=2, input_size=size or p.input_size)
    torch.manual_seed(0)
    model = prepare_model(build_network(cfg).train(), channels_last)
    tc = TrainConfig(preset=preset, precision=precision).resolved()
    return Stepper(model, model, make_optimizer(model.parameters(), tc), resolve_precision(precision, "cpu"))


def loop_vs_bare(preset: str = "fast", n_patients: int = 192, steps: int = 12, threads: int = 2,
                 dtype: str = "float32") -> dict:
    """samples/s of the real training loop (``fit``'s loader and step) divided by samples/s of the
    bare step, from ``dtype`` patches in memory."""
    import torch

    from dlmvi.model.presets import get_preset
    from dlmvi.train.data import CombinationDataset

    torch.set_num_threads(threads)
    p = get_preset(preset)
    seqs = ("T1", "T1V", "T1D")
    rng = np.random.default_rng(0)
    patches = rng.standard_normal((n_patients, 3, 3, p.input_size, p.input_size)).astype(dtype)
    labels = rng.integers(0, 2, n_patients)
    ds = CombinationDataset(patches, labels, seqs, seed=0, augment=True)
    st = _stepper(preset, 3)
    b = p.batch_size
    steps = min(steps, n_patients // b)
    loader = ds.loader(b)

    def real():
        n = 0
        for i, (x, y, _) in enumerate(loader.epoch(1)):
            if i == steps:
                break
            st.micro_step(x, y, 1.0, last=True)
            n += len(y)
        return n

    x0 = torch.from_numpy(patches[:b, :, :1].astype(np.float32))  # (B, k, 1, S, S)
    y0 = torch.from_numpy(labels[:b])

    def bare():
        for _ in range(steps):
            st.micro_step(x0, y0, 1.0, last=True)
        return steps * b

    real(), bare()  # warm-up
    # Alternate the two and keep each one's best round: drift on a shared machine hits both.
    t_real = t_bare = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        n_real = real()
        t_real = min(t_real, time.perf_counter() - t0)
        t0 = time.perf_counter()
        n_bare = bare()
        t_bare = min(t_bare, time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i, _ in enumerate(loader.epoch(2)):
        if i == steps:
            break
    t_input = time.perf_counter() - t0
    return {
        "preset": preset, "size": p.input_size, "batch": b, "threads": threads, "steps": steps, "dtype": dtype,
        "loop_samples_per_s": n_real / t_real, "bare_samples_per_s": n_bare / t_bare,
        "input_only_samples_per_s": steps * b / t_input,
        "ratio": (n_real / t_real) / (n_bare / t_bare), "target": 0.90,
    }


PRECISION_VARIANTS = (("fp32", False), ("bf16", False), ("fp16", False), ("fp32", True), ("bf16", True))


def precision_ratios(preset: str = "fast", size: int | None = None, batch: int | None = None, steps: int = 6,
                     threads: int = 2, rounds: int = 2) -> dict:
    """Bare optimisation steps (``fit``'s Stepper) per second in bf16 / fp16 autocast and
    channels-last, divided by fp32 contiguous, on this CPU, the same batch for all."""
    import torch

    from dlmvi.model.presets import get_preset

    torch.set_num_threads(threads)
    p = get_preset(preset)
    size = size or p.input_size
    b = batch or p.batch_size
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(b, 3, 1, size, size, generator=g), torch.randint(0, 2, (b,), generator=g)
    steppers = {v: _stepper(preset, 3, v[0], v[1], size) for v in PRECISION_VARIANTS}
    for st in steppers.values():  # warm-up (oneDNN primitive creation)
        st.micro_step(x, y, 1.0, last=True)
    best = {v: float("inf") for v in steppers}
    for _ in range(rounds):  # alternate the variants: drift on a shared machine hits all of them
        for v, st in steppers.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                st.micro_step(x, y, 1.0, last=True)
            best[v] = min(best[v], time.perf_counter() - t0)
    sps = {f"{prec}{'_channels_last' if cl else ''}": steps * b / best[(prec, cl)] for prec, cl in PRECISION_VARIANTS}
    ref = sps["fp32"]
    return {"preset": preset, "size": size, "batch": b, "threads": threads, "steps": steps,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "samples_per_s": sps, "vs_fp32": {k: v / ref for k, v in sps.items()}}


def compile_ratio(preset: str = "fast", steps: int = 6, threads: int = 2) -> dict:
    """``torch.compile`` (inductor) vs eager: compilation seconds and the steps/s ratio after it."""
    import torch

    from dlmvi.model.presets import get_preset

    torch.set_num_threads(threads)
    p = get_preset(preset)
    b = p.batch_size
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(b, 3, 1, p.input_size, p.input_size, generator=g), torch.randint(0, 2, (b,), generator=g)
    eager = _stepper(preset, 3)
    comp = _stepper(preset, 3)
    comp.net = torch.compile(comp.model)
    eager.micro_step(x, y, 1.0, last=True)
    t0 = time.perf_counter()
    comp.micro_step(x, y, 1.0, last=True)
    compile_s = time.perf_counter() - t0
    best = {}
    for name, st in (("eager", eager), ("compiled", comp), ("eager", eager), ("compiled", comp)):
        t0 = time.perf_counter()
        for _ in range(steps):
            st.micro_step(x, y, 1.0, last=True)
        best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    return {"preset": preset, "threads": threads, "compile_s": compile_s,
            "eager_samples_per_s": steps * b / best["eager"], "compiled_samples_per_s": steps * b / best["compiled"],
            "ratio": best["eager"] / best["compiled"]}


def float16_cache(n_patients: int = 6, size: int = 320) -> dict:
    """A phantom cohort prepared at ``size`` px in float32 and float16: disk and training memory."""
    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.patches import load_patches
    from dlmvi.preprocess.prepare import prepare_cohort

    seqs = ("T1", "T1V", "T1D")
    out = {"patients": n_patients, "size": size, "sequences": len(seqs)}
    with tempfile.TemporaryDirectory() as tmp:
        cohort = make_phantom(Path(tmp) / "c", n_patients=n_patients, seed=0, size=128, progress=False)
        x = {}
        for dtype in ("float32", "float16"):
            cache = prepare_cohort(cohort, Path(tmp) / dtype, PrepareConfig(sequences=seqs, size=size, dtype=dtype),
                                   progress=False)
            ids = cache.patient_ids()
            disk = sum(f.stat().st_size for f in (Path(tmp) / dtype / "patches").rglob("*.npy"))
            x[dtype] = load_patches(cache, ids, seqs, size, dtype=cache.dtype)
            out[dtype] = {"disk_mb_per_patient": disk / len(ids) / 1e6,
                          "memory_mb_per_patient": x[dtype].nbytes / len(ids) / 1e6,
                          # the study's cohort: 321 patients, all 6 sequences
                          "study_cohort_6_sequences_gb": x[dtype].nbytes / len(ids) * 2 * 321 / 1e9}
        out["max_abs_difference"] = float(np.abs(x["float16"].astype(np.float32) - x["float32"]).max())
    out["disk_ratio"] = out["float16"]["disk_mb_per_patient"] / out["float32"]["disk_mb_per_patient"]
    out["memory_ratio"] = out["float16"]["memory_mb_per_patient"] / out["float32"]["memory_mb_per_patient"]
    return out


def _phantom_cache(tmp: Path, n_patients: int, size: int):
    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.prepare import prepare_cohort

    seqs = ("T1", "T1V", "T1D")
    cohort = make_phantom(tmp / "c", n_patients=n_patients, seed=0, size=128, progress=False)
    t0 = time.perf_counter()
    cache = prepare_cohort(cohort, tmp / "cache", PrepareConfig(sequences=seqs, size=size), progress=False)
    return cohort, cache, seqs, time.perf_counter() - t0


def _dlmvi_epoch(cache, ids, labels, seqs, size, b, st):
    from dlmvi.preprocess.patches import load_patches
    from dlmvi.train.data import CombinationDataset

    ds = CombinationDataset(load_patches(cache, ids, seqs, size), labels, seqs, seed=0)
    for x, y, _ in ds.batches(epoch=1, batch_size=b):
        st.micro_step(x, y, 1.0, last=True)


def versus_monai(n_patients: int = 24, threads: int = 2) -> dict:
    """Seconds per epoch (fast preset): dlmvi's cache vs MONAI loading and cropping NIfTI every epoch."""
    import torch
    from monai.transforms import (Compose, CropForegroundd, EnsureChannelFirstd, LoadImaged,
                                  RandFlipd, RandGaussianNoised, RandScaleCropd, RandScaleIntensityd, Resized)

    from dlmvi.model.presets import get_preset

    torch.set_num_threads(threads)
    p = get_preset("fast")
    with tempfile.TemporaryDirectory() as tmp:
        cohort, cache, seqs, _ = _phantom_cache(Path(tmp), n_patients, p.input_size)
        ids = cache.patient_ids()
        labels = cache.labels(ids)
        st = _stepper("fast", 3)

        def ours():
            _dlmvi_epoch(cache, ids, labels, seqs, p.input_size, p.batch_size, st)

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
                st.micro_step(x, torch.from_numpy(labels[start:start + len(items)]), 1.0, last=True)

        ours()
        t0 = time.perf_counter()
        ours()
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        plain_monai()
        t_monai = time.perf_counter() - t0
    return {"patients": len(ids), "epoch_s_dlmvi": t_ours, "epoch_s_plain_monai": t_monai,
            "speedup": t_monai / t_ours}


def versus_cached_monai(n_patients: int = 32, threads: int = 2, workers=(0, 2)) -> dict:
    """The fair anchor: what a MONAI user writes, CacheDataset + DataLoader, vs dlmvi's epoch.

    MONAI side: per patient a dict of the NIfTI images and masks; the deterministic transforms
    (LoadImaged, EnsureChannelFirstd, CropForegroundd on each sequence's own mask with dlmvi's
    margin, Resized to (S, S, 3), NormalizeIntensityd) are cached once by ``CacheDataset``; every
    epoch the random ones run in the DataLoader: one random key slice per sequence
    (RandSpatialCropd of depth 1 per key, so sequences draw independently, as in dlmvi), then
    dlmvi's own MONAI augmentation (:func:`dlmvi.train.data.build_augmentation`: flip, 0.75-1
    crop and resize, intensity scaling, Gaussian noise: the distribution of dlmvi's batched
    augmentation). Same network and optimisation step (the engine's Stepper), same batch size
    (fast preset, 64 px). Epoch time after one warm-up epoch, caches built beforehand (their
    build times are reported apart), for each number of DataLoader workers. dlmvi's epoch
    includes reading its patch cache from disk (load_patches), MONAI's does not.
    """
    import torch
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import (Compose, CropForegroundd, DeleteItemsd, EnsureChannelFirstd, LoadImaged,
                                  NormalizeIntensityd, RandSpatialCropd, Resized, SqueezeDimd)

    from dlmvi.model.presets import get_preset
    from dlmvi.train.data import build_augmentation

    torch.set_num_threads(threads)
    p = get_preset("fast")
    S, b = p.input_size, p.batch_size
    out = {"patients": n_patients, "size": S, "batch": b, "threads": threads}
    with tempfile.TemporaryDirectory() as tmp:
        cohort, cache, seqs, t_prepare = _phantom_cache(Path(tmp), n_patients, S)
        ids = cache.patient_ids()
        labels = cache.labels(ids)
        st = _stepper("fast", 3)
        files = [{**{s: str(cohort / "images" / pid / f"{s}.nii.gz") for s in seqs},
                  **{f"{s}_roi": str(cohort / "images" / pid / f"{s}_roi.nii.gz") for s in seqs},
                  "label": int(y)} for pid, y in zip(ids, labels)]
        keys = [*seqs, *(f"{s}_roi" for s in seqs)]
        deterministic = [LoadImaged(keys=keys, image_only=True), EnsureChannelFirstd(keys=keys)]
        deterministic += [CropForegroundd(keys=[s, f"{s}_roi"], source_key=f"{s}_roi", margin=8, allow_smaller=True)
                          for s in seqs]
        deterministic += [DeleteItemsd(keys=[f"{s}_roi" for s in seqs]),
                          Resized(keys=list(seqs), spatial_size=(S, S, 3)), NormalizeIntensityd(keys=list(seqs))]
        random = [RandSpatialCropd(keys=[s], roi_size=(-1, -1, 1), random_size=False) for s in seqs]
        random += [SqueezeDimd(keys=list(seqs), dim=3), build_augmentation(seqs, S)]
        transform = Compose(deterministic + random)
        transform.set_random_state(0)
        t0 = time.perf_counter()
        ds = CacheDataset(files, transform, cache_rate=1.0, num_workers=1, progress=False)
        out["cache_build_s_monai"] = time.perf_counter() - t0
        out["cache_build_s_dlmvi_prepare"] = t_prepare

        def monai_epoch(loader):
            for batch in loader:
                x = torch.stack([batch[s] for s in seqs], dim=1).float()  # (B, k, 1, S, S)
                st.micro_step(x, batch["label"].long(), 1.0, last=True)

        def ours():
            _dlmvi_epoch(cache, ids, labels, seqs, S, b, st)

        loaders = {w: DataLoader(ds, batch_size=b, shuffle=True, num_workers=w, persistent_workers=w > 0)
                   for w in workers}
        ours()
        for loader in loaders.values():
            monai_epoch(loader)  # warm-up (and worker start-up)
        best = {}
        for _ in range(2):  # alternate: drift on a shared machine hits all of them
            t0 = time.perf_counter()
            ours()
            best["dlmvi"] = min(best.get("dlmvi", 1e9), time.perf_counter() - t0)
            for w, loader in loaders.items():
                t0 = time.perf_counter()
                monai_epoch(loader)
                best[w] = min(best.get(w, 1e9), time.perf_counter() - t0)
        del loaders
    out["epoch_s_dlmvi"] = best["dlmvi"]
    for w in workers:
        out[f"epoch_s_cached_monai_workers{w}"] = best[w]
    fastest = min(best[w] for w in workers)
    out["epoch_s_cached_monai_best"] = fastest
    out["speedup"] = fastest / best["dlmvi"]
    return out
