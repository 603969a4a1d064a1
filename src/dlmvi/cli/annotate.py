"""CLI commands for annotating a cohort: ``annotate`` (the worklist page), ``adopt-rois`` (a
reader's file becomes the cohort's rois.csv) and ``agreement`` (two readers compared)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app

COLUMNS_HELP = "TOML file mapping your clinical.csv column names and units onto dlmvi's (see README)."


def _columns(path: Optional[Path]):
    from dlmvi.io.tables import ColumnMap

    return ColumnMap.from_toml(path) if path else None


@app.command("annotate")
def annotate(
    cohort: Path = typer.Argument(..., help="Cohort folder holding clinical.csv and images/."),
    reader: str = typer.Option(..., "--reader", "-r", help="Your name or initials; boxes go to COHORT/rois.READER.csv."),
    sequences: Optional[str] = typer.Option(None, "--sequences", "-s", help="Comma-separated sequences to box "
                                            "(default: every sequence the cohort has)."),
    n_slices: int = typer.Option(3, "--n-slices", help="Consecutive key slices to box per sequence (the study: 3)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default: this machine only)."),
    port: int = typer.Option(8766, help="TCP port."),
    columns: Optional[Path] = typer.Option(None, "--columns", help=COLUMNS_HELP),
):
    """Serve a local web page with the cohort's worklist: each patient's state per sequence
    (no ROI, proposed, confirmed, mask file), filters and progress. Draw the tumour box on one
    sequence; it is carried to the other sequences through patient coordinates; move or resize
    it and confirm each sequence. Every confirmation is written atomically to
    COHORT/rois.READER.csv (the rois.csv format). Make it the cohort's rois.csv with
    `dlmvi adopt-rois`."""
    import uvicorn

    from dlmvi.deploy.annotate import Annotator
    from dlmvi.deploy.web.asgi import log_config
    from dlmvi.deploy.web.config import is_loopback
    from dlmvi.deploy.web.annotate_app import create_annotate_app
    from dlmvi.errors import ConfigError

    if not is_loopback(host):
        raise ConfigError(f"--host {host}: `dlmvi annotate` has no access token; it listens on loopback only "
                          "(reach it from another machine through an SSH tunnel)")
    seqs = [s.strip().upper() for s in sequences.split(",") if s.strip()] if sequences else None
    annotator = Annotator(cohort, reader, seqs, n_slices, _columns(columns))
    wl = annotator.worklist()
    typer.echo(f"dlmvi annotate: {wl['total']} patients, {wl['done']} done; sequences {', '.join(wl['sequences'])}"
               f"{' (SYNTHETIC cohort)' if wl['synthetic'] else ''}; boxes saved to {annotator.path}")
    typer.echo(f"  open http://{host}:{port}/")
    uvicorn.run(create_annotate_app(annotator), host=host, port=port, log_config=log_config(), access_log=False,
                server_header=False)


@app.command("adopt-rois")
def adopt_rois(
    cohort: Path = typer.Argument(..., help="Cohort folder."),
    reader: str = typer.Option(..., "--reader", "-r", help="The reader whose rois.READER.csv becomes rois.csv."),
    replace: bool = typer.Option(False, "--replace", help="Replace an existing rois.csv (kept as "
                                 "rois.csv.before-READER)."),
):
    """Make a reader's boxes (COHORT/rois.READER.csv) the cohort's rois.csv, which `validate`,
    `prepare` and `study` read."""
    from dlmvi.deploy.annotate import adopt_reader_file

    out = adopt_reader_file(cohort, reader, replace)
    typer.echo(f"{cohort / 'rois.csv'}: {out['rows']} boxes of {out['patients']} patients from reader {reader}"
               + (f"; the earlier rois.csv is kept as {out['backup']}" if out["backup"] else ""))
    typer.echo(f"  next: dlmvi validate {cohort}")


@app.command("agreement")
def agreement(
    cohort: Path = typer.Argument(..., help="Cohort folder with rois.A.csv and rois.B.csv."),
    readers: str = typer.Option(..., "--readers", help="Two readers, comma-separated: A,B."),
    out: Path = typer.Option(..., "--out", help="Output folder (agreement.json, boxes.csv, ...)."),
    model: Optional[Path] = typer.Option(None, "--model", help="An exported model folder: also compare DL-MVI's "
                                         "probability from each reader's ROIs (ICC, Bland-Altman, decisions)."),
    columns: Optional[Path] = typer.Option(None, "--columns", help=COLUMNS_HELP),
):
    """Readers' agreement per patient and sequence: the boxes' IoU and Dice, key-slice agreement;
    with --model, the ICC (two-way random, single rater, absolute agreement, 95 % CI; = R
    psych::ICC) of DL-MVI's probability between the readers' ROIs, a Bland-Altman plot and the
    share of patients whose decision differs."""
    from dlmvi.errors import ConfigError
    from dlmvi.io.atomic import atomic_dir, guard_output
    from dlmvi.workflow.agreement import AGREEMENT_JSON, analyse_agreement

    names = [r.strip() for r in readers.split(",") if r.strip()]
    if len(names) != 2:
        raise ConfigError(f"--readers {readers!r}: name exactly two readers, e.g. --readers A,B")
    guard_output(out, [cohort] + ([model] if model else []))
    res = analyse_agreement(cohort, names, model, _columns(columns))
    with atomic_dir(out, marker=AGREEMENT_JSON) as tmp:
        res.write(tmp)
    allrow = res.summary[res.summary["sequence"] == "all"].iloc[0]
    typer.echo(f"{'SYNTHETIC: ' if res.synthetic else ''}{int(allrow['n'])} sequences boxed by both: IoU median "
               f"{allrow['iou_median']:.3f} ({allrow['iou_q1']:.3f}-{allrow['iou_q3']:.3f}), Dice mean "
               f"{allrow['dice_mean']:.3f}, same key slices {100 * allrow['same_key_slices']:.1f} %")
    if res.icc is not None:
        i, d = res.icc, res.decision_differs
        typer.echo(f"  DL-MVI probability ICC2 {i['icc']:.3f} (95 % CI {i['ci_low']:.3f}-{i['ci_high']:.3f}); "
                   f"decision differs for {d['n']} of {d['of']} patients")
    typer.echo(f"  written to {out}")
