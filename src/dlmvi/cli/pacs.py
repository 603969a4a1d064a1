"""CLI commands on a hospital's PACS: ``dlmvi pacs find``, ``dlmvi listen`` (a DICOM node), and
the ``--pacs`` path of ``dlmvi predict-patient``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app

pacs_app = typer.Typer(help="Work with a PACS named in the PACS configuration (TOML; see README, PACS).",
                       no_args_is_help=True)
app.add_typer(pacs_app, name="pacs")

PACS_CONFIG_HELP = "PACS configuration (TOML with [pacs.NAME]); default: ~/.config/dlmvi/pacs.toml."


@pacs_app.command("find")
def find(
    pacs: str = typer.Option(..., "--pacs", help="Name of the PACS ([pacs.NAME] in the configuration)."),
    patient: Optional[str] = typer.Option(None, "--patient", help="PatientID to look for."),
    accession: Optional[str] = typer.Option(None, "--accession", help="Accession number."),
    date: Optional[str] = typer.Option(None, "--date", help="Study date YYYYMMDD or range YYYYMMDD-YYYYMMDD."),
    study: Optional[str] = typer.Option(None, "--study", help="StudyInstanceUID."),
    pacs_config: Optional[Path] = typer.Option(None, "--pacs-config", help=PACS_CONFIG_HELP),
    identified: bool = typer.Option(False, "--identified", help="Also show PatientID, accession number and "
                                    "StudyInstanceUID (default: a de-identified view)."),
):
    """List the studies and series of the PACS that match, and the sequence each series maps to
    by the PACS's map file (as `dlmvi import --dry-run` does for an export): a first look to
    write the map. Studies are named by a pseudonym unless --identified."""
    from dlmvi.deploy.pacs_study import study_pseudonym
    from dlmvi.io.dicom_import import ImportMap
    from dlmvi.io.pacs import connect, read_pacs_config

    conn = read_pacs_config(pacs_config, pacs)
    imap = ImportMap.from_toml(conn.map, patients=False) if conn.map is not None else None
    studies = connect(conn).find_studies(patient=patient, accession=accession, date=date, study_uid=study)
    typer.echo(f"{conn.where()}: {len(studies)} stud{'y' if len(studies) == 1 else 'ies'}"
               + ("" if identified else " (de-identified view; --identified shows PatientID and accession)"))
    for st in studies:
        head = f"study {study_pseudonym(st.study_uid)}  date {st.date or '?'}  {st.description!r}  [{st.modalities}]"
        if identified:
            head += f"  PatientID {st.patient_key}  accession {st.accession}  UID {st.study_uid}"
        typer.echo(head)
        for se in st.series:
            seq = "-"
            if imap is not None and se.modality not in ("SEG", "RTSTRUCT", "SR"):
                hits = [r.sequence for r in imap.rules if r.matches(se.description, "")]
                seq = ", ".join(hits) or "unmapped"
            elif se.modality in ("SEG", "RTSTRUCT"):
                seq = "tumour ROI"
            typer.echo(f"  series {se.number if se.number is not None else '?':>4}  {se.modality:<8} "
                       f"{se.description[:40]:<40} {se.instances if se.instances is not None else '?':>5} images  "
                       f"-> {seq}")


def predict_from_pacs(model, pacs: str, pacs_config: Path | None, study: str | None, accession: str | None,
                      afp: float | None, rois: Path | None, site: str | None, explain: bool, clinical=None,
                      threshold: float | None = None):
    """``predict-patient --pacs``: retrieve the study, predict it; returns (client, case, result, sr).

    Raises:
        PacsError, CohortError: one message naming the PACS, the study and the fix.
    """
    import tempfile

    from dlmvi.deploy.pacs_study import predict_study
    from dlmvi.errors import CohortError, ConfigError, PacsError
    from dlmvi.io.dicom_import import ImportMap
    from dlmvi.io.pacs import connect, read_pacs_config

    if bool(study) == bool(accession):
        raise ConfigError("--pacs needs one of --study UID or --accession NUMBER")
    conn = read_pacs_config(pacs_config, pacs)
    if conn.map is None:
        raise PacsError(f"{conn.config}: [pacs.{pacs}] has no map = \"map.toml\" (series -> sequences, as "
                        "`dlmvi import`); `dlmvi pacs find` lists the series to write it")
    imap = ImportMap.from_toml(conn.map, patients=False)
    client = connect(conn)
    info = client.study(study_uid=study, accession=accession)
    tmp = Path(tempfile.mkdtemp(prefix="dlmvi_pacs_"))
    try:
        client.retrieve(info.study_uid, tmp / "files")
        case, res, sr = predict_study(model, tmp / "files", tmp / "work", imap, afp=afp, rois=rois, site=site,
                                      explain=explain, study_uid=info.study_uid, clinical=clinical,
                                      threshold=threshold)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    if res is None:
        raise CohortError(f"patient {case.patient_id}: the study has no tumour ROI (no SEG or RTSTRUCT); draw it "
                          "(dlmvi serve --pacs) or give boxes with --rois rois.csv")
    return client, case, res, sr


def card_picture(res) -> "np.ndarray":
    """The card's per-sequence pictures (crop | crop with Grad-CAM) stacked into one RGB array."""
    import io

    import numpy as np
    from PIL import Image

    from dlmvi.report.card import sequence_png

    rows = []
    for j, name in enumerate(res.sequences):
        cam = None if res.gradcam is None else res.gradcam[j]
        png = sequence_png(res.patches[j, 0], cam, name)
        rows.append(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                           for r in rows])


def store_to_pacs(client, sr, res, case, card: bool) -> None:
    """Store the SR (and, with ``card``, the card as a secondary capture) into the study; prints them."""
    from dlmvi.deploy.dicom_sr import build_card_capture

    items = [sr]
    if card:
        items.append(build_card_capture(card_picture(res), case.reference))
    client.store(items)
    for ds in items:
        typer.echo(f"  DICOM {ds.Modality} stored into the study on {client.conn.where()} (series "
                   f"{ds.SeriesNumber} {ds.SeriesDescription!r}, SOP instance {ds.SOPInstanceUID})")


@app.command("listen")
def listen(
    model_dir: Path = typer.Argument(..., help="Model folder written by `dlmvi export`."),
    spool: Path = typer.Option(..., "--spool", help="Folder where received studies wait and their state is "
                               "kept (a restart resumes the pending ones)."),
    ae_title: str = typer.Option("DLMVI", "--ae-title", help="This node's AE title."),
    port: int = typer.Option(11112, "--port", help="DICOM port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    allow_ae: Optional[str] = typer.Option(None, "--allow-ae", help="Comma-separated calling AE titles allowed "
                                           "to send; others are refused (A-ASSOCIATE-RJ). Default: any."),
    send_to: Optional[str] = typer.Option(None, "--send-to", help="PACS ([pacs.NAME]) that receives the SR; "
                                          "default: SRs are only written to SPOOL/<study>/report.dcm."),
    pacs_config: Optional[Path] = typer.Option(None, "--pacs-config", help=PACS_CONFIG_HELP),
    map_file: Optional[Path] = typer.Option(None, "--map", help="Series -> sequences map (as `dlmvi import`); "
                                            "default: the --send-to PACS's map."),
    quiet_seconds: float = typer.Option(10.0, "--quiet-seconds", help="A study is complete when no image of "
                                        "it arrived for this long."),
    afp_table: Optional[Path] = typer.Option(None, "--afp-table", help="CSV with columns accession,afp "
                                             "(ng/mL): the nomogram's AFP per study, found by AccessionNumber; "
                                             "without it (or a row) the SR has DL-MVI only."),
    threads: int = typer.Option(0, help="CPU threads for torch and ONNX Runtime (0: their default)."),
    backend: str = typer.Option("auto", help="auto: the fastest backend the model folder holds (int8, ONNX, "
                                "PyTorch), loaded once; onnx; torch (forces PyTorch)."),
):
    """Run a DICOM node: receive studies by C-STORE (routed by the PACS or a modality), wait until
    each is complete (no image for --quiet-seconds), predict those with the model's sequences and
    a tumour ROI (SEG or RTSTRUCT; a study without one gets an SR saying so and waits for one),
    and send the SR back. One study's failure never stops the node. Research use only."""
    import torch

    from dlmvi.deploy.listener import Listener, ListenerConfig
    from dlmvi.deploy.model import load_model
    from dlmvi.errors import ConfigError
    from dlmvi.io.dicom_import import ImportMap
    from dlmvi.io.pacs import read_pacs_config

    if threads > 0:
        torch.set_num_threads(threads)
    conn = read_pacs_config(pacs_config, send_to) if send_to else None
    map_path = map_file or (conn.map if conn is not None else None)
    if map_path is None:
        raise ConfigError("dlmvi listen needs --map map.toml (or a --send-to PACS with a map)")
    imap = ImportMap.from_toml(map_path, patients=False)
    model = load_model(model_dir, backend=backend, threads=threads)
    allowed = tuple(a.strip() for a in allow_ae.split(",") if a.strip()) if allow_ae else ()
    cfg = ListenerConfig(ae_title=ae_title, host=host, port=port, allow_ae=allowed, quiet_seconds=quiet_seconds,
                         spool=spool, afp_table=afp_table)
    node = Listener(model, imap, cfg, send_to=conn, log=lambda m: typer.echo(m, err=False))
    node.serve_forever()
