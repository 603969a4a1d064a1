"""Preoperative prediction for one new patient: MRI + tumour ROI + AFP -> MVI risk.

:func:`predict_patient` takes an exported model folder (``dlmvi export``) and the patient's
folder laid out like a cohort's ``images/<patient_id>/``::

    PATIENT_DIR/
      T1.nii.gz     T1_roi.nii.gz      (or a DICOM series folder T1/, and the ROI as NIfTI,
      T1V.nii.gz    T1V_roi.nii.gz      or boxes given with ``boxes=``)
      T1D.nii.gz    T1D_roi.nii.gz

It checks the inputs against what the model was trained on (every sequence present, the
acquisition plane, the voxel spacing range), crops and normalises exactly as ``dlmvi
prepare`` and training did (same key-slice choice, box, resizing, normalisation and, for a
model trained on a harmonised cache, the same harmonisation map), and returns a typed
:class:`PatientPrediction`:

* the DL-MVI probability from the first key slice of each sequence, as in the study, and its
  spread over all ``3 ** k`` slice combinations (27 for 3 sequences). The encoder runs once per
  (sequence, slice) - 9 passes for 3 sequences - and only the final fully connected layer runs
  per combination;
* the nomogram risk with a 95 % confidence interval (delta method on the logit: the
  standard error of ``x' beta`` is ``sqrt(x' V x)`` with ``V`` the coefficients' covariance),
  and the decision at the model's threshold;
* optionally (``explain=True``) a Grad-CAM heatmap per sequence (MONAI's GradCAM on the
  shared encoder's last bottleneck block, evaluated for each sequence branch).

Nothing identifying is read from DICOM headers: the patient is named by the folder name or
``patient_id``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from dlmvi.errors import CohortError, CohortWarning, ConfigError

#: Relative tolerance on the training spacing range before warning.
SPACING_RTOL = 0.05


@dataclass(frozen=True)
class SliceSpread:
    """DL-MVI probability over every slice combination (mm-free: probabilities 0-1).

    Attributes:
        min, median, max, sd: of the ``n`` combination probabilities (sd with ddof 0).
        n: number of combinations (``n_slices ** k``).
    """

    min: float
    median: float
    max: float
    sd: float
    n: int


@dataclass(frozen=True)
class NomogramRisk:
    """The nomogram's risk of MVI for this patient.

    Attributes:
        risk: probability of MVI (0-1).
        ci_low, ci_high: 95 % confidence interval (delta method on the logit).
        linear_predictor: ``intercept + sum(beta * x)`` (log odds).
        se: its standard error.
        inputs: {model input (e.g. ``"afp > 20"``): value used (0/1 or as is)}.
        formula: the nomogram as text.
    """

    risk: float
    ci_low: float
    ci_high: float
    linear_predictor: float
    se: float
    inputs: dict
    formula: str


@dataclass
class PatientPrediction:
    """Result of :func:`predict_patient` (JSON with :meth:`to_dict`).

    Attributes:
        patient_id: the folder name or the given id (never a DICOM field).
        probability: DL-MVI probability of MVI present (first key slice of each sequence, as
            in the study; the mean over all combinations if the model was trained so).
        probability_first_slice: the first-slice probability.
        dl_mvi: 1 when ``probability >= dl_threshold``.
        dl_threshold: DL-MVI threshold (0.5 in the study).
        spread: over all slice combinations.
        combination_probabilities: one per combination, in the order of ``combinations``.
        combinations: (n, k) slice index (0-2) per combination and sequence.
        class_probabilities: {class name: probability}, first slice of each sequence.
        afp: the AFP value given (ng/mL).
        nomogram: the nomogram risk with its CI, or None (model without nomogram, no AFP).
        threshold: risk at or above which the decision is "MVI likely".
        decision: "MVI likely" or "MVI unlikely".
        decision_basis: "nomogram" or "DL-MVI" (no nomogram available).
        sequences: the model's sequences.
        key_slices: {sequence: axial slice indices (LPS, 0-based)}.
        boxes: {sequence: (y0, x0, y1, x1)} crop box in LPS voxels (end exclusive).
        spacing_mm: {sequence: (x, y, z)} voxel size in mm.
        orientation: {sequence: {"code", "plane"}} of the source files.
        input_warnings: input checks that failed without stopping the prediction.
        sequences_used, sequences_missing: the sequences the prediction used and those the
            patient lacks (their branch blanked; only for a model trained with sequence
            dropout).
        missing_cost: what the missing sequences cost on the development cohort (measured at
            training time: out-of-fold AUC with all sequences and without each missing one).
        site: the site recalibration applied (name, method, the model's own probability and
            nomogram risk before it), or None.
        backend: the inference backend (name, precision, runtime) and its agreement with
            PyTorch measured at export (:attr:`~dlmvi.deploy.model.ExportedModel.backend_info`).
        synthetic: the model was trained on synthetic (phantom) data.
        model_dir: the model folder.
        seconds: wall time per step (load, images, network, total).
        patches: (k, n_slices, S, S) network input (not in :meth:`to_dict`).
        gradcam: (k, S, S) Grad-CAM of the first-slice input, 0-1 on a common scale, or None.
    """

    patient_id: str
    probability: float
    probability_first_slice: float
    dl_mvi: int
    dl_threshold: float
    spread: SliceSpread
    combination_probabilities: np.ndarray
    combinations: np.ndarray
    class_probabilities: dict
    afp: float | None
    nomogram: NomogramRisk | None
    threshold: float
    decision: str
    decision_basis: str
    sequences: tuple[str, ...]
    key_slices: dict
    boxes: dict
    spacing_mm: dict
    orientation: dict
    input_warnings: list[str]
    synthetic: bool
    model_dir: str
    seconds: dict = field(default_factory=dict)
    patches: np.ndarray | None = None
    gradcam: np.ndarray | None = None
    gradcam_class: str | None = None
    sequences_used: tuple[str, ...] = ()
    sequences_missing: tuple[str, ...] = ()
    missing_cost: dict | None = None
    site: dict | None = None
    backend: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready summary (no image arrays)."""
        from dlmvi.constants import SYNTHETIC_NOTICE

        d = {
            "patient_id": self.patient_id,
            "probability": self.probability,
            "probability_first_slice": self.probability_first_slice,
            "dl_mvi": self.dl_mvi,
            "dl_threshold": self.dl_threshold,
            "spread": asdict(self.spread),
            "combination_probabilities": [
                {"slices": dict(zip(self.sequences, map(int, c))), "probability": float(p)}
                for c, p in zip(self.combinations, self.combination_probabilities)
            ],
            "class_probabilities": self.class_probabilities,
            "afp_ng_ml": self.afp,
            "nomogram": asdict(self.nomogram) if self.nomogram else None,
            "threshold": self.threshold,
            "decision": self.decision,
            "decision_basis": self.decision_basis,
            "sequences": list(self.sequences),
            "key_slices": self.key_slices,
            "boxes": {s: list(b) for s, b in self.boxes.items()},
            "spacing_mm": {s: list(v) for s, v in self.spacing_mm.items()},
            "orientation": self.orientation,
            "input_warnings": list(self.input_warnings),
            "sequences_used": list(self.sequences_used or self.sequences),
            "sequences_missing": list(self.sequences_missing),
            "missing_cost": self.missing_cost,
            "site": self.site,
            "backend": self.backend,
            "synthetic": self.synthetic,
            "model_dir": self.model_dir,
            "seconds": self.seconds,
            "notice": "Research use only; not a medical device. Not for diagnosis or treatment decisions.",
        }
        if self.synthetic:
            d["synthetic_notice"] = SYNTHETIC_NOTICE
        return d


@dataclass(frozen=True)
class FirstAnswer:
    """The answer a radiologist reads first (``dlmvi serve``'s fast response): ready after the
    first key slice of every sequence has been encoded (k encoder passes), before the spread
    over the slice combinations and the Grad-CAM.

    For a model whose probability is the mean over all combinations (``tta``), the probability
    needs every combination: the first answer then comes with the full one.

    Attributes:
        patient_id, probability, dl_mvi, dl_threshold, nomogram, threshold, decision,
        decision_basis, synthetic: as in :class:`PatientPrediction`.
        backend: the inference backend (``torch``, ``onnx``, ``onnx-int8``).
        seconds: wall time from the call of :func:`predict_patient` to this answer.
        complete: True when every slice combination is already in (a TTA model: its probability
            is their mean); False: the spread follows.
    """

    patient_id: str
    probability: float
    dl_mvi: int
    dl_threshold: float
    nomogram: NomogramRisk | None
    threshold: float
    decision: str
    decision_basis: str
    synthetic: bool
    backend: str
    seconds: float
    complete: bool = False

    def to_dict(self) -> dict:
        from dlmvi.constants import SYNTHETIC_NOTICE

        d = asdict(self)
        d["notice"] = "Research use only; not a medical device. Not for diagnosis or treatment decisions."
        if self.synthetic:
            d["synthetic_notice"] = SYNTHETIC_NOTICE
        return d


def predict_patient(
    model_dir,
    patient_dir,
    afp: float | None = None,
    *,
    patient_id: str | None = None,
    boxes=None,
    clinical: Mapping[str, float] | None = None,
    threshold: float | None = None,
    spread: bool = True,
    explain: bool = False,
    model=None,
    compiled: bool = False,
    site: str | None = None,
    backend: str = "auto",
    on_first: Callable[[FirstAnswer], None] | None = None,
) -> PatientPrediction:
    """Predict MVI for one patient from files on disk.

    Long because its fifteen options each take a line of the signature and of this docstring; the
    work is some 35 lines of named steps (checks, preparation, network, answer, Grad-CAM).

    Args:
        model_dir: folder written by ``dlmvi export`` (ignored when ``model`` is given).
        patient_dir: the patient's folder: ``<SEQ>.nii.gz`` (or a DICOM series folder
            ``<SEQ>/``) and ``<SEQ>_roi.nii.gz`` per sequence of the model.
        afp: alpha-fetoprotein, ng/mL (the nomogram uses AFP > 20 ng/mL). None: no nomogram.
        patient_id: name used in outputs (default: the folder's name).
        boxes: tumour boxes instead of ROI masks: ``{sequence: [(slice, x0, y0, x1, y1), ...]}``
            in the image file's voxel indices (0-based, inclusive, as in rois.csv), or the
            path of a rois.csv (rows of this patient id are used).
        clinical: values of further nomogram predictors, {column: value} (clinical.csv units).
        threshold: nomogram risk for "MVI likely" (default: the model's, 0.5 unless set at export).
        spread: also compute the probability of every slice combination (``n_slices ** k``);
            False stops after the first slices (k encoder passes instead of ``k * n_slices``)
            and reports a spread of that one combination.
        explain: compute Grad-CAM heatmaps (for the card).
        model: an already loaded :class:`~dlmvi.deploy.model.ExportedModel` (saves loading time;
            its backend, chosen when it was loaded, is used).
        compiled: with the PyTorch backend, run the encoder compiled for inference
            (:meth:`~dlmvi.deploy.model.ExportedModel.inference_encoder`: compiling once costs
            about as much as one eager prediction, each later patient about 2.4x less CPU; for a
            server). The probabilities agree with the eager encoder's to float precision.
        site: name of a site calibrated with ``dlmvi recalibrate`` (``MODEL_DIR/sites/NAME.json``)
            or the path of its file: the DL-MVI probability (and the nomogram risk, when the
            site has its update) are recalibrated; the model's own values are kept in ``site``.
        backend: when the model is loaded here: ``auto``, ``onnx`` or ``torch``
            (:func:`dlmvi.deploy.model.load_model`).
        on_first: called with the :class:`FirstAnswer` as soon as it is ready (before the
            spread and the Grad-CAM), on the calling thread.

    Returns:
        :class:`PatientPrediction`.

    Raises:
        CohortError: a sequence or ROI is missing or unreadable (names patient, sequence, file).
        ModelError: the model folder cannot be loaded.
    """
    from dlmvi.deploy.model import load_model

    t0 = time.perf_counter()
    em = model if model is not None else load_model(model_dir, backend=backend)
    t_load = time.perf_counter()
    pdir = Path(patient_dir)
    pid = str(patient_id) if patient_id else pdir.name
    thr = _check_request(em, pdir, pid, afp, threshold)
    site_doc = _site_document(em, site)
    prepared = prepare_patient(em, pdir, pid, boxes)
    t_img = time.perf_counter()
    answer = _Answer(em, pid, afp, clinical, thr, site_doc)
    first: list = []

    def first_ready(probs_first):
        first.append(time.perf_counter())
        if on_first is not None and not em.tta:
            on_first(answer.first(probs_first, first[0] - t0))

    combos, probs = _network(em, prepared["patches"], spread or em.tta, compiled, first_ready)
    t_net = time.perf_counter()
    out = answer.outputs(probs)
    if on_first is not None and em.tta:
        on_first(answer.first_of(out, t_net - t0, complete=True))  # a TTA model's probability needs them all
    result = _patient_result(em, pid, afp, thr, prepared, combos, out)
    if explain and not prepared["missing"]:
        _explain(result, em, prepared["patches"], probs)
    t_end = time.perf_counter()
    result.seconds = {"load_model": round(t_load - t0, 4), "images": round(t_img - t_load, 4),
                      "network": round(t_net - t_img, 4), "to_probability": round(first[0] - t0, 4),
                      "total": round(t_end - t0, 4)}
    return result


def _patient_result(em, pid: str, afp, thr: float, prepared: dict, combos, out: dict) -> "PatientPrediction":
    return PatientPrediction(
        patient_id=pid, probability=out["prob"], probability_first_slice=out["first"], dl_mvi=out["dl_mvi"],
        dl_threshold=em.dl_threshold, spread=out["spread"], combination_probabilities=out["p_present"],
        combinations=combos, class_probabilities=out["class_probs"], afp=None if afp is None else float(afp),
        nomogram=out["nomogram"], threshold=thr, decision=out["decision"], decision_basis=out["basis"],
        sequences=em.sequences, key_slices=prepared["slices"], boxes=prepared["boxes"],
        spacing_mm=prepared["spacing"], orientation=prepared["orientation"],
        input_warnings=prepared["warnings"], synthetic=em.synthetic, model_dir=str(em.path),
        patches=prepared["patches"], sequences_used=tuple(prepared["used"]),
        sequences_missing=tuple(prepared["missing"]), missing_cost=prepared["missing_cost"], site=out["site"],
        backend=em.backend_info,
    )


def _explain(result, em, patches: np.ndarray, probs: np.ndarray) -> None:
    """Grad-CAM heatmaps of the first key slices for the predicted class (MVI present, or the grade)."""
    from dlmvi.model.explain import gradcam_maps

    cls = 1 if em.classes == 2 else 1 + int(np.argmax(probs[0, 1:]))
    result.gradcam = gradcam_maps(em.model, patches[:, 0], cls)
    result.gradcam_class = em.class_names[cls]


def _network(em, patches: np.ndarray, spread: bool, compiled: bool, first_ready) -> tuple[np.ndarray, np.ndarray]:
    """The class probabilities of the slice combinations, the first key slices first.

    The encoder runs k times for the study's combination (0, ..., 0); ``first_ready`` gets its
    class probabilities; then the other slices (``k * (n_slices - 1)`` passes) when ``spread``.

    Returns:
        (combinations (C, k), class probabilities (C, n_classes) float64).
    """
    import torch

    from dlmvi.model.inference import all_combinations, combination_probabilities, slice_features

    k, n_slices = len(em.sequences), em.prepare.n_slices
    combos = all_combinations(n_slices, k) if spread else np.zeros((1, k), dtype=np.int64)
    cl = torch.channels_last  # oneDNN's fast layout on CPU (PyTorch's eager encoder)
    enc = em.encoder(compiled=compiled)
    net = em.model if enc is None else em.fusion  # an ONNX backend needs the fusion layer only
    if enc is None:
        net.encoder.to(memory_format=cl)
    x = torch.from_numpy(patches)[None]  # (1, k, n_slices, S, S)
    with torch.inference_mode():
        feats = slice_features(net, x, [0], memory_format=cl, encoder=enc)
        p_first = combination_probabilities(net, feats, combos[:1])[0, 0].double().numpy()
        first_ready(p_first)
        if spread:
            rest = slice_features(net, x, range(1, n_slices), memory_format=cl, encoder=enc)
            feats = torch.cat([feats, rest], dim=2)
        probs = combination_probabilities(net, feats, combos)[0].double().numpy()
    probs[0] = p_first  # combination (0, ..., 0): the study's input, the same numbers as above
    return combos, probs


class _Answer:
    """From class probabilities to the patient's answer: the site's recalibration, the DL-MVI
    decision, the nomogram risk and the decision (the same steps for the first answer and the
    full one)."""

    def __init__(self, em, pid: str, afp, clinical, thr: float, site_doc):
        self.em, self.pid, self.afp, self.clinical, self.thr, self.site_doc = em, pid, afp, clinical, thr, site_doc

    def outputs(self, probs: np.ndarray) -> dict:
        """Everything :class:`PatientPrediction` takes from the (C, n_classes) probabilities."""
        em, site_doc = self.em, self.site_doc
        p_present = probs[:, 1:].sum(axis=1)
        first = float(p_present[0])  # combination (0, ..., 0) comes first
        prob = float(p_present.mean()) if em.tta else first
        dl_mvi = int(prob >= em.dl_threshold)
        model_prob, model_dl_mvi = prob, dl_mvi  # the nomogram was fitted on the model's own DL-MVI
        site_info = None
        if site_doc is not None:
            from dlmvi.stats.recalibration import apply_site

            prob = float(apply_site([prob], site_doc, "dl")[0])
            dl_mvi = int(prob >= em.dl_threshold)
            p_present = apply_site(p_present, site_doc, "dl")  # the spread on the site's scale too
            first = float(p_present[0])
            site_info = _site_info(site_doc, model_prob, model_dl_mvi)
        spread = SliceSpread(min=float(p_present.min()), median=float(np.median(p_present)),
                             max=float(p_present.max()), sd=float(p_present.std()), n=len(p_present))
        names = em.class_names
        nom = _patient_nomogram(em, self.afp, self.clinical, model_dl_mvi, model_prob, site_doc, site_info)
        if nom is not None:
            decision, basis = ("MVI likely" if nom.risk >= self.thr else "MVI unlikely"), "nomogram"
        else:
            decision, basis = ("MVI likely" if dl_mvi else "MVI unlikely"), "DL-MVI"
        return {"prob": prob, "first": first, "dl_mvi": dl_mvi, "p_present": p_present, "spread": spread,
                "class_probs": {names[j]: float(probs[0, j]) for j in range(probs.shape[1])}, "nomogram": nom,
                "decision": decision, "basis": basis, "site": site_info}

    def first(self, probs_first: np.ndarray, seconds: float) -> FirstAnswer:
        """The first answer from the class probabilities of the first key slices."""
        return self.first_of(self.outputs(np.asarray(probs_first)[None]), seconds)

    def first_of(self, out: dict, seconds: float, complete: bool = False) -> FirstAnswer:
        em = self.em
        return FirstAnswer(patient_id=self.pid, probability=out["prob"], dl_mvi=out["dl_mvi"],
                           dl_threshold=em.dl_threshold, nomogram=out["nomogram"], threshold=self.thr,
                           decision=out["decision"], decision_basis=out["basis"], synthetic=em.synthetic,
                           backend=em.backend, seconds=round(seconds, 4), complete=complete)


def _check_request(em, pdir: Path, pid: str, afp, threshold) -> float:
    """The patient's folder exists, AFP is a number, the threshold a probability; returns the threshold."""
    if not pdir.is_dir():
        raise CohortError(f"patient {pid}: {pdir} is not a folder; give the patient's folder with "
                          f"{', '.join(s + '.nii.gz' for s in em.sequences)} and their _roi masks")
    if afp is not None and not (isinstance(afp, (int, float)) and math.isfinite(afp) and afp >= 0):
        raise ConfigError(f"patient {pid}: AFP {afp!r} must be a non-negative number in ng/mL")
    thr = em.risk_threshold if threshold is None else float(threshold)
    if not 0.0 < thr < 1.0:
        raise ConfigError(f"threshold {thr} must be a probability between 0 and 1")
    return thr


def _site_document(em, site):
    """The site calibration ``site`` of the model (checked to be for its weights), or None."""
    if site is None:
        return None
    from dlmvi.stats.recalibration import check_site_model, read_site

    site_doc = read_site(em.path, site)
    check_site_model(site_doc, em.config.get("weights_sha256"))
    return site_doc


def _site_info(site_doc: dict, model_prob: float, model_dl_mvi: int) -> dict:
    return {"site": site_doc["site"], "method": site_doc["method"], "formula": site_doc["dl"]["formula"],
            "model_probability": model_prob, "model_dl_mvi": model_dl_mvi,
            "fitted_on": f"{site_doc['n']} patients ({site_doc['n_events']} with MVI)",
            "nomogram_recalibrated": bool(site_doc.get("nomogram"))}


def _patient_nomogram(em, afp, clinical, model_dl_mvi: int, model_prob: float, site_doc, site_info):
    """The nomogram risk (on the site's scale when the site has its update), or None without a
    nomogram or AFP. The nomogram was fitted on the model's own DL-MVI, so it takes that."""
    if em.nomogram is None or afp is None:
        return None
    values = {"afp": afp, "dl_mvi": model_dl_mvi, "dl_prob": model_prob, **dict(clinical or {})}
    nom = nomogram_risk(em.nomogram, values)
    if site_doc is not None and site_doc.get("nomogram"):
        from dlmvi.stats.recalibration import apply_site

        site_info["model_nomogram_risk"] = nom.risk
        new = apply_site([nom.risk, nom.ci_low, nom.ci_high], site_doc, "nomogram")
        # the CI is the model's, mapped through the (monotone) update: it ignores the
        # update's own uncertainty
        nom = NomogramRisk(risk=float(new[0]), ci_low=float(new[1]), ci_high=float(new[2]),
                           linear_predictor=float(np.log(new[0] / (1 - new[0]))), se=nom.se, inputs=nom.inputs,
                           formula=nom.formula + f"; recalibrated to site {site_doc['site']}")
    return nom


def prepare_patient(em, patient_dir: Path, patient_id: str, boxes=None, sources=None) -> dict:
    """Check one patient's files against the model and turn them into its input.

    Checks what a cohort's ``dlmvi validate`` cannot know: every sequence of the model is
    present, in the plane the model was trained on, with a voxel spacing inside the training
    range (a warning otherwise). The images then go through
    :func:`dlmvi.preprocess.patches.patient_input`, the path training's patches took.

    Args:
        sources: the patient's sources as a cohort found them (``dlmvi predict MODEL COHORT``:
            the cohort's volumes.toml and rois.csv applied); None: found in ``patient_dir``.

    Returns:
        dict with ``patches`` ((k, n_slices, S, S) float32, the network input), ``slices``,
        ``boxes``, ``spacing``, ``orientation`` (per sequence) and ``warnings``.
    """
    from dlmvi.cohort.patient import Patient
    from dlmvi.cohort.validate import check_patient
    from dlmvi.io.images import image_orientation
    from dlmvi.preprocess.patches import patient_input

    if sources is None:
        sources = patient_sequences(em.sequences, patient_dir, patient_id, boxes, allow_missing=True)
    patient_dir = Path(patient_dir)
    missing, used, cost = _check_sequences(em, sources, patient_dir, patient_id)
    patient = Patient(patient_id, cohort="", mvi_grade="", sources=sources)

    expected_planes = set((em.training_data.get("orientation") or {}).get("planes") or {"axial": 1})
    spacing_range = em.training_data.get("spacing_mm") or {}
    out = {"slices": {}, "boxes": {}, "spacing": {}, "orientation": {}, "warnings": [], "used": used,
           "missing": missing, "missing_cost": cost}
    for seq in used:
        src = sources[seq]
        try:
            code, plane = image_orientation(src.image)
        except (OSError, RuntimeError, ValueError) as exc:
            code, plane = "?", "?"
            msg = (f"patient {patient_id}, {seq}: the orientation of {src.image.name} could not be read ({exc}); "
                   f"it was NOT checked that it was acquired {'/'.join(sorted(expected_planes))} like the training "
                   "images")
            warnings.warn(msg, CohortWarning, stacklevel=2)
            out["warnings"].append(msg)
        out["orientation"][seq] = {"code": code, "plane": plane}
        if plane != "?" and plane not in expected_planes:
            raise CohortError(
                f"patient {patient_id}, {seq}: {src.image.name} was acquired {plane} but the model was "
                f"trained on {', '.join(sorted(expected_planes))} images; give the "
                f"{'/'.join(sorted(expected_planes))} series of {seq}"
            )
    # the checks of `dlmvi validate` (readable, on one grid, not blank, mask not inverted, ...)
    loaded, problems = check_patient(patient, used)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise CohortError("; ".join(f"patient {p.patient_id}, {p.sequence}: {p.message} ({p.file})" for p in errors))
    patches, xu = patient_input(patient, used, em.prepare, em.harmonization, em.network.input_size, loaded=loaded)
    x = np.zeros((len(em.sequences), *xu.shape[1:]), dtype=np.float32)  # a missing branch: 0, as in training
    for j, seq in enumerate(used):
        x[em.sequences.index(seq)] = xu[j]
    if missing:
        msg = (f"patient {patient_id}: sequence(s) {', '.join(missing)} missing; predicted from "
               f"{', '.join(used)} with the missing branch(es) blanked (the model was trained with sequence dropout)")
        if cost:
            msg += "; development AUC " + ", ".join(
                f"{cost['auc_all_sequences']:.2f} with all sequences vs {cost['auc_without'][m]:.2f} without {m}"
                for m in missing if cost["auc_without"].get(m) is not None)
        warnings.warn(msg, CohortWarning, stacklevel=3)
        out["warnings"].append(msg)
    for sp in patches:
        seq = sp.sequence
        out["spacing"][seq] = tuple(round(v, 6) for v in sp.spacing)
        msg = _spacing_warning(sp.spacing, spacing_range.get(seq) or spacing_range.get("all"))
        if msg:
            text = f"patient {patient_id}, {seq}: {msg}"
            warnings.warn(text, CohortWarning, stacklevel=3)
            out["warnings"].append(text)
        out["slices"][seq] = list(sp.slices)
        out["boxes"][seq] = sp.box
    out["patches"] = x
    return out


def _check_sequences(em, sources, patient_dir: Path, patient_id: str):
    """The model's sequences the patient lacks (refused unless the model was trained with
    sequence dropout), those it has (each with an ROI), and what the missing ones cost."""
    missing = [seq for seq in em.sequences if sources.get(seq) is None]
    used = [seq for seq in em.sequences if seq not in missing]
    cost = _missing_cost(em, missing)
    if missing:
        dropout = float((em.config.get("robustness") or {}).get("sequence_dropout") or 0.0)
        seq = missing[0]
        where = (f"expected the file {patient_dir / (seq + '.nii.gz')} or the DICOM series folder "
                 f"{patient_dir / seq}/ (the model uses {', '.join(em.sequences)})")
        if not used:
            raise CohortError(f"patient {patient_id}, {seq}: sequence {seq} is missing, and every other "
                              f"sequence too; {where}")
        if dropout <= 0:
            measured = ""
            if cost and all(cost["auc_without"].get(m) is not None for m in missing):
                measured = "; with " + ", ".join(f"{m} missing its development AUC falls from "
                                                f"{cost['auc_all_sequences']:.2f} to {cost['auc_without'][m]:.2f}"
                                                for m in missing)
            raise CohortError(f"patient {patient_id}, {seq}: sequence {seq} is missing; {where}. This model was "
                              f"trained without sequence dropout and cannot score a patient without {seq}{measured}; "
                              "retrain with `--sequence-dropout 0.2` to tolerate a missing sequence")
    for seq in used:
        src = sources[seq]
        if src.mask is None and src.boxes is None:
            raise CohortError(
                f"patient {patient_id}, {seq}: no tumour ROI; expected the mask "
                f"{patient_dir / (seq + '_roi.nii.gz')} on the image grid, or boxes for {seq} (--rois)"
            )
    return missing, used, cost


def _missing_cost(em, missing) -> dict | None:
    """What the missing sequences cost on the development cohort (measured at training time)."""
    rem = (em.config.get("robustness") or {}).get("sequence_removed")
    if not rem or not missing:
        return None
    return {"auc_all_sequences": rem.get("auc_all_sequences"),
            "auc_without": {m: ((rem.get("auc_without") or {}).get(m) or {}).get("auc") for m in missing},
            "note": rem.get("note")}


def patient_sequences(sequences, patient_dir, patient_id: str, boxes=None, allow_missing: bool = False) -> dict:
    """The sources of the model's sequences in a patient's folder, found as a cohort's are
    (:func:`dlmvi.cohort.cohort.patient_sources`: NIfTI or DICOM series, masks, volumes.toml).

    Args:
        sequences: the model's sequences.
        patient_dir: the patient's folder.
        patient_id: named in messages (and the id of the rows taken from ``boxes``).
        boxes: as :func:`predict_patient`'s ``boxes`` (a mapping or a rois.csv path), or None.
        allow_missing: return the sequences found (a model trained with sequence dropout scores
            a patient missing some) instead of refusing a missing one.

    Returns:
        {sequence: :class:`~dlmvi.cohort.patient.SequenceSource`} for every sequence.

    Raises:
        CohortError: a sequence is missing (names the patient, the sequence and the files expected).
    """
    from dlmvi.cohort.cohort import patient_sources

    patient_dir = Path(patient_dir)
    sources = patient_sources(patient_dir, patient_id, _boxes_table(boxes, patient_id), sequences=sequences)
    for seq in sequences:
        if seq not in sources and not allow_missing:
            raise CohortError(
                f"patient {patient_id}, {seq}: sequence {seq} is missing; expected the file "
                f"{patient_dir / (seq + '.nii.gz')} or the DICOM series folder {patient_dir / seq}/ "
                f"(the model uses {', '.join(sequences)})"
            )
    return sources


def viewer_volume(source, patient_id: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A sequence as a viewer shows it, for drawing boxes: the image file's own voxel grid.

    Boxes (rois.csv, ``boxes=``) are voxel indices of this grid: ``slice`` is axis 0, ``y``
    axis 1 and ``x`` axis 2 of the returned array (for DICOM, slices in position order). The
    volume is the one :meth:`~dlmvi.cohort.patient.Patient.load` reads (volumes.toml's choice,
    DWI's highest b), not reoriented, so a box drawn on it is the box :func:`predict_patient` reads.

    Args:
        source: the sequence's :class:`~dlmvi.cohort.patient.SequenceSource`.
        patient_id: named in error messages.

    Returns:
        (float32 array (slices, y, x), voxel size (x, y, z) in mm).

    Raises:
        ImageError: the file cannot be read.
    """
    import dataclasses

    import SimpleITK as sitk

    from dlmvi.cohort.patient import read_chosen  # the volume Patient.load reads, in the file's grid
    from dlmvi.io.images import Where, check_finite

    where = Where(patient_id, source.sequence)
    img = read_chosen(dataclasses.replace(source, mask=None), where, notes=[])
    arr = sitk.GetArrayFromImage(img).astype(np.float32, copy=False)
    check_finite(arr, where, source.image)
    return arr, tuple(float(v) for v in img.GetSpacing())


def patient_folder(extracted: Path) -> Path:
    """The patient's folder inside an extracted archive.

    An archive of the patient's folder holds that folder alone (hidden entries and macOS's
    ``__MACOSX`` aside); an archive of its contents holds the files at its root.
    """
    extracted = Path(extracted)
    entries = [p for p in extracted.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir() and not _is_sequence_folder(entries[0]):
        return entries[0]
    return extracted


def _is_sequence_folder(path: Path) -> bool:
    """A DICOM series folder named after a sequence (an archive holding only ``T1/``)."""
    from dlmvi.constants import SEQUENCES

    return path.name in SEQUENCES


def _boxes_table(boxes, patient_id: str):
    """The patient's boxes as a rois.csv table, from a mapping or a rois.csv path (or None)."""
    import pandas as pd

    if boxes is None:
        return None
    if isinstance(boxes, (str, Path)):
        from dlmvi.io.tables import read_rois

        rois = read_rois(boxes)
        if not (rois["patient_id"] == patient_id).any():
            raise CohortError(f"patient {patient_id}: no row for this patient in {boxes}; "
                              "check patient_id (or pass --id)")
        return rois
    try:
        rows = [(patient_id, str(seq), *(int(v) for v in row)) for seq, seq_rows in dict(boxes).items()
                for row in seq_rows]
        return pd.DataFrame(rows, columns=["patient_id", "sequence", "slice", "x0", "y0", "x1", "y1"])
    except (TypeError, ValueError):
        raise ConfigError("boxes must map a sequence to rows (slice, x0, y0, x1, y1)") from None


def _spacing_warning(spacing, rng: dict | None) -> str | None:
    if not rng:
        return None
    lo, hi = np.asarray(rng["min"], float), np.asarray(rng["max"], float)
    s = np.asarray(spacing, float)
    bad = [(ax, v, a, b) for ax, v, a, b in zip("xyz", s, lo, hi)
           if v < a * (1 - SPACING_RTOL) or v > b * (1 + SPACING_RTOL)]
    if not bad:
        return None
    parts = ", ".join(f"{ax} {v:.3g} mm (training {a:.3g}-{b:.3g} mm)" for ax, v, a, b in bad)
    return (f"voxel spacing outside the training range: {parts}; the prediction is less reliable "
            "(the tumour crop is resized, but resolution and slice thickness differ)")


def nomogram_risk(nomogram, values: Mapping[str, float], level: float = 0.95) -> NomogramRisk:
    """One patient's nomogram risk with a Wald CI on the logit (delta method).

    Args:
        nomogram: a fitted :class:`~dlmvi.stats.nomogram.NomogramModel`, or its JSON
            (``nomogram.json`` / an exported model's ``nomogram``).
        values: {column: value} in clinical.csv units; e.g. ``{"afp": 35, "dl_mvi": 1}``.
        level: confidence level.

    Raises:
        ConfigError: a predictor of the nomogram has no value.
    """
    import pandas as pd

    from dlmvi.stats.nomogram import NomogramModel

    model = nomogram if isinstance(nomogram, NomogramModel) else NomogramModel.from_json(nomogram, level=level)
    for col in model.predictors:
        if col not in values or values[col] is None:
            raise ConfigError(
                f"the nomogram needs {col!r}; give its value (clinical.csv units), e.g. --clinical {col}=VALUE"
            )
    row = pd.DataFrame([{c: float(values[c]) for c in model.predictors}])
    iv = model.predict_interval(row, level=level).iloc[0]
    z = model.transform(row).iloc[0]
    terms = (nomogram.get("terms") if isinstance(nomogram, Mapping) else None) or {}
    inputs = {terms.get(c, model.term(c)): float(z[c]) for c in model.predictors}
    return NomogramRisk(risk=float(iv["prob"]), ci_low=float(iv["ci_low"]), ci_high=float(iv["ci_high"]),
                        linear_predictor=float(iv["lp"]), se=float(iv["se"]), inputs=inputs,
                        formula=model.formula_)


__all__ = ["predict_patient", "PatientPrediction", "FirstAnswer", "SliceSpread", "NomogramRisk", "nomogram_risk",
           "prepare_patient", "patient_sequences", "viewer_volume", "patient_folder"]
