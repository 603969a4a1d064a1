"""CLI command ``dlmvi serve``: the web page and JSON API for one patient at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app


@app.command("serve")
def serve(
    model_dir: Path = typer.Argument(..., help="Model folder written by `dlmvi export`."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on. Loopback (127.0.0.1) by default: only this "
                             "machine can connect. Any other address requires the access token."),
    port: int = typer.Option(8765, help="TCP port."),
    site: Optional[str] = typer.Option(None, help="Hospital or department shown on the page and in /api/model."),
    token: Optional[str] = typer.Option(None, help="Access token the API requires (at least 16 characters). "
                                        "Beyond loopback one is generated and printed when not given."),
    workers: int = typer.Option(1, help="Predictions that run at once; further requests wait in a queue."),
    max_upload_mb: int = typer.Option(512, help="Largest upload in MB; larger ones are refused with 413."),
    keep: Optional[Path] = typer.Option(None, help="Keep each upload's files with its result.json (and rois.csv, "
                                        "card.html) in this folder; by default they are deleted once answered."),
    threads: int = typer.Option(0, help="CPU threads for torch and ONNX Runtime (0: their default)."),
    backend: str = typer.Option("auto", help="auto: the fastest backend the model folder holds (int8, ONNX, "
                                "PyTorch), loaded once; onnx; torch (forces PyTorch)."),
    pacs: Optional[str] = typer.Option(None, "--pacs", help="Show this PACS's worklist on the page ([pacs.NAME] of "
                                       "the PACS configuration): pick a study, draw the box if it has no SEG, "
                                       "send the DICOM SR back from the page."),
    pacs_config: Optional[Path] = typer.Option(None, "--pacs-config", help="PACS configuration (TOML); "
                                               "default: ~/.config/dlmvi/pacs.toml."),
):
    """Serve a web page where a radiologist uploads a patient (archive or sequence files),
    enters AFP, draws the tumour box when there is no mask, and reads the card; plus a JSON API
    (`POST /api/predict`, `GET /api/model`, documentation at /docs). The model is loaded once.
    Research use only; not a medical device."""
    import torch
    import uvicorn

    from dlmvi.deploy.model import load_model
    from dlmvi.deploy.server import ServeConfig, create_app, is_loopback, log_config, quiet_warnings, resolve_token
    from dlmvi.io.atomic import guard_output
    from dlmvi.report.card import render_card

    if keep is not None:
        guard_output(keep, [model_dir], label="--keep")
    if threads > 0:
        torch.set_num_threads(threads)
    secret, generated = resolve_token(host, token)
    conn = None
    if pacs is not None:
        from dlmvi.io.pacs import read_pacs_config

        conn = read_pacs_config(pacs_config, pacs)
    config = ServeConfig(host=host, port=port, site=site, token=secret, workers=workers,
                         max_upload_bytes=max_upload_mb * 1024**2, keep=keep, pacs=conn)
    model = load_model(model_dir, backend=backend, threads=threads)
    quiet_warnings()
    application = create_app(model, config, render_card=render_card)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}/"
    typer.echo(f"dlmvi serve: model {', '.join(model.sequences)}"
               f"{' (SYNTHETIC training data)' if model.synthetic else ''}; backend {model.backend}; {workers} worker(s); "
               f"uploads up to {max_upload_mb} MB{'; kept in ' + str(keep) if keep else ', deleted once answered'}")
    if secret is not None:
        typer.echo(f"  open {url}#token={secret}")
        if generated:
            typer.echo(f"  access token (generated; give it to the API as 'Authorization: Bearer TOKEN'): {secret}")
    else:
        typer.echo(f"  open {url}")
    if not is_loopback(host):
        typer.echo(f"  listening on {host}: other machines can connect; they need the token", err=True)
    if conn is not None:
        typer.echo(f"  worklist: {conn.where()}")
    typer.echo("  research use only; not a medical device")
    uvicorn.run(application, host=host, port=port, log_config=log_config(), access_log=False,
                server_header=False)
