"""The image size a compressed (encapsulated) DICOM's codestream declares, read from its first bytes.

The decoders (OpenJPEG, GDCM) allocate the size their codestream declares, and pydicom compares it with the
header's Rows x Columns only after decoding: a few-KB JPEG 2000 file whose SIZ claims 60000 x 60000 pixels made the
decoder process allocate GBs. Reading the size costs one short read: JPEG 2000's SIZ segment follows its SOC
marker; JPEG's and JPEG-LS's frame header (SOFn) follows a few table segments.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement

HEAD = 2**16  # bytes of the pixel data read: a JPEG's tables before its frame header take a few KB
ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) Item tag, little endian (encapsulated pixel data always are)
J2K_SIZ = b"\xff\x4f\xff\x51"  # SOC then SIZ
# JPEG frame headers: SOF0-3, 5-7, 9-11, 13-15, and JPEG-LS's SOF55
SOF = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7}
NO_LENGTH = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: markers without a segment


def _pixel_head(ds: pydicom.Dataset, path: Path) -> bytes:
    """The first :data:`HEAD` bytes of the Pixel Data value, from the file where it is deferred (not yet read)."""
    raw = ds.get_item("PixelData", keep_deferred=True)
    if isinstance(raw, RawDataElement) and raw.value is None:
        with open(path, "rb") as handle:
            handle.seek(raw.value_tell)
            return handle.read(HEAD)
    return bytes(ds.PixelData[:HEAD])


def _first_fragment(value: bytes) -> bytes:
    """The start of the first fragment after the Basic Offset Table item; b"" where the items are not there."""
    offset = 0
    for _ in range(2):  # the offset table's item, then the first fragment's
        if value[offset : offset + 4] != ITEM or len(value) < offset + 8:
            return b""
        length = struct.unpack_from("<I", value, offset + 4)[0]
        start, offset = offset + 8, offset + 8 + length
    return value[start:]


def _jpeg2000_size(stream: bytes) -> tuple[int, int] | None:
    """(rows, columns) from the SIZ segment: Ysiz - YOsiz, Xsiz - XOsiz; in a JP2 file's codestream too. None for a
    stream that starts as neither (RLE: its bytes could hold SOC and SIZ's by chance)."""
    if not stream.startswith(J2K_SIZ) and stream[4:8] != b"jP  ":
        return None
    at = stream.find(J2K_SIZ)
    if at < 0 or len(stream) < at + 24:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">4I", stream, at + 8)
    return max(ysiz - yosiz, 0), max(xsiz - xosiz, 0)


def _jpeg_size(stream: bytes) -> tuple[int, int] | None:
    """(rows, columns) from the first SOFn segment; None where it is not in ``stream`` or its row count is 0 (given
    by a DNL segment after the scan)."""
    if not stream.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(stream):
        if stream[at] != 0xFF:
            return None
        marker = stream[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in NO_LENGTH:
            at += 2
            continue
        if marker in SOF:
            if len(stream) < at + 9:
                return None
            rows, columns = struct.unpack_from(">2H", stream, at + 5)
            return (rows, columns) if rows else None
        if marker == 0xDA:  # the scan began without a frame header
            return None
        at += 2 + struct.unpack_from(">H", stream, at + 2)[0]
    return None


def declared_size(ds: pydicom.Dataset, path: Path) -> tuple[int, int] | None:
    """(rows, columns) the first frame's codestream declares; None where it is not found (another compression,
    RLE, whose size is the header's; or a stream too damaged for the decoder to read anyway)."""
    stream = _first_fragment(_pixel_head(ds, path))
    if stream.startswith(b"\xff\xd8"):
        return _jpeg_size(stream)
    return _jpeg2000_size(stream[:1024])
