"""``dlmvi predict``: a training run's (or an exported model's) predictions of a cohort or a cache.

:func:`predict_folder` does the work the command shows: it reads the site calibration first (a
wrong site name stops before any image is read), prepares a cohort on the fly with the model's own
settings when given one, predicts, applies the site's recalibration and writes the predictions
with their features and the patients not predicted. Outputs never overwrite the inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dlmvi.errors import ConfigError, ModelError
from dlmvi.layout import MODEL_JSON


@dataclass
class FolderPrediction:
    """What :func:`predict_folder` predicted and wrote.

    Attributes:
        prediction: the :class:`~dlmvi.model.inference.Prediction` (frame, features, skipped, meta).
        paths: the files written (``csv``, ``features``, ``skipped``, ...).
        site: the site recalibration applied (``site``, ``formula``, ``nomogram_recalibrated``), or None.
    """

    prediction: object
    paths: dict
    site: dict | None = field(default=None)


def _outputs(out: Path) -> list[Path]:
    from dlmvi.io.skipped import skipped_path
    from dlmvi.model.inference import features_path

    return [out, features_path(out), out.with_name(out.stem + ".json"), skipped_path(out)]


def _predict_exported(run: Path, data: Path, outputs, columns, column_map, cohort, site_doc, backend: str = "auto"):
    from dlmvi.deploy.cohort import predict_cohort
    from dlmvi.io.atomic import guard_output

    if (data / "cache.json").is_file() or not (data / "clinical.csv").is_file():
        raise ModelError(f"{data}: an exported model predicts a cohort folder (clinical.csv and images/), "
                         "the way predict-patient prepares one patient; give the cohort folder")
    guard_output(outputs, [run, data, columns])
    if site_doc is not None:
        from dlmvi.stats.recalibration import check_site_model

        check_site_model(site_doc, json.loads((run / MODEL_JSON).read_text()).get("weights_sha256"))
    return predict_cohort(run, data, column_map=column_map, cohort=cohort, backend=backend)


def _predict_checkpoint(run: Path, data: Path, out: Path, outputs, columns, column_map, cohort, site_doc, tta,
                        device, log):
    from dlmvi.io.atomic import guard_output
    from dlmvi.model.checkpoint import load_checkpoint
    from dlmvi.model.inference import predict_cache
    from dlmvi.train.engine import resolve_device

    ck = load_checkpoint(run)
    if site_doc is not None:
        from dlmvi.stats.recalibration import check_site_model

        check_site_model(site_doc, ck.meta.get("weights_sha256"))
    cache_dir = data
    on_the_fly = not (cache_dir / "cache.json").is_file()
    if on_the_fly:
        cache_dir = out.with_name(out.stem + "_cache")
        outputs.append(cache_dir)
    guard_output(outputs, [ck.path.parent, data, columns])
    if on_the_fly:
        from dlmvi.preprocess.prepare import prepare_cohort

        prep = ck.prepare
        if prep is None:
            raise ModelError(f"{ck.path}: the checkpoint does not record how its cache was prepared; "
                             "run `dlmvi prepare` on the cohort first and pass the cache")
        log(f"preparing {data} into {cache_dir} with the model's settings")
        prepare_cohort(data, cache_dir, prep, column_map)
    return predict_cache(ck, cache_dir, cohort=cohort, tta=tta, device=str(resolve_device(device)))


def predict_folder(run, data, out, *, tta: bool = False, cohort: str | None = None, columns=None,
                   column_map=None, device: str = "auto", site: str | None = None,
                   log: Callable[[str], None] = print, backend: str = "auto") -> FolderPrediction:
    """Predict every patient of ``data`` with ``run`` and write ``out`` (see the module docstring).

    Args:
        run: a run folder of ``dlmvi train``/``dlmvi study``, a checkpoint folder, or a model
            folder of ``dlmvi export``.
        data: a patch cache, or a cohort folder (an exported model needs a cohort folder).
        out: the predictions CSV to write (features and skipped patients beside it).
        columns, column_map: the column map's file (kept out of the outputs) and the map itself.
        site: a site calibration (``sites/NAME.json`` or NAME) to apply.
        backend: an exported model's inference backend (``auto``, ``onnx``, ``torch``); a training
            run has PyTorch only.

    Raises:
        ModelError: ``out`` is a folder; an exported model given a cache; a checkpoint without
            its preparation settings given a cohort; the site calibration is for other weights.
    """
    from dlmvi.model.inference import write_prediction

    run, data, out = Path(run), Path(data), Path(out)
    if out.is_dir():
        raise ModelError(f"--out {out} is a folder; give the predictions file to write, e.g. {out / 'predictions.csv'}")
    site_doc = None
    if site is not None:  # read first: a wrong site name stops before the images are read
        from dlmvi.stats.recalibration import read_site

        site_doc = read_site(run, site)
    outputs = _outputs(out)
    from dlmvi.deploy.cohort import is_exported_model

    if is_exported_model(run):
        pred = _predict_exported(run, data, outputs, columns, column_map, cohort, site_doc, backend)
    elif backend == "onnx":
        raise ConfigError(f"--backend onnx: {run} is a training run; the ONNX backends belong to an exported model "
                          f"(`dlmvi export {run} MODEL_DIR --backend onnx`)")
    else:
        pred = _predict_checkpoint(run, data, out, outputs, columns, column_map, cohort, site_doc, tta, device, log)
    info = None
    if site_doc is not None:
        from dlmvi.deploy.site import apply_site_to_prediction

        applied = apply_site_to_prediction(pred, site_doc, dl_threshold=pred.meta["threshold"],
                                           risk_threshold=pred.meta.get("risk_threshold"))
        info = {"site": site_doc["site"], "formula": site_doc["dl"]["formula"],
                "nomogram_recalibrated": applied["nomogram_recalibrated"]}
    return FolderPrediction(pred, write_prediction(pred, out), info)
