"""The one-page patient card: MVI risk, its uncertainty, and where the network looked.

A self-contained HTML file (images embedded as PNG data URIs): patient id, DL-MVI probability
and its spread over the slice combinations, nomogram risk with its 95 % CI, threshold and
decision, and per sequence the ROI crop the network saw with its Grad-CAM heatmap. A model
trained on synthetic data gets a SYNTHETIC banner; every card says "research use, not a
medical device". Nothing identifying from DICOM headers is shown: only the patient id the
user chose (folder name or ``--id``).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from pathlib import Path

import numpy as np


def sequence_png(crop: np.ndarray, cam: np.ndarray | None, title: str) -> bytes:
    """PNG of one sequence: the crop, and the crop with the Grad-CAM overlay beside it.

    Args:
        crop: (S, S) network input (z-scored intensities).
        cam: (S, S) heatmap in [0, 1], or None (crop only).
        title: sequence name.
    """
    from dlmvi.evaluate.display import subplots

    n = 2 if cam is not None else 1
    fig, axes = subplots(1, n, figsize=(2.2 * n, 2.5), dpi=100, squeeze=False)
    lo, hi = np.percentile(crop, [1, 99])
    ax = axes[0, 0]
    ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    ax.set_title(f"{title}: ROI crop", fontsize=8)
    if cam is not None:
        ax = axes[0, 1]
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
        ax.imshow(np.ma.masked_less(cam, 0.1), cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
        ax.set_title(f"{title}: Grad-CAM", fontsize=8)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout(pad=0.6)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def render_card(result, model=None) -> str:
    """HTML of the card for a :class:`~dlmvi.deploy.patient.PatientPrediction`.

    Args:
        result: the prediction; ``result.patches`` must be set (``gradcam`` optional).
        model: the :class:`~dlmvi.deploy.model.ExportedModel` (for the training summary), optional.
    """
    import jinja2

    import dlmvi
    from dlmvi.constants import SYNTHETIC_NOTICE

    if result.patches is None:
        raise ValueError("the prediction carries no image patches; call predict_patient without dropping them")
    seqs = []
    for j, name in enumerate(result.sequences):
        cam = None if result.gradcam is None else result.gradcam[j]
        png = sequence_png(result.patches[j, 0], cam, name)
        sp = result.spacing_mm.get(name)
        seqs.append({
            "name": name,
            "png": base64.b64encode(png).decode("ascii"),
            "cam": cam is not None,
            "peak": float(cam.max()) if cam is not None else None,
            "slices": ", ".join(str(s) for s in result.key_slices.get(name, [])),
            "spacing": " x ".join(f"{v:.3g}" for v in sp) if sp else "?",
            "plane": result.orientation.get(name, {}).get("plane", "?"),
        })
    td = (model.training_data if model is not None else {}) or {}
    if td:
        cohorts = ", ".join(f"{c}: {n}" for c, n in td.get("cohorts", {}).items())
        prev = td.get("prevalence")
        training = (f"{td.get('n')} patients (cohort {cohorts}); MVI present in "
                    f"{'?' if prev is None else f'{100 * prev:.0f} %'}")
    else:
        training = "not recorded"
    env = jinja2.Environment(loader=jinja2.PackageLoader("dlmvi.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]))
    tpl = env.get_template("card.html")
    first = "first key slice of each sequence, as in the study"
    return tpl.render(
        r=result,
        seqs=seqs,
        version=dlmvi.__version__,
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        notice=SYNTHETIC_NOTICE,
        training=training,
        basis_text=("nomogram risk vs threshold" if result.decision_basis == "nomogram"
                    else "DL-MVI probability vs its threshold; no nomogram risk available"),
        no_nomogram=("not computed: no AFP given" if result.afp is None
                     else "not available: the model was exported without a nomogram"),
        input_text=(f"({first})" if abs(result.probability - result.probability_first_slice) < 1e-12
                    else "(mean over all slice combinations, as the model's nomogram was fitted)"),
        pct=lambda v: f"{100 * v:.1f} %",
        num=lambda v, d=3: f"{v:.{d}f}",
    )


def write_card(result, path, model=None) -> Path:
    """Write the card to ``path`` (atomically) and return the path."""
    from dlmvi.io.atomic import write_text

    return write_text(path, render_card(result, model))


__all__ = ["render_card", "write_card", "sequence_png"]
