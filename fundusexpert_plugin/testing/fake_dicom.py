"""DICOM photographs with fake patient data, written with pydicom, for offline tests and trials.

``write_fake_dicom(path, rgb, ...)`` writes an Ophthalmic Photography 8-bit Image Storage file
(SOP class 1.2.840.10008.5.1.4.1.1.77.1.5.1) from an RGB array, carrying the identifying values
of :data:`FAKE_PATIENT` (``DOE^JANE``, a fake MRN, birth date, institution, dates), so that a test
can check that none of them reaches an output. Pixel encodings:

* ``photometric='RGB'`` or ``'YBR_FULL_422'`` (native: the 4:2:2 layout ``Y1 Y2 Cb Cr`` of PS3.3
  C.7.6.3.1.2, chroma averaged over each horizontal pixel pair; width must be even);
  ``'MONOCHROME2'`` (the luma of the RGB image);
* ``jpeg=True``: JPEG Baseline (1.2.840.10008.1.2.4.50) encoded by Pillow: 4:2:2 chroma with
  ``YBR_FULL_422``, or 4:4:4 without colour transform with ``RGB``;
* ``frames=n``: the same image ``n`` times (NumberOfFrames);
* ``burned_in=True``: ``BurnedInAnnotation = YES``.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

#: Identifying values written into every fake file (none may appear in any output).
FAKE_PATIENT: Dict[str, str] = {
    'PatientName': 'DOE^JANE',
    'PatientID': 'MRN-0042-7731',
    'PatientBirthDate': '19580214',
    'InstitutionName': 'Fake General Eye Hospital',
    'ReferringPhysicianName': 'SMITH^ALAN',
    'AccessionNumber': 'ACC-99120-X',
    'StudyDate': '20240311',
    'StudyDescription': 'Fundus photo DOE JANE left eye',
}
OPHTHALMIC_PHOTOGRAPHY_8BIT = '1.2.840.10008.5.1.4.1.1.77.1.5.1'


def _ybr_422_bytes(rgb: np.ndarray) -> bytes:
    from pydicom.pixels import convert_color_space
    ybr = convert_color_space(rgb, 'RGB', 'YBR_FULL').astype(np.float64)
    h, w, _ = ybr.shape
    pairs = ybr.reshape(h, w // 2, 2, 3)
    out = np.empty((h, w // 2, 4), dtype=np.float64)
    out[..., 0], out[..., 1] = pairs[:, :, 0, 0], pairs[:, :, 1, 0]
    out[..., 2], out[..., 3] = pairs[:, :, :, 1].mean(axis=2), pairs[:, :, :, 2].mean(axis=2)
    return np.round(out).clip(0, 255).astype(np.uint8).tobytes()


def _jpeg_bytes(rgb: np.ndarray, photometric: str) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format='JPEG', quality=95,
                              subsampling=0 if photometric == 'RGB' else 1, keep_rgb=photometric == 'RGB')
    return buf.getvalue()


def write_fake_dicom(path: Path | str, rgb: np.ndarray, *, photometric: str = 'RGB', jpeg: bool = False,
                     frames: int = 1, burned_in: bool = False, image_laterality: Optional[str] = 'L',
                     series_laterality: Optional[str] = None,
                     pixel_spacing_mm: Optional[Sequence[float]] = (0.0105, 0.0105),
                     sop_instance_uid: Optional[str] = None, patient: Dict[str, str] = FAKE_PATIENT) -> Path:
    """Write one fake ophthalmic photograph (see the module docstring).

    Args:
        path: output file.
        rgb: np.ndarray[H, W, 3] uint8.
        photometric: ``'RGB'``, ``'YBR_FULL_422'`` or ``'MONOCHROME2'`` (native only).
        image_laterality, series_laterality: ImageLaterality (0020,0062) / Laterality (0020,0060)
            codes (``'L'``, ``'R'``, ``'B'``, ``'U'``) or ``None`` to leave out.
        pixel_spacing_mm: PixelSpacing (0028,0030) as (row, column) mm, or ``None``.
        sop_instance_uid: default a fresh UID.

    Returns:
        ``path``.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPHTHALMIC_PHOTOGRAPHY_8BIT
    meta.MediaStorageSOPInstanceUID = sop_instance_uid or generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b'\0' * 128)
    ds.SOPClassUID = OPHTHALMIC_PHOTOGRAPHY_8BIT
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = 'OP'
    for key, value in patient.items():
        setattr(ds, key, value)
    if image_laterality:
        ds.ImageLaterality = image_laterality
    if series_laterality:
        ds.Laterality = series_laterality
    if pixel_spacing_mm:
        ds.PixelSpacing = [f'{v:g}' for v in pixel_spacing_mm]
    ds.BurnedInAnnotation = 'YES' if burned_in else 'NO'
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if photometric == 'MONOCHROME2':
        from PIL import Image
        frame = np.asarray(Image.fromarray(rgb).convert('L')).tobytes()
        ds.SamplesPerPixel = 1
    else:
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        if jpeg:
            frame = _jpeg_bytes(rgb, photometric)
        else:
            frame = _ybr_422_bytes(rgb) if photometric == 'YBR_FULL_422' else rgb.tobytes()
    ds.PhotometricInterpretation = photometric
    if frames > 1:
        ds.NumberOfFrames = frames
    if jpeg:
        ds.PixelData = encapsulate([frame] * frames)
        ds['PixelData'].VR = 'OB'
        ds.LossyImageCompression = '01'
    else:
        ds.PixelData = frame * frames
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
