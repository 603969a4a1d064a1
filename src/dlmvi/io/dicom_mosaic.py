"""Siemens MOSAIC: a whole volume tiled into one 2-D image, unpacked into its slices.

Siemens EPI (fMRI, DWI) stores each volume as one file whose image is a grid of
``ceil(sqrt(n))`` x ``ceil(sqrt(n))`` tiles, ``n`` = NumberOfImagesInMosaic from the private
CSA image header. Read as a plain image it would be one huge tiled slice; so each tile
becomes a frame of its own. Geometry comes from nibabel's :class:`MosaicWrapper` (it reads
the CSA header): the position of tile 0 is ImagePositionPatient corrected for Siemens'
offset of the whole mosaic, tile ``k`` lies ``k`` slice spacings along the CSA slice normal
(whose sign gives the slice order), the slice spacing is SpacingBetweenSlices (else
SliceThickness). A mosaic without a readable CSA header cannot be unpacked and is refused,
naming MOSAIC.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from dlmvi.io.dicom_frame import Frame, to_float


def mosaic_frames(path: Path, ds, base: Frame) -> tuple[list[Frame], str]:
    """One frame per tile of a MOSAIC file, or ([], why) when it cannot be unpacked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel labels its DICOM readers experimental
        from nibabel.nicom import csareader
        from nibabel.nicom.dicomwrappers import MosaicWrapper, WrapperError

        try:
            csa = csareader.get_csa_header(ds)
            w = MosaicWrapper(ds, csa)
            n = int(w.n_mosaic)
            shape = w.image_shape
            ipp = w.image_position
            normal = w.slice_normal
        except (WrapperError, csareader.CSAReadError, KeyError, ValueError, TypeError, AssertionError) as exc:
            return [], (f"is a Siemens MOSAIC whose CSA header cannot be read ({type(exc).__name__}); "
                        "the mosaic cannot be unpacked into slices - export the series as NIfTI with "
                        "dcm2niix or as non-mosaic DICOM")
    if shape is None or ipp is None or normal is None or n < 1:
        return [], ("is a Siemens MOSAIC without the geometry (CSA slice normal, image position) needed "
                    "to unpack it into slices")
    dz = to_float(ds.get("SpacingBetweenSlices")) or to_float(ds.get("SliceThickness"))
    if not dz:
        return [], "is a Siemens MOSAIC without SpacingBetweenSlices or SliceThickness"
    rows, cols = int(shape[0]), int(shape[1])
    normal = np.asarray(normal, dtype=np.float64)
    origin = np.asarray(ipp, dtype=np.float64)
    frames = []
    for k in range(n):
        pos = origin + k * dz * normal
        frames.append(replace(base, index=k, kind="mosaic", rows=rows, cols=cols,
                              position=tuple(float(v) for v in pos), thickness=dz))
    return frames, ""


def tile(pixel_array: np.ndarray, index: int, rows: int, cols: int) -> np.ndarray:
    """Tile ``index`` (row-major in the mosaic grid) of a mosaic image."""
    per_row = pixel_array.shape[1] // cols
    r, c = divmod(index, per_row)
    return pixel_array[r * rows:(r + 1) * rows, c * cols:(c + 1) * cols]
