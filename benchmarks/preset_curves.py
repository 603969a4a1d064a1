"""Does ``paper`` (Adam lr 0.1, batch 2, batch norm) train? Training curves of the presets at
reduced size on a CPU, on the synthetic phantom.

Each preset's own network shape (``paper`` and ``recommended``: the published 6 + 6
bottlenecks of width 64/128, batch norm) and optimisation (optimiser, learning rate, batch,
accumulation, warm-up, schedule, clipping) are kept; only the input is smaller (``--size``,
64 px instead of 320) and the run shorter (``--epochs``; the cosine of ``recommended`` spans
them, its warm-up stays 5 epochs). Data: a seeded synthetic phantom cohort (SYNTHETIC), T1 +
T1V + T1D, prepared by ``dlmvi prepare`` at ``--size``, split by patient 75 / 25 stratified by
MVI; every model starts from the same seed. Per epoch: training loss, accuracy and AUC (on the
augmented training batches), validation loss, accuracy and AUC (first slice of each
sequence). Channels-last is on (the faster layout on this CPU; it does not change what is
learnt).

Usage::

    .venv/bin/python benchmarks/preset_curves.py [--size 64] [--patients 160] [--epochs 20]
        [--presets paper,recommended] [--threads 2]

Writes ``benchmarks/preset_curves.csv`` (every epoch), ``benchmarks/preset_curves.md`` (the
table) and the ``preset_curves`` entry of ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).parent


def run(size: int = 64, patients: int = 160, epochs: int = 20, presets=("paper", "recommended"),
        threads: int = 2, seed: int = 0, val_fraction: float = 0.25, root: str | None = None) -> dict:
    """Train each preset's network at ``size`` px for ``epochs`` epochs; return the logs."""
    import pandas as pd
    import torch

    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.model.network import NetworkConfig
    from dlmvi.model.presets import get_preset
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.patches import load_patches
    from dlmvi.preprocess.prepare import prepare_cohort
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.data import CombinationDataset
    from dlmvi.train.engine import fit
    from dlmvi.train.splits import holdout_split

    torch.set_num_threads(threads)
    seqs = ("T1", "T1V", "T1D")
    with tempfile.TemporaryDirectory(prefix="dlmvi_curves_") as tmp:
        base = Path(root) if root else Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cohort = make_phantom(base / "cohort", n_patients=patients, seed=seed, size=128, progress=False)
            cache = prepare_cohort(cohort, base / "cache", PrepareConfig(sequences=seqs, size=size), progress=False)
        ids = cache.patient_ids()
        labels = cache.labels(ids)
        tr, va = holdout_split(ids, labels, val_fraction, seed=seed)
        pos = {p: i for i, p in enumerate(ids)}
        x = load_patches(cache, ids, seqs, size)
        xi = [pos[p] for p in tr]
        vi = [pos[p] for p in va]
        frames, summary = [], {}
        for name in presets:
            p = get_preset(name)
            net = NetworkConfig(stem_width=p.stem_width, widths=p.widths, blocks=p.blocks, n_sequences=len(seqs),
                                n_classes=2, input_size=size)
            cfg = TrainConfig(preset=name, epochs=epochs, patience=0, seed=seed, device="cpu", progress=False,
                              channels_last=True)
            t0 = time.perf_counter()
            try:
                res = fit(CombinationDataset(x[xi], labels[xi], seqs, seed=seed), (x[vi], labels[vi]), net, cfg,
                          base / "runs" / name, seed=seed)
                log, status = res.log, "finished"
            except Exception as exc:  # a diverged run is a result here, not a crash of the benchmark
                log_path = base / "runs" / name / "log.csv"
                log = pd.read_csv(log_path) if log_path.is_file() else pd.DataFrame()
                status = f"stopped: {exc}"
            log = log.assign(preset=name)
            frames.append(log)
            r = cfg.resolved()
            summary[name] = {
                "status": status, "seconds": round(time.perf_counter() - t0, 1),
                "settings": {"optimizer": r.optimizer, "lr": r.lr, "batch_size": r.batch_size, "accumulate": r.accumulate,
                             "weight_decay": r.weight_decay, "schedule": r.schedule, "warmup_epochs": r.warmup_epochs,
                             "grad_clip": r.grad_clip},
                "best_val_auc": float(log["val_auc"].max()) if len(log) else None,
                "last_val_auc": float(log["val_auc"].iloc[-1]) if len(log) else None,
                "last_train_loss": float(log["train_loss"].iloc[-1]) if len(log) else None,
                "min_val_loss": float(log["val_loss"].min()) if len(log) else None,
            }
        logs = pd.concat(frames, ignore_index=True)
    return {"synthetic": True, "size_px": size, "patients": len(ids), "n_train": len(tr), "n_val": len(va),
            "train_prevalence": float(labels[xi].mean()),
            "epochs": epochs, "threads": threads, "seed": seed, "presets": summary,
            "log": logs.round(4).to_dict("records")}


def markdown(res: dict, every: int = 1) -> str:
    """One row per epoch (every ``every``-th and the last): loss / AUC of each preset."""
    import pandas as pd

    log = pd.DataFrame(res["log"])
    names = list(res["presets"])
    head = (f"SYNTHETIC phantom, {res['size_px']} px, {res['n_train']} training / {res['n_val']} validation "
            f"patients, {res['epochs']} epochs, CPU.\n\n")
    cols = ["epoch"] + [f"{n} {c}" for n in names for c in ("train loss", "val loss", "val AUC")]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for e in range(1, res["epochs"] + 1):
        if e % every and e != res["epochs"] and e != 1:
            continue
        cells = [str(e)]
        for n in names:
            r = log[(log["preset"] == n) & (log["epoch"] == e)]
            if len(r):
                r = r.iloc[0]
                cells += [f"{r['train_loss']:.3f}", f"{r['val_loss']:.3f}", f"{r['val_auc']:.3f}"]
            else:
                cells += ["-", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    k = min(10, res["epochs"])
    for n, s in res["presets"].items():
        tail = log[(log["preset"] == n) & (log["epoch"] > res["epochs"] - k)]
        notes.append(f"- {n}: {s['settings']}; {s['status']} in {s['seconds']:.0f} s; last {k} epochs: mean "
                     f"train loss {tail['train_loss'].mean():.3f}, mean val AUC {tail['val_auc'].mean():.3f} "
                     f"(range {tail['val_auc'].min():.3f}-{tail['val_auc'].max():.3f})")
    prevalence = res.get("train_prevalence")
    if prevalence:
        p = prevalence
        notes.append(f"- chance level of the training loss (always predicting the prevalence {p:.3f}): "
                     f"{-(p * math.log(p) + (1 - p) * math.log(1 - p)):.3f}")
    return head + "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--patients", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--presets", default="paper,recommended")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    res = run(args.size, args.patients, args.epochs, tuple(args.presets.split(",")), args.threads, args.seed)
    import pandas as pd

    sys.path.insert(0, str(HERE))
    from common import merge_results

    pd.DataFrame(res["log"]).to_csv(HERE / "preset_curves.csv", index=False)
    (HERE / "preset_curves.md").write_text(markdown(res))
    merge_results({"preset_curves": {k: v for k, v in res.items() if k != "log"}})
    print(markdown(res))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
