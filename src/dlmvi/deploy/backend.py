"""The optimised CPU backends of an exported model folder (``dlmvi export --backend onnx [--int8]``).

:func:`export_backends` writes, beside ``model.safetensors``::

    encoder.onnx        the encoder as an ONNX graph (float32), run by ONNX Runtime
    encoder.int8.onnx   (--int8) the same graph statically quantised to int8, calibrated on
                        crops of the model's training patients

and records each under ``backends`` in model.json: file, SHA-256 of its bytes, the weights'
identity it was derived from (``weights_sha256``), opset, onnxruntime version, the calibration
set (patients, crops, seed and the SHA-256 of the calibration tensor; the crops themselves stay in
the run: a model folder travels to other sites and holds no patient images) and the agreement
with PyTorch measured on every development patient's inputs (every slice combination): max
|dP|, decisions that flip at the DL-MVI threshold. Float32 must agree within
:data:`~dlmvi.model.backend.FP32_MAX_DP`; int8 within :data:`~dlmvi.model.backend.INT8_MAX_DP`
with at most :data:`~dlmvi.model.backend.INT8_MAX_FLIP_SHARE` of the decisions changed. A
backend outside its limits is not written; its figures are still recorded (``accepted``: false)
and the export is refused with them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from dlmvi.errors import ModelError

#: Crops (sequence slices of training patients) the int8 ranges are calibrated on.
CALIBRATION_CROPS = 64
CALIBRATION_SEED = 0


def development_inputs(cache, ck, ids) -> np.ndarray:
    """The network inputs of the development patients ``ids`` (as training and predict saw them)."""
    from dlmvi.model.inference import model_harmonization
    from dlmvi.preprocess.patches import load_patches

    return load_patches(cache, ids, ck.sequences, ck.network.input_size, harmonization=model_harmonization(ck, cache))


def calibration_crops(x: np.ndarray, train_rows, n: int = CALIBRATION_CROPS, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """``n`` single-slice crops (N, 1, S, S) drawn (seeded) from every sequence and key slice of the
    training patients' rows of ``x`` (N, k, n_slices, S, S)."""
    pool = x[np.asarray(train_rows, int)].reshape(-1, 1, *x.shape[-2:])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(pool), size=min(n, len(pool)), replace=False))
    return np.ascontiguousarray(pool[pick], dtype=np.float32)


def export_backends(config_path, model, x: np.ndarray, train_rows, threshold: float, tta: bool, int8: bool,
                    limits: dict | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Write the ONNX backend(s) of an exported model and measure their agreement with PyTorch.

    Args:
        config_path: model.json of the exported model folder (updated; the files go beside it).
        model: the PyTorch network, eval mode.
        x: (N, k, n_slices, S, S) inputs of the development patients.
        train_rows: rows of ``x`` that are training patients (the calibration crops' pool).
        threshold: DL-MVI threshold of the decision.
        tta: the model's probability is the mean over the slice combinations.
        int8: also write the int8 graph.
        limits: ``{backend: {"dp": .., "flip_share": ..}}`` instead of the stated limits (tests).
        progress: called with a line per step.

    Returns:
        the ``backends`` record written into model.json.

    Raises:
        ModelError: a backend's agreement is outside its limits (the figures in the message).
    """
    import onnxruntime

    from dlmvi.io.atomic import write_json
    from dlmvi.model.backend import (INT8_FILE, ONNX_FILE, OPSET, OnnxEncoder, analyse_agreement,
                                     combination_probabilities_of, export_encoder_onnx, file_sha256,
                                     quantize_encoder)

    say = progress or (lambda _m: None)
    config_path = Path(config_path)
    out = config_path.parent
    doc = json.loads(config_path.read_text())
    limits = limits or {}
    say(f"PyTorch probabilities of {len(x)} development patients")
    p_torch = combination_probabilities_of(model, x)
    record: dict = {}
    plans = [("onnx", ONNX_FILE)] + ([("onnx-int8", INT8_FILE)] if int8 else [])
    refused = []
    for name, fname in plans:
        path = out / fname
        if name == "onnx":
            say("exporting the encoder to ONNX")
            export_encoder_onnx(model, model.config.input_size, path)
        else:
            crops = calibration_crops(x, train_rows)
            say(f"int8: calibrating on {len(crops)} crops of {len(train_rows)} training patients")
            quantize_encoder(out / ONNX_FILE, path, crops)
        say(f"{name}: probabilities of {len(x)} development patients")
        p = combination_probabilities_of(model, x, encoder=OnnxEncoder(path))
        lim = limits.get(name, {})
        agreement = analyse_agreement(name, p_torch, p, threshold, tta=tta, limit_dp=lim.get("dp"),
                                      limit_flip_share=lim.get("flip_share"))
        entry = {"file": fname, "runtime": "onnxruntime", "onnxruntime_version": onnxruntime.__version__,
                 "opset": OPSET, "precision": "int8" if name == "onnx-int8" else "float32",
                 "weights_sha256": doc.get("weights_sha256"), "agreement": agreement.to_dict(),
                 "accepted": agreement.accepted}
        if name == "onnx-int8":
            entry["calibration"] = {"patients": len(train_rows), "crops": len(crops), "seed": CALIBRATION_SEED,
                                    "method": "min-max, QDQ, per-channel int8 weights, uint8 activations",
                                    "crops_sha256": hashlib.sha256(crops.tobytes()).hexdigest()}
        if agreement.accepted:
            entry.update(file_sha256=file_sha256(path), bytes=path.stat().st_size)
        else:
            path.unlink(missing_ok=True)
            entry["file"] = None
            refused.append(agreement)
        record[name] = entry
        say(agreement.summary() + ("" if agreement.accepted else " - REFUSED"))
        if name == "onnx" and not agreement.accepted:
            break  # int8 is quantised from the float32 graph
    doc["backends"] = record
    write_json(config_path, doc)
    if refused:
        raise ModelError("; ".join(f"backend {a.summary()}: outside its limits, not written" for a in refused)
                         + f". The model folder {out} was written with the backends that agree "
                         f"({', '.join(['torch'] + [n for n, e in record.items() if e['accepted']])})")
    return record


def backend_files(doc: dict, path: Path) -> dict[str, Path]:
    """The accepted backends of a model.json whose files are present and intact:
    ``{name: file}``. A listed file that is missing, modified or derived from other weights is
    refused (never silently skipped).

    Raises:
        ModelError: a recorded backend file is missing or its checksum or weights differ.
    """
    from dlmvi.model.backend import file_sha256

    found = {}
    for name, entry in (doc.get("backends") or {}).items():
        if not entry.get("accepted") or not entry.get("file"):
            continue
        fname = str(entry["file"])
        f = path / fname
        if Path(fname).name != fname or not fname.endswith(".onnx"):
            raise ModelError(f"{path / 'model.json'}: backend file {fname!r} refused (only an .onnx file inside "
                             "the model folder is loaded)")
        if not f.is_file():
            raise ModelError(f"{path}: {fname} (backend {name}) is missing; copy the whole model folder, or "
                             "use --backend torch")
        if entry.get("weights_sha256") != doc.get("weights_sha256"):
            raise ModelError(f"{f}: derived from other weights than {path / 'model.safetensors'}; re-export the "
                             "model with `dlmvi export --backend onnx`")
        if file_sha256(f) != entry.get("file_sha256"):
            raise ModelError(f"{f}: its checksum differs from model.json (the file was modified); re-export the "
                             "model, or use --backend torch")
        found[name] = f
    return found


__all__ = ["export_backends", "backend_files", "calibration_crops", "development_inputs", "CALIBRATION_CROPS"]
