"""CLI commands of federated training (NVIDIA FLARE): ``dlmvi federated provision|run|site|simulate``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app

federated = typer.Typer(help="Train DL-MVI across hospitals that cannot pool images (NVIDIA FLARE): only weights, "
                             "counts and histogram landmarks leave a site.", no_args_is_help=True)
app.add_typer(federated, name="federated")


@federated.command("provision")
def provision_cmd(
    config: Path = typer.Argument(..., help="The federation's fed.toml (sites, rounds, preset, sequences)."),
    out: Path = typer.Option(..., "--out", help="New folder for the startup kits: one per site, the coordinator's "
                             "server and admin kits (certificates and private keys: hand each site only its own)."),
):
    """Create the federation's certificates and startup kits (mutual TLS)."""
    from dlmvi.workflow.federated.config import load_config
    from dlmvi.workflow.federated.jobs import provision

    cfg = load_config(config)
    kits = provision(cfg, config, out)
    for name, kit in kits.items():
        typer.echo(f"{name}: {kit}")


@federated.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="The federation's fed.toml."),
    kits: Path = typer.Option(..., "--kits", help="The folder written by `dlmvi federated provision` (the "
                              "coordinator's server and admin kits are used)."),
    out: Path = typer.Option(..., "--out", help="The run folder: the global model (RUN/final, an ordinary training "
                             "run), sites.csv, tables/, federation.json; an unfinished federation there is resumed."),
    wait_sites: float = typer.Option(600.0, "--wait-sites", help="Seconds to wait for every site to connect."),
    keep_sites: bool = typer.Option(False, "--keep-sites", help="Leave the sites' FLARE clients running at the end."),
):
    """The coordinator: start the FLARE server, run the federated study, write the global model."""
    from dlmvi.workflow.federated.config import load_config
    from dlmvi.workflow.federated.runner import run_coordinator

    cfg = load_config(config)
    run_coordinator(cfg, kits, out, wait_sites=wait_sites, log=typer.echo, shutdown=not keep_sites)
    _print_sites(out)


@federated.command("site")
def site_cmd(
    cohort: Path = typer.Argument(..., help="The site's own cohort folder (clinical.csv, images/); validated and "
                                  "prepared as by `dlmvi prepare`, never sent."),
    kit: Path = typer.Option(..., "--kit", "--cert", help="The site's startup kit (its certificate, key and the "
                             "federation's fed.toml), from `dlmvi federated provision`."),
    out: Path = typer.Option(..., "--out", help="The site's own folder (cache, split, outbox of everything sent, "
                             "predictions of its held-out patients)."),
    coordinator: Optional[str] = typer.Option(None, "--coordinator", help="HOST:PORT of the coordinator (default: "
                                              "the address in the kit)."),
    config: Optional[Path] = typer.Option(None, "--config", help="fed.toml (default: the one in the kit)."),
    columns: Optional[Path] = typer.Option(None, "--columns", help="Column map of clinical.csv (as `dlmvi prepare`)."),
):
    """A site: prepare its cohort, connect to the coordinator and answer its tasks until it ends."""
    from dlmvi.workflow.federated.runner import run_site

    from dlmvi.io.tables import ColumnMap

    column_map = ColumnMap.from_toml(columns) if columns else None
    rc = run_site(cohort, kit, out, coordinator=coordinator, config=config, column_map=column_map, log=typer.echo)
    raise typer.Exit(rc)


@federated.command("simulate")
def simulate_cmd(
    cohort: Path = typer.Argument(..., help="A cohort whose clinical.csv says each patient's site."),
    out: Path = typer.Option(..., "--out", help="The run folder (global model, kits/, sites/<site>/)."),
    site_column: str = typer.Option("site", "--site-column", help="The column naming each patient's site "
                                    "(e.g. cohort: one site per cohort)."),
    config: Optional[Path] = typer.Option(None, "--config", help="fed.toml (its sites must be the column's values); "
                                          "default: the options below."),
    rounds: int = typer.Option(5, "--rounds"),
    local_epochs: int = typer.Option(1, "--local-epochs"),
    algorithm: str = typer.Option("fedavg", "--algorithm", help="fedavg or fedprox."),
    preset: str = typer.Option("fast", "--preset"),
    harmonization: str = typer.Option("nyul", "--harmonization", help="nyul, global or none."),
    folds: int = typer.Option(4, "--folds", help="Each site's stratified folds; fold 1 is held out."),
    seed: int = typer.Option(0, "--seed"),
):
    """One machine: each site its own process and folder, the coordinator beside them, over loopback."""
    from dlmvi.workflow.federated.config import load_config
    from dlmvi.workflow.federated.simulate import simulate

    cfg = load_config(config) if config else None
    settings = {} if cfg else {"rounds": rounds, "local_epochs": local_epochs, "algorithm": algorithm,
                               "preset": preset, "harmonization": harmonization, "folds": folds, "seed": seed}
    simulate(cohort, out, site_column=site_column, cfg=cfg, log=typer.echo, **settings)
    _print_sites(out)


def _print_sites(out: Path) -> None:
    import json

    doc = json.loads((Path(out) / "federation.json").read_text())
    if doc.get("synthetic"):
        typer.echo("*** SYNTHETIC data: these numbers describe synthetic data only ***")
    for site, why in doc.get("excluded", {}).items():
        typer.echo(f"site {site}: left out ({why.replace('_', ' ')})")
    for r in doc["rounds"]:
        typer.echo(f"round {r['round']}: {', '.join(r['sites'])}" + (f"; dropped {', '.join(r['dropped'])}" if r["dropped"]
                                                                     else "") + f"; {(r['bytes_to_sites'] + r['bytes_from_sites']) / 1e6:.2f} MB")
    for r in doc["sites_metrics"]:
        typer.echo(f"{r['model']:>24s} on {r['site']}: AUC {r['auc']:.3f} ({r['auc_ci_low']:.3f}-{r['auc_ci_high']:.3f}), "
                   f"n {r['n']}, calibration slope {r['calibration_slope']:.2f}")
    typer.echo(f"global model: {Path(out) / 'final'}")
