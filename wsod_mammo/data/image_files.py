"""Which kind a file is, whatever its name (a DICOM by its ``DICM`` marker or a data set's first tag; a PNG, TIFF or
JPEG by its extension or signature), and a PNG/TIFF/JPEG file or an array as a grayscale image in [0, 1] scaled by
its bit depth (``scale_to_unit``), turned upright by its EXIF/TIFF Orientation as a viewer shows it (``orient``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, TiffImagePlugin

from wsod_mammo.data.dicom import MAX_PIXELS, MIN_SIDE, too_large

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
# EXIF/TIFF tag 274: how the stored pixels are turned to the upright image a viewer shows (1: as stored; 2-4: flipped
# or turned half a turn; 5-8: transposed, so the shown height is the stored width).
ORIENTATION_TAG = 274
# TIFF tag 262, Photometric Interpretation: 0 (WhiteIsZero, DICOM's MONOCHROME1) shows 0 as white. OpenCV and
# Pillow invert an 8-bit such image as they decode it, but not a 16-bit one.
PHOTOMETRIC_TAG, WHITE_IS_ZERO = 262, 0
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
    if not array.dtype.isnative:  # big-endian uint16 (a raw file read as '>u2') is uint16: it was refused as '>u2'
        array = array.astype(array.dtype.newbyteorder("="))
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


def exif_orientation(image: Image.Image) -> int:
    """The EXIF/TIFF Orientation (1-8) a viewer turns ``image`` by, from its header alone; 1 for none or a value outside
    1-8 (``ImageOps.exif_transpose`` ignores those too). The base class's ``getexif``: a PNG's own decodes every pixel
    to look for an eXIf chunk after them, so a PNG's orientation is the one its chunks before the pixel data give."""
    value = Image.Image.getexif(image).get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """``(height, width)`` of ``image`` as a viewer shows it (and ``read_image_file`` returns it), from its header: the
    stored size, transposed for orientations 5-8. A TIFF's stored size comes from its tags: Pillow (13 here) reports
    a TIFF's ``size`` already transposed, other formats' as stored."""
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        height, width = int(image.tag_v2[257]), int(image.tag_v2[256])  # ImageLength, ImageWidth
    else:
        height, width = image.height, image.width
    return (width, height) if exif_orientation(image) >= 5 else (height, width)


# Each EXIF orientation as the flips, half turns and transposes of an array's first two axes that turn the stored
# pixels upright, as ``ImageOps.exif_transpose`` does.
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # half a turn
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # stored a quarter turn anticlockwise: turned clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
    8: lambda a: np.rot90(a, 1),  # stored a quarter turn clockwise: turned anticlockwise
}


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """A decoded ``(H, W[, C])`` array as stored -> upright, as a viewer shows it (``exif_orientation``: 1-8). Turned
    ones are copied C-contiguous, as OpenCV (the breast crop, the resize) takes them."""
    if orientation == 1:
        return array
    return np.ascontiguousarray(_UPRIGHT[orientation](array))


def _header(path: str | Path) -> tuple[bool, int, bool]:
    """Whether Pillow reads the file as a TIFF, its orientation (``exif_orientation``) and whether it is a TIFF
    stored white-is-zero (``WHITE_IS_ZERO``), from the header alone; ``(False, 1, False)`` where Pillow cannot read
    it: OpenCV may still decode it, as stored. ValueError naming the file for a size over ``MAX_PIXELS`` (Pillow's
    own decompression-bomb limit, over which it refuses to open one, was caught here and OpenCV decoded the file up
    to its limit, 2**30 pixels: a PNG of 2 MB could take 6 GB)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below says it, in the row
            with Image.open(path) as image:
                tiff = isinstance(image, TiffImagePlugin.TiffImageFile)
                white_is_zero = tiff and image.tag_v2.get(PHOTOMETRIC_TAG) == WHITE_IS_ZERO
                size, orientation = (image.height, image.width), exif_orientation(image)
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: {error}") from None
    except Exception:  # Pillow raises OSError, ValueError, SyntaxError... on a header it does not know
        return False, 1, False
    if size[0] * size[1] > MAX_PIXELS:
        raise ValueError(f"{path}: {too_large(*size)}")
    return tiff, orientation, white_is_zero


def _decode_with_opencv(path: str | Path) -> tuple[np.ndarray | None, int]:
    """The file's first page as stored (None where OpenCV cannot decode it) and its page count."""
    if _utf8_name(str(path)):
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        pages = cv2.imcount(str(path), cv2.IMREAD_UNCHANGED) if array is not None else 0
    else:  # OpenCV crashes the process (SIGSEGV) on a name that is not UTF-8 (Latin-1 from an old archive)
        encoded = np.fromfile(path, dtype=np.uint8)
        array = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
        pages = len(cv2.imdecodemulti(encoded, cv2.IMREAD_UNCHANGED)[1]) if array is not None else 0
    return array, pages


# Pillow modes whose arrays are no (H, W) gray or (H, W, 3|4) colour, as OpenCV would decode them: bilevel as 0/255,
# palette and gray + alpha as colour + alpha (``_gray`` drops the alpha), other colour spaces as RGB.
_PILLOW_MODES = {"1": "L", "P": "RGBA", "PA": "RGBA", "LA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB"}


def _decode_with_pillow(path: str | Path) -> tuple[np.ndarray | None, int]:
    """A TIFF's first page upright and its page count, through Pillow, whose TIFF reader turns the pixels by their
    orientation as it decodes them: OpenCV refuses a TIFF whose orientation transposes it. None for the page when
    there are more (left undecoded) or where Pillow cannot decode it."""
    try:  # from an open file: Pillow 13 memory-maps an uncompressed TIFF opened by name and reads one that its
        # orientation transposes with its rows garbled (the transposed width); its decoder reads it right
        with open(path, "rb") as handle, Image.open(handle) as image:
            pages = getattr(image, "n_frames", 1)
            if pages > 1:
                return None, pages
            image.load()
            array = np.asarray(image.convert(_PILLOW_MODES[image.mode]) if image.mode in _PILLOW_MODES else image)
    except Exception:  # a truncated or broken file makes Pillow raise OSError, ValueError, SyntaxError...
        return None, 0
    return array.astype(array.dtype.newbyteorder("="), copy=False), pages  # I;16B: big-endian uint16 -> np.uint16


JPEG_CUT_SHORT = "a JPEG cut short: no end-of-image marker after its last scan (an interrupted download or copy?)"


def jpeg_cut_short(path: str | Path) -> bool:
    """Whether a JPEG file ends before its image does: no EOI marker (FF D9) after its last scan's SOS (FF DA). The
    decoder (libjpeg) fills the rows it did not get with mid-gray and says only "Premature end of JPEG file" on
    stderr, so such a file was predicted as an image half gray. Neither marker occurs inside scan data (its FF bytes
    are stuffed); a thumbnail's come before the image's scan, and images appended after the EOI (MPF) end in
    their own."""
    data = Path(path).read_bytes()
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def read_image_file(path: str | Path, jpeg: bool | None = None) -> np.ndarray:
    """A PNG, TIFF or JPEG file -> ``(H, W)`` float32 in [0, 1] (see ``scale_to_unit``), upright as a viewer shows it.

    The EXIF/TIFF Orientation in its header (``exif_orientation``) is applied to the pixels (``orient``), so that the
    image, its size (``displayed_size``) and boxes on it are in the frame a viewer shows. OpenCV decodes (16-bit PNGs,
    non-UTF-8 names), but a TIFF with an orientation other than 1 goes through Pillow: OpenCV refuses one whose
    orientation transposes it and turns one that it does not itself.
    A multi-page TIFF (a tomosynthesis stack, several views) is an error naming its page count, as a multi-frame
    DICOM is: OpenCV would read page 1 alone and say nothing. A gray image saved as a colour JPEG, its channels equal
    or a faint tint apart (``JPEG_GRAY_TOLERANCE``), is read as its luma; a coloured mark makes it a colour image.
    A 16-bit TIFF stored white-is-zero (``WHITE_IS_ZERO``, as a MONOCHROME1 DICOM) is inverted after the scaling,
    as a viewer shows it (its breast bright); the decoders already invert an 8-bit one.
    ``jpeg``: whether the file is one, where the caller knows (None: :func:`is_jpeg` asks the file).
    """
    tiff, orientation, white_is_zero = _header(path)
    if tiff and orientation != 1:
        array, pages = _decode_with_pillow(path)
    else:
        array, pages = _decode_with_opencv(path)
        array = None if array is None else orient(array, orientation)
    if pages > 1:
        raise ValueError(f"{path}: expected one 2-D grayscale image, found a file of {pages} pages")
    if array is None:
        raise ValueError(f"{path}: not a readable PNG/TIFF/JPEG image")
    jpeg = is_jpeg(path) if jpeg is None else jpeg
    if jpeg and jpeg_cut_short(path):
        raise ValueError(f"{path}: {JPEG_CUT_SHORT}")
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8 and jpeg:
        spread = array.max(axis=2).astype(np.int16) - array.min(axis=2)
        if int(spread.max()) <= JPEG_GRAY_TOLERANCE:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2GRAY)
    image = scale_to_unit(array, str(path))
    if white_is_zero and array.dtype == np.uint16:  # left as stored by both decoders (they invert 8-bit ones)
        image = np.subtract(np.float32(1.0), image, dtype=np.float32)
    return image


def _utf8_name(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # the file system's bytes, kept as surrogates
        return False
    return True
