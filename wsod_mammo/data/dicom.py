"""DICOM -> float32 image in [0, 1], as a radiologist's display would show it.

Order of operations (DICOM PS3.3 C.11): stored values -> rescale slope/intercept (modality LUT) -> VOI LUT
sequence, else the first Window Center/Width, else the image's min-max -> MONOCHROME1 inverted so that
dense tissue is bright. Everything is done in float32 in place: a full mammogram never gets a float64 copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue


class DicomError(ValueError):
    """A DICOM file that cannot be turned into an image; the message is ``"<path>: <reason>"``."""


def describe_failure(path: str | Path, error: Exception) -> str:
    """``"<path>: <reason>"`` for a file that could not be read, without repeating a path the reason already names."""
    reason = str(error)
    return reason if reason.startswith(str(path)) else f"{path}: {reason}"


@dataclass(frozen=True)
class DicomInfo:
    """The tags the pipeline needs besides the pixels."""

    height: int
    width: int
    laterality: str | None
    view: str | None
    photometric: str


def _first(value: object) -> float:
    if isinstance(value, MultiValue | list | tuple):
        value = value[0]
    return float(value)


def _laterality(ds: pydicom.Dataset) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return None


def _apply_voi(image: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Map modality values (float32, in place where possible) to [0, 1]."""
    voi = ds.get("VOILUTSequence")
    if voi:
        item = voi[0]
        n_entries, first_value, bits = (int(v) for v in item.LUTDescriptor)
        n_entries = n_entries or 65536
        raw = item.LUTData
        lut = np.frombuffer(raw, np.uint16) if isinstance(raw, bytes) else np.asarray(raw, np.uint16)
        lut = lut[:n_entries].astype(np.float32) / float(2**bits - 1)
        index = np.clip(image - first_value, 0, n_entries - 1, out=image).astype(np.int32)
        return lut[index]
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
        # DICOM linear window: (x - (c - 0.5)) / (w - 1) + 0.5, clipped to [0, 1].
        image -= np.float32(center - 0.5)
        image *= np.float32(1.0 / max(width - 1.0, 1.0))
        image += np.float32(0.5)
        return np.clip(image, 0.0, 1.0, out=image)
    low, high = float(image.min()), float(image.max())
    image -= np.float32(low)
    image *= np.float32(1.0 / max(high - low, 1e-6))
    return image


def read_dicom(path: str | Path) -> tuple[np.ndarray, DicomInfo]:
    """Decode a mammogram to a ``(H, W)`` float32 image in [0, 1] (bright = dense) and its tags.

    Raises ``DicomError`` naming the path and the reason for a missing, non-DICOM, truncated or
    pixel-less file.
    """
    path = Path(path)
    if not path.is_file():
        raise DicomError(f"{path}: file not found")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise DicomError(f"{path}: not a DICOM file ({err})") from err
    except Exception as err:  # pydicom raises many types on truncated headers
        raise DicomError(f"{path}: unreadable DICOM header ({type(err).__name__}: {err})") from err
    if "PixelData" not in ds:
        raise DicomError(f"{path}: no pixel data (PixelData tag absent)")
    try:
        pixels = ds.pixel_array
    except Exception as err:
        raise DicomError(f"{path}: pixel data cannot be decoded ({type(err).__name__}: {err})") from err
    if pixels.ndim != 2:
        raise DicomError(f"{path}: expected one 2-D grayscale frame, found pixel array of shape {pixels.shape}")
    image = pixels.astype(np.float32)
    del pixels
    slope, intercept = float(ds.get("RescaleSlope", 1.0) or 1.0), float(ds.get("RescaleIntercept", 0.0) or 0.0)
    if slope != 1.0:
        image *= np.float32(slope)
    if intercept != 0.0:
        image += np.float32(intercept)
    image = _apply_voi(image, ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), image, out=image)
    elif photometric != "MONOCHROME2":
        raise DicomError(f"{path}: expected MONOCHROME1 or MONOCHROME2, found {photometric}")
    info = DicomInfo(
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        laterality=_laterality(ds),
        view=str(ds.get("ViewPosition", "") or "") or None,
        photometric=photometric,
    )
    return image, info
