"""``dlmvi import``: a PACS or CD export in, a de-identified cohort folder out.

An export is a DICOMDIR or a tree of (often thousands of anonymously named) DICOM files from
many patients, studies and series. The import

1. indexes every file once, header only (:func:`dlmvi.io.dicom_index.index_tree`);
2. groups files by patient, study and series and splits each series into volumes
   (:mod:`dlmvi.io.dicom_volumes`);
3. maps series to sequences with the rules of a map file (regular expressions searched in
   SeriesDescription, then ProtocolName; plus a volume choice);
4. writes ``COHORT/images/<patient_id>/<SEQ>.nii.gz`` with the same reader as the cohort's
   DICOM folders (:func:`dlmvi.io.dicom_series.assemble`), compressed and de-identified: the
   NIfTI header holds geometry and voxels only; ``patient_id`` comes from the map's rule,
   never from the DICOM PatientID unless the map asks for it;
5. writes ``COHORT/scanners.csv`` (patient_id, sequence, vendor, model, field_strength,
   series_date), ``COHORT/import_series.csv`` (every series, its mapping and status) and a
   ``clinical.csv`` skeleton only when none exists.

It never writes into the export, and is restartable: outputs are written atomically and an
existing ``<SEQ>.nii.gz`` is kept (delete it to redo it).

The map file (TOML)::

    [patients]
    id = "sequential"          # or "table" (pseudonyms from `table`) or "dicom" (PatientID, explicit)
    table = "/secure/key.csv"  # dicom_patient_id,patient_id - outside the export and the cohort
    prefix = "P"               # sequential ids: P001, P002, ... (recorded in `table`)
    width = 3
    cohort = "2024"            # the cohort column of the clinical.csv skeleton

    [sequences.T1]
    series = "(?i)t1.*(pre|native)"
    [sequences.T1A]
    series = "(?i)dyn"
    volume = "temporal position 2"   # see dlmvi.io.dicom_volumes
    [sequences.DWI]
    series = "(?i)dwi|diffusion"
    exclude = "(?i)adc"              # optional
    pick = "last"                    # optional, when several series match: "first" or "last"
"""

from __future__ import annotations

import csv
import io
import os
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dlmvi.constants import CLINICAL_COLUMNS, REQUIRED_COLUMNS, SEQUENCES
from dlmvi.errors import ConfigError, ImageError
from dlmvi.io.dicom_index import DicomFile, IndexResult, index_tree
from dlmvi.io.dicom_volumes import HIGHEST_B, Volume, VolumeChoiceError, choose_volume, parse_choice, split_volumes

ID_MODES = ("sequential", "table", "dicom")
SCANNER_COLUMNS = ["patient_id", "sequence", "vendor", "model", "field_strength", "series_date"]
SERIES_COLUMNS = ["patient_id", "study_date", "series_number", "description", "protocol", "series_date",
                  "frames", "volumes", "orientation", "vendor", "model", "field_strength", "sequence", "volume",
                  "status"]
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ----------------------------------------------------------------------------- the map


@dataclass(frozen=True)
class SequenceRule:
    """How one sequence is found: a regex on SeriesDescription/ProtocolName and a volume."""

    sequence: str
    series: re.Pattern
    exclude: re.Pattern | None = None
    volume: str | None = None
    pick: str | None = None

    def matches(self, description: str, protocol: str) -> bool:
        hit = bool(self.series.search(description) or self.series.search(protocol))
        if hit and self.exclude is not None:
            hit = not (self.exclude.search(description) or self.exclude.search(protocol))
        return hit


@dataclass(frozen=True)
class ImportMap:
    """The parsed map file (see the module docstring)."""

    path: Path
    id_mode: str
    table: Path | None
    prefix: str
    width: int
    cohort: str
    rules: tuple[SequenceRule, ...]

    @classmethod
    def listing(cls, path: str | os.PathLike = "(no map)") -> "ImportMap":
        """A map without rules: `dlmvi import --dry-run` lists an export's series to write the map."""
        return cls(Path(path), "sequential", None, "P", 3, "", ())

    @classmethod
    def from_toml(cls, path: str | os.PathLike, patients: bool = True) -> "ImportMap":
        """Parse and check a map file.

        ``patients=False``: a map for one study at a time (a PACS's map: ``dlmvi pacs``,
        ``dlmvi listen``), whose [patients] settings are not used, so none is required.

        Raises:
            ConfigError: naming the file, the entry and the fix.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"map file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
        bad = set(data) - {"patients", "sequences"}
        if bad:
            raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(bad))}; use [patients] and [sequences.SEQ]")
        pat = data.get("patients", {})
        bad = set(pat) - {"id", "table", "prefix", "width", "cohort"}
        if bad:
            raise ConfigError(f"{path}: [patients] has unknown key(s) {', '.join(sorted(bad))}")
        mode = str(pat.get("id", "sequential"))
        if mode not in ID_MODES:
            raise ConfigError(f"{path}: [patients] id = {mode!r}; use one of {', '.join(ID_MODES)}")
        table = pat.get("table")
        if mode in ("sequential", "table") and not table and patients:
            raise ConfigError(
                f"{path}: [patients] id = {mode!r} needs table = \"/a/secure/folder/key.csv\": the file that links "
                "DICOM PatientIDs to cohort ids (kept outside the export and the cohort)")
        table_path = None if not table else (path.parent / str(table)).resolve()
        prefix = str(pat.get("prefix", "P"))
        if not re.fullmatch(r"[A-Za-z0-9_-]{0,16}", prefix):
            raise ConfigError(f"{path}: [patients] prefix {prefix!r}: letters, digits, '_' or '-' only")
        try:
            width = int(pat.get("width", 3))
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: [patients] width must be a whole number") from None
        seqs = data.get("sequences", {})
        if not seqs:
            raise ConfigError(f"{path}: no [sequences.SEQ] rules; add e.g. [sequences.T1] series = \"(?i)t1\"")
        rules = []
        for seq, rule in seqs.items():
            where = f"{path}: [sequences.{seq}]"
            if seq not in SEQUENCES:
                raise ConfigError(f"{where}: unknown sequence; use one of {', '.join(SEQUENCES)}")
            if not isinstance(rule, dict) or "series" not in rule:
                raise ConfigError(f"{where} needs series = \"REGEX\" (searched in SeriesDescription and ProtocolName)")
            bad = set(rule) - {"series", "exclude", "volume", "pick"}
            if bad:
                raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(bad))}; allowed: series, exclude, volume, pick")
            try:
                series = re.compile(str(rule["series"]))
                exclude = re.compile(str(rule["exclude"])) if rule.get("exclude") else None
            except re.error as exc:
                raise ConfigError(f"{where}: invalid regular expression ({exc})") from None
            volume = rule.get("volume")
            if volume is not None:
                try:
                    parse_choice(str(volume))
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
            pick = rule.get("pick")
            if pick not in (None, "first", "last"):
                raise ConfigError(f"{where}: pick = {pick!r}; use \"first\" or \"last\"")
            rules.append(SequenceRule(seq, series, exclude, None if volume is None else str(volume), pick))
        return cls(path, mode, table_path, prefix, width, str(pat.get("cohort", "")), tuple(rules))


# ----------------------------------------------------------------------------- the plan


@dataclass
class Series:
    """One series of the export (identifying fields stay in memory: ``patient_key``)."""

    patient_key: str
    study_uid: str
    files: list[DicomFile]
    volumes: list[Volume] = field(default_factory=list)
    error: str = ""
    patient_id: str = ""
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (sequence, volume label)
    status: str = ""

    @property
    def first(self) -> DicomFile:
        return self.files[0]

    @property
    def number(self):
        return self.first.series_number

    @property
    def n_frames(self) -> int:
        return sum(len(f.frames) for f in self.files)

    def name(self) -> str:
        """``series 5 'DYN 3 phases'`` (no identifiers)."""
        desc = self.first.description or self.first.protocol or "no description"
        return f"series {self.number if self.number is not None else '?'} {desc!r}"

    def orientation(self) -> str:
        fr = next((fr for f in self.files for fr in f.frames if fr.orientation), None)
        if fr is None:
            return ""
        o = np.asarray(fr.orientation)
        n = np.abs(np.cross(o[:3], o[3:]))
        plane = ("sagittal", "coronal", "axial")[int(np.argmax(n))]
        return plane if n.max() >= 0.95 else f"{plane} oblique"

    def sort_key(self):
        f = self.first
        return (f.series_date, f.series_time, self.number if self.number is not None else -1)


@dataclass
class Output:
    """One sequence of one patient that the import writes (or could not)."""

    patient_id: str
    sequence: str
    series: Series | None
    volume: Volume | None = None
    note: str = ""
    problem: str = ""
    state: str = ""  # "written", "exists", "would write", "failed"

    def path(self, out: Path) -> Path:
        return out / "images" / self.patient_id / f"{self.sequence}.nii.gz"


@dataclass
class ImportPlan:
    """Everything the import found and decided, before (and after) writing."""

    index: IndexResult
    series: list[Series]
    outputs: list[Output]
    patient_ids: dict[str, str]  # patient_key -> patient_id (in memory only)
    unknown_patients: list[str]  # patient keys missing from a pseudonym table (in memory only)
    new_ids: dict[str, str]

    def problems(self) -> list[Output]:
        return [o for o in self.outputs if o.problem]

    def unmapped(self) -> dict[str, list[Series]]:
        out = defaultdict(list)
        for s in self.series:
            if s.patient_id and not s.mapped:
                out[s.patient_id].append(s)
        return dict(out)


def _check_paths(export: Path, out: Path, table: Path | None) -> None:
    export_r, out_r = export.resolve(), out.resolve()
    if not export_r.is_dir():
        raise ConfigError(f"{export} is not a folder; give the folder of the DICOM export (or the CD's root)")
    if out_r == export_r or export_r in out_r.parents or out_r in export_r.parents:
        raise ConfigError(f"--out {out} and the export {export} overlap; write the cohort to a separate folder "
                          "(the export is never modified)")
    if table is not None:
        t = table.resolve()
        for name, root in (("the export", export_r), ("the cohort", out_r)):
            if root in t.parents:
                raise ConfigError(f"the patient table {table} lies inside {name}; keep the file that links DICOM "
                                  "PatientIDs to cohort ids elsewhere (it identifies patients)")


def _read_table(path: Path | None) -> dict[str, str]:
    if path is None or not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and not {"dicom_patient_id", "patient_id"} <= set(rows[0]):
        raise ConfigError(f"{path}: the patient table needs the columns dicom_patient_id,patient_id")
    out = {}
    for i, r in enumerate(rows, start=2):
        key, pid = (r.get("dicom_patient_id") or "").strip(), (r.get("patient_id") or "").strip()
        if not key or not _SAFE_ID.match(pid):
            raise ConfigError(f"{path}, row {i}: needs a dicom_patient_id and a patient_id of letters, digits, "
                              f"'_', '-' or '.' (got {pid!r})")
        if key in out and out[key] != pid:
            raise ConfigError(f"{path}, row {i}: the same DICOM patient appears twice with different ids")
        out[key] = pid
    if len(set(out.values())) != len(out):
        raise ConfigError(f"{path}: two DICOM patients share one patient_id")
    return out


def _assign_ids(keys: list[str], imap: ImportMap) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """patient_key -> patient_id, keys without an id, and ids newly assigned (sequential)."""
    if imap.id_mode == "dicom":
        ids = {}
        for k in keys:
            if k.startswith("study:") or not _SAFE_ID.match(k):
                raise ConfigError(
                    f"{imap.path}: id = \"dicom\" but a patient's DICOM PatientID is empty or has characters a "
                    "folder name cannot hold; use id = \"sequential\" or a pseudonym table")
            ids[k] = k
        return ids, [], {}
    table = _read_table(imap.table)
    ids = {k: table[k] for k in keys if k in table}
    missing = [k for k in keys if k not in table]
    new: dict[str, str] = {}
    if imap.id_mode == "sequential":
        pat = re.compile(rf"^{re.escape(imap.prefix)}(\d+)$")
        used = {int(m.group(1)) for v in table.values() if (m := pat.match(v))}
        nxt = max(used, default=0) + 1
        for k in missing:
            pid = f"{imap.prefix}{nxt:0{imap.width}d}"
            while pid in table.values() or pid in new.values():
                nxt += 1
                pid = f"{imap.prefix}{nxt:0{imap.width}d}"
            new[k] = pid
            nxt += 1
        ids.update(new)
        missing = []
    return ids, missing, new


def plan_import(export: str | os.PathLike, out: str | os.PathLike, imap: ImportMap,
                progress: Callable[[int, int], None] | None = None, workers: int = 1,
                index: IndexResult | None = None) -> ImportPlan:
    """Index the export and decide, per patient and sequence, which series and volume to write.

    Args:
        export: the export's folder (never modified).
        out: the cohort folder to write (used for the checks and the existing outputs).
        imap: the map.
        progress: called as ``progress(done, total)`` while indexing.
        workers: processes used to read headers.
        index: an index already made (tests, benchmarks).
    """
    export, out = Path(export), Path(out)
    _check_paths(export, out, imap.table)
    res = index if index is not None else index_tree(export, progress, workers=workers)
    groups: dict[str, list[DicomFile]] = defaultdict(list)
    for rec in res.files:
        groups[rec.series_uid].append(rec)
    series = []
    for files in groups.values():
        files.sort(key=lambda r: (r.series_number or 0, r.path.name))
        s = Series(files[0].patient_key, files[0].study_uid, files)
        bad = next((r for r in files if r.note), None)
        if bad is not None:
            s.error = f"{bad.path.name} {bad.note}"
        else:
            try:
                s.volumes = split_volumes([fr for r in files for fr in r.frames])
            except ImageError as exc:
                s.error = str(exc)
        series.append(s)
    keys = sorted({s.patient_key for s in series})
    ids, unknown, new = _assign_ids(keys, imap)
    for s in series:
        s.patient_id = ids.get(s.patient_key, "")
    series.sort(key=lambda s: (s.patient_id, s.first.study_date, s.sort_key()))
    by_patient: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        if s.patient_id:
            by_patient[s.patient_id].append(s)
    outputs = []
    for pid in sorted(by_patient):
        for rule in imap.rules:
            outputs.append(_map_one(pid, rule, by_patient[pid], imap))
    for o in outputs:
        if o.series is not None and o.volume is not None:
            o.series.mapped.append((o.sequence, o.volume.label))
    return ImportPlan(res, series, outputs, ids, unknown, new)


def _map_one(pid: str, rule: SequenceRule, candidates: list[Series], imap: ImportMap) -> Output:
    hits = [s for s in candidates if rule.matches(s.first.description, s.first.protocol)]
    seq = rule.sequence
    if not hits:
        return Output(pid, seq, None, problem=f"no series matches [sequences.{seq}] series = "
                                              f"{rule.series.pattern!r}")
    if len(hits) > 1:
        if rule.pick is None:
            names = "; ".join(s.name() for s in hits)
            return Output(pid, seq, None, problem=(
                f"ambiguous: {len(hits)} series match [sequences.{seq}] ({names}); tighten `series`, add "
                "`exclude`, or set pick = \"first\"/\"last\" in the map"))
        hits = sorted(hits, key=Series.sort_key)
        hits = [hits[0] if rule.pick == "first" else hits[-1]]
    s = hits[0]
    if s.error:
        return Output(pid, seq, s, problem=f"{s.name()}: {s.error}")
    choice = rule.volume or (HIGHEST_B if seq == "DWI" else None)
    try:
        vol = choose_volume(s.volumes, choice, s.name())
    except VolumeChoiceError as exc:
        example = exc.volumes[-1].label
        return Output(pid, seq, s, problem=(
            f"{str(exc).removesuffix('; say which one to read')}; say which one is {seq}: add "
            f"volume = \"{example}\" (or another label) to [sequences.{seq}] in {imap.path.name}"))
    note = ""
    if len(s.volumes) > 1:
        note = (f"{vol.label} of {len(s.volumes)} volumes ("
                + ("the highest b-value, the default for DWI" if rule.volume is None else "as the map says") + ")")
    return Output(pid, seq, s, vol, note=note)


# ----------------------------------------------------------------------------- writing


def run_import(plan: ImportPlan, out: str | os.PathLike, imap: ImportMap, dry_run: bool = False,
               progress: Callable[[int, int], None] | None = None) -> ImportPlan:
    """Write what ``plan`` decided into the cohort folder ``out`` (nothing with ``dry_run``).

    Existing ``<SEQ>.nii.gz`` files are kept (restart); a failed volume is reported and the
    others are still written. Tables: scanners.csv (rows merged by patient and sequence),
    import_series.csv (rewritten), clinical.csv (only when absent), the patient table
    (sequential ids appended).
    """
    from dlmvi.io.atomic import write_text
    from dlmvi.io.dicom_series import assemble
    from dlmvi.io.images import Where, write_nifti

    out = Path(out)
    todo = [o for o in plan.outputs if o.volume is not None]
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        for tmp in (out / "images").rglob(".*.tmp*") if (out / "images").is_dir() else ():
            tmp.unlink(missing_ok=True)  # an interrupted run's partial files (never read)
        if plan.new_ids and imap.table is not None:
            _write_table(imap.table, plan.new_ids)
        if plan.unknown_patients and imap.table is not None:
            # identifying, so beside the user's own table, never in the cohort or a message
            write_text(missing_table_path(imap.table), _csv(["dicom_patient_id"], [
                {"dicom_patient_id": k} for k in plan.unknown_patients if not k.startswith("study:")]))
    done = 0
    for o in todo:
        target = o.path(out)
        if target.is_file():
            o.state = "exists"
        elif dry_run:
            o.state = "would write"
        else:
            try:
                img = assemble(o.volume.frames, Where(o.patient_id, o.sequence), o.series.name())
                write_nifti(img, target, descrip=f"dlmvi import {o.sequence}")
                o.state = "written"
            except ImageError as exc:
                o.state = "failed"
                o.problem = str(exc)
        done += 1
        if progress:
            progress(done, len(todo))
    for s in plan.series:
        if not s.patient_id:
            s.status = "patient not in the table"
        elif s.mapped:
            states = {o.state for o in plan.outputs if o.series is s and o.volume is not None}
            s.status = "/".join(sorted(states))
        else:
            s.status = "unmapped" + (f" ({s.error})" if s.error else "")
    if dry_run:
        return plan
    _write_scanners(out / "scanners.csv", plan)
    write_text(out / "import_series.csv", _csv(SERIES_COLUMNS, _series_rows(plan)))
    clinical = out / "clinical.csv"
    if not clinical.exists():
        pids = sorted({o.patient_id for o in plan.outputs if o.state in ("written", "exists")})
        cols = list(REQUIRED_COLUMNS) + [c for c in CLINICAL_COLUMNS if c not in REQUIRED_COLUMNS]
        write_text(clinical, _csv(cols, [{"patient_id": p, "cohort": imap.cohort} for p in pids]))
    return plan


def missing_table_path(table: Path) -> Path:
    """Where the DICOM PatientIDs missing from a pseudonym table are listed (beside it)."""
    return table.with_name(table.stem + ".missing.csv")


def _csv(columns, rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})
    return buf.getvalue()


def _write_table(path: Path, new: dict[str, str]) -> None:
    """Append newly assigned ids to the patient table (atomically; old rows unchanged)."""
    from dlmvi.io.atomic import write_text

    old = path.read_text(encoding="utf-8-sig") if path.is_file() else "dicom_patient_id,patient_id\n"
    if not old.endswith("\n"):
        old += "\n"
    write_text(path, old + _csv(["dicom_patient_id", "patient_id"],
                                [{"dicom_patient_id": k, "patient_id": v} for k, v in new.items()]).split("\n", 1)[1])


def _fs(v) -> str:
    return "" if v is None else f"{v:g}"


def _write_scanners(path: Path, plan: ImportPlan) -> None:
    from dlmvi.io.atomic import write_text

    rows = {}
    if path.is_file():
        for r in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
            rows[(r.get("patient_id", ""), r.get("sequence", ""))] = r
    for o in plan.outputs:
        if o.state in ("written", "exists") and o.series is not None:
            f = o.series.first
            rows[(o.patient_id, o.sequence)] = {
                "patient_id": o.patient_id, "sequence": o.sequence, "vendor": f.vendor, "model": f.model,
                "field_strength": _fs(f.field_strength), "series_date": f.series_date}
    order = sorted(rows, key=lambda k: (k[0], SEQUENCES.index(k[1]) if k[1] in SEQUENCES else 99))
    write_text(path, _csv(SCANNER_COLUMNS, [rows[k] for k in order]))


def _series_rows(plan: ImportPlan) -> list[dict]:
    rows = []
    for s in plan.series:
        if not s.patient_id:
            continue
        f = s.first
        rows.append({
            "patient_id": s.patient_id, "study_date": f.study_date, "series_number": s.number,
            "description": f.description, "protocol": f.protocol, "series_date": f.series_date,
            "frames": s.n_frames, "volumes": "; ".join(v.label for v in s.volumes) if s.volumes else "",
            "orientation": s.orientation(), "vendor": f.vendor, "model": f.model,
            "field_strength": _fs(f.field_strength),
            "sequence": "; ".join(q for q, _ in s.mapped), "volume": "; ".join(v for _, v in s.mapped),
            "status": s.status or ("mapped" if s.mapped else "unmapped")})
    return rows


def series_table(plan: ImportPlan) -> list[dict]:
    """The de-identified table of patients, studies and series (what the CLI prints)."""
    return _series_rows(plan)
