"""The DICOM display transform as a look-up table over the stored values (PS3.3 C.11, through pydicom's own
functions): modality LUT or rescale, then VOI LUT or window (else the min-max of the non-padding values), scaled to
[0, 1] by the output range, MONOCHROME1 inverted, padding values 0; every tag it reads checked first, a malformed
one named (``BadTag``). :mod:`wsod_mammo.data.dicom` indexes the table with the pixels."""

from __future__ import annotations

import math

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi, apply_voi_lut


class BadTag(ValueError):
    """A tag the display transform uses, present but malformed; the message names the tag (``read_dicom`` the file)."""


def stored_codes(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    the pixels' own values are (a 12-bit 0x800 is -2048), or its 16-bit pattern sign-extended (0xF800, -2048 too). A
    value of the pixels' own sign stays as it is."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    if signed and 2 ** (bits - 1) <= value < 2**bits:
        return value - 2**bits
    if signed and 2**15 <= value < 2**16 and value - 2**16 >= -(2 ** (bits - 1)):
        return value - 2**16
    if not signed and -(2 ** (bits - 1)) <= value < 0:
        return value + 2**bits
    return value


def _padding(ds: pydicom.Dataset, values: np.ndarray) -> np.ndarray:
    """Mask over the codes: Pixel Padding Value, or the inclusive range up to Pixel Padding Range Limit."""
    bounds = _padding_range(ds)
    if bounds is None:
        return np.zeros(values.shape, bool)
    return (values >= bounds[0]) & (values <= bounds[1])


def padding_mask(ds: pydicom.Dataset, pixels: np.ndarray) -> np.ndarray:
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
    ``BadTag`` naming the tag otherwise (an empty value would reach numpy as None)."""
    element = ds[keyword]
    value = element.value[0] if first and isinstance(element.value, MultiValue) and element.value else element.value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        found = "an empty value" if value is None or value == "" else repr(value)
        raise BadTag(f"{element.name} {element.tag}: expected {'a' if first else 'one'} number, found {found}")
    return number


def _voi_lut(ds: pydicom.Dataset) -> pydicom.Dataset | None:
    """The VOI LUT that `apply_voi_lut` applies (it takes precedence over the window), or None."""
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
        return voi[0]
    return None


def _apply_voi_lut(modality: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """``apply_voi_lut``, but a VOI LUT of 8-bit entries read as one of 16-bit entries (the same values): pydicom
    indexes such a table in uint8, so every value past 255 wrapped round (a 4096-entry 8-bit LUT, which PS3.3 allows,
    gave noise in place of the breast). The output range stays the descriptor's 8 bits (``_output_range``)."""
    voi = _voi_lut(ds)
    if voi is None or int(voi.LUTDescriptor[2]) != 8:
        return apply_voi_lut(modality, ds)
    table = Dataset()
    table.LUTDescriptor = [voi.LUTDescriptor[0], voi.LUTDescriptor[1], 16]
    table["LUTData"] = voi["LUTData"]  # its VR (US or OW) and bytes as the file holds them
    view = Dataset()
    view.file_meta = ds.file_meta  # the byte order of OW data
    view.VOILUTSequence = [table]
    return apply_voi(modality, view)


def _apply_modality_lut(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """``apply_modality_lut``, but a Modality LUT of 9- to 15-bit entries read as one of 16-bit entries (the same
    values): PS3.3 C.11.1.1.1 allows 8 or 16 bits only, yet older writers put the depth of their values (12) there,
    and pydicom then asked numpy for a dtype ``uint12``, which fails ("data type 'uint12' not understood"). Such
    entries are stored in 16 bits, as PS3.3 stores the other LUTs' (VOI, Presentation) of 9 to 16 bits, and their
    output range stays the descriptor's (``_output_range``). A depth outside 8..16 is ``BadTag`` naming it."""
    sequence = ds.get("ModalityLUTSequence")
    item = sequence[0] if sequence else None
    if item is None or item.get("LUTDescriptor") is None or item.get("LUTData") is None:
        return apply_modality_lut(values, ds)  # pydicom's errors for a table without its data, as before
    element = item["LUTDescriptor"]
    bits = _descriptor_bits(element)
    if bits in (8, 16):
        return apply_modality_lut(values, ds)
    if not 8 < bits < 16:
        raise BadTag(
            f"Modality LUT Sequence (0028,3000): its {element.name} {element.tag} gives {bits} bits per LUT entry "
            "(its third value); PS3.3 allows 8 or 16"
        )
    table = Dataset()
    table.LUTDescriptor = [element.value[0], element.value[1], 16]
    table["LUTData"] = item["LUTData"]  # its VR (US or OW) and bytes as the file holds them
    view = Dataset()  # with the byte order of OW data: the file meta's, or the data set's own in a file without one
    if hasattr(ds, "file_meta"):
        view.file_meta = ds.file_meta
    view.set_original_encoding(*ds.original_encoding)
    view.ModalityLUTSequence = [table]
    return apply_modality_lut(values, view)


def _descriptor_bits(element: pydicom.DataElement) -> int:
    """The third value of a LUT Descriptor (bits per entry); ``BadTag`` naming it unless it holds three numbers."""
    value = element.value
    if not isinstance(value, (list, MultiValue)) or len(value) != 3 or not all(isinstance(v, int) for v in value):
        raise BadTag(f"Modality LUT Sequence (0028,3000): its {element.name} {element.tag}: expected three numbers, "
                     f"found {value!r}")  # fmt: skip
    return int(value[2])


def _check_display_tags(ds: pydicom.Dataset) -> None:
    """The numbers the display transform reads, each checked where it is used: Rescale Slope and Intercept (applied
    only as a pair, as pydicom does; a zero slope would make every pixel one value), the window (unless a VOI LUT
    replaces it) and the padding values. ``BadTag`` naming the first malformed one."""
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        if _number(ds, "RescaleSlope") == 0:
            raise BadTag(f"{ds['RescaleSlope'].name} {ds['RescaleSlope'].tag}: 0 would give every pixel one value")
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


def display_lut(ds: pydicom.Dataset, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float32 table over the stored codes (see `stored_codes`): display value in [0, 1], bright = dense, padding
    0; and the mask of the padding codes that occur in ``pixels``."""
    _check_display_tags(ds)
    values, codes = stored_codes(pixels)
    padding = _padding(ds, values)
    present = _present(codes, values.size)
    used = present & ~padding
    if present.any() and not used.any():
        raise BadTag("Pixel Padding Value (0028,0120): every pixel is padding, no image is left")
    modality = _apply_modality_lut(values, ds)
    if modality.dtype.kind == "f" and np.array_equal(modality, np.round(modality)):
        modality = modality.astype(np.int64)  # apply_voi indexes its LUT with integers
    display = np.asarray(_apply_voi_lut(modality, ds), np.float64)
    low, high = _output_range(ds, np.asarray(modality, np.float64), used)
    span = high - low  # negative for a window under a negative Rescale Slope (see _output_range)
    lut = np.clip((display - low) / (span if span != 0 else 1.0), 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        lut = 1.0 - lut
    lut[padding] = 0.0
    return lut.astype(np.float32), padding & present
