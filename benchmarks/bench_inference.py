"""Inference: single-patient latency at the paper preset and cohort throughput with/without TTA."""

from __future__ import annotations

import time

import numpy as np


def cohort(n_patients: int = 64, preset: str = "fast", threads: int = 2) -> dict:
    import torch

    from dlmvi.model.inference import predict_arrays
    from dlmvi.model.network import NetworkConfig, build_network
    from dlmvi.model.presets import get_preset

    torch.set_num_threads(threads)
    p = get_preset(preset)
    model = build_network(NetworkConfig(in_channels=1, stem_width=p.stem_width, widths=p.widths, blocks=p.blocks,
                                        n_sequences=3, n_classes=2, input_size=p.input_size)).eval()
    x = np.random.default_rng(0).standard_normal((n_patients, 3, 3, p.input_size, p.input_size)).astype(np.float32)
    out = {"preset": preset, "patients": n_patients}
    for tta in (False, True):
        predict_arrays(model, x[:4], tta=tta)
        t0 = time.perf_counter()
        predict_arrays(model, x, tta=tta)
        out[f"patients_per_s{'_tta' if tta else ''}"] = n_patients / (time.perf_counter() - t0)
    return out


def patient_latency(threads: int = 2) -> dict:
    import bench_patient_latency

    return bench_patient_latency.run(threads=threads, repeats=5, image_size=320)
