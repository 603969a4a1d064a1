"""A real Orthanc PACS for the tests (Debian's ``orthanc`` + ``orthanc-dicomweb``), and phantom
studies stored in it as DICOM (images + a SEG drawn like 3D Slicer's, or an RTSTRUCT).

Orthanc runs on free loopback ports with a temporary configuration: HTTP basic
authentication (user ``dlmvi``), DICOMweb at ``/dicom-web``, DICOM AE ``ORTHANC``, and the
modalities the tests name (the DICOM node as a C-STORE/C-MOVE target). Tests skip with a
message where the binary or the plugin is absent (``.ci/run`` installs them).
"""

from __future__ import annotations

import glob
import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ORTHANC = shutil.which("Orthanc")
USER, PASSWORD = "dlmvi", "s3cret-pw"
PLUGIN_GLOBS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so*",
                "/usr/lib/x86_64-linux-gnu/orthanc/plugins/libOrthancDicomWeb.so*")


def dicomweb_plugin() -> str | None:
    for g in PLUGIN_GLOBS:
        hits = sorted(glob.glob(g))
        if hits:
            return hits[0]
    return None


def skip_reason() -> str | None:
    if not ORTHANC:
        return "Orthanc is not installed (Debian package orthanc; .ci/run installs it)"
    if not dicomweb_plugin():
        return "the Orthanc DICOMweb plugin is not installed (Debian package orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    proc: subprocess.Popen
    http_port: int
    dicom_port: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicom-web"

    def rest(self, method: str, path: str, **kw):
        import httpx2 as httpx

        r = httpx.request(method, self.url + path, auth=(USER, PASSWORD), timeout=60, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def upload(self, files) -> None:
        for f in files:
            self.rest("POST", "/instances", content=Path(f).read_bytes())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_orthanc(root: Path, modalities: dict | None = None) -> Orthanc:
    """Start Orthanc with its database under ``root``; ``modalities``: {name: (AE, port)} on loopback."""
    root.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    cfg = {
        "Name": "dlmvi-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [dicomweb_plugin()], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {k: [ae, "127.0.0.1", port] for k, (ae, port) in (modalities or {}).items()},
        "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True, "DicomCheckCalledAet": False,
        "UnknownSopClassAccepted": True, "HttpDescribeErrors": True, "StableAge": 1, "SaveJobs": False,
    }
    (root / "orthanc.json").write_text(json.dumps(cfg))
    log = open(root / "orthanc.log", "w")
    proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(proc, http_port, dicom_port, root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited: {(root / 'orthanc.log').read_text()[-2000:]}")
        try:
            server.rest("GET", "/system")
            return server
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    server.stop()
    raise RuntimeError("Orthanc did not start in 60 s")


def pacs_config(path: Path, name: str, server: Orthanc, map_file: Path, *, dimse: bool = False,
                password: str = PASSWORD) -> Path:
    """A dlmvi PACS configuration file for ``server`` (credentials in files beside it)."""
    (path.parent / "pacs_user").write_text(USER)
    (path.parent / f"pacs_password_{name}").write_text(password)
    if dimse:
        body = (f'host = "127.0.0.1"\nport = {server.dicom_port}\ncalled_ae = "ORTHANC"\n'
                f'calling_ae = "DLMVI"\n')
    else:
        body = (f'dicomweb = "{server.dicomweb}"\nusername_file = "pacs_user"\n'
                f'password_file = "pacs_password_{name}"\n')
    text = path.read_text() if path.exists() else ""
    path.write_text(text + f'[pacs.{name}]\n{body}map = "{map_file}"\ntimeout = 20\n\n')
    return path


MAP_TOML = """\
[sequences.T1]
series = "^T1$"
[sequences.T1V]
series = "^T1V$"
[sequences.T1D]
series = "^T1D$"
"""


def write_seg(mask_zyx: np.ndarray, series_dir: Path, out: Path, label: str = "Tumour") -> Path:
    """A DICOM SEG of ``mask_zyx`` on the series in ``series_dir`` (highdicom; what Slicer stores)."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.coding import Code

    srcs = sorted((pydicom.dcmread(p) for p in series_dir.glob("*.dcm")),
                  key=lambda d: float(d.ImagePositionPatient[2]))
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label, segmented_property_category=Code("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=Code("108369006", "SCT", "Neoplasm"), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=srcs, pixel_array=mask_zyx.astype(bool), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc], series_instance_uid=hd.UID(), series_number=50, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test (as 3D Slicer)", manufacturer_model_name="test",
        software_versions="0", device_serial_number="0", series_description="Segmentation")
    seg.save_as(out)
    return out


def write_rtstruct(mask_zyx: np.ndarray, series_dir: Path, out: Path) -> Path:
    """An RTSTRUCT whose contour on each slice is the outline of the mask's bounding box there."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    srcs = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in series_dir.glob("*.dcm")),
                  key=lambda d: float(d.ImagePositionPatient[2]))
    first = srcs[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    for k in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID"):
        setattr(ds, k, first.get(k, ""))
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), 60
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "ROI", "20000101", "120000"
    fr = Dataset()
    fr.FrameOfReferenceUID = first.FrameOfReferenceUID
    st, se = Dataset(), Dataset()
    st.ReferencedSOPClassUID, st.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", first.StudyInstanceUID
    se.SeriesInstanceUID = first.SeriesInstanceUID
    st.RTReferencedSeriesSequence = [se]
    fr.RTReferencedStudySequence = [st]
    ds.ReferencedFrameOfReferenceSequence = [fr]
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = 1, first.FrameOfReferenceUID, "Tumour"
    ds.StructureSetROISequence = [roi]
    rc = Dataset()
    rc.ReferencedROINumber = 1
    rc.ContourSequence = []
    dr, dc = (float(v) for v in first.PixelSpacing)
    for z, src in enumerate(srcs):
        ys, xs = np.nonzero(mask_zyx[z])
        if not len(ys):
            continue
        p0 = np.array(src.ImagePositionPatient, float)
        pts = [p0 + np.array([x * dc, y * dr, 0.0]) for x, y in
               ((xs.min(), ys.min()), (xs.max(), ys.min()), (xs.max(), ys.max()), (xs.min(), ys.max()))]
        c = Dataset()
        c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", 4
        c.ContourData = [f"{v:.4f}" for p in pts for v in p]
        rc.ContourSequence.append(c)
    ds.ROIContourSequence = [rc]
    ds.save_as(out, enforce_file_format=True)
    return out


def phantom_study(cohort: Path, index: int, out: Path, accession: str, sequences=("T1", "T1V", "T1D")) -> Path:
    """Patient ``index`` of a DICOM phantom cohort as a PACS study: its series of ``sequences``
    copied into ``out/<SEQ>/`` with the type 2 attributes a modality writes (AccessionNumber,
    ReferringPhysicianName) and its NIfTI masks beside them. Returns ``out``."""
    import pydicom

    pdir = sorted((Path(cohort) / "images").iterdir())[index]
    for seq in sequences:
        (out / seq).mkdir(parents=True, exist_ok=True)
        for f in sorted((pdir / seq).glob("*.dcm")):
            ds = pydicom.dcmread(f)
            ds.AccessionNumber = accession
            ds.ReferringPhysicianName = ""
            ds.save_as(out / seq / f.name, enforce_file_format=True)
        shutil.copy(pdir / f"{seq}_roi.nii.gz", out / f"{seq}_roi.nii.gz")
    return out


def study_files(study: Path, sequences=("T1", "T1V", "T1D")) -> list[Path]:
    return [f for s in sequences for f in sorted((study / s).glob("*.dcm"))]
