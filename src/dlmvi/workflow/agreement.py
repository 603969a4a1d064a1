"""``dlmvi agreement``: two readers' boxes compared, and (with a model) what they do to DL-MVI.

:func:`analyse_agreement` computes (numbers only, :class:`AgreementResult`);
:meth:`AgreementResult.write` writes ``agreement.json``, ``boxes.csv`` (per patient and
sequence), ``boxes_summary.csv`` (per sequence), ``single_reader.csv`` (sequences boxed by one
reader only) and, with a model, ``probabilities.csv`` and the Bland-Altman plot (PNG + CSV).
The study report shows the folder ``RUN/agreement/`` when it exists.

With a model, each patient is predicted twice by :func:`dlmvi.deploy.cohort.predict_cohort`:
once from reader A's ROIs, once from reader B's (a view of the cohort whose ``rois.csv`` is
the reader's file; masks, where present, are used by both). The model is the exported model
the readers' ROIs are meant for; nothing is fitted here.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.constants import SYNTHETIC_NOTICE
from dlmvi.deploy.annotate import check_reader, read_box_file, reader_file
from dlmvi.errors import CohortError
from dlmvi.stats.agreement import BlandAltmanDisplay, boxes_table, summarise_boxes
from dlmvi.stats.icc import icc

AGREEMENT_JSON = "agreement.json"
#: Files of the cohort a reader's view links to (rois.csv is the reader's file).
_LINKED = ("clinical.csv", "images", "cohort.json", "volumes.toml", "scanners.csv")


@dataclass
class AgreementResult:
    """Readers' agreement (numbers only; :meth:`write` writes the files)."""

    readers: tuple[str, str]
    boxes: pd.DataFrame
    summary: pd.DataFrame
    single: pd.DataFrame
    synthetic: bool = False
    probabilities: pd.DataFrame | None = None
    icc: dict | None = None
    bland_altman: BlandAltmanDisplay | None = None
    decision_differs: dict | None = None
    model: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        doc = {"readers": list(self.readers), "synthetic": self.synthetic,
               "n_sequences_compared": int(len(self.boxes)), "n_single_reader": int(len(self.single)),
               "summary": self.summary.to_dict("records"), "model": self.model, "notes": self.notes}
        if self.synthetic:
            doc["synthetic_notice"] = SYNTHETIC_NOTICE
        if self.icc is not None:
            doc["icc"] = self.icc
            doc["bland_altman"] = self.bland_altman.result.to_dict()
            doc["decision_differs"] = self.decision_differs
        return doc

    def write(self, out_dir) -> Path:
        """Write the tables, the JSON and the figure into ``out_dir`` (made if needed)."""
        from dlmvi.io.atomic import save_figure, write_csv, write_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "boxes.csv", self.boxes)
        write_csv(out / "boxes_summary.csv", self.summary)
        write_csv(out / "single_reader.csv", self.single)
        if self.probabilities is not None:
            write_csv(out / "probabilities.csv", self.probabilities)
            write_csv(out / "bland_altman.csv", self.bland_altman.to_frame())
            disp = self.bland_altman.plot()
            fig = disp.ax_.figure
            if self.synthetic:
                fig.suptitle(SYNTHETIC_NOTICE, color="#b00", fontsize=7)
            save_figure(fig, out / "bland_altman.png")
        write_json(out / AGREEMENT_JSON, self.to_dict())
        return out


def reader_files(root) -> list[str]:
    """The readers with a file ``rois.<reader>.csv`` in the cohort folder, sorted."""
    from dlmvi.deploy.annotate import READER

    out = []
    for p in sorted(Path(root).glob("rois.*.csv")):
        name = p.name[len("rois."):-len(".csv")]
        if READER.match(name):
            out.append(name)
    return out


def analyse_agreement(cohort_dir, readers, model_dir=None, column_map=None) -> AgreementResult:
    """Compare readers A and B of a cohort (boxes; with ``model_dir``, DL-MVI's probabilities).

    Raises:
        CohortError: a reader's file is missing, or the readers share no boxed sequence.
    """
    import json

    root = Path(cohort_dir)
    a, b = (check_reader(r) for r in readers)
    if a == b:
        raise CohortError(f"--readers {a},{b}: name two different readers")
    files = [reader_file(root, r) for r in (a, b)]
    for f, r in zip(files, (a, b)):
        if not f.is_file():
            raise CohortError(f"{f} does not exist (reader {r}); readers with a file: "
                              f"{', '.join(reader_files(root)) or 'none'}")
    box_a, box_b = read_box_file(files[0]), read_box_file(files[1])
    table, single = boxes_table(box_a, box_b)
    if table.empty:
        raise CohortError(f"readers {a} and {b} boxed no sequence of the same patient in {root}; nothing to compare")
    meta = root / "cohort.json"
    synthetic = bool(json.loads(meta.read_text()).get("synthetic")) if meta.is_file() else False
    res = AgreementResult((a, b), table, summarise_boxes(table),
                          pd.DataFrame(single, columns=["patient_id", "sequence", "note"]), synthetic)
    if model_dir is not None:
        _add_probabilities(res, root, model_dir, column_map)
    return res


def _add_probabilities(res: AgreementResult, root: Path, model_dir, column_map) -> None:
    from dlmvi.deploy.model import load_model

    em = load_model(model_dir)
    res.model = str(model_dir)
    res.synthetic = res.synthetic or bool(em.synthetic)
    frames = {}
    for r in res.readers:
        pred = predict_with_reader(em, root, r, column_map)
        frames[r] = pred.frame.set_index("patient_id")
        if len(pred.skipped):
            res.notes.append(f"reader {r}: {pred.skipped.summary(show=3)}")
    a, b = res.readers
    both = frames[a].index.intersection(frames[b].index)
    if len(both) < 2:
        raise CohortError(f"only {len(both)} patient(s) could be predicted from both readers' ROIs; "
                          "the ICC needs at least 2")
    pa, pb = frames[a].loc[both, "dl_prob"].to_numpy(float), frames[b].loc[both, "dl_prob"].to_numpy(float)
    da, db = frames[a].loc[both, "dl_mvi"].to_numpy(int), frames[b].loc[both, "dl_mvi"].to_numpy(int)
    res.probabilities = pd.DataFrame({"patient_id": list(both), f"dl_prob_{a}": pa, f"dl_prob_{b}": pb,
                                      f"dl_mvi_{a}": da, f"dl_mvi_{b}": db, "decision_differs": da != db})
    res.icc = icc(np.column_stack([pa, pb]), "ICC2").to_dict()
    res.bland_altman = BlandAltmanDisplay.from_pairs(pa, pb, a, b, title=f"DL-MVI probability, reader {a} - {b}")
    n_diff = int((da != db).sum())
    res.decision_differs = {"n": n_diff, "of": int(len(both)), "share": n_diff / len(both),
                            "threshold": float(em.dl_threshold)}


def study_agreement(run, cohort_dir, readers, column_map=None) -> Path:
    """The readers' agreement of a study run: its final model exported to a temporary folder
    (as ``dlmvi export`` writes it), then :func:`analyse_agreement`, written to ``RUN/agreement``."""
    from dlmvi.deploy.model import export_model
    from dlmvi.io.atomic import atomic_dir

    run = Path(run)
    with tempfile.TemporaryDirectory(prefix=".dlmvi-agreement-model-", dir=run) as tmp:
        export_model(run, Path(tmp) / "model")
        res = analyse_agreement(cohort_dir, readers, Path(tmp) / "model", column_map)
    res.model = "the study's final model"
    res.notes.append("the study's final model scores its own training patients here: the ICC measures how "
                     "much the readers' ROIs move DL-MVI's probability (reproducibility), not its performance")
    with atomic_dir(run / "agreement", marker=AGREEMENT_JSON) as out:
        res.write(out)
    return run / "agreement"


def predict_with_reader(em, root: Path, reader: str, column_map=None):
    """DL-MVI for every patient of the cohort from one reader's ROIs (masks where present)."""
    from dlmvi.deploy.cohort import predict_cohort

    with tempfile.TemporaryDirectory(prefix=f".dlmvi-agreement-{reader}-") as tmp:
        view = Path(tmp)
        for name in _LINKED:
            if (root / name).exists():
                os.symlink((root / name).resolve(), view / name)
        (view / "rois.csv").write_bytes(reader_file(root, reader).read_bytes())
        return predict_cohort(em, view, column_map)


__all__ = ["AgreementResult", "analyse_agreement", "study_agreement", "predict_with_reader", "reader_files", "AGREEMENT_JSON"]
