"""A cohort folder: the clinical table plus every patient's image sources.

Layout (see README)::

    COHORT/
      clinical.csv
      cohort.json                       optional; {"synthetic": true} for the phantom
      rois.csv                          optional boxes instead of masks
      images/<patient_id>/<SEQ>.nii.gz  or a DICOM series folder images/<patient_id>/<SEQ>/
      images/<patient_id>/<SEQ>_roi.nii.gz
      volumes.toml                      optional: which volume of a multi-volume series is which
      images/<patient_id>/volumes.toml  optional: the same for one patient (overrides)

``volumes.toml`` maps a sequence to a volume choice (see :mod:`dlmvi.io.dicom_volumes`),
and optionally to the series it comes from when several sequences share one::

    T1A = "temporal position 2"     # short form
    [DWI]
    volume = "b 800"                # default for DWI: the highest b-value
    [T1V]
    source = "DYN"                  # read from images/<patient_id>/DYN/ (or DYN.nii.gz)
    volume = "temporal position 3"
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from dlmvi.cohort.patient import Patient, SequenceSource, boxes_from_table
from dlmvi.constants import SEQUENCES
from dlmvi.errors import CohortError
from dlmvi.io.images import nifti_path
from dlmvi.io.provenance import COHORT_JSON
from dlmvi.io.tables import ClinicalTable, ColumnMap, read_clinical, read_rois


@dataclass
class Cohort:
    """All patients of a cohort folder.

    Attributes:
        root: the cohort folder.
        table: the parsed clinical table (with its problems).
        patients: patients listed in clinical.csv, by id, in table order.
        image_only_ids: folders under images/ with no row in clinical.csv.
        synthetic: True when cohort.json says the data are synthetic.
    """

    root: Path
    table: ClinicalTable
    patients: dict[str, Patient] = field(default_factory=dict)
    image_only_ids: list[str] = field(default_factory=list)
    synthetic: bool = False
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_folder(cls, root: str | Path, column_map: ColumnMap | None = None) -> "Cohort":
        root = Path(root)
        if not root.is_dir():
            raise CohortError(f"{root} is not a folder; give the cohort folder (with clinical.csv and images/)")
        table = read_clinical(root / "clinical.csv", column_map)
        meta = {}
        if (root / COHORT_JSON).is_file():
            try:
                meta = json.loads((root / COHORT_JSON).read_text())
            except json.JSONDecodeError as exc:
                raise CohortError(f"{root / COHORT_JSON}: invalid JSON ({exc})") from None
        rois = read_rois(root / "rois.csv") if (root / "rois.csv").is_file() else None
        cohort_choices = read_volume_map(root / "volumes.toml")
        images = root / "images"
        folders = {p.name: p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")} if images.is_dir() else {}
        cohort = cls(root=root, table=table, synthetic=bool(meta.get("synthetic", False)), meta=meta)
        df = table.frame
        for row in df.to_dict("records"):
            pid = row["patient_id"]
            if not pid or pid in cohort.patients:
                continue
            folder = folders.get(pid)
            sources = patient_sources(folder, pid, rois, cohort_choices) if folder is not None else {}
            clinical = {k: v for k, v in row.items() if k not in ("patient_id", "cohort", "mvi_grade")}
            cohort.patients[pid] = Patient(pid, str(row["cohort"]), row["mvi_grade"], clinical, sources)
        cohort.image_only_ids = sorted(set(folders) - set(cohort.patients))
        return cohort

    @property
    def table_only_ids(self) -> list[str]:
        """Patients in clinical.csv with no folder under images/."""
        return [pid for pid, p in self.patients.items() if not (self.root / "images" / pid).is_dir()]

    def __len__(self) -> int:
        return len(self.patients)

    def __iter__(self):
        return iter(self.patients.values())


def patient_sources(folder: Path, patient_id: str, rois=None, choices: dict | None = None,
                    sequences=SEQUENCES) -> dict[str, SequenceSource]:
    """The image sources found in one patient's folder (a cohort's ``images/<id>/``, or the
    folder ``predict-patient`` is given).

    Per sequence: ``<SEQ>.nii.gz`` or a DICOM series folder ``<SEQ>/`` (or the series named by
    volumes.toml's ``source``), the mask ``<SEQ>_roi.nii.gz`` or else this patient's rows of
    ``rois`` (a rois.csv table), and the volume chosen by ``choices`` (the cohort's
    volumes.toml) overridden by the folder's own ``volumes.toml``. Sequences without an image
    are left out.
    """
    choices = {**(choices or {}), **read_volume_map(folder / "volumes.toml")}
    sources = {}
    for seq in sequences:
        choice = choices.get(seq)
        name = choice.source if choice is not None and choice.source else seq
        image = nifti_path(folder, name)
        if image is None and (folder / name).is_dir():
            image = folder / name
        if image is None:
            continue
        mask = nifti_path(folder, f"{seq}_roi")
        boxes = boxes_from_table(rois, patient_id, seq) if (rois is not None and mask is None) else None
        if choice is None:
            sources[seq] = SequenceSource(seq, image, mask, boxes)
        else:
            sources[seq] = SequenceSource(seq, image, mask, boxes, volume=choice.volume, choice_file=choice.file)
    return sources


@dataclass(frozen=True)
class VolumeChoice:
    """One entry of a volumes.toml: which volume (and which series) a sequence is read from."""

    volume: str | None
    source: str | None
    file: Path


def read_volume_map(path: Path) -> dict[str, VolumeChoice]:
    """Parse a volumes.toml (cohort-level or per patient); {} when the file is absent.

    Raises:
        CohortError: invalid TOML, an unknown sequence or key, an unreadable volume choice.
    """
    from dlmvi.errors import ConfigError
    from dlmvi.io.dicom_volumes import parse_choice

    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CohortError(f"{path}: invalid TOML ({exc}); write e.g. T1A = \"temporal position 2\"") from None
    out = {}
    for seq, value in data.items():
        if seq not in SEQUENCES:
            raise CohortError(f"{path}: unknown sequence {seq!r}; use one of {', '.join(SEQUENCES)}")
        if isinstance(value, str):
            value = {"volume": value}
        if not isinstance(value, dict):
            raise CohortError(f"{path}: {seq} must be a volume choice (\"b 800\") or a table with "
                              "'volume' and/or 'source'")
        bad = set(value) - {"volume", "source"}
        if bad:
            raise CohortError(f"{path}: [{seq}] has unknown key(s) {', '.join(sorted(bad))}; "
                              "allowed: volume, source")
        volume, source = value.get("volume"), value.get("source")
        if volume is not None:
            try:
                parse_choice(str(volume))
            except ConfigError as exc:
                raise CohortError(f"{path}: [{seq}] {exc}") from None
        if source is not None and (not isinstance(source, str) or "/" in source or "\\" in source
                                   or source in ("", ".", "..")):
            raise CohortError(f"{path}: [{seq}] source must be the name of a series folder or NIfTI "
                              f"file in the patient's folder, not {source!r}")
        out[seq] = VolumeChoice(None if volume is None else str(volume), source, path)
    return out
