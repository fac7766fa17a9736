"""Which kind a file is, whatever its name (a DICOM by its ``DICM`` marker or a data set's first tag; a PNG, TIFF or
JPEG by its extension or signature), and a PNG/TIFF/JPEG file or an array as a grayscale image in [0, 1] scaled by
its bit depth (``scale_to_unit``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from wsod_mammo.data.dicom import MIN_SIDE

JPEG_SUFFIXES = (".jpg", ".jpeg")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", *JPEG_SUFFIXES)
DICOM_MARKER_OFFSET = 128
JPEG_SIGNATURE = b"\xff\xd8\xff"
# The first bytes of a PNG, of a (Big)TIFF in either byte order and of a JPEG: how an image saved without an extension
# is known.
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", JPEG_SIGNATURE)
# How far apart (of 255) a JPEG's colour channels may lie and the image still be gray. A gray image saved as a colour
# JPEG decodes with equal channels (two real mammograms through Pillow at quality 50-95, 4:4:4 and 4:2:0, and OpenCV:
# none apart); a scanner's or an export's faint tint moves them a few levels apart; a coloured mark lies far more.
JPEG_GRAY_TOLERANCE = 12
JPEG_WARNING = (
    "a lossy 8-bit JPEG: its compression smooths away fine detail (calcifications, spiculated margins) that the model "
    "learns from 12-bit DICOMs"
)


def is_dicom(path: str | Path) -> bool:
    """True for a DICOM Part 10 file: ``DICM`` at byte 128 (the preamble), whatever the file's name."""
    return _head(path, DICOM_MARKER_OFFSET + 4)[DICOM_MARKER_OFFSET:] == b"DICM"


# The groups a data set's first element may belong to: file meta, identification, and, where a writer left group 0008
# out, patient, acquisition, relationship and image pixel (read_dicom read such a file named .dcm, and not without it)
FIRST_GROUPS = (0x0002, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028)


def starts_like_data_set(path: Path) -> bool:
    """True for a file that starts as a DICOM data set without the Part 10 preamble, as old exports do: a little-endian
    tag of one of :data:`FIRST_GROUPS`, then an explicit VR (two capitals) or an implicit VR's length (under 16 MB:
    the first element is never the pixels). ``read_dicom`` decides whether it is one."""
    head = _head(path, 8)
    if len(head) < 8 or int.from_bytes(head[:2], "little") not in FIRST_GROUPS:
        return False
    explicit = head[4:6].isalpha() and head[4:6].isupper()
    return explicit or int.from_bytes(head[4:], "little") < 2**24


def _head(path: str | Path, size: int = 8) -> bytes:
    """The file's first ``size`` bytes (fewer for a shorter file; none where it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def has_image_signature(path: str | Path) -> bool:
    """True for a file that starts with a PNG, TIFF or JPEG signature, whatever its name (exports without an
    extension)."""
    head = _head(path)
    return any(head.startswith(signature) for signature in IMAGE_SIGNATURES)


def is_jpeg(path: str | Path) -> bool:
    """A JPEG by its extension or, without one, its signature."""
    return Path(path).suffix.lower() in JPEG_SUFFIXES or _head(path).startswith(JPEG_SIGNATURE)


def _gray(array: np.ndarray) -> np.ndarray:
    """Grayscale saved as RGB(A) -> ``(H, W)``: only when all three colour channels agree (a red mark in one channel
    makes it a colour image); alpha is not compared. Anything else unchanged."""
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]):
            return array[..., 0]
    return array


def scale_to_unit(array: np.ndarray, source: str = "array") -> np.ndarray:
    """Grayscale ``(H, W)`` integer or float array -> float32 in [0, 1].

    uint8 / 255; uint16 by its bit depth rounded up to an even number of bits from 8 (12-bit data / 4095); float
    arrays must already lie in [0, 1]. ValueError naming ``source`` for anything else (colour, NaN, other dtypes,
    fewer than 2 rows or columns).
    """
    array = _gray(array)
    if array.ndim != 2:
        raise ValueError(f"{source}: expected one grayscale (H, W) image, found shape {array.shape}")
    if min(array.shape) < MIN_SIDE:  # an empty image would crash OpenCV (breast crop) in native code
        raise ValueError(
            f"{source}: expected an image of at least {MIN_SIDE}x{MIN_SIDE} pixels, found shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return np.multiply(array, np.float32(1 / 255), dtype=np.float32)
    if array.dtype == np.uint16:
        bits = max(8, int(array.max()).bit_length())
        bits += bits % 2
        return np.multiply(array, np.float32(1 / (2**bits - 1)), dtype=np.float32)
    if array.dtype.kind == "f":
        image = array.astype(np.float32, copy=False)
        low, high = float(image.min()), float(image.max())
        if not (np.isfinite(low) and np.isfinite(high)):  # counted only then: "values in [nan, nan]" said nothing
            raise ValueError(f"{source}: a float image must lie in [0, 1], found {int((~np.isfinite(image)).sum())} "
                             "NaN or infinite pixels")  # fmt: skip
        if not (0.0 <= low and high <= 1.0):
            raise ValueError(f"{source}: a float image must lie in [0, 1], found values in [{low}, {high}]")
        return image
    raise ValueError(f"{source}: expected uint8, uint16 or float pixels, found {array.dtype}")


def read_image_file(path: str | Path, jpeg: bool | None = None) -> np.ndarray:
    """A PNG, TIFF or JPEG file -> ``(H, W)`` float32 in [0, 1] (see ``scale_to_unit``).

    A multi-page TIFF (a tomosynthesis stack, several views) is an error naming its page count, as a multi-frame
    DICOM is: OpenCV would read page 1 alone and say nothing. A gray image saved as a colour JPEG, its channels equal
    or a faint tint apart (``JPEG_GRAY_TOLERANCE``), is read as its luma; a coloured mark makes it a colour image.
    ``jpeg``: whether the file is one, where the caller knows (None: :func:`is_jpeg` asks the file).
    """
    if _utf8_name(str(path)):
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        pages = cv2.imcount(str(path), cv2.IMREAD_UNCHANGED) if array is not None else 0
    else:  # OpenCV crashes the process (SIGSEGV) on a name that is not UTF-8 (Latin-1 from an old archive)
        encoded = np.fromfile(path, dtype=np.uint8)
        array = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
        pages = len(cv2.imdecodemulti(encoded, cv2.IMREAD_UNCHANGED)[1]) if array is not None else 0
    if array is None:
        raise ValueError(f"{path}: not a readable PNG/TIFF/JPEG image")
    if pages > 1:
        raise ValueError(f"{path}: expected one 2-D grayscale image, found a file of {pages} pages")
    if (
        array.ndim == 3
        and array.shape[2] == 3
        and array.dtype == np.uint8
        and (is_jpeg(path) if jpeg is None else jpeg)
    ):
        spread = array.max(axis=2).astype(np.int16) - array.min(axis=2)
        if int(spread.max()) <= JPEG_GRAY_TOLERANCE:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2GRAY)
    return scale_to_unit(array, str(path))


def _utf8_name(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # the file system's bytes, kept as surrogates
        return False
    return True
