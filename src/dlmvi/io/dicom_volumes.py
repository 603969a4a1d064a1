"""Several volumes in one series: split the frames into volumes, label them, pick one.

Real series hold more than one 3-D volume: DWI with b = 0/50/800, multi-echo T1 (in/opposed
phase), dynamic T1 with arterial/portal/delayed phases as temporal positions, Philips field
maps with magnitude and field-map frames, fMRI time series. Their frames repeat positions,
and stacking them would mix volumes. So frames that share a position are split, trying these
keys in order (a key is used only when it takes at least two values and no more values than
the most frames any position holds - a per-slice time stamp of a 2-D acquisition is not a
volume key):

1. image type (ImageType / FrameType: magnitude, phase, field map...) -> ``image type M``
2. diffusion b-value (DiffusionBValue, Siemens/Philips/GE private tags) -> ``b 800``
3. echo (EchoNumbers, else EchoTime / EffectiveEchoTime) -> ``echo 2``
4. temporal position (TemporalPositionIdentifier, TemporalPositionIndex) -> ``temporal position 2``
5. trigger time (TriggerTime), then acquisition time (AcquisitionTime, frame datetime), each
   numbered in time order -> ``temporal position 2`` (the output says which key was used)
6. otherwise, when every position holds the same number of frames, the k-th frame of each
   position in acquisition order (AcquisitionTime, then InstanceNumber) -> ``volume k``

Keys combine when one is not enough (``image type M, b 800``). Every volume can also be
chosen by its place in the list (``volume 2``).

A choice (:func:`parse_choice`) is one or more comma-separated parts: ``b 800``,
``highest b``, ``echo 2``, ``te 7.65``, ``temporal position 2``, ``image type FIELD_MAP``,
``volume 3``. The default for DWI is ``highest b``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from dlmvi.errors import ConfigError, ImageError
from dlmvi.io.dicom_frame import Frame

#: Frames whose positions along the slice normal differ by less than this (mm) share a slice.
SAME_POSITION_MM = 0.01

#: Largest difference between direction cosines of frames of one series.
ORIENTATION_ATOL = 1e-3

#: The default choice for diffusion-weighted series.
HIGHEST_B = "highest b"


@dataclass
class Volume:
    """One 3-D volume of a series.

    Attributes:
        label: how a user names it (``b 800``, ``temporal position 2``, ``volume 1``).
        parts: the label's parts for matching (``{"b": 800.0, "volume": 3}``).
        key: the attribute(s) that separated it from the others ("" for a single volume).
        detail: what else identifies it (echo time, acquisition time).
        frames: its frames (unordered; the reader sorts them by position).
        slices: number of slices when there are no frames (4-D NIfTI).
    """

    label: str
    parts: dict = field(default_factory=dict)
    key: str = ""
    detail: str = ""
    frames: list[Frame] = field(default_factory=list)
    slices: int | None = None

    @property
    def n_slices(self) -> int | None:
        """Number of slices (None for a volume of a 4-D NIfTI file, listed without reading)."""
        return len(self.frames) if self.frames else self.slices

    def describe(self) -> str:
        """``b 800 (24 slices, TE 80 ms)``."""
        n = self.n_slices
        extra = ", ".join(x for x in (f"{n} slice{'s' if n != 1 else ''}" if n else "", self.detail) if x)
        return f"{self.label} ({extra})" if extra else self.label


class VolumeChoiceError(ImageError):
    """A series holds several volumes and no (or no matching) choice says which one to read.

    Attributes:
        volumes: the series' volumes.
        choice: the choice that was given (None when none was).
    """

    def __init__(self, message: str, volumes: list[Volume], choice: str | None):
        super().__init__(message)
        self.volumes = volumes
        self.choice = choice


# ----------------------------------------------------------------------------- geometry


def normal_of(orientation) -> np.ndarray:
    o = np.asarray(orientation, dtype=np.float64)
    return np.cross(o[:3], o[3:])


def position_ids(frames: list[Frame], normal: np.ndarray) -> list[int]:
    """Cluster id of each frame's position along ``normal`` (ids in ascending position)."""
    d = np.array([np.dot(f.position, normal) for f in frames])
    order = np.argsort(d, kind="stable")
    ids = np.empty(len(frames), dtype=np.int64)
    cur, last = -1, None
    for i in order:
        if last is None or d[i] - last > SAME_POSITION_MM:
            cur += 1
        last = d[i]
        ids[i] = cur
    return ids.tolist()


def _multiplicity(frames: list[Frame], normal) -> int:
    return max(Counter(position_ids(frames, normal)).values()) if frames else 0


# ----------------------------------------------------------------------------- keys


def _fmt_num(v: float) -> str:
    return f"{v:.6g}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = seconds % 86400.0
    return f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:05.2f}".rstrip("0").rstrip(".")


def _type_key(f: Frame):
    return f.image_type or None


def _b_key(f: Frame):
    return None if f.b_value is None else round(f.b_value, 1)


def _echo_key(f: Frame):
    if f.echo_number is not None:
        return ("n", f.echo_number)
    return None if f.echo_time is None else ("te", round(f.echo_time, 3))


def _tp_key(f: Frame):
    return f.temporal_position


def _trigger_key(f: Frame):
    return None if f.trigger_time is None else round(f.trigger_time, 2)


def _acq_key(f: Frame):
    return None if f.acquisition_time is None else round(f.acquisition_time, 3)


#: (name, key function, attribute named in the output), in the order they are tried.
KEYS = (
    ("image type", _type_key, "ImageType/FrameType"),
    ("b", _b_key, "DiffusionBValue"),
    ("echo", _echo_key, "EchoNumbers/EchoTime"),
    ("temporal position", _tp_key, "TemporalPositionIdentifier"),
    ("trigger time", _trigger_key, "TriggerTime"),
    ("acquisition time", _acq_key, "AcquisitionTime"),
)


def _usable(frames, keyfn, normal) -> dict | None:
    """Groups of ``frames`` by ``keyfn`` when it is a volume key here, else None."""
    values = [keyfn(f) for f in frames]
    if any(v is None for v in values):
        return None
    groups: dict = defaultdict(list)
    for f, v in zip(frames, values):
        groups[v].append(f)
    if len(groups) < 2 or len(groups) > _multiplicity(frames, normal):
        return None
    return groups


def _type_labels(types) -> dict:
    """Shortest distinguishing text of each ImageType: the components where they differ."""
    types = list(types)
    width = max(len(t) for t in types)
    padded = [tuple(t) + ("",) * (width - len(t)) for t in types]
    diff = [i for i in range(width) if len({p[i] for p in padded}) > 1]
    return {t: "/".join(p[i] for i in diff if p[i]) or "\\".join(t) for t, p in zip(types, padded)}


def _split(frames: list[Frame], normal, keys, prefix: list[tuple[str, object, str, str]]) -> list[list]:
    """Recursive split: a list of (parts, frames), parts = [(name, value, attribute, detail)]."""
    if _multiplicity(frames, normal) <= 1:
        return [(prefix, frames)]
    for i, (name, keyfn, attr) in enumerate(keys):
        groups = _usable(frames, keyfn, normal)
        if groups is None:
            continue
        out = []
        ordered = _order_groups(name, groups)
        labels = _type_labels(groups) if name == "image type" else None
        for rank, (value, members) in enumerate(ordered, start=1):
            part = _part(name, value, rank, attr, members, labels)
            out.extend(_split(members, normal, keys[i + 1:], prefix + [part]))
        return out
    return _split_by_order(frames, normal, prefix)


def _order_groups(name, groups: dict):
    if name == "image type":
        # first appearance in acquisition order (magnitude before phase on every vendor)
        def first(members):
            return min((m.acquisition_time or 0.0, m.instance or 0, m.index or 0) for m in members)
        return sorted(groups.items(), key=lambda kv: first(kv[1]))
    if name == "echo":
        return sorted(groups.items(), key=lambda kv: (kv[0][0] != "n", kv[0][1]))
    return sorted(groups.items(), key=lambda kv: kv[0])


def _part(name, value, rank, attr, members, type_labels):
    t0 = min((m.acquisition_time for m in members if m.acquisition_time is not None), default=None)
    when = _clock(t0)
    if name == "image type":
        return ("image type", type_labels[value], attr, "")
    if name == "b":
        return ("b", float(value), attr, "")
    if name == "echo":
        kind, v = value
        te = next((m.echo_time for m in members if m.echo_time is not None), None)
        detail = f"TE {_fmt_num(te)} ms" if te is not None else ""
        return ("echo", int(v) if kind == "n" else rank, "EchoNumbers" if kind == "n" else "EchoTime", detail)
    if name == "temporal position":
        return ("temporal position", int(value), attr, f"acquired {when}" if when else "")
    if name == "trigger time":
        return ("temporal position", rank, attr, f"TriggerTime {_fmt_num(value)} ms")
    return ("temporal position", rank, attr, f"acquired {when}" if when else "")


def _split_by_order(frames, normal, prefix):
    """The k-th frame of every position (acquisition order) -> volume k; needs equal counts."""
    ids = position_ids(frames, normal)
    by_pos: dict = defaultdict(list)
    for f, i in zip(frames, ids):
        by_pos[i].append(f)
    counts = {len(v) for v in by_pos.values()}
    if len(counts) != 1:
        worst = max(by_pos.values(), key=len)
        names = ", ".join(f.name for f in worst[:4])
        raise ImageError(
            f"{len(worst)} frames lie at the same position ({names}) but the other positions hold "
            f"{min(counts)}; no b-value, echo, temporal position or acquisition time separates them "
            "into complete volumes - the series mixes volumes or holds duplicate copies of slices; "
            "re-export one volume per series (or remove the duplicates)")
    n = counts.pop()

    def order_key(f):
        return (f.acquisition_time if f.acquisition_time is not None else float("inf"),
                f.instance if f.instance is not None else 0, str(f.file), f.index or 0)

    out = []
    for k in range(n):
        members = [sorted(v, key=order_key)[k] for v in by_pos.values()]
        out.append((prefix + [("volume", None, "AcquisitionTime/InstanceNumber order", "")], members))
    return out


def split_volumes(frames: list[Frame]) -> list[Volume]:
    """Split the frames of one series into volumes (one volume when no position repeats).

    Raises:
        ImageError: frames without position or orientation, frames of several orientations
            (e.g. a 3-plane localizer), or repeated positions that no key separates.
    """
    if not frames:
        return []
    missing = next((f for f in frames if f.position is None or f.orientation is None), None)
    if missing is not None:
        what = "ImagePositionPatient" if missing.position is None else "ImageOrientationPatient"
        raise ImageError(f"{missing.name} lacks {what} (geometry); cannot place the slices")
    ref = np.asarray(frames[0].orientation)
    odd = [f for f in frames if not np.allclose(f.orientation, ref, atol=ORIENTATION_ATOL)]
    if odd:
        n_orient = len({tuple(np.round(f.orientation, 3)) for f in frames})
        raise ImageError(
            f"{odd[0].name} is oriented differently from {frames[0].name} ({n_orient} orientations "
            "in one series, as in a 3-plane localizer); a volume needs one orientation - keep "
            "one orientation per series")
    normal = normal_of(ref)
    pieces = _split(frames, normal, KEYS, [])
    volumes = []
    for ordinal, (parts, members) in enumerate(pieces, start=1):
        label_parts = []
        match = {"volume": ordinal}
        details, attrs = [], []
        for name, value, attr, detail in parts:
            attrs.append(attr)
            if detail:
                details.append(detail)
            if name == "volume":
                label_parts.append(f"volume {ordinal}")
                continue
            match[name] = value
            label_parts.append(f"{name} {_fmt_num(value) if isinstance(value, float) else value}")
        if len(pieces) > 1 and not label_parts:
            label_parts.append(f"volume {ordinal}")
        te = {m.echo_time for m in members if m.echo_time is not None}
        if "te" not in match and len(te) == 1:
            match["te"] = te.pop()
        volumes.append(Volume(", ".join(label_parts) or "volume 1", match, " + ".join(dict.fromkeys(attrs)),
                              ", ".join(details), members))
    # An ordinal label ("volume k") must name the volume's place in the whole list.
    for ordinal, v in enumerate(volumes, start=1):
        if v.label.startswith("volume ") or ", volume " in v.label:
            v.label = re.sub(r"volume \d+", f"volume {ordinal}", v.label)
    return volumes


# ----------------------------------------------------------------------------- choosing

_CHOICE_PATTERNS = (
    (re.compile(r"^highest\s*b(-?value)?$"), lambda m: (HIGHEST_B, None)),
    (re.compile(r"^b\s*[=:]?\s*(\d+(?:\.\d+)?)$"), lambda m: ("b", float(m.group(1)))),
    (re.compile(r"^echo\s*[=:]?\s*(\d+)$"), lambda m: ("echo", int(m.group(1)))),
    (re.compile(r"^te\s*[=:]?\s*(\d+(?:\.\d+)?)\s*(ms)?$"), lambda m: ("te", float(m.group(1)))),
    (re.compile(r"^(?:temporal\s+position|phase|time\s*point)\s*[=:]?\s*(\d+)$"),
     lambda m: ("temporal position", int(m.group(1)))),
    (re.compile(r"^image\s*type\s*[=:]?\s*(\S.*)$"), lambda m: ("image type", m.group(1).strip().upper())),
    (re.compile(r"^volume\s*[=:]?\s*(\d+)$"), lambda m: ("volume", int(m.group(1)))),
)


def parse_choice(text: str) -> list[tuple[str, object]]:
    """``"image type M, b 800"`` -> ``[("image type", "M"), ("b", 800.0)]``.

    Raises:
        ConfigError: a part that is none of the forms in the module docstring.
    """
    out = []
    for raw in str(text).split(","):
        part = " ".join(raw.strip().lower().split())
        for pat, make in _CHOICE_PATTERNS:
            m = pat.match(part)
            if m:
                out.append(make(m))
                break
        else:
            raise ConfigError(
                f"volume choice {text!r}: cannot read {raw.strip()!r}; write e.g. \"b 800\", \"highest b\", "
                "\"echo 2\", \"te 7.65\", \"temporal position 2\", \"image type M\" or \"volume 3\"")
    if not out:
        raise ConfigError("empty volume choice; write e.g. \"b 800\" or \"temporal position 2\"")
    return out


def _matches(v: Volume, name: str, value) -> bool:
    have = v.parts.get(name)
    if have is None:
        return False
    if name == "b":
        return abs(float(have) - float(value)) <= 0.5
    if name == "te":
        return abs(float(have) - float(value)) <= 0.01
    if name == "image type":
        return str(have).upper() == str(value).upper() or str(value).upper() in str(have).upper().split("/")
    return have == value


def listing(volumes: list[Volume]) -> str:
    return "; ".join(v.describe() for v in volumes)


def choose_volume(volumes: list[Volume], choice: str | None, what: str = "the series") -> Volume:
    """The volume ``choice`` names; the only volume when there is one and no choice.

    ``highest b`` is valid for a single volume too (it is the default of DWI).

    Raises:
        VolumeChoiceError: several volumes and no choice, or a choice that matches none or
            several of them (the message lists the volumes with their labels).
        ConfigError: a choice that cannot be parsed.
    """
    if not volumes:
        raise ImageError(f"{what} holds no volume")
    if choice is None or str(choice).strip() == "":
        if len(volumes) == 1:
            return volumes[0]
        keys = " + ".join(dict.fromkeys(v.key for v in volumes if v.key))
        raise VolumeChoiceError(
            f"{what} holds {len(volumes)} volumes (told apart by {keys}): "
            f"{listing(volumes)}; say which one to read", volumes, None)
    parts = parse_choice(choice)
    cands = list(volumes)
    if len(volumes) == 1 and all(n in (HIGHEST_B, "volume") and (n != "volume" or val == 1) for n, val in parts):
        return volumes[0]
    for name, value in parts:
        if name == HIGHEST_B:
            with_b = [v for v in cands if v.parts.get("b") is not None]
            if not with_b:
                cands = []
                break
            top = max(float(v.parts["b"]) for v in with_b)
            cands = [v for v in with_b if abs(float(v.parts["b"]) - top) <= 0.5]
        else:
            cands = [v for v in cands if _matches(v, name, value)]
    if len(cands) == 1:
        return cands[0]
    why = "matches none" if not cands else f"matches {len(cands)} ({', '.join(v.label for v in cands)})"
    raise VolumeChoiceError(
        f"{what}: the volume choice {choice!r} {why} of its {len(volumes)} volume(s): {listing(volumes)}",
        volumes, str(choice))
