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
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGExtended12Bit,
    MediaStorageDirectoryStorage,
)

from wsod_mammo.data.codestream import StreamError, declared_size
from wsod_mammo.data.decoder_process import DecoderCrashed, decode_in_helper
from wsod_mammo.data.dicom_display import BadTag, display_lut, padding_mask, stored_codes
from wsod_mammo.data.dicom_frames import flatten_functional_groups
from wsod_mammo.data.errors import not_a_file

# what pydicom raises on an element it cannot parse (an unknown VR, a value of the wrong length...), read lazily
MALFORMED = (ValueError, TypeError, KeyError, NotImplementedError, AttributeError, IndexError, struct.error)
MIN_SIDE = 2  # pixels: the breast crop and the laterality inference need two rows and two columns
# The most pixels an image may declare (11585 x 11585), checked from its header before decoding: thrice the
# largest mammograms (a film scanned at 50 um, ~7000 x 5500; a detector's 4096 x 3328 is 14 M). Each pixel costs
# ~6 bytes on its way to the input frame (and a compressed DICOM's ~3 more in the decoder process): a JPEG 2000
# DICOM of 9 KB declaring 8000 x 8000 took 0.8 GB, so one declaring 60000 x 60000 would take ~30 GB.
MAX_PIXELS = 2**27
# Elements longer than this are read from the file only when used (pydicom's ``defer_size``): the pixels of a file
# refused from its tags (a tomosynthesis volume of 300 MB to 1 GB, too many pixels) were read whole to be refused.
DEFER_SIZE = 2**20
CUT_SHORT = "the file ends inside its pixel data (cut short: an interrupted download or copy?)"
# a data set without file meta: (implicit VR, little endian) as pydicom found them -> its transfer syntax
BARE_SYNTAX: dict[tuple[bool | None, ...], UID] = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


#: why a file that ``starts_with_zeros`` is no DICOM
ZERO_FILLED = (
    "not a DICOM file: no DICOM Part 10 header ('DICM' at byte 128), and it begins with zero bytes (a zero-filled "
    "file: an interrupted download or copy?)"
)

#: why a Part 10 file whose data set begins with zeros (``zero_filled``) is not read
ZEROS_AFTER_META = (
    "a DICOM file header, then zero bytes where its data set begins (a zero-filled file: an interrupted download or "
    "copy?)"
)
#: why a file zero-filled inside its data set, before any pixel data (``zero_filled``), is not read
ZEROS_IN_DATA_SET = (
    "a DICOM data set that gives way to zero bytes before any pixel data (a zero-filled file: an interrupted download "
    "or copy?)"
)
ZERO_RUN = 4096  # zero bytes after the file meta that refuse a file: no data set starts with one empty element
PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010), little and big endian
# file meta elements (group 0002, explicit VR little endian) whose VR has a 4-byte length
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


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
    instance: str = ""  # SOPInstanceUID (empty when untagged): the image itself, whichever file or copy holds it


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
    interpretation, more than :data:`MAX_PIXELS` pixels. DicomError naming the file and what it holds; else the
    photometric interpretation."""
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
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if isinstance(rows, int) and isinstance(columns, int) and rows * columns > MAX_PIXELS:
        raise DicomError(f"{path}: {too_large(rows, columns)}")
    return photometric


def too_large(height: int, width: int) -> str:
    """Why an image its header declares ``height`` x ``width`` is not decoded: over :data:`MAX_PIXELS`."""
    return (
        f"its header declares {height}x{width} pixels (rows x columns), over the {MAX_PIXELS:,} this reader decodes: "
        "far larger than any mammogram (a damaged header, or a file made to exhaust memory?)"
    )


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
    """The stored values; compressed (encapsulated) ones decoded in a helper process, whose crash on a damaged
    stream costs this file, not the run (:mod:`decoder_process`). DicomError naming the file when nothing decodes
    them."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or not UID(str(syntax)).is_encapsulated:
        return decode_pixels(ds, path)
    _check_codestream_size(ds, path)
    try:
        return decode_in_helper(path)
    except ValueError as err:  # the helper's DicomError, its message naming the file
        raise DicomError(str(err)) from None
    except DecoderCrashed as err:
        if not err.damaged:  # a signal to the job (a scheduler's SIGTERM): the file is not to blame
            raise RuntimeError(f"{path}: pixel data not decoded ({err})") from None
        raise DicomError(f"{path}: pixel data cannot be decoded ({err})") from None


def _check_codestream_size(ds: pydicom.Dataset, path: Path) -> None:
    """DicomError naming the file where its compressed stream declares another size than its Rows x Columns (0
    rows: given by a DNL marker), more than :data:`MAX_PIXELS` pixels, or is made to be walked for long: the decoder
    allocates what the stream declares before pydicom compares it with the header, so a few-KB file could claim GBs
    (:mod:`codestream`)."""
    try:
        size = declared_size(ds, path)
    except StreamError as err:
        raise DicomError(f"{path}: {err}: a damaged file, or one made to be read for long; not decoded") from None
    if size is None:
        return
    header = (ds.get("Rows"), ds.get("Columns"))
    if size == header and size[0] * size[1] <= MAX_PIXELS:
        return
    over = f", over the {MAX_PIXELS:,} this reader decodes" if size[0] * size[1] > MAX_PIXELS else ""
    if not size[0]:  # its row count deferred to a DNL segment after the scan, which no decoder here reads
        over = " (0 rows: a count given after the image data, by a DNL marker, which the decoders do not read)"
    raise DicomError(
        f"{path}: its compressed pixel data declare {size[0]}x{size[1]} pixels{over}, its header "
        f"{header[0]}x{header[1]} (rows x columns): a damaged file, or one made to exhaust memory; not decoded"
    )


def decode_file_pixels(path: Path) -> np.ndarray:
    """The stored values of the file at ``path``, decoded in this process (the helper process's job)."""
    return decode_pixels(_dataset_with_pixels(path), path)


def decode_pixels(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """The stored values, through pydicom's decoding plugins (GDCM, pylibjpeg-openjpeg) in this process; 12-bit
    JPEG Extended, which those refuse, through GDCM directly. DicomError naming the file when nothing decodes them."""
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


def starts_with_zeros(path: Path) -> bool:
    """True for a file whose first 8 bytes are zeros: an empty element (0000,0000), which starts no stored data set.
    pydicom, made to read one as a data set, takes every 8 zero bytes for another such element: 2.5 s a MB, hours for
    a zero-filled file of gigabytes (a download whose space was allocated, and whose data never came)."""
    with open(path, "rb") as handle:
        return handle.read(8) == bytes(8)


def _zeros_after_meta(handle: BinaryIO, head: bytes) -> bool:
    """True for a Part 10 file (``DICM`` at byte 128; ``head``: its first 64 KB) whose data set, after the file meta
    group, begins with :data:`ZERO_RUN` zero bytes (or zeros to its end): a file whose header was written and whose
    rest was allocated and never came. pydicom reads every 8 zero bytes of it as an empty element, ~1 s a MB."""
    if head[128:132] != b"DICM":
        return False
    at = 132
    while at + 8 <= len(head) and head[at : at + 2] == b"\x02\x00":  # the file meta group's elements
        if head[at + 4 : at + 6] in LONG_VRS:
            at += 12 + int.from_bytes(head[at + 8 : at + 12], "little")
        else:
            at += 8 + int.from_bytes(head[at + 6 : at + 8], "little")
    handle.seek(at)
    start = handle.read(ZERO_RUN)
    return len(start) >= 8 and start == bytes(len(start))


def _zeros_before_pixels(handle: BinaryIO) -> bool:
    """True for a file that ends in :data:`ZERO_RUN` zero bytes and holds no (7FE0,0010) PixelData tag (either byte
    order): a data set cut after some elements and zero-filled to its size (a failed copy, a preallocated file). pydicom
    reads every 8 zero bytes as an empty element, ~1 s a MB, before saying there are no pixels. A mammogram whose last
    rows are zero-valued background holds its tag before them: the search ends at its first read (1 MB)."""
    size = handle.seek(0, 2)
    if size < ZERO_RUN:
        return False
    handle.seek(size - ZERO_RUN)
    if handle.read(ZERO_RUN) != bytes(ZERO_RUN):
        return False  # most files: one short read
    handle.seek(0)
    carried = b""
    while chunk := handle.read(2**20):
        window = carried + chunk
        if any(tag in window for tag in PIXEL_DATA_TAGS):
            return False
        carried = window[-3:]  # a tag across two reads
    return True


def zero_filled(path: Path) -> str:
    """Why the file is refused as zero-filled before pydicom parses it (:data:`ZERO_FILLED`,
    :data:`ZEROS_AFTER_META`, :data:`ZEROS_IN_DATA_SET`); "" for any other file. One open for the three checks."""
    with open(path, "rb") as handle:
        head = handle.read(2**16)
        if head[128:132] != b"DICM" and head[:8] == bytes(8):  # as starts_with_zeros
            return ZERO_FILLED
        if _zeros_after_meta(handle, head):
            return ZEROS_AFTER_META
        return ZEROS_IN_DATA_SET if _zeros_before_pixels(handle) else ""


def _bare_dataset(path: Path) -> pydicom.FileDataset:
    """A file without the DICOM Part 10 header (128-byte preamble, ``DICM``; many old exports lack it), read when its
    content parses as a data set with pixel data. Without file meta its transfer syntax is the encoding pydicom
    found: such a file cannot hold compressed pixels."""
    if starts_with_zeros(path):
        raise DicomError(f"{path}: {ZERO_FILLED}")
    try:
        ds = pydicom.dcmread(path, force=True, defer_size=DEFER_SIZE)
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
    uid = _sop_class(ds)
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
        raise DicomError(not_a_file(path))
    if zeros := zero_filled(path):  # pydicom would read every 8 zero bytes as an element, ~1 s a MB
        raise DicomError(f"{path}: {zeros}")
    try:
        ds = pydicom.dcmread(path, defer_size=DEFER_SIZE)
    except InvalidDicomError:  # no preamble and DICM marker
        ds = _bare_dataset(path)
    except Exception as err:  # pydicom raises many types on truncated headers
        raise DicomError(f"{path}: unreadable DICOM header ({type(err).__name__}: {err})") from err
    if "TransferSyntaxUID" not in ds.file_meta and tuple(ds.original_encoding) in BARE_SYNTAX:
        # a Part 10 file whose file meta lacks (0002,0010) (some anonymizers drop it): the encoding pydicom parsed
        ds.file_meta.TransferSyntaxUID = BARE_SYNTAX[tuple(ds.original_encoding)]
    if "PixelData" in ds:
        raw = ds.get_item("PixelData", keep_deferred=True)  # ds["PixelData"] reads deferred pixels, before any check
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length:  # deferred (DEFER_SIZE)
            if raw.value_tell + raw.length > path.stat().st_size:  # said as of a compressed file cut short
                raise DicomError(f"{path}: {CUT_SHORT}")
            return ds
        if not ds["PixelData"].value:  # an anonymizer's blanked image: "object of type 'NoneType' has no len()"
            raise DicomError(f"{path}: its Pixel Data element (7FE0,0010) is empty (0 bytes): no image to read")
        return ds
    if _holds_pixel_data_tag(path):  # pydicom drops an element the file ends inside (a warning, no error)
        raise DicomError(f"{path}: {CUT_SHORT}")
    kind, said = _not_an_image(ds)
    if not said and (image_class := _image_class(ds)):  # an image's object without its pixels: cut short, or stripped
        said = f" in a {image_class} object of {path.stat().st_size:,} bytes: cut short before its pixels, or stripped"
    message = f"{path}: no pixel data (PixelData tag absent){said}"
    raise NotAnImageError(message, kind) if kind else DicomError(message)


def _image_class(ds: pydicom.Dataset) -> str:
    """The name of the data set's SOP class where it is an image's ("Digital Mammography X-Ray Image Storage - For
    Presentation"); "" otherwise."""
    name = UID(str(uid)).name if (uid := _sop_class(ds)) else ""
    return name if "Image Storage" in name else ""


def _sop_class(ds: pydicom.Dataset) -> str:
    """The SOP class UID the data set or its file meta names; "" where neither does."""
    return str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID") or "")


def read_dicom(path: str | Path) -> tuple[np.ndarray, DicomInfo]:
    """Decode a mammogram to a ``(H, W)`` float32 image in [0, 1] (bright = dense) and its tags (``info.padding``:
    where the padding pixels are, or None).

    A file without the Part 10 header (preamble and ``DICM``) is read when its content is a data set with pixels.
    Raises ``DicomError`` naming the path and the reason for a missing, non-DICOM, truncated or
    pixel-less file, or one whose display tags are malformed (naming the tag).
    """
    path = Path(path)
    try:
        return _read_dicom(path)
    except DicomError:
        raise
    except MALFORMED as err:  # pydicom parses an element when it is first read: a damaged one raises then
        raise DicomError(f"{path}: malformed DICOM element ({type(err).__name__}: {err})") from err


def _read_dicom(path: Path) -> tuple[np.ndarray, DicomInfo]:
    """``read_dicom``'s work; its own errors are DicomErrors naming ``path``."""
    ds = _dataset_with_pixels(path)
    photometric = _check_pixel_layout(ds, path)
    flatten_functional_groups(ds)  # an enhanced object's window, rescale, side and spacing, where a classic one's are
    pixels = _pixels(ds, path)
    if not pixels.dtype.isnative:  # Explicit VR Big Endian ('>u2'): swapped once here, not in every step after
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    if pixels.ndim != 2:
        raise DicomError(f"{path}: expected one 2-D grayscale frame, found pixel array of shape {pixels.shape}")
    if min(pixels.shape) < MIN_SIDE:
        rows, columns = pixels.shape
        raise DicomError(
            f"{path}: expected at least {MIN_SIDE}x{MIN_SIDE} pixels, found {rows}x{columns} (rows x columns)"
        )
    try:
        lut, padding = display_lut(ds, pixels)
    except BadTag as err:
        raise DicomError(f"{path}: {err}") from err
    except MALFORMED as err:
        raise DicomError(f"{path}: display transform failed ({type(err).__name__}: {err})") from err
    image = lut[stored_codes(pixels)[1]]  # (H, W) float32, the only full-size float array
    mask = padding_mask(ds, pixels) if padding.any() else None  # (H, W) bool, only for an image with padding
    del pixels
    info = DicomInfo(
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        laterality=_laterality(ds),
        view=str(ds.get("ViewPosition", "") or "") or None,
        photometric=photometric,
        padding=mask,
        warnings=reader_warnings(ds),
        study=_raw_uid(ds, "StudyInstanceUID"),
        spacing_mm=pixel_spacing(ds),
        instance=_raw_uid(ds, "SOPInstanceUID"),
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


def _raw_uid(ds: pydicom.Dataset, keyword: str) -> str:
    """The UID ``keyword`` names (StudyInstanceUID, SOPInstanceUID) as the file spells it, "" when absent. Read
    raw, without pydicom's UID validation: exports with anonymized, non-numeric UIDs (VinDr's are hex hashes) made it
    warn "Invalid value for VR UI" on every file."""
    element = ds.get_item(keyword)
    value = element.value if element is not None else ""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value or "").strip(" \x00")
