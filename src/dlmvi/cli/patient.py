"""CLI commands for one patient: ``dlmvi export`` and ``dlmvi predict-patient``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dlmvi.cli.app import app


@app.command("export")
def export(
    run: Path = typer.Argument(..., help="Study folder written by `dlmvi study` (or a `dlmvi train` run)."),
    model_dir: Path = typer.Argument(..., help="Folder to write the portable model to (created)."),
    threshold: float = typer.Option(0.5, help="Nomogram risk (0-1) at or above which a patient is "
                                    "reported as 'MVI likely'."),
    backend: str = typer.Option("torch", help="torch: the weights only. onnx: also the encoder for ONNX Runtime "
                                "(faster on a CPU), its agreement with PyTorch measured on the development patients "
                                "(max |dP| <= 1e-4 or it is refused)."),
    int8: bool = typer.Option(False, "--int8", help="With --backend onnx: also the int8 encoder (static quantisation "
                              "calibrated on training crops); refused when max |dP| > 0.03 or more than 2 % of the "
                              "development decisions flip."),
):
    """Package the trained model for use on new patients: weights, preparation and
    normalisation settings, the nomogram, decision thresholds and a summary of the training
    data, in one folder that `dlmvi predict-patient` reads (no run folder or cohort needed).
    With --backend onnx [--int8] also the optimised CPU encoder(s) and their measured agreement."""
    import json

    from dlmvi.cli.app import echo_warnings
    from dlmvi.deploy.model import export_model
    from dlmvi.io.atomic import guard_output

    guard_output(model_dir, [run])
    with echo_warnings():
        path = export_model(run, model_dir, threshold=threshold, backend=backend, int8=int8,
                            progress=lambda line: typer.echo(f"  {line}"))
    doc = json.loads(path.read_text())
    td = doc.get("training_data") or {}
    typer.echo(f"model written to {model_dir} ({', '.join(doc['sequences'])}; trained on "
               f"{td.get('n', '?')} patients{'; SYNTHETIC data' if doc.get('synthetic') else ''}; "
               f"nomogram {'included' if doc.get('nomogram') else 'not included'})")
    for name, entry in (doc.get("backends") or {}).items():
        a = entry["agreement"]
        typer.echo(f"  backend {name}: max |dP| {a['max_abs_dp']:.2e} vs PyTorch over {a['n_patients']} development "
                   f"patients, {a['flips']} decision(s) flipped")


def _unpack(archive: Path, patient_id):
    """Extract a patient archive safely into a temporary folder; returns (folder, id)."""
    import atexit
    import shutil
    import tempfile

    from dlmvi.deploy.patient import patient_folder
    from dlmvi.io.archive import safe_extract

    tmp = Path(tempfile.mkdtemp(prefix="dlmvi_patient_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    safe_extract(archive, tmp / "x")
    root = patient_folder(tmp / "x")
    name = archive.name
    for ext in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".tar"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return root, patient_id or name


@app.command("predict-patient")
def predict_patient_cmd(
    model_dir: Path = typer.Argument(..., help="Model folder written by `dlmvi export`."),
    patient_dir: Optional[Path] = typer.Argument(None, help="The patient's folder: T1.nii.gz, T1_roi.nii.gz, ... "
                                                 "(or DICOM series folders T1/, ...) for each sequence of the model; "
                                                 "or a .zip/.tar.gz archive of that folder (unsafe archives are "
                                                 "refused). Not with --pacs."),
    afp: float = typer.Option(..., "--afp", help="Alpha-fetoprotein (AFP) in ng/mL."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for result.json and card.html "
                                       "(the one-page card with the heatmaps)."),
    patient_id: Optional[str] = typer.Option(None, "--id", help="Name shown on the card and in result.json "
                                             "(default: the folder's name). Avoid names and record numbers."),
    rois: Optional[Path] = typer.Option(None, "--rois", help="rois.csv with tumour boxes instead of _roi masks "
                                        "(columns patient_id, sequence, slice, x0, y0, x1, y1)."),
    clinical: Optional[List[str]] = typer.Option(None, "--clinical", help="Further nomogram inputs as "
                                                 "NAME=VALUE in clinical.csv units (repeatable)."),
    threshold: Optional[float] = typer.Option(None, help="Risk threshold for 'MVI likely' (default: the model's)."),
    threads: int = typer.Option(0, help="CPU threads for torch and ONNX Runtime (0: their default)."),
    site: Optional[str] = typer.Option(None, "--site", help="Apply the recalibration of this site "
                                       "(MODEL_DIR/sites/NAME.json, from `dlmvi recalibrate`)."),
    backend: str = typer.Option("auto", help="auto: the fastest backend the model folder holds (int8, ONNX, "
                                "PyTorch); onnx; torch (forces PyTorch)."),
    pacs: Optional[str] = typer.Option(None, "--pacs", help="Retrieve the study from this PACS ([pacs.NAME] of "
                                       "the PACS configuration) instead of PATIENT_DIR; the ROI comes from a "
                                       "SEG/RTSTRUCT of the study or --rois (patient_id: the study's pseudonym)."),
    study: Optional[str] = typer.Option(None, "--study", help="With --pacs: the StudyInstanceUID."),
    accession: Optional[str] = typer.Option(None, "--accession", help="With --pacs: the accession number."),
    store: bool = typer.Option(False, "--store", help="With --pacs: store the DICOM SR into the study on the PACS."),
    store_card: bool = typer.Option(False, "--store-card", help="With --store: also store the card's pictures "
                                    "(crops, Grad-CAM) as a DICOM secondary capture."),
    pacs_config: Optional[Path] = typer.Option(None, "--pacs-config", help="PACS configuration (TOML); "
                                               "default: ~/.config/dlmvi/pacs.toml."),
):
    """Predict microvascular invasion for one patient before surgery: DL-MVI probability
    (and its spread over the 27 slice combinations), the nomogram risk with its 95 % CI,
    and the decision at the threshold. Research use only; not a medical device."""
    import torch

    from dlmvi.cli.app import echo_warnings
    from dlmvi.deploy.model import load_model
    from dlmvi.deploy.patient import predict_patient
    from dlmvi.io.atomic import check_output_dir, guard_output

    _check_source(patient_dir, pacs, study, accession, store, store_card)
    if out is not None:  # checked before any work: a bad --out never costs a prediction
        guard_output(out, [p for p in (model_dir, patient_dir, rois) if p is not None], replaces=True)
        check_output_dir(out, "result.json")
    if threads > 0:
        torch.set_num_threads(threads)
    values = clinical_values(clinical)
    model = load_model(model_dir, backend=backend, threads=threads)
    sr = None
    if pacs is not None:
        from dlmvi.cli.pacs import predict_from_pacs

        with echo_warnings(show=False):
            client, case, res, sr = predict_from_pacs(model, pacs, pacs_config, study, accession, afp, rois, site,
                                                      explain=out is not None or store_card, clinical=values,
                                                      threshold=threshold)
    else:
        if patient_dir.is_file():
            patient_dir, patient_id = _unpack(patient_dir, patient_id)
        with echo_warnings(show=False):  # they are in result.input_warnings, printed below
            res = predict_patient(model_dir, patient_dir, afp, patient_id=patient_id, boxes=rois,
                                  clinical=values, threshold=threshold, explain=out is not None, model=model,
                                  site=site)
    if out is not None:  # written (whole, or not at all) before the result is shown
        _write_result(out, res, model)
    print_result(res, out)
    if sr is not None and store:
        from dlmvi.cli.pacs import store_to_pacs

        store_to_pacs(client, sr, res, case, card=store_card)


def _check_source(patient_dir, pacs, study, accession, store, store_card) -> None:
    """A patient's folder or a PACS study, and the PACS options only with --pacs."""
    from dlmvi.errors import ConfigError

    if (pacs is None) == (patient_dir is None):
        raise ConfigError("give the patient's folder (PATIENT_DIR) or --pacs NAME with --study/--accession")
    if pacs is None and (study or accession or store or store_card):
        raise ConfigError("--study, --accession, --store and --store-card go with --pacs NAME")
    if store_card and not store:
        raise ConfigError("--store-card goes with --store")


def _write_result(out: Path, res, model) -> None:
    """result.json and card.html into ``out``, whole or not at all."""
    from dlmvi.io.atomic import atomic_dir, write_json
    from dlmvi.report.card import write_card

    with atomic_dir(out, marker="result.json") as tmp:
        write_json(tmp / "result.json", res.to_dict())
        write_card(res, tmp / "card.html", model)

def clinical_values(items) -> dict[str, float]:
    """``--clinical NAME=VALUE`` options as {name: value}."""
    from dlmvi.errors import ConfigError

    values = {}
    for item in items or []:
        name, sep, val = item.partition("=")
        try:
            values[name.strip()] = float(val)
        except ValueError:
            raise ConfigError(f"--clinical {item!r}: write NAME=VALUE with a number, e.g. --clinical ggt=60") from None
        if not sep:
            raise ConfigError(f"--clinical {item!r}: write NAME=VALUE, e.g. --clinical ggt=60")
    return values


def print_result(res, out: Path | None) -> None:
    """The one patient's result as the command prints it."""
    from dlmvi.constants import SYNTHETIC_NOTICE

    if res.synthetic:
        typer.echo(f"*** {SYNTHETIC_NOTICE} ***")
    typer.echo(f"patient {res.patient_id}")
    used = res.sequences_used or res.sequences
    typer.echo(f"  sequences used        {', '.join(used)}"
               + (f"  (missing: {', '.join(res.sequences_missing)}; branch blanked)" if res.sequences_missing else ""))
    if res.missing_cost:
        c = res.missing_cost
        typer.echo("  cost of the missing   development AUC " + ", ".join(
            f"{c['auc_all_sequences']:.3f} with all vs {v:.3f} without {m}" for m, v in c["auc_without"].items()
            if v is not None))
    if res.site:
        typer.echo(f"  site                  {res.site['site']} ({res.site['method']} recalibration; model's own "
                   f"probability {res.site['model_probability']:.3f})")
    s = res.spread
    typer.echo(f"  DL-MVI probability    {res.probability:.3f}  (DL-MVI = {res.dl_mvi} at {res.dl_threshold:g}; "
               f"{s.n} slice combinations: min {s.min:.3f}, median {s.median:.3f}, max {s.max:.3f}, sd {s.sd:.3f})")
    if res.nomogram is not None:
        n = res.nomogram
        typer.echo(f"  nomogram risk         {100 * n.risk:.1f} %  (95 % CI {100 * n.ci_low:.1f} to {100 * n.ci_high:.1f} %; "
                   f"AFP {res.afp:g} ng/mL)")
    else:
        typer.echo("  nomogram risk         not available (model exported without a nomogram)")
    typer.echo(f"  decision              {res.decision}  (threshold {100 * res.threshold:.0f} %, by {res.decision_basis})")
    if res.backend and res.backend["backend"] != "torch":
        a = res.backend.get("agreement") or {}
        typer.echo(f"  backend               {res.backend['backend']} ({res.backend['precision']}; max |dP| "
                   f"{a.get('max_abs_dp', float('nan')):.1e} vs PyTorch at export)")
    for w in res.input_warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo("  research use only; not a medical device")
    if out is not None:
        typer.echo(f"  written: {Path(out) / 'result.json'}, {Path(out) / 'card.html'}")
