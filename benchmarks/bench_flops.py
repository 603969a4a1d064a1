"""Model FLOPs per sample at each preset and the FLOP/s reached in training vs a large matmul."""

from __future__ import annotations

import time


def matmul_flops_per_s(n: int = 2048, threads: int = 2) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        a @ b
    return reps * 2 * n**3 / (time.perf_counter() - t0)


def run(training: dict | None = None, threads: int = 2) -> dict:
    from dlmvi.model.network import NetworkConfig, flops_per_sample
    from dlmvi.model.presets import PRESETS

    out = {"matmul_flops_per_s": matmul_flops_per_s(threads=threads)}
    for name, p in PRESETS.items():
        cfg = NetworkConfig(in_channels=1, stem_width=p.stem_width, widths=p.widths, blocks=p.blocks,
                            n_sequences=3, n_classes=2, input_size=p.input_size)
        fwd = flops_per_sample(cfg)
        out[name] = {"forward_flops_per_sample": fwd, "train_flops_per_sample": 3 * fwd}
        if training and name in training:
            achieved = 3 * fwd * training[name]["bare_samples_per_s"]
            out[name]["train_flops_per_s"] = achieved
            out[name]["fraction_of_matmul"] = achieved / out["matmul_flops_per_s"]
    return out
