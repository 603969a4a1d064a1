"""The model card of an exported model (``MODEL_DIR/model_card.{json,html}``).

Written by ``dlmvi export`` from what the study run measured, rewritten by ``dlmvi
recalibrate`` (its list of calibrated sites). Sections, after Mitchell et al.'s model cards:
intended use and out-of-scope uses, training data (cohorts, scanners, prevalence, sizes),
preprocessing, performance per cohort and per scanner with 95 % CIs, calibration, cohort
shift scores, what a missing sequence costs, known limitations, calibrated sites. Every
number is read from the run's outputs (``evaluate/``, ``clinical/``, ``shift/``,
``transport/``, ``train/cv_metrics.json``); nothing is recomputed, and an analysis that did
not run is said to be missing. The HTML is self-contained (no external resource, no script).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

CARD_JSON = "model_card.json"
CARD_HTML = "model_card.html"
CARD_FORMAT = "dlmvi-model-card/1"
SMALL_GROUP = 30


def _load(path: Path):
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def build_card(model_doc: dict, run_dir=None) -> dict:
    """The card's content from model.json and (when given) the study run it came from."""
    from dlmvi.layout import RunLayout

    td = model_doc.get("training_data") or {}
    card = {
        "format": CARD_FORMAT,
        "generated": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "model": {"sequences": model_doc.get("sequences"), "classes": model_doc.get("class_names"),
                  "network": model_doc.get("network"), "dlmvi_version": model_doc.get("dlmvi_version"),
                  "torch_version": model_doc.get("torch_version"),
                  "weights_sha256": model_doc.get("weights_sha256"),
                  "decision": model_doc.get("decision"), "nomogram": (model_doc.get("nomogram") or {}).get("formula")},
        "synthetic": bool(model_doc.get("synthetic")),
        "intended_use": {
            "use": "Research use: a preoperative estimate of the risk of microvascular invasion (MVI) of a "
                   "hepatocellular carcinoma planned for resection, from gadoxetic-acid enhanced liver MRI "
                   f"({', '.join(model_doc.get('sequences') or [])}) with the tumour outlined, plus AFP for the nomogram.",
            "users": "Researchers and radiologists evaluating the model; predictions are read with the images.",
            "out_of_scope": ["diagnosis or treatment decisions for an individual patient (not a medical device)",
                             "other tumours, other contrast agents or other MRI sequences than the model's",
                             "sites whose scanners, protocols or population differ from the training data without "
                             "local validation (and recalibration: `dlmvi recalibrate`)"],
        },
        "training_data": {k: td.get(k) for k in ("n", "cohorts", "n_mvi", "prevalence", "grades", "spacing_mm",
                                                  "orientation", "scanners")},
        "preprocessing": {"prepare": model_doc.get("prepare"), "normalization": model_doc.get("normalization"),
                          "harmonization": (model_doc.get("harmonization") or {}).get("method"),
                          "inference": model_doc.get("inference")},
        "robustness": model_doc.get("robustness"),
        "performance": None, "groups": None, "nomogram_validation": None, "nomogram_groups": None,
        "cross_validation": None, "shift": None, "transport": None, "sites": [],
    }
    if run_dir is not None:
        lay = RunLayout(run_dir)
        m = _load(lay.metrics_json)
        if m:
            card["performance"] = {c: {k: (v.get("binary") or {}).get(k) for k in
                                       ("n", "n_positive", "auc", "auc_ci_low", "auc_ci_high", "accuracy",
                                        "sensitivity", "specificity", "f1")}
                                   for c, v in (m.get("cohorts") or {}).items()}
        g = _load(lay.evaluate / "groups.json")
        card["groups"] = (g or {}).get("groups")
        card["scanner_source"] = (g or {}).get("scanner_source")
        nom = _load(lay.nomogram_json)
        if nom and "error" not in nom:
            card["nomogram_validation"] = nom.get("validation")
        ng = _load(lay.clinical / "groups.json")
        card["nomogram_groups"] = (ng or {}).get("groups")
        cv = _load(lay.train.cv_metrics)
        if cv:
            card["cross_validation"] = {k: cv.get(k) for k in ("auc_mean", "auc_sd", "accuracy_mean", "pooled_auc")}
        sh = _load(lay.shift_json)
        if sh:
            card["shift"] = {"reference": sh.get("reference_cohort"), "sequences": sh.get("sequences")}
        tr = _load(lay.transport_json)
        if tr:
            card["transport"] = tr.get("rows")
        rad = _load(lay.radiomics_summary)
        if rad:
            from dlmvi.stats.compare import comparison_line

            card["comparison"] = comparison_line(rad)
    card["limitations"] = limitations(card)
    return card


def limitations(card: dict) -> list[str]:
    """Known limitations, stated from the card's own numbers."""
    out = []
    if card.get("synthetic"):
        out.append("Trained and evaluated on dlmvi's SYNTHETIC phantom: no number here describes real patients.")
    cohorts = (card.get("training_data") or {}).get("cohorts") or {}
    if len(cohorts) <= 1:
        out.append(f"Developed on a single cohort ({', '.join(cohorts) or '?'}); performance elsewhere is unknown "
                   "until validated there.")
    for c, p in (card.get("performance") or {}).items():
        if _finite(p.get("auc_ci_low")) and _finite(p.get("auc_ci_high")) and p["auc_ci_high"] - p["auc_ci_low"] > 0.2:
            out.append(f"Cohort {c}: the AUC's 95 % CI is wide ({p['auc_ci_low']:.2f}-{p['auc_ci_high']:.2f}; "
                       f"n = {p.get('n')}).")
    for g in card.get("groups") or []:
        if g.get("small"):
            out.append(f"{g['group_type']} {g['group']}: only {g['n']} patients; its figures are unreliable.")
        slope = g.get("calibration_slope")
        if g.get("group_type") == "cohort" and _finite(slope) and not 0.7 <= slope <= 1.3:
            out.append(f"Cohort {g['group']}: calibration slope {slope:.2f} (1 = ideal); recalibrate before use there.")
    for seq, d in ((card.get("shift") or {}).get("sequences") or {}).items():
        for other, s in d.items():
            if _finite(s.get("separability_auc")) and s["separability_auc"] >= 0.8:
                out.append(f"{seq}: the network's features tell cohort {other} from the reference apart "
                           f"(separability AUC {s['separability_auc']:.2f}): a scanner/protocol shift.")
    rob = card.get("robustness") or {}
    costs = (rob.get("sequence_removed") or {}).get("auc_without") or {}
    if costs and not rob.get("sequence_dropout"):
        out.append("Trained without sequence dropout: a patient missing a sequence is scored far less reliably "
                   "(see 'missing sequences').")
    if not card.get("sites"):
        out.append("No site has been recalibrated yet (`dlmvi recalibrate`).")
    return out


def render_card(card: dict) -> str:
    """The card as one self-contained HTML page."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("dlmvi.deploy", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]))

    def num(v, d=3):
        return f"{v:.{d}f}" if _finite(v) else "–"

    def ci(lo, hi, d=3):
        return f"{lo:.{d}f}-{hi:.{d}f}" if _finite(lo) and _finite(hi) else "–"

    env.globals.update(num=num, ci=ci)
    return env.get_template("model_card.html").render(card=card)


def backends_summary(model_doc: dict) -> list[dict]:
    """The inference backends of the folder for the card: PyTorch, and each exported ONNX backend
    with its precision, whether it was accepted and its agreement with PyTorch measured at export."""
    rows = [{"backend": "torch", "precision": "float32", "accepted": True, "agreement": None,
             "note": "the reference; Grad-CAM always runs on it"}]
    for name, e in (model_doc.get("backends") or {}).items():
        rows.append({"backend": name, "precision": e.get("precision"), "accepted": bool(e.get("accepted")),
                     "agreement": e.get("agreement"), "calibration": e.get("calibration"),
                     "runtime": f"{e.get('runtime')} {e.get('onnxruntime_version')}", "file_sha256": e.get("file_sha256")})
    return rows


def write_model_card(model_dir, run_dir=None) -> tuple[Path, Path]:
    """Write ``model_card.json`` and ``model_card.html`` into an exported model folder.

    With ``run_dir`` the card is built from the run; without, the existing card (or
    model.json alone) is kept and only the calibrated sites and limitations are refreshed.
    """
    from dlmvi.layout import MODEL_JSON as CONFIG_NAME
    from dlmvi.io.atomic import write_json, write_text
    from dlmvi.stats.recalibration import list_sites

    model_dir = Path(model_dir)
    model_doc = json.loads((model_dir / CONFIG_NAME).read_text())
    card = build_card(model_doc, run_dir) if run_dir is not None else (_load(model_dir / CARD_JSON) or
                                                                      build_card(model_doc))
    card["backends"] = backends_summary(model_doc)  # model.json's, also when the card is kept
    card["sites"] = [{"site": s["site"], "method": s["method"], "n": s["n"], "n_events": s["n_events"],
                      "created": s.get("created"), "dl": s.get("dl"), "dl_cv": s.get("dl_cv"),
                      "nomogram": bool(s.get("nomogram"))} for s in list_sites(model_dir)]
    card["limitations"] = limitations(card)
    jpath = write_json(model_dir / CARD_JSON, card)
    hpath = write_text(model_dir / CARD_HTML, render_card(card))
    return jpath, hpath


__all__ = ["backends_summary", "build_card", "render_card", "write_model_card", "limitations", "CARD_JSON", "CARD_HTML"]
