"""CLI command ``dlmvi import``: a PACS/CD DICOM export into a de-identified cohort folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from dlmvi.cli.app import app


@app.command("import")
def import_export(
    export: Path = typer.Argument(
        ..., help="Folder of the DICOM export (a CD's root with a DICOMDIR, or any tree of files)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Cohort folder to create or complete (images/, scanners.csv, clinical.csv); "
        "not needed for a first look (--dry-run without --map)."),
    map_file: Optional[Path] = typer.Option(
        None, "--map", "-m", help="TOML map: patient ids and series -> sequence rules (see README). Without it, "
        "--dry-run lists the export's series so that you can write the map."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Index and show what would be written; write nothing."),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), "--workers", min=1, help="Processes that read headers."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars and no series table (summary only)."),
):
    """Import a hospital's DICOM export as a cohort: images/<patient_id>/SEQ.nii.gz (SEQ = T1, T1A, ...).

    Every file is indexed once (header only); series are grouped by patient and study, split
    into volumes (b-values, echoes, temporal positions) and mapped to sequences by the map's
    regular expressions on SeriesDescription/ProtocolName. Output is de-identified NIfTI
    (patient ids from the map's rule, never the DICOM PatientID unless the map says so), a
    scanners.csv (vendor, model, field strength, date per patient and sequence) and a
    clinical.csv skeleton when none exists. The export is never modified; a rerun keeps
    what is already written. Exit code 1 when a sequence could not be mapped or written.
    """
    from rich.console import Console

    from dlmvi.io.dicom_import import ImportMap, missing_table_path, plan_import, run_import, series_table

    from dlmvi.errors import ConfigError

    console = Console(highlight=False, soft_wrap=True)
    if map_file is None and not dry_run:
        raise ConfigError("dlmvi import needs --map MAP.toml to write a cohort; run it with --dry-run (and no "
                          "--map) first to list the export's series and write the map")
    if out is None and not dry_run:
        raise ConfigError("dlmvi import needs --out COHORT (the folder to write)")
    if out is None:  # a first look: nothing is written; the checks need a folder apart from the export
        out = Path(export).resolve().parent / (Path(export).name + "-cohort-preview")
    imap = ImportMap.from_toml(map_file) if map_file is not None else ImportMap.listing()
    with _bar(quiet, "indexing") as tick:
        plan = plan_import(export, out, imap, progress=tick, workers=workers)
    idx = plan.index
    console.print(f"{export}: {len(idx.files)} DICOM image file(s) indexed, {idx.skipped} other file(s) ignored, "
                  f"{len(idx.damaged)} damaged", markup=False)
    for path, why in idx.damaged[:20]:
        console.print(f"  damaged: {_rel(path, export)} ({why})", style="yellow", markup=False)
    if idx.dicomdir is not None:
        miss = len(idx.dicomdir_missing)
        state = "every referenced file present" if not miss else f"{miss} referenced file(s) missing (incomplete copy?)"
        console.print(f"DICOMDIR: {state}; files are found by their own headers",
                      style="yellow" if miss else None, markup=False)
    with _bar(quiet or dry_run, "writing") as tick:
        run_import(plan, out, imap, dry_run=dry_run, progress=tick)
    if not quiet:
        _print_table(console, series_table(plan))
    if map_file is None:
        console.print("no --map: every series is listed as unmapped; write [sequences.SEQ] rules for the "
                      "descriptions above (see README, Importing a DICOM export)", markup=False)
        raise typer.Exit(0)
    _print_problems(console, plan)
    if plan.unknown_patients:
        console.print(f"{len(plan.unknown_patients)} patient(s) of the export are not in {imap.table}; skipped"
                      + ("" if dry_run else f" (their DICOM PatientIDs: {missing_table_path(imap.table)})"),
                      style="red", markup=False)
    states = [o.state for o in plan.outputs if o.state]
    n_prob = len(plan.problems())
    verb = "would write" if dry_run else "written"
    console.print(
        f"{out}: {states.count('would write' if dry_run else 'written')} volume(s) {verb}, "
        f"{states.count('exists')} already there, {n_prob} problem(s)"
        + ("" if dry_run else "; scanners.csv, import_series.csv"), markup=False)
    raise typer.Exit(1 if n_prob or plan.unknown_patients else 0)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


class _bar:
    """A rich progress bar as a context manager yielding ``tick(done, total)``."""

    def __init__(self, quiet: bool, label: str):
        self.quiet, self.label, self.progress, self.task = quiet, label, None, None

    def __enter__(self):
        if self.quiet:
            return None
        from rich.progress import Progress

        self.progress = Progress(transient=True)
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=None)

        def tick(done, total):
            self.progress.update(self.task, completed=done, total=total)

        return tick

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False


def _print_table(console, rows) -> None:
    """One line per series: patient, study date, series, frames, volumes, scanner, mapping.

    Plain aligned text (not a rich table), so nothing is cut on a narrow terminal."""
    heads = ("patient", "study", "#", "description", "frames", "vol", "orientation", "vendor", "T",
             "-> sequence (volume)", "status")
    lines = []
    for r in rows:
        n_vol = len([v for v in str(r.get("volumes", "")).split("; ") if v])
        seqs = [q for q in str(r.get("sequence", "")).split("; ") if q]
        vols = str(r.get("volume", "")).split("; ")
        mapped = ", ".join(f"{q} ({v})" if n_vol > 1 else q for q, v in zip(seqs, vols)) or "-"
        lines.append((str(r["patient_id"]), str(r["study_date"]), str(r["series_number"]),
                      str(r["description"])[:32], str(r["frames"]), str(n_vol), str(r["orientation"]),
                      str(r["vendor"])[:16], str(r["field_strength"]), mapped, str(r["status"])))
    widths = [max([len(h)] + [len(ln[i]) for ln in lines]) for i, h in enumerate(heads)]
    console.print("series in the export (de-identified):", markup=False)
    console.print("  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip(), style="bold", markup=False)
    for ln in lines:
        console.print("  ".join(v.ljust(w) for v, w in zip(ln, widths)).rstrip(), markup=False)


def _print_problems(console, plan) -> None:
    """Per patient: sequences not written (missing, ambiguous, failed; red), volume choices
    made, and the series no rule mapped."""
    by_patient: dict[str, list[tuple[str, bool]]] = {}
    for o in plan.outputs:
        if o.problem:
            by_patient.setdefault(o.patient_id, []).append((f"{o.sequence}: {o.problem}", True))
        elif o.note:
            by_patient.setdefault(o.patient_id, []).append((f"{o.sequence}: {o.series.name()}, {o.note}", False))
    for pid, series in plan.unmapped().items():
        by_patient.setdefault(pid, []).append(("unmapped: " + "; ".join(s.name() for s in series), False))
    for pid in sorted(by_patient):
        console.print(f"patient {pid}", markup=False)
        for line, bad in by_patient[pid]:
            console.print(f"  {line}", style="red" if bad else None, markup=False)
