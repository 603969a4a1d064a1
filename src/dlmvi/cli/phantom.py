"""CLI command ``dlmvi phantom``: write the built-in synthetic cohort."""

from pathlib import Path

import typer

from dlmvi.cli.app import app


@app.command("phantom")
def phantom(
    out: Path = typer.Argument(
        ..., help="Folder to create the synthetic cohort in (new or empty)."),
    patients: int = typer.Option(
        321, "--patients", "-n", min=1,
        help="Number of synthetic patients, split like the study's 2015 (149) and 2018 (172) "
        "cohorts."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives identical files."),
    size: int = typer.Option(
        128, "--size", min=32, max=512,
        help="Image matrix in pixels per side (field of view stays 36 cm)."),
    fmt: str = typer.Option(
        "nifti", "--format",
        help="Image format: 'nifti' (one .nii.gz per sequence) or 'dicom' (one DICOM series "
        "folder per sequence). Tumour masks are NIfTI in both."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Create a SYNTHETIC cohort (MRI of six sequences, tumour masks, blood tests, survival).

    The images, masks and clinical values are drawn from a hand-made model: they say
    nothing about real patients. The cohort has the same layout as a hospital's data
    (clinical.csv plus images/<patient_id>/), so every dlmvi command can be tried on it.
    MVI (M1/M2) makes tumours larger and less smooth, adds patchy enhancement around the
    tumour on the arterial phase (T1A), a dark rim on the delayed phase (T1D), incomplete
    capsules and satellite nodules, with wide overlap between grades. The 2018 cohort was
    "scanned" on a different simulated scanner for T1 and T1D.
    """
    import time

    from dlmvi.constants import SYNTHETIC_NOTICE
    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.errors import ConfigError

    fmt = fmt.lower()
    if fmt not in ("nifti", "dicom"):
        raise ConfigError(f"--format must be 'nifti' or 'dicom', not {fmt!r}")
    start = time.perf_counter()
    path = make_phantom(out, n_patients=patients, seed=seed, size=size, fmt=fmt,
                        progress=not quiet)
    typer.echo(f"wrote {patients} synthetic patients to {path} in "
               f"{time.perf_counter() - start:.1f} s")
    typer.echo(SYNTHETIC_NOTICE)
