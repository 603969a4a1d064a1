"""One 2-D DICOM image (:class:`Frame`) and the header-value conversions every reader shares.

:mod:`dlmvi.io.dicom_index` (classic files), :mod:`dlmvi.io.dicom_multiframe` (enhanced) and
:mod:`dlmvi.io.dicom_mosaic` (Siemens mosaics) all describe their images as frames; they import
this module, never each other's helpers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Frame:
    """One 2-D image of a series, with what places, groups and labels it.

    Attributes:
        file: the file holding it.
        index: frame number (0-based) in a multi-frame file, tile number in a mosaic, or None
            for a classic single-frame file.
        kind: "classic", "enhanced" or "mosaic".
        position: ImagePositionPatient (LPS, mm) of the centre of the first pixel.
        orientation: ImageOrientationPatient (row cosine, column cosine).
        pixel_spacing: PixelSpacing (row spacing, column spacing) in mm.
        rows, cols: size of the 2-D image.
        slope, intercept: rescale applied to the stored values (per frame).
        thickness: SliceThickness (mm), or SpacingBetweenSlices, used for a single slice.
        b_value: diffusion b-value (s/mm^2), from DiffusionBValue or the vendor's tag.
        echo_number, echo_time: EchoNumbers and EchoTime (ms).
        image_type: ImageType (classic) or FrameType (enhanced) values.
        temporal_position: TemporalPositionIdentifier (classic) or TemporalPositionIndex.
        trigger_time: TriggerTime (ms).
        acquisition_time: AcquisitionTime (or the frame's acquisition datetime) in seconds
            (time of day; for a datetime, since 0001-01-01).
        instance: InstanceNumber of the file.
    """

    file: Path
    index: int | None
    kind: str
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    cols: int
    slope: float = 1.0
    intercept: float = 0.0
    thickness: float | None = None
    b_value: float | None = None
    echo_number: int | None = None
    echo_time: float | None = None
    image_type: tuple[str, ...] = ()
    temporal_position: int | None = None
    trigger_time: float | None = None
    acquisition_time: float | None = None
    instance: int | None = None

    @property
    def name(self) -> str:
        """The file name, with the frame number for a multi-frame file (for messages)."""
        return self.file.name if self.index is None else f"{self.file.name} frame {self.index + 1}"



# ----------------------------------------------------------------------------- values


def to_floats(value, n: int | None = None) -> tuple[float, ...] | None:
    """A multi-valued number (DS/FD) as floats; None when absent or when not ``n`` values."""
    if value is None:
        return None
    if isinstance(value, str):
        vals = [v for v in value.split("\\") if v.strip()]
    else:
        vals = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        return None
    if n is not None and len(out) != n:
        return None
    return out


def to_float(value) -> float | None:
    """A number (first value of a multi-valued one); None when absent or not a number."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and "\\" in value:
        value = value.split("\\")[0]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        if not len(value):
            return None
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def to_int(value) -> int | None:
    """A number rounded to an integer; None when absent or not a number."""
    f = to_float(value)
    return None if f is None else int(round(f))


def to_str(value) -> str:
    """A text value stripped; "" when absent."""
    return "" if value is None else str(value).strip()


def tm_seconds(value) -> float | None:
    """A DICOM TM ("HHMMSS.ffffff", "HH:MM:SS") as seconds since midnight."""
    s = to_str(value).replace(":", "")
    if not s:
        return None
    try:
        hh = int(s[0:2])
        mm = int(s[2:4]) if len(s) >= 4 else 0
        ss = float(s[4:]) if len(s) > 4 else 0.0
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss


def dt_seconds(value) -> float | None:
    """A DICOM DT ("YYYYMMDDHHMMSS.ffffff") as seconds since 0001-01-01."""
    s = to_str(value)
    if len(s) < 8:
        return None
    try:
        day = datetime.strptime(s[:8], "%Y%m%d").toordinal()
    except ValueError:
        return None
    t = tm_seconds(s[8:].split("+")[0].split("-")[0]) if len(s) > 8 else 0.0
    return day * 86400.0 + (t or 0.0)
