"""A cohort folder: the clinical table plus every patient's image sources.

Layout (see README)::

    COHORT/
      clinical.csv
      cohort.json                       optional; {"synthetic": true} for the phantom
      rois.csv                          optional boxes instead of masks
      images/<patient_id>/<SEQ>.nii.gz  or a DICOM series folder images/<patient_id>/<SEQ>/
      images/<patient_id>/<SEQ>_roi.nii.gz
"""

from __future__ import annotations

import json
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
        images = root / "images"
        folders = {p.name: p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")} if images.is_dir() else {}
        cohort = cls(root=root, table=table, synthetic=bool(meta.get("synthetic", False)), meta=meta)
        df = table.frame
        for row in df.to_dict("records"):
            pid = row["patient_id"]
            if not pid or pid in cohort.patients:
                continue
            sources = {}
            folder = folders.get(pid)
            if folder is not None:
                for seq in SEQUENCES:
                    image = nifti_path(folder, seq)
                    if image is None and (folder / seq).is_dir():
                        image = folder / seq
                    if image is None:
                        continue
                    mask = nifti_path(folder, f"{seq}_roi")
                    boxes = boxes_from_table(rois, pid, seq) if (rois is not None and mask is None) else None
                    sources[seq] = SequenceSource(seq, image, mask, boxes)
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
