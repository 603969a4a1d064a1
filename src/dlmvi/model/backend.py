"""Inference backends of the network's encoder for one patient at a time on the CPU.

* ``torch``: the PyTorch encoder (eager, or TorchScript-compiled by
  :func:`dlmvi.model.inference.inference_encoder` for a server);
* ``onnx``: the encoder exported to ONNX (``encoder.onnx``) and run by ONNX Runtime in float32
  (batch normalisation folded, oneDNN-free fused convolutions of ORT's CPU provider);
* ``onnx-int8``: the same graph statically quantised to int8 by
  :func:`onnxruntime.quantization.quantize_static` (QDQ, per-channel signed weights, unsigned
  activations), calibrated on development crops (``encoder.int8.onnx``).

Only the encoder changes: the fully connected fusion layer (a few thousand multiply-adds per
combination) stays in PyTorch, so every backend returns the same per-slice features that
:func:`dlmvi.model.inference.slice_features` combines. A backend is accepted only after its
agreement with PyTorch has been measured (:func:`analyse_agreement`): float32 within
:data:`FP32_MAX_DP`, int8 within :data:`INT8_MAX_DP` and at most :data:`INT8_MAX_FLIP_SHARE`
of the decisions changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dlmvi.errors import ConfigError, ModelError

#: Backends a model folder may hold; ``torch`` always.
BACKENDS = ("torch", "onnx", "onnx-int8")
#: What ``--backend`` accepts: ``auto`` takes the fastest accepted backend of the folder.
CHOICES = ("auto", "torch", "onnx")
ONNX_FILE = "encoder.onnx"
INT8_FILE = "encoder.int8.onnx"
#: ONNX opset of the exported graph (supported by the pinned onnxruntime).
OPSET = 17
#: Largest |dP| (probability of MVI) a float32 backend may differ from PyTorch by.
FP32_MAX_DP = 1e-4
#: Largest |dP| an int8 backend may differ from PyTorch by.
INT8_MAX_DP = 0.03
#: Largest share of development patients whose decision at the DL-MVI threshold may flip
#: under int8 (0.02: at most 2 of 100; 0 flips allowed below 50 patients).
INT8_MAX_FLIP_SHARE = 0.02
#: Fastest first: what ``auto`` prefers among the accepted backends.
PREFERENCE = ("onnx-int8", "onnx", "torch")


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes (the identity of an exported backend file)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_encoder_onnx(model, size: int, path) -> Path:
    """Write the model's encoder as an ONNX graph: (N, 1, size, size) -> (N, feature_dim).

    TorchScript-based exporter (``dynamo=False``): it needs no further package beside ``onnx``
    and traces this fixed-shape CNN exactly; the batch axis is dynamic.
    """
    import copy
    import warnings

    import torch

    enc = copy.deepcopy(model.encoder).eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, model.config.in_channels, size, size)
    path = Path(path)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on TorchScript's deprecation
        torch.onnx.export(enc, (example,), str(path), input_names=["x"], output_names=["features"],
                          dynamic_axes={"x": {0: "n"}, "features": {0: "n"}}, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    return path


class _Crops:
    """onnxruntime's calibration reader over (N, 1, S, S) crops, one at a time."""

    def __init__(self, crops: np.ndarray):
        self.crops = crops
        self.i = 0

    def get_next(self):
        if self.i >= len(self.crops):
            return None
        self.i += 1
        return {"x": self.crops[self.i - 1 : self.i]}

    def rewind(self):
        self.i = 0


def quantize_encoder(fp32_path, int8_path, crops: np.ndarray) -> Path:
    """Static int8 quantisation of the ONNX encoder, calibrated on ``crops``.

    Args:
        fp32_path: the float32 graph (:func:`export_encoder_onnx`).
        int8_path: where to write the int8 graph.
        crops: (N, 1, S, S) float32 network inputs of development patients (min-max ranges of
            every activation are taken over them).
    """
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = type("CropReader", (_Crops, CalibrationDataReader), {})(np.ascontiguousarray(crops, np.float32))
    with tempfile.TemporaryDirectory(prefix="dlmvi_int8_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(int8_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # min-max: the calibration graph keeps only each tensor's min and max
    return Path(int8_path)


class OnnxEncoder:
    """An ONNX Runtime session of the encoder, called like the TorchScript encoder:
    (N, 1, S, S) tensor -> (N, D) tensor. One session, created once; ``run`` is thread-safe."""

    def __init__(self, path, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: ONNX Runtime cannot load the encoder ({type(exc).__name__}: {exc}); "
                             "re-export the model with `dlmvi export --backend onnx`") from None

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def __call__(self, x):
        import torch

        return torch.from_numpy(self.run(x.detach().cpu().numpy()))


@dataclass(frozen=True)
class Agreement:
    """How closely a backend's DL-MVI probabilities follow PyTorch's on the development patients.

    Attributes:
        backend: ``onnx`` or ``onnx-int8``.
        n_patients: development patients compared.
        n_probabilities: probabilities compared (every slice combination of every patient).
        max_abs_dp, mean_abs_dp: of the probability of MVI (0-1), over all combinations.
        max_abs_dp_model: over the model's own probability (first slice, or the TTA mean).
        flips: patients whose DL-MVI decision (model probability >= ``threshold``) changes.
        flip_share: ``flips / n_patients``.
        threshold: the DL-MVI threshold.
        limit_dp, limit_flip_share: the acceptance limits.
        accepted: both limits met.
    """

    backend: str
    n_patients: int
    n_probabilities: int
    max_abs_dp: float
    mean_abs_dp: float
    max_abs_dp_model: float
    flips: int
    flip_share: float
    threshold: float
    limit_dp: float
    limit_flip_share: float
    accepted: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.backend}: max |dP| {self.max_abs_dp:.2e} over {self.n_probabilities} probabilities of "
                f"{self.n_patients} development patients (limit {self.limit_dp:g}); {self.flips} decision(s) "
                f"flipped at {self.threshold:g} ({100 * self.flip_share:.1f} %, limit "
                f"{100 * self.limit_flip_share:.1f} %)")


def analyse_agreement(backend: str, p_torch: np.ndarray, p_backend: np.ndarray, threshold: float,
                      tta: bool = False, limit_dp: float | None = None,
                      limit_flip_share: float | None = None) -> Agreement:
    """Compare a backend's probabilities of MVI with PyTorch's.

    Args:
        backend: ``onnx`` or ``onnx-int8`` (chooses the default limits).
        p_torch, p_backend: (patients, combinations) probability of MVI present; column 0 is the
            first key slice of every sequence (the study's input).
        threshold: DL-MVI threshold of the decision.
        tta: the model's probability is the mean over the combinations (else column 0).
        limit_dp, limit_flip_share: acceptance limits (default: :data:`FP32_MAX_DP` and no flip
            for ``onnx``; :data:`INT8_MAX_DP` and :data:`INT8_MAX_FLIP_SHARE` for int8).
    """
    a, b = np.asarray(p_torch, float), np.asarray(p_backend, float)
    if a.shape != b.shape or a.ndim != 2 or not a.size:
        raise ModelError(f"agreement of {backend}: probabilities of shapes {a.shape} and {b.shape} cannot be compared")
    int8 = backend == "onnx-int8"
    limit_dp = (INT8_MAX_DP if int8 else FP32_MAX_DP) if limit_dp is None else float(limit_dp)
    limit_flip_share = (INT8_MAX_FLIP_SHARE if int8 else 0.0) if limit_flip_share is None else float(limit_flip_share)
    d = np.abs(a - b)
    ma, mb = (a.mean(axis=1), b.mean(axis=1)) if tta else (a[:, 0], b[:, 0])
    flips = int(((ma >= threshold) != (mb >= threshold)).sum())
    share = flips / len(a)
    mx = float(d.max())
    return Agreement(backend=backend, n_patients=len(a), n_probabilities=int(a.size), max_abs_dp=mx,
                     mean_abs_dp=float(d.mean()), max_abs_dp_model=float(np.abs(ma - mb).max()), flips=flips,
                     flip_share=share, threshold=float(threshold), limit_dp=limit_dp,
                     limit_flip_share=limit_flip_share, accepted=bool(mx <= limit_dp and share <= limit_flip_share))


def select_backend(requested: str, available) -> str:
    """The backend to run: ``requested`` (``auto``, ``torch``, ``onnx``) among the accepted ones.

    Args:
        requested: ``auto`` (the fastest accepted: int8, then ONNX float32, then PyTorch),
            ``onnx`` (int8 when accepted, else float32) or ``torch``.
        available: names of the accepted backends of the model folder (``torch`` is implied).

    Raises:
        ConfigError: an unknown name, or ``onnx`` for a folder exported without it.
    """
    have = set(available) | {"torch"}
    if requested not in CHOICES:
        raise ConfigError(f"--backend {requested!r}: choose one of {', '.join(CHOICES)}")
    if requested == "torch":
        return "torch"
    onnx = [b for b in PREFERENCE if b in have and b != "torch"]
    if requested == "onnx" and not onnx:
        raise ConfigError("--backend onnx: this model folder has no ONNX backend; add it with "
                          "`dlmvi export RUN MODEL_DIR --backend onnx [--int8]`, or use --backend torch")
    return onnx[0] if onnx else "torch"


def combination_probabilities_of(model, patches: np.ndarray, encoder=None, batch: int = 4) -> np.ndarray:
    """Probability of MVI present of every slice combination of every patient.

    Args:
        model: the :class:`~dlmvi.model.network.MultiSequenceNet` (its fusion layer; its encoder
            when ``encoder`` is None).
        patches: (N, k, n_slices, S, S) network inputs.
        encoder: a backend's encoder ((M, 1, S, S) -> (M, D)), or None for PyTorch's eager one.
        batch: patients per pass.

    Returns:
        (N, n_slices ** k) probabilities; column 0 is the first key slice of every sequence.
    """
    import torch

    from dlmvi.model.inference import all_combinations, combination_probabilities, slice_features

    n, k, n_slices = patches.shape[:3]
    combos = all_combinations(n_slices, k)
    out = []
    with torch.inference_mode():
        for s in range(0, n, batch):
            x = torch.from_numpy(np.ascontiguousarray(patches[s : s + batch], dtype=np.float32))
            f = slice_features(model, x, range(n_slices), encoder=encoder)
            out.append(combination_probabilities(model, f, combos)[..., 1:].sum(-1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(combos)))


__all__ = ["BACKENDS", "CHOICES", "ONNX_FILE", "INT8_FILE", "FP32_MAX_DP", "INT8_MAX_DP", "INT8_MAX_FLIP_SHARE",
           "Agreement", "OnnxEncoder", "analyse_agreement", "combination_probabilities_of", "export_encoder_onnx",
           "file_sha256", "quantize_encoder", "select_backend"]
