"""Annotating a cohort: the worklist, each sequence's state, and the reader's file.

A reader (``dlmvi annotate COHORT --reader A``) boxes the tumour on ``n`` consecutive key slices
of every sequence of every patient. What the reader confirms goes to the reader's own file,
``COHORT/rois.A.csv`` (the format of ``rois.csv``, which ``validate`` and ``prepare`` read),
written atomically after every confirmation; boxes carried to other sequences but not yet
confirmed go to ``COHORT/.rois.A.proposed.csv``, so closing the browser or stopping the server
loses at most the box being drawn.

Two browsers on one reader's file cannot lose each other's work: every write takes a lock
(``.rois.A.csv.lock``, an OS file lock, so two servers too), rereads the file and replaces only
the confirmed sequence's rows. A window that confirms a sequence another window confirmed
differently since it opened the patient is refused (409, nothing written), naming what to do.

States of a sequence: ``mask`` (a ``<SEQ>_roi.nii.gz`` mask file: nothing to draw),
``confirmed`` (rows in the reader's file), ``proposed`` (carried or drafted boxes, or rows of the
cohort's ``rois.csv``, waiting for the reader), ``none``; ``missing`` when there is no image.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlmvi.constants import SEQUENCES
from dlmvi.errors import CohortError
from dlmvi.preprocess.carry import BoxRow, CarryError, Grid, carry_to_all, frame_of_reference

#: A reader's name as it appears in ``rois.<reader>.csv``.
READER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
STATES = ("none", "proposed", "confirmed", "mask", "missing")
HEADER = "patient_id,sequence,slice,x0,y0,x1,y1"


class AnnotationError(CohortError):
    """A box or request the annotation page refuses (HTTP 422): nothing was written."""

    status = 422


class AnnotationConflict(AnnotationError):
    """Another window or a change on disk got there first (HTTP 409): nothing was written."""

    status = 409


def check_reader(reader: str) -> str:
    if not READER.match(reader or ""):
        raise AnnotationError(f"--reader {reader!r}: use 1-32 letters, digits, '-' or '_' (it names the file "
                              "rois.<reader>.csv)")
    return reader


def reader_file(root: Path, reader: str) -> Path:
    """``COHORT/rois.<reader>.csv``: the reader's confirmed boxes."""
    return Path(root) / f"rois.{check_reader(reader)}.csv"


def proposals_file(root: Path, reader: str) -> Path:
    """``COHORT/.rois.<reader>.proposed.csv``: boxes carried or drafted, not yet confirmed."""
    return Path(root) / f".rois.{check_reader(reader)}.proposed.csv"


def read_box_file(path: Path) -> dict[tuple[str, str], tuple[BoxRow, ...]]:
    """A rois.csv-format file as {(patient, sequence): rows}; {} when absent."""
    from dlmvi.io.tables import read_rois

    if not Path(path).is_file():
        return {}
    df = read_rois(path)
    out: dict = {}
    for r in df[["patient_id", "sequence", "slice", "x0", "y0", "x1", "y1"]].itertuples(index=False):
        out.setdefault((r[0], r[1]), []).append(tuple(int(v) for v in r[2:]))
    return {k: tuple(sorted(v)) for k, v in out.items()}


def box_file_text(boxes: dict, order: list[str]) -> str:
    """{(patient, sequence): rows} as rois.csv text, patients in ``order`` then sequences."""
    rank = {p: i for i, p in enumerate(order)}
    seq_rank = {s: i for i, s in enumerate(SEQUENCES)}
    lines = [HEADER]
    for (pid, seq) in sorted(boxes, key=lambda k: (rank.get(k[0], len(rank)), k[0], seq_rank.get(k[1], 99), k[1])):
        for row in sorted(boxes[(pid, seq)]):
            lines.append(",".join([pid, seq, *(str(int(v)) for v in row)]))
    return "\n".join(lines) + "\n"


def check_key_boxes(patient_id: str, sequence: str, rows, size, n_slices: int) -> tuple[BoxRow, ...]:
    """Boxes of one sequence checked: ``n_slices`` consecutive slices, each inside the image.

    Args:
        size: the image's voxels (x, y, slices).

    Raises:
        AnnotationError: names the patient, sequence and what is wrong.
    """
    where = f"patient {patient_id}, {sequence}"
    try:
        rows = [tuple(int(v) for v in r) for r in rows]
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: each box is [slice, x0, y0, x1, y1] in whole voxels") from None
    if any(len(r) != 5 for r in rows):
        raise AnnotationError(f"{where}: each box is [slice, x0, y0, x1, y1] in whole voxels")
    slices = sorted(r[0] for r in rows)
    if len(rows) != n_slices or slices != list(range(slices[0], slices[0] + len(slices))):
        got = ", ".join(str(s) for s in slices) or "none"
        raise AnnotationError(f"{where}: box the tumour on {n_slices} consecutive slices (boxed slices: {got}); "
                              "nothing was saved")
    nx, ny, nz = size
    for s, x0, y0, x1, y1 in rows:
        if not (0 <= s < nz and 0 <= x0 <= x1 < nx and 0 <= y0 <= y1 < ny):
            raise AnnotationError(f"{where}: the box on slice {s}, ({x0},{y0})-({x1},{y1}), lies off the image of "
                                  f"{nx}x{ny}x{nz} voxels (or has x0>x1 or y0>y1); nothing was saved")
    return tuple(sorted(rows))


def fingerprint(sources: dict) -> str:
    """A hash of the name, size and modification time of every file the patient's sources read."""
    h = hashlib.sha256()
    for seq in sorted(sources):
        src = sources[seq]
        for path in [src.image, *src.files()]:
            try:
                st = path.stat()
            except OSError:
                h.update(f"{seq}|{path.name}|gone".encode())
                continue
            h.update(f"{seq}|{path.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def quantise(arr: np.ndarray) -> tuple[bytes, dict]:
    """A volume as the viewer reads it: uint16 little-endian and ``value = offset + scale * q``."""
    lo, hi = float(arr.min()), float(arr.max())
    scale = (hi - lo) / 65535.0 if hi > lo else 1.0
    q = np.clip(np.rint((arr.astype(np.float64) - lo) / scale), 0, 65535).astype("<u2")
    p1, p99 = (float(v) for v in np.percentile(arr, [1, 99]))
    return q.tobytes(), {"offset": lo, "scale": scale, "window": [p1, p99 if p99 > p1 else p1 + 1.0]}


@dataclass
class OpenPatient:
    """One patient's sequences read for the page: grids, frames, viewer volumes."""

    patient_id: str
    fingerprint: str
    grids: dict[str, Grid] = field(default_factory=dict)
    volumes: dict[str, bytes] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)


class Annotator:
    """The worklist of one cohort for one reader, and every write to the reader's files.

    Thread-safe: the web server's requests call it from several threads.

    Args:
        root: the cohort folder.
        reader: the reader's name (``rois.<reader>.csv``).
        sequences: the sequences to box (default: every sequence some patient has).
        n_slices: key slices per sequence (the study: 3).
        column_map: the hospital's column names (``--columns``).
    """

    def __init__(self, root, reader: str, sequences=None, n_slices: int = 3, column_map=None, keep_open: int = 4):
        from dlmvi.cohort.cohort import Cohort

        self.root = Path(root)
        self.reader = check_reader(reader)
        self.n_slices = int(n_slices)
        self.path = reader_file(self.root, reader)
        self.proposed_path = proposals_file(self.root, reader)
        self._lock = threading.RLock()
        self._column_map = column_map
        self._keep_open = keep_open
        self._open: OrderedDict[str, OpenPatient] = OrderedDict()
        self._files: dict[Path, tuple] = {}  # path -> (stat stamp, boxes) of the last read or write
        cohort = Cohort.from_folder(self.root, column_map)
        self.synthetic = cohort.synthetic
        present = {s for p in cohort for s in p.sources}
        if sequences:
            unknown = [s for s in sequences if s not in SEQUENCES]
            if unknown:
                raise AnnotationError(f"--sequences {', '.join(unknown)}: unknown; use {', '.join(SEQUENCES)}")
            self.sequences = list(sequences)
        else:
            self.sequences = [s for s in SEQUENCES if s in present]
        if not self.sequences:
            raise AnnotationError(f"{self.root}: no patient has images under images/; nothing to annotate")
        self.build(cohort)

    # -- the worklist ---------------------------------------------------------------------
    def build(self, cohort=None) -> None:
        """(Re)build the worklist from the cohort folder and the reader's files."""
        from dlmvi.cohort.cohort import Cohort

        cohort = cohort or Cohort.from_folder(self.root, self._column_map)
        with self._lock:
            self.patients = {p.patient_id: p for p in cohort}
            self.order = list(self.patients)
            self.fingerprints = {pid: fingerprint(self._sources(pid)) for pid in self.order}
            self._files.clear()
            self.confirmed = self._read(self.path)
            self.proposed = self._read(self.proposed_path)
            self._open.clear()

    def _sources(self, pid: str) -> dict:
        return {s: src for s, src in self.patients[pid].sources.items() if s in self.sequences}

    def state(self, pid: str, seq: str) -> str:
        src = self.patients[pid].sources.get(seq)
        if src is None:
            return "missing"
        if src.mask is not None:
            return "mask"
        if (pid, seq) in self.confirmed:
            return "confirmed"
        if (pid, seq) in self.proposed or src.boxes is not None:
            return "proposed"
        return "none"

    def entry(self, pid: str) -> dict:
        states = {seq: self.state(pid, seq) for seq in self.sequences}
        p = self.patients[pid]
        todo = [s for s, v in states.items() if v in ("none", "proposed")]
        return {"patient_id": pid, "cohort": p.cohort, "states": states, "done": not todo}

    def worklist(self) -> dict:
        """Every patient's state per sequence, and the progress (patients done of all)."""
        with self._lock:
            rows = [self.entry(pid) for pid in self.order]
        return {"reader": self.reader, "file": self.path.name, "sequences": self.sequences,
                "n_slices": self.n_slices, "synthetic": self.synthetic, "patients": rows,
                "done": sum(r["done"] for r in rows), "total": len(rows)}

    # -- one patient ----------------------------------------------------------------------
    def patient(self, pid: str) -> OpenPatient:
        """The patient's sequences read (cached for the last few patients).

        Raises:
            AnnotationConflict: the patient's folder changed since the worklist was built.
        """
        from dlmvi.io.dicom_volumes import HIGHEST_B
        from dlmvi.io.images import Where, check_finite, read_volume

        self._known(pid)
        with self._lock:
            self.check_unchanged(pid)
            if pid in self._open:
                self._open.move_to_end(pid)
                return self._open[pid]
        op = OpenPatient(pid, self.fingerprints[pid])
        for seq, src in self._sources(pid).items():
            if src.mask is not None:
                continue
            where = Where(pid, seq)
            choice = src.volume or (HIGHEST_B if seq == "DWI" else None)
            img = read_volume(src.image, where, reorient=False, volume=choice)
            arr = _array(img)
            check_finite(arr, where, src.image)
            op.grids[seq] = Grid.from_image(img, frame_of_reference(src.image))
            op.volumes[seq], view = quantise(arr)
            op.info[seq] = {"shape": list(arr.shape), "spacing": [round(v, 6) for v in img.GetSpacing()], **view}
        with self._lock:
            self._open[pid] = op
            while len(self._open) > self._keep_open:
                self._open.popitem(last=False)
        return op

    def _known(self, pid: str) -> None:
        if pid not in self.patients:
            raise AnnotationError(f"patient {pid} is not in {self.root / 'clinical.csv'}")

    def check_unchanged(self, pid: str, seen: str | None = None) -> None:
        """Refuse when the patient's files changed since the worklist was built (or since
        the page opened the patient: ``seen``)."""
        now = fingerprint(self._sources(pid))
        if now != self.fingerprints[pid] or (seen is not None and seen != now):
            raise AnnotationConflict(
                f"patient {pid}: the patient's folder {self.root / 'images' / pid} changed since the worklist was "
                "built (a file added, removed or rewritten); nothing was saved. Reload the worklist (key R) and "
                "open the patient again")

    def view(self, pid: str) -> dict:
        """What the page needs to show one patient: per sequence its grid, state and boxes."""
        op = self.patient(pid)
        seqs = {}
        with self._lock:
            for seq in self.sequences:
                state = self.state(pid, seq)
                item = {"state": state}
                if seq in op.info:
                    src = self.patients[pid].sources[seq]
                    proposed = self.proposed.get((pid, seq)) or src.boxes
                    item.update(op.info[seq], confirmed=self.confirmed.get((pid, seq)),
                                proposed=None if proposed is None else [list(r) for r in proposed])
                seqs[seq] = item
            carry = self.carry_groups(op)
        return {"patient_id": pid, "fingerprint": op.fingerprint, "n_slices": self.n_slices, "sequences": seqs,
                "carry": carry, "worklist": self.entry(pid)}

    @staticmethod
    def carry_groups(op: OpenPatient) -> dict:
        """Per sequence: the sequences its boxes cannot be carried to, and why."""
        from dlmvi.preprocess.carry import same_frame

        return {a: {b: same_frame(ga, gb) for b, gb in op.grids.items() if b != a and same_frame(ga, gb)}
                for a, ga in op.grids.items()}

    # -- writes ---------------------------------------------------------------------------
    def carry(self, pid: str, source: str, rows, seen: str | None = None, targets=None) -> dict:
        """Carry boxes drawn on ``source`` to other sequences of the patient, saved as proposals.

        The drawn boxes are checked first (nothing is written when they are wrong) and saved as
        the source's proposal; the carried ones as proposals of ``targets`` (default: every
        other sequence not yet confirmed; ``[]``: save the drawing only).
        """
        op = self.patient(pid)
        if source not in op.grids:
            raise AnnotationError(f"patient {pid}, {source}: no image to draw on (state {self.state(pid, source)})")
        self.check_unchanged(pid, seen)
        rows = check_key_boxes(pid, source, rows, op.grids[source].size, self.n_slices)
        if targets is None:
            targets = [s for s in op.grids if s != source and (pid, s) not in self.confirmed]
        unknown = [s for s in targets if s not in op.grids]
        if unknown:
            raise AnnotationError(f"patient {pid}: no image to carry the box to for {', '.join(unknown)}")
        grids = {s: op.grids[s] for s in [source, *targets]}
        carried, refused = carry_to_all(rows, source, grids, self.n_slices)
        with self._lock:
            new = {(pid, source): rows, **{(pid, s): r for s, r in carried.items()}}
            self._write_proposals(new)
        why = {s: f"patient {pid}, {s}: not carried from {source}: {msg}; draw the box on {s}"
               for s, msg in refused.items()}
        return {"carried": {s: [list(r) for r in v] for s, v in carried.items()}, "refused": why,
                "worklist": self.entry(pid)}

    def confirm(self, pid: str, seq: str, rows, seen: str | None = None, base=None) -> dict:
        """Write the confirmed boxes of one sequence to the reader's file (atomically, merged).

        Args:
            seen: the patient's fingerprint when the page opened it.
            base: the confirmed rows the page showed for this sequence (None: none), so that a
                confirmation by another window in between is refused, not overwritten.
        """
        op = self.patient(pid)
        if seq not in op.grids:
            raise AnnotationError(f"patient {pid}, {seq}: nothing to confirm (state {self.state(pid, seq)})")
        self.check_unchanged(pid, seen)
        rows = check_key_boxes(pid, seq, rows, op.grids[seq].size, self.n_slices)
        base = None if base is None else tuple(sorted(tuple(int(v) for v in r) for r in base))
        with self._lock, _file_lock(self.path):
            current = self._read(self.path)
            now = current.get((pid, seq))
            if now != base and now != rows:
                raise AnnotationConflict(
                    f"patient {pid}, {seq}: another window confirmed different boxes in {self.path.name} since this "
                    "page opened the patient; nothing was saved. Open the patient again to see them")
            current[(pid, seq)] = rows
            self._write(self.path, current)
            self.confirmed = current
            self._drop_proposal(pid, seq)
        return {"confirmed": [list(r) for r in rows], "worklist": self.entry(pid)}

    def _read(self, path: Path) -> dict:
        """The boxes of a reader's file, reread only when the file changed (another window or
        server writes it by an atomic rename: a new inode, size or time)."""
        stamp = _stamp(path)
        known = self._files.get(path)
        if known is None or known[0] != stamp:
            known = self._files[path] = (stamp, read_box_file(path))
        return dict(known[1])

    def _write(self, path: Path, boxes: dict) -> None:
        from dlmvi.io.atomic import write_text

        write_text(path, box_file_text(boxes, self.order))
        self._files[path] = (_stamp(path), dict(boxes))

    def _write_proposals(self, new: dict) -> None:
        with _file_lock(self.proposed_path):
            current = self._read(self.proposed_path)
            current.update(new)
            self._write(self.proposed_path, current)
            self.proposed = current

    def _drop_proposal(self, pid: str, seq: str) -> None:
        with _file_lock(self.proposed_path):
            current = self._read(self.proposed_path)
            if current.pop((pid, seq), None) is not None:
                self._write(self.proposed_path, current)
            self.proposed = current


def _stamp(path: Path) -> tuple | None:
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _array(img) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(img).astype(np.float32, copy=False)


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive OS lock on ``.<name>.lock`` beside ``path`` (two servers on one file wait)."""
    import fcntl

    lock = path.parent / f".{path.name.lstrip('.')}.lock"
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def adopt_reader_file(root, reader: str, replace: bool = False) -> dict:
    """Make a reader's file the cohort's ``rois.csv`` (what ``validate`` and ``prepare`` read).

    An existing ``rois.csv`` is replaced only with ``replace``; it is kept as
    ``rois.csv.before-<reader>`` first. The reader's file is read and checked first.

    Returns:
        {"rows": n, "patients": n, "replaced": bool, "backup": path or None}.
    """
    from dlmvi.io.atomic import write_text

    root = Path(root)
    src = reader_file(root, reader)
    if not src.is_file():
        raise AnnotationError(f"{src} does not exist; annotate with `dlmvi annotate {root} --reader {reader}` first")
    boxes = read_box_file(src)
    dest = root / "rois.csv"
    backup = None
    if dest.is_file():
        if not replace:
            raise AnnotationError(f"{dest} exists; pass --replace to replace it (it is kept as "
                                  f"rois.csv.before-{reader})")
        backup = root / f"rois.csv.before-{reader}"
        write_text(backup, dest.read_text(encoding="utf-8"))
    text = src.read_text(encoding="utf-8")
    write_text(dest, text)
    return {"rows": sum(len(v) for v in boxes.values()), "patients": len({p for p, _ in boxes}),
            "replaced": backup is not None, "backup": None if backup is None else str(backup)}


__all__ = ["Annotator", "AnnotationError", "AnnotationConflict", "OpenPatient", "STATES", "READER", "check_reader",
           "reader_file", "proposals_file", "read_box_file", "box_file_text", "check_key_boxes", "fingerprint",
           "quantise", "adopt_reader_file", "CarryError"]
