"""A portable model folder: everything needed to predict one new patient, and nothing else.

``dlmvi export RUN MODEL_DIR`` writes::

    MODEL_DIR/
      model.safetensors   network weights (and batch-norm statistics), copied byte for byte
      model.json          format version; the network's constructor arguments; sequences and
                          classes; the preparation settings (PrepareConfig); the normalisation
                          and harmonisation parameters of the training cache; the nomogram
                          (intercept, coefficients, cut-offs, covariance); decision thresholds;
                          a summary of the training data (cohorts, n, MVI prevalence, voxel
                          spacing range, image orientation); dlmvi and torch versions

:func:`load_model` reads it back without unpickling anything (JSON plus safetensors) and
refuses, with a message saying what to do, a folder whose format version or settings this
version of dlmvi cannot honour. The training cache, the cohort and the run folder are not
needed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlmvi.constants import DL_THRESHOLD, RISK_THRESHOLD
from dlmvi.errors import CacheError, ConfigError, DlmviError, DlmviWarning, ModelError, StatisticsError
from dlmvi.layout import MODEL_JSON

#: Format written by this version; :func:`load_model` reads exactly this major version.
MODEL_FORMAT = "dlmvi-model/1"
MODEL_FORMAT_NAME, MODEL_FORMAT_VERSION = MODEL_FORMAT.split("/")
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = MODEL_JSON  # the name used by model folders' readers
#: Optional capabilities a model.json may declare under ``"requires"``; any other is refused.
KNOWN_FEATURES = frozenset({"nomogram", "harmonization", "tta"})
#: Default nomogram risk at or above which the card reports "MVI likely".
DEFAULT_THRESHOLD = RISK_THRESHOLD


@dataclass
class ExportedModel:
    """A loaded model folder.

    Attributes:
        model: the network (:class:`~dlmvi.model.network.MultiSequenceNet`), eval mode, CPU;
            with an ONNX backend built on first use (Grad-CAM), not at loading.
        fusion: what combines the encoder's features (the network, or its fusion layer alone).
        network: its :class:`~dlmvi.model.network.NetworkConfig`.
        prepare: the :class:`~dlmvi.preprocess.cache.PrepareConfig` of the training cache.
        harmonization: the model's harmonisation document (fitted on its training patients), or None.
        nomogram: intercept, coefficients, cutoffs, covariance, covariance_terms (or None).
        dl_threshold: DL-MVI probability threshold for ``dl_mvi`` = 1 (0.5 in the study).
        risk_threshold: nomogram risk at or above which the decision is "MVI likely".
        training_data: summary of the training patients and images.
        config: the whole model.json document.
        path: the model folder.
        backend: the inference backend chosen at loading (``torch``, ``onnx``, ``onnx-int8``).
        backend_paths: {backend: file} of the folder's accepted ONNX backends.
    """

    network: object
    prepare: object
    harmonization: dict | None
    nomogram: dict | None
    dl_threshold: float
    risk_threshold: float
    training_data: dict
    config: dict
    path: Path
    extra: dict = field(default_factory=dict)
    backend: str = "torch"
    backend_paths: dict = field(default_factory=dict)
    threads: int = 0  # CPU threads of an ONNX Runtime session (0: its default, every core)
    module: object = None  # the PyTorch network, once built
    state: dict | None = None  # its tensors (checked at loading), to build it on first use

    @property
    def model(self):
        """The PyTorch network (built on first use when an ONNX backend runs the encoder)."""
        if self.module is None:
            with self._lock():
                if self.module is None:
                    from dlmvi.model.checkpoint import adopt
                    from dlmvi.model.network import build_network

                    self.module = adopt(build_network, self.network, self.state, self.path / WEIGHTS_NAME,
                                        self.path / CONFIG_NAME)
        return self.module

    @property
    def fusion(self):
        """The fully connected fusion layer (the network itself once it is built)."""
        if self.module is not None:
            return self.module
        with self._lock():
            if "fusion" not in self.extra:
                from dlmvi.model.checkpoint import adopt
                from dlmvi.model.network import Fusion

                self.extra["fusion"] = adopt(Fusion, self.network, self.state, self.path / WEIGHTS_NAME,
                                             self.path / CONFIG_NAME, prefix="classifier.")
        return self.extra["fusion"]

    def _lock(self):
        import threading

        return self.extra.setdefault("_lock", threading.RLock())

    @property
    def sequences(self) -> tuple[str, ...]:
        return tuple(self.config["sequences"])

    @property
    def classes(self) -> int:
        return int(self.network.n_classes)

    @property
    def class_names(self) -> list[str]:
        return list(self.config.get("class_names") or [f"class {i}" for i in range(self.classes)])

    @property
    def synthetic(self) -> bool:
        """True when the model was trained on dlmvi's synthetic phantom."""
        return bool(self.config.get("synthetic", False) or self.training_data.get("synthetic", False))

    def inference_encoder(self):
        """The encoder compiled for one patient at a time on the CPU (built once, thread-safe);
        see :func:`dlmvi.model.inference.inference_encoder`."""
        with self._lock():
            if "encoder" not in self.extra:
                from dlmvi.model.inference import inference_encoder

                self.extra["encoder"] = inference_encoder(self.model, self.network.input_size)
        return self.extra["encoder"]

    def encoder(self, compiled: bool = False):
        """The encoder of the chosen :attr:`backend` for one patient at a time, built once: an
        ONNX Runtime session (``onnx``, ``onnx-int8``), the TorchScript encoder (``torch`` with
        ``compiled``), or None (PyTorch's eager encoder)."""
        if self.backend == "torch":
            return self.inference_encoder() if compiled else None
        with self._lock():
            if "onnx_encoder" not in self.extra:
                from dlmvi.model.backend import OnnxEncoder

                self.extra["onnx_encoder"] = OnnxEncoder(self.backend_paths[self.backend], threads=self.threads)
        return self.extra["onnx_encoder"]

    @property
    def backend_info(self) -> dict:
        """What the card and result.json say about the backend: its name, precision and its
        measured agreement with PyTorch (None for PyTorch itself)."""
        entry = (self.config.get("backends") or {}).get(self.backend) or {}
        return {"backend": self.backend, "precision": entry.get("precision", "float32"),
                "runtime": entry.get("runtime", "torch"), "agreement": entry.get("agreement")}

    @property
    def tta(self) -> bool:
        """True when the nomogram's DL-MVI input was the mean over all slice combinations."""
        return bool(self.config.get("inference", {}).get("tta", False))


# ---------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------
def export_model(run_dir, model_dir, threshold: float = DEFAULT_THRESHOLD, overwrite: bool = True,
                 backend: str = "torch", int8: bool = False, backend_limits: dict | None = None,
                 progress=None) -> Path:
    """Write a portable model folder from a study run (or a training run).

    Args:
        run_dir: a ``dlmvi study`` folder (``train/final/model``, ``cache/``,
            ``clinical/nomogram.json``) or a ``dlmvi train`` folder (its cache is found
            through the checkpoint; no nomogram then).
        model_dir: folder to write (created; an earlier export there is replaced).
        threshold: nomogram risk (0-1) at or above which predict-patient reports
            "MVI likely".
        overwrite: replace an earlier export in ``model_dir``.
        backend: ``torch`` (the weights only) or ``onnx`` (also the encoder for ONNX Runtime,
            its agreement with PyTorch measured on the development patients; see
            :mod:`dlmvi.deploy.backend`).
        int8: with ``onnx``, also the statically quantised int8 encoder.
        backend_limits: other agreement limits than the stated ones (tests).
        progress: called with a line per step of the backends' export.

    Returns:
        the path of ``model.json``.

    Raises:
        ModelError: no trained model in ``run_dir``, ``model_dir`` holds something else, or a
            backend's agreement with PyTorch is outside its limits (the folder is written with
            the backends that agree).
        CacheError: the training cache cannot be found.
    """
    from dlmvi.io.atomic import write_bytes, write_json
    from dlmvi.layout import RunLayout
    from dlmvi.model.checkpoint import load_checkpoint

    _check_export_options(threshold, backend, int8)
    run = Path(run_dir)
    out = Path(model_dir)
    if not run.is_dir():
        raise ModelError(f"{run} is not a folder; give the run folder written by `dlmvi study` or `dlmvi train`")
    layout = RunLayout(run)
    ck = load_checkpoint(layout.train.root if layout.train.root.is_dir() else run)
    _check_export_folder(out, run, ck, overwrite)

    federated = ck.meta.get("federated")  # a federation's global model: its caches stay at the sites
    cache = None if federated else _find_cache(layout, ck)
    missing = [s for s in ck.meta["sequences"] if cache is not None and s not in cache.sequences]
    if missing:
        raise CacheError(f"the training cache {cache.root} lacks the model's sequence(s) {missing}")
    nomogram = _read_nomogram(layout)
    study = _read_json(layout.study_json) or {}
    tta = bool(study.get("config", {}).get("tta", False))

    weights = ck.path.with_name(ck.path.name[: -len(".json")] + ".safetensors")
    data = weights.read_bytes()
    doc = _model_document(ck, cache, layout, federated, nomogram, tta, threshold, data)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / n for n in ("encoder.onnx", "encoder.int8.onnx")):
        stale.unlink(missing_ok=True)  # an earlier export's backends belong to other weights
    write_bytes(out / WEIGHTS_NAME, data)
    path = write_json(out / CONFIG_NAME, doc)  # written last: a folder with model.json is complete
    from dlmvi.deploy.card import write_model_card

    try:
        if backend == "onnx":
            _export_backends(path, ck, cache, threshold=DL_THRESHOLD, tta=tta, int8=int8, limits=backend_limits,
                             progress=progress)
    finally:  # the card states the backends and their agreement, refused ones too
        write_model_card(out, run if layout.study_json.is_file() else None)
    return path


def _model_document(ck, cache, layout, federated, nomogram, tta: bool, threshold: float, data: bytes) -> dict:
    """model.json's content: the network, its inputs, decision thresholds, nomogram, training data,
    robustness, and the weights' identities (``data``: the safetensors file's bytes)."""
    import torch

    import dlmvi

    requires = ["tta"] if tta else []
    # the model's own harmonisation (fitted on its training patients; the cache's for older runs)
    harmonization = ck.meta.get("harmonization") or (cache.meta.get("harmonization") if cache is not None else None)
    if harmonization:
        harmonization = {k: v for k, v in harmonization.items() if k != "fit_patients"}  # ids stay in the run
        requires.append("harmonization")
    if nomogram is not None:
        requires.append("nomogram")
    return {
        "format": MODEL_FORMAT,
        "requires": requires,
        "dlmvi_version": dlmvi.__version__,
        "torch_version": torch.__version__,
        "network": ck.network.to_dict(),
        "sequences": list(ck.meta["sequences"]),
        "classes": ck.classes,
        "class_names": ck.meta.get("class_names"),
        "prepare": ck.meta.get("prepare") or cache.meta["params"],  # a federated model always records it
        "normalization": ck.meta.get("normalization"),
        "harmonization": harmonization,
        "inference": {
            "tta": tta,
            "input": "mean over all slice combinations" if tta else "first key slice of each sequence (as in the study)",
        },
        "decision": {"dl_threshold": DL_THRESHOLD, "risk_threshold": float(threshold)},
        "nomogram": nomogram,
        "training": ck.meta.get("training"),
        "training_data": federated_summary(federated, ck.meta) if federated else training_summary(cache, ck.meta.get("split")),
        "robustness": _robustness(layout, ck),
        "synthetic": bool((cache is not None and cache.synthetic) or ck.meta.get("synthetic", False)),
        # the weights' one identity is weights_sha256 (a hash of the tensors: the card, site files and
        # every check name it); file_sha256 only checks that the file's bytes arrived intact
        "weights": {"file": WEIGHTS_NAME, "file_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
        "weights_sha256": ck.meta.get("weights_sha256"),
        "source": {"checkpoint": ck.path.name, "best_epoch": ck.meta.get("progress", {}).get("best_epoch")},
    }


def _check_export_options(threshold: float, backend: str, int8: bool) -> None:
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"--threshold {threshold} must be a probability between 0 and 1 (e.g. 0.5)")
    if backend not in ("torch", "onnx"):
        raise ConfigError(f"--backend {backend!r}: export writes torch (always) and onnx; choose torch or onnx")
    if int8 and backend != "onnx":
        raise ConfigError("--int8 quantises the ONNX encoder; give --backend onnx --int8")


def _check_export_folder(out: Path, run: Path, ck, overwrite: bool) -> None:
    """``out`` is a new folder, an empty one, or an earlier export (replaced when ``overwrite``)."""
    if out.resolve() in (run.resolve(), ck.path.parent.resolve()):
        raise ModelError(f"{out}: write the exported model to a new folder, not into the run")
    if out.exists():
        if not out.is_dir():
            raise ModelError(f"{out} exists and is not a folder; choose a new folder for the model")
        if any(out.iterdir()) and not (out / CONFIG_NAME).is_file():
            raise ModelError(f"{out} is not empty and holds no exported model; choose an empty or new folder")
        if (out / CONFIG_NAME).is_file() and not overwrite:
            raise ModelError(f"{out} already holds an exported model; pass overwrite=True to replace it")


def _export_backends(path: Path, ck, cache, threshold: float, tta: bool, int8: bool, limits, progress) -> dict:
    """The ONNX backends of the model, measured on every development patient of the cache."""
    from dlmvi.deploy.backend import development_inputs, export_backends

    split = ck.meta.get("split") or {}
    dev = [str(i) for i in list(split.get("train", [])) + list(split.get("val", []))] or \
        [str(i) for i in cache.patient_ids(sequences=ck.sequences)]
    train = set(map(str, split.get("train", []))) or set(dev)
    x = development_inputs(cache, ck, dev)
    return export_backends(path, ck.model.eval(), x, [i for i, p in enumerate(dev) if p in train], threshold,
                           tta, int8, limits=limits, progress=progress)


def _robustness(layout, ck) -> dict:
    """Sequence dropout of the training and what each missing sequence costs (measured by the
    cross-validation of ``dlmvi train``; None when it did not run)."""
    from dlmvi.layout import TrainLayout

    cv = _read_json(TrainLayout(ck.path.parent.parent).cv_metrics) or _read_json(layout.train.cv_metrics) or {}
    return {"sequence_dropout": float((ck.meta.get("training") or {}).get("sequence_dropout", 0.0) or 0.0),
            "sequence_removed": cv.get("sequence_removed")}


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: invalid JSON ({exc})") from None


def _find_cache(layout, ck):
    from dlmvi.preprocess.cache import CACHE_JSON, PatchCache

    candidates = [layout.cache]
    p = (ck.meta.get("cache") or {}).get("path")
    if p:
        candidates.append(Path(p))
    for c in candidates:
        if (c / CACHE_JSON).is_file():
            cache = PatchCache(c)
            if cache.meta["params"] != ck.meta.get("prepare", cache.meta["params"]):
                continue  # another cache (e.g. the raw one before harmonisation)
            return cache
    raise CacheError(
        f"the training cache of {layout.root} was not found (looked in {', '.join(str(c) for c in candidates)}); "
        "the export copies its preparation and harmonisation parameters, so keep the run's cache/ folder"
    )


def _read_nomogram(layout) -> dict | None:
    doc = _read_json(layout.nomogram_json)
    if doc is None:
        warnings.warn(
            f"{layout.root}: no {layout.nomogram_json.relative_to(layout.root)}; the exported model gives the DL-MVI probability only "
            "(run `dlmvi clinical` or `dlmvi study` to add the nomogram)",
            DlmviWarning, stacklevel=3,
        )
        return None
    keep = ("intercept", "coefficients", "odds_ratios", "cutoffs", "terms", "formula", "n", "n_events",
            "covariance", "covariance_terms", "develop_cohort", "synthetic")
    out = {k: doc[k] for k in keep if k in doc}
    out["validation"] = {c: {k: v.get(k) for k in ("role", "n", "auc", "auc_ci", "brier") if k in v}
                         for c, v in (doc.get("validation") or {}).items()}
    _nomogram_model(out, layout.nomogram_json)
    return out


def federated_summary(federated: dict, meta: dict) -> dict:
    """Who a federation's global model was trained on: training patients per site (counts only;
    classes suppressed under the federation's minimum cell count are unknown, ``None``)."""
    data = federated.get("training_data") or {}
    per_class = [d.get("per_class") or [] for d in data.values()]
    known = all(c and min(c) >= 0 for c in per_class)
    n_mvi = sum(sum(c[1:]) for c in per_class) if known and per_class else None
    n = sum(int(d.get("n_train") or 0) for d in data.values())
    return {"n": n, "cohorts": {s: int(d.get("n_train") or 0) for s, d in data.items()}, "n_mvi": n_mvi,
            "prevalence": (n_mvi / n) if n_mvi is not None and n else None, "grades": None, "spacing_mm": {},
            "federated": True, "sites": list(data), "synthetic": bool(meta.get("synthetic", False))}


def training_summary(cache, split: dict | None) -> dict:
    """Who and what the model was trained on.

    Args:
        cache: the training :class:`~dlmvi.preprocess.cache.PatchCache`.
        split: the checkpoint's split (``train``/``val`` patient ids); None: every included
            patient of the cache.

    Returns:
        dict with ``n``, ``cohorts`` ({cohort: n}), ``n_mvi``, ``prevalence``, ``grades``,
        ``spacing_mm`` (per sequence and ``all``: min and max per axis x, y, z, as loaded in
        LPS), ``orientation`` (acquisition planes and orientation codes of the source images,
        when the cohort folder is still there), ``synthetic``.
    """
    ids = list((split or {}).get("train", [])) + list((split or {}).get("val", []))
    if not ids:
        ids = cache.patient_ids()
    ids = [str(i) for i in ids]
    p = cache.patients.set_index("patient_id").loc[ids]
    grades = p["mvi_grade"].astype(str)
    n_mvi = int(grades.isin(["M1", "M2"]).sum())
    idx = cache.index[cache.index["patient_id"].astype(str).isin(ids)]
    spacing: dict[str, dict] = {}
    for seq, rows in list(idx.groupby("sequence")) + [("all", idx)]:
        arr = np.array([[float(v) for v in str(s).split(";")] for s in rows["spacing_mm"]], dtype=float)
        if arr.size:
            spacing[seq] = {"min": arr.min(axis=0).round(6).tolist(), "max": arr.max(axis=0).round(6).tolist(),
                            "axes": ["x", "y", "z"]}
    return {
        "n": len(ids),
        "cohorts": {str(c): int(n) for c, n in p["cohort"].astype(str).value_counts().sort_index().items()},
        "n_mvi": n_mvi,
        "prevalence": n_mvi / len(ids) if ids else None,
        "grades": {g: int((grades == g).sum()) for g in ("M0", "M1", "M2")},
        "spacing_mm": spacing,
        "orientation": _training_orientation(cache, ids),
        "scanners": _training_scanners(cache, ids),
        "synthetic": bool(cache.synthetic),
    }


def _training_scanners(cache, ids) -> dict | None:
    """{scanner: patients} of the training patients, when the cohort records scanners."""
    from dlmvi.stats.sites import read_scanners

    cohort = cache.meta.get("cohort_dir")
    if not cohort or not Path(cohort).is_dir():
        return None
    try:
        sc = read_scanners(cohort)
    except DlmviError:
        return None
    if sc is None:
        return None
    sc = sc[sc["patient_id"].isin(set(ids))]
    return {str(k): int(v) for k, v in sc["scanner"].value_counts().sort_index().items()} or None


def _training_orientation(cache, ids) -> dict | None:
    """Planes and orientation codes of the training images' headers, if the cohort is at hand."""
    from dlmvi.io.images import image_orientation, nifti_path

    root = Path(cache.meta.get("cohort_dir", "")) / "images"
    if not root.is_dir():
        return None
    planes: dict[str, int] = {}
    codes: dict[str, int] = {}
    for pid in ids:
        for seq in cache.sequences:
            folder = root / pid
            src = nifti_path(folder, seq) or (folder / seq if (folder / seq).is_dir() else None)
            if src is None:
                continue
            try:
                code, plane = image_orientation(src)
            except (OSError, RuntimeError, ValueError):
                continue
            planes[plane] = planes.get(plane, 0) + 1
            codes[code] = codes.get(code, 0) + 1
    if not planes:
        return None
    return {"planes": planes, "codes": codes,
            "note": "orientation of the source files; images are reoriented to LPS before cropping"}


# ---------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------
def load_model(model_dir, backend: str = "auto", threads: int = 0) -> ExportedModel:
    """Load an exported model folder; never unpickles.

    Args:
        model_dir: the folder written by :func:`export_model` (or its ``model.json``).
        backend: ``auto`` (the fastest backend of the folder whose agreement with PyTorch was
            accepted at export: int8, ONNX float32, PyTorch), ``onnx`` or ``torch``
            (:func:`dlmvi.model.backend.select_backend`). The backend's file is checked against
            its SHA-256 in model.json.
        threads: CPU threads of the ONNX Runtime session (0: its default).

    Raises:
        ModelError: not an exported model, a pickle file, a format version or a setting this
            version of dlmvi cannot honour, weights that do not match model.json.
    """
    import dlmvi
    from dlmvi.model.checkpoint import adopt, read_state
    from dlmvi.model.network import NetworkConfig
    from dlmvi.preprocess.cache import PrepareConfig

    path, jpath, doc = _read_model_json(model_dir)
    for key in ("network", "sequences", "prepare", "weights"):
        if key not in doc:
            raise ModelError(f"{jpath}: the entry {key!r} is missing; re-export the model with `dlmvi export`")
    try:
        net_cfg = NetworkConfig.from_dict(doc["network"])
        prepare = PrepareConfig.from_dict(doc["prepare"])
    except ModelError as exc:
        raise ModelError(f"{jpath}: {exc}") from None
    except (ConfigError, TypeError, KeyError, ValueError) as exc:
        raise ModelError(f"{jpath}: a network or preparation setting this version cannot honour ({exc}); "
                         "upgrade dlmvi or re-export the model") from None
    seqs = list(doc["sequences"])
    if len(seqs) != net_cfg.n_sequences or any(s not in prepare.sequences for s in seqs):
        raise ModelError(f"{jpath}: the network fuses {net_cfg.n_sequences} sequences but {seqs} are listed "
                         f"(prepared: {list(prepare.sequences)}); re-export the model")
    harm = doc.get("harmonization")
    if harm:
        from dlmvi.preprocess.harmonize import HARMONIZATION_FORMAT, METHODS

        if harm.get("method") not in METHODS or harm.get("format", HARMONIZATION_FORMAT) != HARMONIZATION_FORMAT:
            raise ModelError(f"{jpath}: harmonisation {harm.get('method')!r} ({harm.get('format')}) cannot be "
                             f"applied by dlmvi {dlmvi.__version__} (it knows {', '.join(METHODS)}); upgrade dlmvi")
    nomogram = doc.get("nomogram")
    if nomogram:
        _nomogram_model(nomogram, jpath)  # refuses an incomplete nomogram now, not at prediction
    dl_thr, risk_thr = model_thresholds(doc)

    wname = str(doc["weights"].get("file", ""))
    if Path(wname).name != wname or not wname.endswith(".safetensors"):
        raise ModelError(f"{jpath}: weights file {wname!r} refused; only a .safetensors file inside the model "
                         "folder is loaded (never a pickle)")
    wpath = path / wname
    if not wpath.is_file():
        raise ModelError(f"{path}: {wname} is missing; copy the whole model folder")
    state = read_state(wpath, doc, jpath)
    chosen, paths = _choose_backend(doc, path, backend)
    module = None
    if chosen == "torch":  # else built on first use: the encoder runs in ONNX Runtime
        from dlmvi.model.network import build_network

        module = adopt(build_network, net_cfg, state, wpath, jpath)
    return ExportedModel(
        module=module, state=state, network=net_cfg, prepare=prepare, harmonization=harm or None,
        nomogram=nomogram or None, dl_threshold=dl_thr, risk_threshold=risk_thr,
        training_data=doc.get("training_data") or {}, config=doc, path=path, backend=chosen, backend_paths=paths,
        threads=int(threads),
    )


def _read_model_json(model_dir):
    """(model folder, its model.json, the document) after the checks every reader needs: no
    pickle, a folder, valid JSON of a format and features this version can honour."""
    import dlmvi
    from dlmvi.model.checkpoint import refuse_pickle

    path = Path(model_dir)
    refuse_pickle(path, "an exported dlmvi model is a folder with model.json + model.safetensors (`dlmvi export`)")
    if path.is_file() and path.name == CONFIG_NAME:
        path = path.parent
    if not path.is_dir():
        raise ModelError(f"{path}: no such model folder; create one with `dlmvi export RUN {path}`")
    jpath = path / CONFIG_NAME
    if not jpath.is_file():
        raise ModelError(f"{path}: no {CONFIG_NAME}; this is not an exported dlmvi model (use `dlmvi export RUN {path}`)")
    try:
        doc = json.loads(jpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{jpath}: not valid JSON ({exc}); re-export the model") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{jpath}: not a dlmvi model description; re-export the model")
    _check_format(doc, jpath, dlmvi.__version__)
    unknown = sorted(set(doc.get("requires") or []) - KNOWN_FEATURES)
    if unknown:
        raise ModelError(
            f"{jpath}: the model requires {', '.join(unknown)}, which dlmvi {dlmvi.__version__} does not "
            f"implement (written by dlmvi {doc.get('dlmvi_version', '?')}); upgrade dlmvi"
        )
    return path, jpath, doc


def _choose_backend(doc: dict, path: Path, backend: str) -> tuple[str, dict]:
    """(backend name, {name: file}) for :func:`load_model`; ``torch`` needs no file."""
    from dlmvi.model.backend import CHOICES, select_backend

    if backend not in CHOICES or backend == "torch":  # an unknown name is refused before any file is read
        return select_backend(backend, ()), {}
    from dlmvi.deploy.backend import backend_files

    paths = backend_files(doc, path)
    return select_backend(backend, paths), paths


def model_thresholds(doc: dict) -> tuple[float, float]:
    """``(dl_threshold, risk_threshold)`` of a model.json: its ``decision``; a folder exported
    before thresholds were recorded used the study's (:data:`~dlmvi.constants.DL_THRESHOLD`,
    :data:`~dlmvi.constants.RISK_THRESHOLD`), which is what it gets, with a warning."""
    decision = doc.get("decision") or {}
    if "dl_threshold" not in decision or "risk_threshold" not in decision:
        warnings.warn(f"model.json records no decision thresholds; the study's are used (DL-MVI {DL_THRESHOLD}, "
                      f"nomogram risk {DEFAULT_THRESHOLD}); re-export the model to record them", DlmviWarning,
                      stacklevel=2)
    return (float(decision.get("dl_threshold", DL_THRESHOLD)),
            float(decision.get("risk_threshold", DEFAULT_THRESHOLD)))


def _check_format(doc: dict, jpath: Path, version: str) -> None:
    fmt = doc.get("format")
    if fmt == MODEL_FORMAT:
        return
    if isinstance(fmt, str) and fmt.startswith(MODEL_FORMAT_NAME + "/"):
        raise ModelError(
            f"{jpath}: model format version {fmt.split('/', 1)[1]!r} (written by dlmvi "
            f"{doc.get('dlmvi_version', '?')}); dlmvi {version} reads version {MODEL_FORMAT_VERSION} only; "
            "use the dlmvi version that exported it, or re-export the run with this one"
        )
    raise ModelError(
        f"{jpath}: format {fmt!r} is not an exported dlmvi model ({MODEL_FORMAT}); "
        "a training checkpoint is exported with `dlmvi export RUN MODEL_DIR`"
    )


def _nomogram_model(nom: dict, where):
    """The exported nomogram as a :class:`~dlmvi.stats.nomogram.NomogramModel`."""
    from dlmvi.stats.nomogram import NomogramModel

    try:
        return NomogramModel.from_json(nom)
    except StatisticsError as exc:
        raise ModelError(f"{where}: {exc}; rerun `dlmvi clinical` and re-export") from None


__all__ = ["ExportedModel", "export_model", "load_model", "training_summary", "model_thresholds",
           "MODEL_FORMAT", "DEFAULT_THRESHOLD"]
