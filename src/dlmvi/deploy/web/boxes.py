"""The tumour boxes drawn on the page: checked against the upload, and written as rois.csv."""

from __future__ import annotations

from dlmvi.deploy.web.errors import UploadRefused


def rois_csv(patient_id: str, boxes: dict) -> str:
    """Boxes as rois.csv text (``patient_id, sequence, slice, x0, y0, x1, y1``)."""
    lines = ["patient_id,sequence,slice,x0,y0,x1,y1"]
    for seq, rows in boxes.items():
        for row in sorted(rows):
            lines.append(",".join([patient_id, seq, *(str(int(v)) for v in row)]))
    return "\n".join(lines) + "\n"


def check_boxes(boxes, model, up) -> dict:
    """The page's boxes as {sequence: ((slice, x0, y0, x1, y1), ...)}, checked.

    Each sequence without a mask needs boxes on ``n_slices`` consecutive slices, inside the
    image; a sequence with a mask takes no boxes (the mask wins).

    Args:
        boxes: ``{sequence: [[slice, x0, y0, x1, y1], ...]}`` as the page sends them.
        model: the :class:`~dlmvi.deploy.model.ExportedModel` (its number of key slices).
        up: the :class:`~dlmvi.deploy.web.state.Upload` (its sequences, masks and shapes).
    """
    n = int(model.prepare.n_slices)
    boxes = dict(boxes or {})
    unknown = sorted(set(boxes) - set(up.sequences))
    if unknown:
        raise UploadRefused(422, f"boxes for {', '.join(unknown)}: the model uses {', '.join(up.sequences)} only")
    out = {}
    for seq, info in up.sequences.items():
        rows = boxes.get(seq) or []
        if info["mask"]:
            if rows:
                raise UploadRefused(422, f"{seq}: the upload has a tumour mask for {seq}; draw no box on it")
            continue
        try:
            rows = [tuple(int(v) for v in r) for r in rows]
        except (TypeError, ValueError):
            raise UploadRefused(422, f"{seq}: each box is [slice, x0, y0, x1, y1] in whole voxels") from None
        if any(len(r) != 5 for r in rows):
            raise UploadRefused(422, f"{seq}: each box is [slice, x0, y0, x1, y1] in whole voxels")
        slices = sorted(r[0] for r in rows)
        consecutive = bool(slices) and slices == list(range(slices[0], slices[0] + len(slices)))
        if len(rows) != n or not consecutive:
            got = ", ".join(str(s) for s in slices) or "none"
            raise UploadRefused(422, f"patient {up.patient_id}, {seq}: draw the tumour box on {n} consecutive "
                                f"slices (boxed slices: {got})")
        nz, ny, nx = info["shape"]
        for s, x0, y0, x1, y1 in rows:
            if not (0 <= s < nz and 0 <= x0 <= x1 < nx and 0 <= y0 <= y1 < ny):
                raise UploadRefused(422, f"patient {up.patient_id}, {seq}: box slice {s}, ({x0},{y0})-({x1},{y1}) "
                                    f"lies outside the image of {nx}x{ny}x{nz} voxels or has x0>x1 or y0>y1")
        out[seq] = tuple(sorted(rows))
    return out

