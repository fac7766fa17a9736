"""The image size a compressed (encapsulated) DICOM's codestream declares, read from its first bytes.

The decoders (OpenJPEG, GDCM) allocate the size their codestream declares, and pydicom compares it with the
header's Rows x Columns only after decoding: a few-KB JPEG 2000 file whose SIZ claims 60000 x 60000 pixels made the
decoder process allocate GBs. Reading the size costs a few short reads: JPEG 2000's SIZ segment follows its SOC
marker (in a JP2 file, after boxes walked by their lengths); JPEG's and JPEG-LS's frame header (SOFn) follows table
and application segments, walked by their lengths (a fixed 64-KB window missed a frame header after a large APPn or
COM segment, and its size went unchecked).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement

ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) Item tag, little endian (encapsulated pixel data always are)
J2K_SIZ = b"\xff\x4f\xff\x51"  # SOC then SIZ
# JPEG frame headers: SOF0-3, 5-7, 9-11, 13-15, and JPEG-LS's SOF55
SOF = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7}
NO_LENGTH = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: markers without a segment
# markers, fill bytes and fragments walked before a JPEG's frame header: a real stream has a few tables, at most a
# few hundred APPn chunks (an ICC profile's); more is a file made to be walked for long, refused
MAX_STEPS = 4096
Read = Callable[[int, int], bytes]  # (offset, size) -> at most size bytes of the Pixel Data value from offset


class StreamError(ValueError):
    """A compressed stream refused before it is decoded; the message says why (no path)."""


@contextmanager
def _pixel_value(ds: pydicom.Dataset, path: Path) -> Iterator[Read]:
    """Reads of the Pixel Data value: from the file where it is deferred (not yet read), else from memory."""
    raw = ds.get_item("PixelData", keep_deferred=True)
    if isinstance(raw, RawDataElement) and raw.value is None:
        with open(path, "rb") as handle:

            def read(offset: int, size: int) -> bytes:
                handle.seek(raw.value_tell + offset)
                return handle.read(size)

            yield read
        return
    value = memoryview(ds.PixelData)
    yield lambda offset, size: bytes(value[offset : offset + size])


class _Frame:
    """The first frame's stream: the values of the fragments after the Basic Offset Table item, end to end (a
    writer may split a frame's stream anywhere), read at any offset; fragments located as reads reach them."""

    def __init__(self, read: Read) -> None:
        self._read = read
        self._starts: list[int] = []  # each fragment's offset in the stream
        self._values: list[tuple[int, int]] = []  # each fragment's (offset in the Pixel Data value, length)
        self._end = 0  # the stream's bytes located so far
        # the value offset of the next item to locate (-1: the offset table's, at 0); None: no more
        self._item: int | None = -1

    def _locate(self, end: int) -> None:
        """Locates fragments until they hold the stream's first ``end`` bytes or there are no more."""
        while self._end < end and self._item is not None:
            item, table = max(self._item, 0), self._item < 0
            head = self._read(item, 8)
            if len(head) < 8 or head[:4] != ITEM:
                self._item = None
                return
            if len(self._starts) >= MAX_STEPS:
                raise StreamError(f"its compressed pixel data are split in over {MAX_STEPS:,} fragments")
            length = struct.unpack_from("<I", head, 4)[0]
            if not table:  # a fragment; the offset table's item holds no stream
                self._starts.append(self._end)
                self._values.append((item + 8, length))
                self._end += length
            self._item = item + 8 + length

    def read(self, at: int, size: int) -> bytes:
        """At most ``size`` bytes of the stream from ``at`` (fewer where the fragments end)."""
        self._locate(at + size)
        out = b""
        index = max(bisect.bisect_right(self._starts, at) - 1, 0)
        while index < len(self._starts) and self._starts[index] < at + size and len(out) < size:
            value, length = self._values[index]
            skip = max(at + len(out) - self._starts[index], 0)
            if (take := min(length - skip, size - len(out))) > 0:  # none past the stream's end
                out += self._read(value + skip, take)
            index += 1
        return out


def _jpeg2000_size(stream: bytes) -> tuple[int, int] | None:
    """(rows, columns) from the SIZ segment: Ysiz - YOsiz, Xsiz - XOsiz. None for a stream that does not start with
    SOC and SIZ (RLE: its bytes could hold SOC and SIZ's by chance)."""
    if not stream.startswith(J2K_SIZ) or len(stream) < 24:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">4I", stream, 8)
    return max(ysiz - yosiz, 0), max(xsiz - xosiz, 0)


def _jp2_codestream(frame: _Frame) -> int | None:
    """Where a JP2 file's codestream (its ``jp2c`` box's content) begins, its boxes walked by their lengths: a
    1-KB window missed it after large boxes (XML, an ICC profile), and its size went unchecked. None where the
    boxes end first; StreamError after :data:`MAX_STEPS` boxes."""
    at = 0
    for _ in range(MAX_STEPS):
        head = frame.read(at, 16)  # LBox, TBox, and XLBox where LBox is 1
        if len(head) < 8:
            return None
        length, kind = struct.unpack_from(">I4s", head)
        header = 8
        if length == 1 and len(head) == 16:
            length, header = struct.unpack_from(">Q", head, 8)[0], 16
        if kind == b"jp2c":
            return at + header
        if length < header:  # 0: the last box, to the end; less than its header: damaged
            return None
        at += length
    raise StreamError(f"its compressed pixel data hold over {MAX_STEPS:,} boxes before their codestream")


def _jpeg_size(frame: _Frame) -> tuple[int, int] | None:
    """(rows, columns) from the first SOFn segment, its segments before it walked by their lengths (rows 0: a
    count given by a DNL segment after the scan); None where the stream ends or its scan begins without one.
    StreamError after :data:`MAX_STEPS` markers."""
    at = 2
    for _ in range(MAX_STEPS):
        head = frame.read(at, 9)  # a marker, its segment's length, and a frame header's precision, rows, columns
        if len(head) < 4 or head[0] != 0xFF:
            return None
        marker = head[1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker in NO_LENGTH:
            at += 2
        elif marker in SOF:
            return struct.unpack_from(">2H", head, 5) if len(head) == 9 else None
        elif marker == 0xDA:  # the scan began without a frame header
            return None
        else:
            at += 2 + struct.unpack_from(">H", head, 2)[0]
    raise StreamError(f"its compressed pixel data hold over {MAX_STEPS:,} markers before their frame header")


def declared_size(ds: pydicom.Dataset, path: Path) -> tuple[int, int] | None:
    """(rows, columns) the first frame's codestream declares; None where it is not found (another compression,
    RLE, whose size is the header's; or a stream too damaged for the decoder to read anyway). StreamError for a
    JPEG stream or JP2 file made to be walked for long (:data:`MAX_STEPS`)."""
    with _pixel_value(ds, path) as read:
        frame = _Frame(read)
        start = frame.read(0, 1024)
        if start.startswith(b"\xff\xd8"):
            return _jpeg_size(frame)
        if start[4:8] == b"jP  ":  # a JP2 file around the codestream (the standard wants the bare codestream)
            at = _jp2_codestream(frame)
            start = frame.read(at, 24) if at is not None else b""
        return _jpeg2000_size(start)
