"""DICOM -> float32 image in [0, 1], as a radiologist's display would show it.

Order of operations (DICOM PS3.3 C.11), through pydicom's own functions: stored values -> `apply_modality_lut`
(rescale slope/intercept or Modality LUT) -> `apply_voi_lut` (VOI LUT sequence, else the first Window Center/Width
with its VOI LUT Function LINEAR, LINEAR_EXACT or SIGMOID), else the min-max of the non-padding values -> scaled
to [0, 1] by the output range -> MONOCHROME1 inverted so that dense tissue is bright. Pixel Padding Value (and Pixel
Padding Range Limit) mark background: those pixels are 0 whatever the photometric interpretation, so they never
enter the breast crop or the min-max, and ``DicomInfo.padding`` marks them (a bool mask, None when the image has no
padding pixel) so that standardization can leave them out of each image's mean and std (``transforms.standardize``).

Memory: the chain is evaluated once per possible stored value (at most 65,536 of them for <= 16-bit pixels), giving
a float32 look-up table that the stored pixels index; a full mammogram never gets a float64 (or any second float)
copy. The padding mask is one byte per pixel, made only for an image that has padding pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGExtended12Bit,
    MediaStorageDirectoryStorage,
)

from wsod_mammo.data.errors import file_not_found

MIN_SIDE = 2  # pixels: the breast crop and the laterality inference need two rows and two columns
# a data set without file meta: (implicit VR, little endian) as pydicom found them -> its transfer syntax
BARE_SYNTAX: dict[tuple[bool | None, ...], UID] = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


class DicomError(ValueError):
    """A DICOM file that cannot be turned into an image; the message is ``"<path>: <reason>"``."""


class NotAnImageError(DicomError):
    """A DICOM object of a class that holds no image (a CAD report, a presentation state, a DICOMDIR): nothing is
    wrong with the file, so ``wsod predict`` counts it apart from the unreadable ones. ``kind`` names its class."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses from a DataLoader worker whole
        return type(self), (str(self), self.kind)


def not_an_image(error: Exception) -> str:
    """The class of the DICOM object that ``error`` refused as holding no image; "" for any other failure."""
    return error.kind if isinstance(error, NotAnImageError) else ""


def describe_failure(path: str | Path, error: Exception) -> str:
    """``"<path>: <reason>"`` for a file that could not be read, without repeating a path the reason already names."""
    reason = str(error)
    return reason if reason.startswith(str(path)) else f"{path}: {reason}"


@dataclass(frozen=True)
class DicomInfo:
    """The tags the pipeline needs besides the pixels, and where the padding is.

    ``padding``: ``(H, W)`` bool, True on Pixel Padding Value pixels; None when the image has none (no mask made).
    """

    height: int
    width: int
    laterality: str | None
    view: str | None
    photometric: str
    padding: np.ndarray | None = field(default=None, compare=False, repr=False)
    # what makes this readable file unlike the mammograms GMIC learns from (``reader_warnings``); empty for most
    warnings: tuple[str, ...] = ()
    study: str = ""  # StudyInstanceUID (empty when untagged): which exam the image belongs to
    # mm per pixel (rows, columns): PixelSpacing, else ImagerPixelSpacing (the detector's, ~10% above the breast's
    # by magnification); None when neither holds two positive numbers. Only lesion sizes read it: no error, no warning
    spacing_mm: tuple[float, float] | None = None


class _BadTag(ValueError):
    """A tag the display transform uses, present but malformed; the message names the tag (``read_dicom`` the file)."""


def _laterality(ds: pydicom.Dataset) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return None


def reader_warnings(ds: pydicom.Dataset) -> tuple[str, ...]:
    """Why a readable DICOM may not be a mammogram as GMIC learns them (FOR PRESENTATION full-field images): another
    modality, the detector's raw data, or a Presentation LUT Shape that contradicts its Photometric Interpretation
    (is it inverted?). The model still runs on it; the reader's output says so, per file."""
    notes = []
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality and modality != "MG":
        notes.append(f"Modality {modality}, not MG (mammography): the model was trained on mammograms")
    if str(ds.get("PresentationIntentType", "") or "").strip().upper() == "FOR PROCESSING":
        notes.append(
            "a FOR PROCESSING image (the detector's raw data, before the vendor's image processing): the model was "
            "trained on FOR PRESENTATION images"
        )
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    if (shape, photometric) in (("INVERSE", "MONOCHROME2"), ("IDENTITY", "MONOCHROME1")):
        notes.append(
            f"Presentation LUT Shape {shape} with {photometric} (the standard pairs INVERSE with MONOCHROME1 only): "
            f"read as {photometric} says, dense tissue bright; a viewer that applies the shape shows it inverted: "
            "check the overlay"
        )
    return tuple(notes)


def _check_pixel_layout(ds: pydicom.Dataset, path: Path) -> str:
    """What no decoding can turn into one grayscale mammogram, refused from the tags before the pixels are decoded
    (a tomosynthesis volume is hundreds of MB to decompress): several frames, colour samples, a colour photometric
    interpretation. DicomError naming the file and what it holds; else the photometric interpretation."""
    frames = ds.get("NumberOfFrames")
    try:
        frames = int(frames) if frames not in (None, "") else 1
    except (TypeError, ValueError):
        frames = 1  # a malformed count: the decoded array's shape decides
    if frames > 1:
        raise DicomError(
            f"{path}: {frames} frames (tomosynthesis, or a series stored in one file); expected one 2-D mammogram"
        )
    samples = ds.get("SamplesPerPixel")
    if samples not in (None, "") and str(samples).strip() != "1":
        raise DicomError(f"{path}: {samples} samples per pixel (a colour image); expected one grayscale sample")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomError(f"{path}: expected MONOCHROME1 or MONOCHROME2, found {photometric}")
    return photometric


def _codes(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every stored value a <= 16-bit image can hold, and the unsigned view of ``pixels`` that indexes them."""
    if pixels.dtype.kind not in "iu" or pixels.dtype.itemsize > 2:
        raise ValueError(f"expected <= 16-bit integer pixels, found {pixels.dtype}")
    if not pixels.dtype.isnative:  # Explicit VR Big Endian: pydicom's array is '>u2'; its codes are the values
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    unsigned = np.dtype(f"u{pixels.dtype.itemsize}")
    values = np.arange(2 ** (8 * pixels.dtype.itemsize), dtype=np.int64)
    if pixels.dtype.kind == "i":  # code c holds the signed value of its bit pattern
        values = values.astype(unsigned).view(pixels.dtype).astype(np.int64)
    return values, pixels.view(unsigned)


def _present(codes: np.ndarray, size: int, rows: int = 256) -> np.ndarray:
    """Which codes occur, counted a band of rows at a time (bincount's int64 copy stays small)."""
    counts = np.zeros(size, np.int64)
    for start in range(0, codes.shape[0], rows):
        counts += np.bincount(codes[start : start + rows].ravel(), minlength=size)
    return counts > 0


def _padding_range(ds: pydicom.Dataset) -> tuple[int, int] | None:
    """The inclusive range of stored padding values: Pixel Padding Value, up to Pixel Padding Range Limit if given."""
    if "PixelPaddingValue" not in ds:
        return None
    pad = _as_stored(ds, int(ds.PixelPaddingValue))
    limit = _as_stored(ds, int(ds.get("PixelPaddingRangeLimit", pad)))
    return min(pad, limit), max(pad, limit)


def _as_stored(ds: pydicom.Dataset, value: int) -> int:
    """A padding tag's value as the pixels hold it. The tag is US or SS after Pixel Representation, and writers
    put US beside signed pixels (0x8000, 32768, for -32768): a value is then its bit pattern in Bits Stored, as
    the pixels' own values are (a 12-bit 0x800 is -2048). A value of the pixels' own sign stays as it is."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    if signed and 2 ** (bits - 1) <= value < 2**bits:
        return value - 2**bits
    if not signed and -(2 ** (bits - 1)) <= value < 0:
        return value + 2**bits
    return value


def _padding(ds: pydicom.Dataset, values: np.ndarray) -> np.ndarray:
    """Mask over the codes: Pixel Padding Value, or the inclusive range up to Pixel Padding Range Limit."""
    bounds = _padding_range(ds)
    if bounds is None:
        return np.zeros(values.shape, bool)
    return (values >= bounds[0]) & (values <= bounds[1])


def _padding_mask(ds: pydicom.Dataset, pixels: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool, True on padding pixels (two comparisons: several times faster than a look-up)."""
    bounds = _padding_range(ds)
    assert bounds is not None  # called only for an image with padding pixels, which needs the padding tag
    low, high = bounds
    info = np.iinfo(pixels.dtype)
    low, high = max(low, info.min), min(high, info.max)
    if low > high:  # a range the pixels cannot hold
        return np.zeros(pixels.shape, bool)
    return (pixels >= pixels.dtype.type(low)) & (pixels <= pixels.dtype.type(high))


def _number(ds: pydicom.Dataset, keyword: str, first: bool = False) -> float:
    """The tag's value as one finite number (``first``: the first of several, the one pydicom's windowing uses);
    ``_BadTag`` naming the tag otherwise (an empty value would reach numpy as None)."""
    element = ds[keyword]
    value = element.value[0] if first and isinstance(element.value, MultiValue) and element.value else element.value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        found = "an empty value" if value is None or value == "" else repr(value)
        raise _BadTag(f"{element.name} {element.tag}: expected {'a' if first else 'one'} number, found {found}")
    return number


def _voi_lut(ds: pydicom.Dataset) -> pydicom.Dataset | None:
    """The VOI LUT that `apply_voi_lut` applies (it takes precedence over the window), or None."""
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
        return voi[0]
    return None


def _check_display_tags(ds: pydicom.Dataset) -> None:
    """The numbers the display transform reads, each checked where it is used: Rescale Slope and Intercept (applied
    only as a pair, as pydicom does; a zero slope would make every pixel one value), the window (unless a VOI LUT
    replaces it) and the padding values. ``_BadTag`` naming the first malformed one."""
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        if _number(ds, "RescaleSlope") == 0:
            raise _BadTag(f"{ds['RescaleSlope'].name} {ds['RescaleSlope'].tag}: 0 would give every pixel one value")
        _number(ds, "RescaleIntercept")
    if _voi_lut(ds) is None and "WindowCenter" in ds and "WindowWidth" in ds:
        _number(ds, "WindowCenter", first=True)
        _number(ds, "WindowWidth", first=True)
    if "PixelPaddingValue" in ds:
        _number(ds, "PixelPaddingValue")
        if "PixelPaddingRangeLimit" in ds:
            _number(ds, "PixelPaddingRangeLimit")


def _output_range(ds: pydicom.Dataset, modality: np.ndarray, used: np.ndarray) -> tuple[float, float]:
    """The range `apply_voi_lut` maps to (PS3.3 C.11.2), else the min-max of the values present (no VOI).

    With a window, ``low`` is what the window's lower side maps to and ``high`` its upper side: pydicom takes them as
    the stored range through the rescale, so a negative Rescale Slope gives ``low > high``. The display value is the
    fraction of the way from ``low`` to ``high`` (signed span): the window's lower side dark, as PS3.3 C.11.2.1.2
    draws it, whatever the slope's sign.
    """
    voi = _voi_lut(ds)
    if voi is not None:
        return 0.0, float(2 ** int(voi.LUTDescriptor[2]) - 1)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        if ds.get("ModalityLUTSequence"):
            low, high = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
        elif int(ds.get("PixelRepresentation", 0)) == 0:
            low, high = 0.0, float(2 ** int(ds.BitsStored) - 1)
        else:
            low, high = -float(2 ** (int(ds.BitsStored) - 1)), float(2 ** (int(ds.BitsStored) - 1) - 1)
        if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
            slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
            low, high = low * slope + intercept, high * slope + intercept
        return low, high
    present = modality[used]
    return (float(present.min()), float(present.max())) if present.size else (0.0, 1.0)


def _display_lut(ds: pydicom.Dataset, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float32 table over the stored codes (see `_codes`): display value in [0, 1], bright = dense, padding 0; and
    the mask of the padding codes that occur in ``pixels``."""
    _check_display_tags(ds)
    values, codes = _codes(pixels)
    padding = _padding(ds, values)
    present = _present(codes, values.size)
    used = present & ~padding
    if present.any() and not used.any():
        raise _BadTag("Pixel Padding Value (0028,0120): every pixel is padding, no image is left")
    modality = apply_modality_lut(values, ds)
    if modality.dtype.kind == "f" and np.array_equal(modality, np.round(modality)):
        modality = modality.astype(np.int64)  # apply_voi indexes its LUT with integers
    display = np.asarray(apply_voi_lut(modality, ds), np.float64)
    low, high = _output_range(ds, np.asarray(modality, np.float64), used)
    span = high - low  # negative for a window under a negative Rescale Slope (see _output_range)
    lut = np.clip((display - low) / (span if span != 0 else 1.0), 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        lut = 1.0 - lut
    lut[padding] = 0.0
    return lut.astype(np.float32), padding & present


def _gdcm_pixels(path: Path) -> np.ndarray:
    """The stored values as GDCM itself decodes them: pydicom's GDCM plugin refuses 12-bit JPEG Extended, and the
    only other decoder of it (pylibjpeg-libjpeg) is GPL-3."""
    import gdcm  # python-gdcm, a dependency; imported here because only this transfer syntax calls it directly

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise ValueError("GDCM cannot read the file")
    image = reader.GetImage()
    form = image.GetPixelFormat()
    samples, bits = form.GetSamplesPerPixel(), form.GetBitsAllocated()
    if samples != 1 or bits not in (8, 16):
        raise ValueError(f"expected one sample of 8 or 16 bits per pixel, found {samples} of {bits}")
    dtype = np.dtype(f"{'i' if form.GetPixelRepresentation() else 'u'}{bits // 8}")  # GDCM's buffer: native order
    columns, rows = image.GetDimension(0), image.GetDimension(1)
    frames = image.GetDimension(2) if image.GetNumberOfDimensions() == 3 else 1
    buffer = image.GetBuffer().encode("utf-8", "surrogateescape")  # GDCM hands bytes over as a str
    return np.frombuffer(buffer, dtype).reshape((rows, columns) if frames == 1 else (frames, rows, columns))


def _pixels(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """The stored values, through pydicom's decoding plugins (GDCM, pylibjpeg-openjpeg); 12-bit JPEG Extended,
    which those refuse, through GDCM directly. DicomError naming the file when nothing decodes them."""
    try:
        return ds.pixel_array
    except Exception as err:
        failure = f"{type(err).__name__}: {err}"
        cause = err
    if ds.file_meta.get("TransferSyntaxUID") == JPEGExtended12Bit:
        try:
            return _gdcm_pixels(path)
        except Exception as err:
            failure += f"; GDCM itself: {type(err).__name__}: {err}"
    raise DicomError(f"{path}: pixel data cannot be decoded ({failure})") from cause


def _bare_dataset(path: Path) -> pydicom.FileDataset:
    """A file without the DICOM Part 10 header (128-byte preamble, ``DICM``; many old exports lack it), read when its
    content parses as a data set with pixel data. Without file meta its transfer syntax is the encoding pydicom
    found: such a file cannot hold compressed pixels."""
    try:
        ds = pydicom.dcmread(path, force=True)
        syntax = ds.file_meta.get("TransferSyntaxUID") or BARE_SYNTAX.get(tuple(ds.original_encoding))
        parsed = syntax is not None and all(keyword in ds for keyword in ("PixelData", "Rows", "Columns"))
    except Exception:  # content that is no data set makes pydicom raise many types
        parsed = False
    if not parsed:
        raise DicomError(
            f"{path}: not a DICOM file: no DICOM Part 10 header ('DICM' at byte 128), and its content is not a data "
            "set with pixel data"
        )
    assert syntax is not None  # parsed
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _not_an_image(ds: pydicom.Dataset) -> tuple[str, str]:
    """What a DICOM without pixel data is, by its SOP class: (its class's name, the end of the error that refuses
    it). A study's export holds such objects beside its images (the DICOMDIR of a CD, CAD structured reports,
    presentation states), and a row saying only "no pixel data" read as a broken image. ``("", "")`` for an image's
    class (its pixels are what is missing) and where the file names no SOP class."""
    uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    if not uid:
        return "", ""
    if uid == MediaStorageDirectoryStorage:
        said = ": a DICOMDIR, the index of a medium's files, not an image"
        return "DICOMDIR", f"{said} (the images are the files it lists)"
    name = UID(str(uid)).name  # pydicom's registry ("Mammography CAD SR Storage"); an unknown UID names itself
    if "Image Storage" in name:
        return "", ""
    if name == str(uid):
        return f"SOP class {uid}", f": SOP class {uid}, not an image"
    return name, f": a {name} object, not an image"


def _holds_pixel_data_tag(path: Path) -> bool:
    """Whether the bytes of the (7FE0,0010) PixelData tag occur in the file, in either byte order: a compressed
    file cut short within its pixel data parses without it, and was said to have none."""
    data = path.read_bytes()
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


def _dataset_with_pixels(path: Path) -> pydicom.FileDataset:
    """The file's data set, its pixels not yet decoded: DicomError naming ``path`` where it is missing, no DICOM,
    cut short or without pixel data (``NotAnImageError`` for an object of a class that holds no image)."""
    if not path.is_file():
        raise DicomError(file_not_found(path))
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:  # no preamble and DICM marker
        ds = _bare_dataset(path)
    except Exception as err:  # pydicom raises many types on truncated headers
        raise DicomError(f"{path}: unreadable DICOM header ({type(err).__name__}: {err})") from err
    if "TransferSyntaxUID" not in ds.file_meta and tuple(ds.original_encoding) in BARE_SYNTAX:
        # a Part 10 file whose file meta lacks (0002,0010) (some anonymizers drop it): the encoding pydicom parsed
        ds.file_meta.TransferSyntaxUID = BARE_SYNTAX[tuple(ds.original_encoding)]
    if "PixelData" in ds:
        return ds
    if _holds_pixel_data_tag(path):  # pydicom drops an element the file ends inside (a warning, no error)
        raise DicomError(f"{path}: the file ends inside its pixel data (cut short: an interrupted download or copy?)")
    kind, said = _not_an_image(ds)
    message = f"{path}: no pixel data (PixelData tag absent){said}"
    raise NotAnImageError(message, kind) if kind else DicomError(message)


def read_dicom(path: str | Path) -> tuple[np.ndarray, DicomInfo]:
    """Decode a mammogram to a ``(H, W)`` float32 image in [0, 1] (bright = dense) and its tags (``info.padding``:
    where the padding pixels are, or None).

    A file without the Part 10 header (preamble and ``DICM``) is read when its content is a data set with pixels.
    Raises ``DicomError`` naming the path and the reason for a missing, non-DICOM, truncated or
    pixel-less file, or one whose display tags are malformed (naming the tag).
    """
    path = Path(path)
    ds = _dataset_with_pixels(path)
    photometric = _check_pixel_layout(ds, path)
    pixels = _pixels(ds, path)
    if pixels.ndim != 2:
        raise DicomError(f"{path}: expected one 2-D grayscale frame, found pixel array of shape {pixels.shape}")
    if min(pixels.shape) < MIN_SIDE:
        rows, columns = pixels.shape
        raise DicomError(
            f"{path}: expected at least {MIN_SIDE}x{MIN_SIDE} pixels, found {rows}x{columns} (rows x columns)"
        )
    try:
        lut, padding = _display_lut(ds, pixels)
    except _BadTag as err:
        raise DicomError(f"{path}: {err}") from err
    except (ValueError, TypeError, KeyError, NotImplementedError, AttributeError, IndexError) as err:
        raise DicomError(f"{path}: display transform failed ({type(err).__name__}: {err})") from err
    image = lut[_codes(pixels)[1]]  # (H, W) float32, the only full-size float array
    mask = _padding_mask(ds, pixels) if padding.any() else None  # (H, W) bool, only for an image with padding
    del pixels
    info = DicomInfo(
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        laterality=_laterality(ds),
        view=str(ds.get("ViewPosition", "") or "") or None,
        photometric=photometric,
        padding=mask,
        warnings=reader_warnings(ds),
        study=_study_uid(ds),
        spacing_mm=pixel_spacing(ds),
    )
    return image, info


def pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """``(row, column)`` spacing in mm: PixelSpacing (0028,0030) where the file calibrates it, else the detector's
    ImagerPixelSpacing (0018,1164), which every digital mammogram carries; None when neither is two positive
    finite numbers."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            rows, columns = (float(v) for v in value)  # absent (None) or malformed: the errors below
        except (TypeError, ValueError):
            continue
        if all(math.isfinite(v) and v > 0 for v in (rows, columns)):
            return rows, columns
    return None


def _study_uid(ds: pydicom.Dataset) -> str:
    """StudyInstanceUID as the file spells it, "" when absent. Read raw, without pydicom's UID validation: exports
    with anonymized, non-numeric UIDs (VinDr's are hex hashes) made it warn "Invalid value for VR UI" on every file."""
    element = ds.get_item("StudyInstanceUID")
    value = element.value if element is not None else ""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value or "").strip(" \x00")
