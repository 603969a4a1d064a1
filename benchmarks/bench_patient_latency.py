"""Latency of ``predict_patient`` at the paper preset: files on disk -> MVI probability.

Builds, in a temporary folder, a paper-preset network (320 px input, stem 64, widths (64, 128),
blocks (6, 6), 3 sequences; random weights: latency does not depend on their values) exported
with ``dlmvi export`` (with a nomogram), and one synthetic phantom patient (T1, T1V, T1D as
NIfTI with tumour masks). Then times :func:`dlmvi.deploy.patient.predict_patient` end to end -
loading the model folder, reading and checking the images, key slices, crops, normalisation,
the 9 encoder passes (3 sequences x 3 key slices) and the 27 slice combinations, and the
nomogram - with ``torch.set_num_threads(threads)``: one warm-up, then the median of ``repeats``
runs (the OS file cache is warm after the warm-up, as for a second patient in a session).
Reports the time to the study's probability (first key slice of each sequence: 3 encoder
passes) and the total with the spread over the 27 combinations (9 passes), the process CPU
time (all threads; on a shared machine wall time / CPU time shows the contention) and the
1-minute load average.

Usage::

    .venv/bin/python benchmarks/bench_patient_latency.py [--threads 2] [--repeats 5] [--size 320]

Prints the figures and returns them as a dict from :func:`run` (for ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

PUBLISHED_NOMOGRAM = {
    # The study's nomogram: logit(p) = -3.51 + 1.53 [AFP > 20] + 3.58 DL-MVI. The covariance is
    # illustrative (SEs from the published ORs' CIs, no correlation): only its shape matters here.
    "intercept": -3.51,
    "coefficients": {"afp": 1.53, "dl_mvi": 3.58},
    "cutoffs": {"afp": 20.0},
    "terms": {"afp": "afp > 20", "dl_mvi": "dl_mvi"},
    "formula": "logit(p) = -3.510 + 1.530 * [afp > 20] + 3.580 * [dl_mvi]",
    "covariance": [[0.16, -0.05, -0.10], [-0.05, 0.0897, 0.0], [-0.10, 0.0, 0.2283]],
    "covariance_terms": ["(Intercept)", "afp", "dl_mvi"],
}


def build_fixture(root: Path, image_size: int = 320, n_slices: int = 40, n_patients: int = 2,
                  moderate: bool = False, **export) -> tuple[Path, Path]:
    """A paper-preset model folder and a phantom patient folder under ``root``.

    Args:
        n_patients: phantom patients (the "development" cohort of the export).
        moderate: rescale the random classifier so that the patients' logits are 1.5 in mean
            absolute value (probabilities away from 0 and 1, where agreement figures mean something).
        export: further arguments of :func:`dlmvi.deploy.model.export_model` (``backend``, ``int8``).

    Returns:
        (model_dir, patient_dir).
    """
    import torch

    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.deploy.model import export_model
    from dlmvi.io.atomic import write_json
    from dlmvi.model.checkpoint import save_checkpoint
    from dlmvi.model.network import NetworkConfig, build_network
    from dlmvi.model.presets import get_preset
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.prepare import prepare_cohort

    p = get_preset("paper")
    seqs = ("T1", "T1V", "T1D")
    cohort = make_phantom(root / "phantom", n_patients=n_patients, size=image_size, n_slices=n_slices,
                          slice_mm=5.0, progress=False, workers=1)
    run = root / "run"
    pcfg = PrepareConfig(sequences=seqs, size=p.input_size)
    cache = prepare_cohort(cohort, run / "cache", pcfg, progress=False)
    net_cfg = NetworkConfig(stem_width=p.stem_width, widths=p.widths, blocks=p.blocks,
                            n_sequences=len(seqs), n_classes=2, input_size=p.input_size)
    torch.manual_seed(0)
    model = build_network(net_cfg).eval()
    ids = cache.patient_ids()
    if moderate:
        _moderate_classifier(model, cache, ids, seqs, p.input_size)
    save_checkpoint(run / "train" / "final" / "model", model, {
        "network": net_cfg.to_dict(), "sequences": list(seqs), "classes": 2,
        "class_names": ["MVI absent", "MVI present"], "prepare": pcfg.to_dict(),
        "normalization": {"cache": "zscore", "per_image_zscore": False},
        "cache": {"path": str(run / "cache")}, "synthetic": True,
        "split": {"train": ids, "val": [], "test": []},
    })
    write_json(run / "clinical" / "nomogram.json", PUBLISHED_NOMOGRAM)
    model_dir = root / "model"
    export_model(run, model_dir, **export)
    return model_dir, Path(cohort) / "images" / ids[0]


def _moderate_classifier(model, cache, ids, seqs, size) -> None:
    """Scale the random classifier so that the logit of MVI over every slice combination of the
    patients is 1.5 in mean absolute value (probabilities near 0.18 or 0.82, not saturated at 0 or
    1; a random encoder does not tell the phantom's patients apart, so centring them would put all
    of them on the threshold)."""
    import torch

    from dlmvi.model.backend import combination_probabilities_of
    from dlmvi.preprocess.patches import load_patches

    x = load_patches(cache, ids, seqs, size)
    with torch.no_grad():
        model.classifier.bias.zero_()  # the logit is then linear in the weights
        model.classifier.weight.mul_(1e-3)  # first away from saturation, to measure it
        z = torch.logit(torch.as_tensor(combination_probabilities_of(model, x).ravel()))
        model.classifier.weight.mul_(1.5 / float(z.abs().mean()))
