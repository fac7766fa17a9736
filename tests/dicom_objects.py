"""Test helper: a DICOM object of a class that holds no image, as a PACS export or a CD holds beside the images."""

from __future__ import annotations

from pathlib import Path

import pydicom

CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"  # Mammography CAD SR Storage
PRESENTATION_STATE = "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy Presentation State Storage


def object_without_image(image: Path, path: Path, sop_class: str = CAD_SR) -> Path:
    """A copy of the DICOM ``image`` at ``path`` with its pixels gone and its SOP class ``sop_class`` (a CAD
    structured report by default)."""
    ds = pydicom.dcmread(image)
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.save_as(path)
    return path
