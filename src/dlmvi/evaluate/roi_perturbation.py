"""How much does the reader's box move the network's answer?

Each perturbed reader of :func:`dlmvi.preprocess.radiomics_masks.perturbations` (the same
translation, growing/shrinking, contour and noise that the radiomics reproducibility uses)
is applied to a patient's ROI on every sequence; the network's crop then follows from the
perturbed ROI exactly as ``dlmvi prepare`` crops (key slices, enlarged square box, resize,
normalisation: :func:`dlmvi.preprocess.patches.patient_input`), and the final DL-MVI model
scores it. Reader 0 is the original ROI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlmvi.errors import DlmviError

__all__ = ["dl_under_perturbation"]


def dl_under_perturbation(train_dir, cohort_dir, readers, patient_ids, column_map=None) -> tuple[pd.DataFrame, list]:
    """``dl_prob`` of the final model for each patient under each reader (0 = original ROI).

    Args:
        train_dir: the DL-MVI training folder (its ``final`` model).
        cohort_dir: the cohort folder (images and ROIs).
        readers: :class:`~dlmvi.preprocess.radiomics_masks.Perturbation` list.
        patient_ids: the patients to perturb.

    Returns:
        (``patient_id, reader, dl_prob``, [(patient, message) of patients left out]).
    """
    import warnings

    from dlmvi.cohort.cohort import Cohort
    from dlmvi.cohort.patient import LoadedSequence
    from dlmvi.errors import DlmviWarning
    from dlmvi.model.checkpoint import load_checkpoint
    from dlmvi.model.inference import predict_arrays
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.patches import patient_input
    from dlmvi.preprocess.radiomics_masks import perturb_roi

    ck = load_checkpoint(train_dir)
    prepare = PrepareConfig.from_dict(ck.meta["prepare"])
    harmonization = ck.meta.get("harmonization")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DlmviWarning)
        cohort = Cohort.from_folder(cohort_dir, column_map)
    rows, left_out = [], []
    for pid in patient_ids:
        patient = cohort.patients.get(pid)
        if patient is None:
            continue
        try:
            loaded = {s: patient.load(s, notes=[]) for s in ck.sequences}
            xs = []
            for p in [None, *readers]:
                view = loaded if p is None else {
                    s: LoadedSequence(*perturb_roi(ls.image, ls.mask, p, patient.sources[s].mask is None),
                                      ls.spacing, ls.fixed_slices) for s, ls in loaded.items()}
                xs.append(patient_input(patient, ck.sequences, prepare, harmonization, ck.network.input_size,
                                        loaded=view)[1])
        except DlmviError as exc:
            left_out.append((pid, str(exc)))
            continue
        probs, _ = predict_arrays(ck.model, np.stack(xs).astype(np.float32))
        for r, pr in enumerate(probs[:, 1:].sum(axis=1)):
            rows.append({"patient_id": pid, "reader": r, "dl_prob": float(pr)})
    return pd.DataFrame(rows, columns=["patient_id", "reader", "dl_prob"]), left_out
