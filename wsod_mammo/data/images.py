"""Any mammogram -> the model's input frame: DICOMs (found by content), PNG/TIFF/JPEG files, or numpy arrays.

DICOMs are recognised by the ``DICM`` marker after their 128-byte preamble, whatever their name (scanner exports
often have no extension), or, for old exports without the preamble, by a data set's first tag (group 0002 or 0008);
PNG, TIFF and JPEG files by their extension or, without one, by their signature (a PNG, TIFF or JPEG header); a JPEG
is read with a warning (``JPEG_WARNING``: lossy, 8 bits). Grayscale images
of 8 or 16 bits are scaled to [0, 1] by their bit depth; a 16-bit file by the depth its largest value needs, rounded
up to an even number of bits (``scale_to_unit``): one whose values stay below 4096 holds 12-bit data (NYU's sample
PNGs), so it is divided by 4095, not 65535, and its breast crop sees the contrast it has. (The model's input is
standardized per image, so this scale changes the breast crop's view, not what the model sees.)

A DICOM's padding pixels (Pixel Padding Value) come with a bool mask (``load_padded``) so that standardization can
leave them out of its statistics; PNG/TIFF/JPEG files and arrays carry no padding information (None).

Laterality: the DICOM tags, else the one given, else inferred from which half holds more of the breast (the
brighter half); ``laterality_source`` says which (``dicom``, ``given`` or ``inferred``). For inference
(``load_padded``) a DICOM whose breast lies against the other edge than its tag says gets a warning (the tag is
kept), as does an untagged input against the laterality given, a DICOM of another modality than MG or a FOR
PROCESSING image (``dicom.reader_warnings``), and a PNG/TIFF/JPEG file or array that looks like a negative
(``looks_inverted``: a MONOCHROME1 image saved without inversion, read as it is): each is logged naming the file and
returned in ``InputImage.warnings``, which the reader's outputs carry.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom

from wsod_mammo.data.dicom import DicomError, read_dicom, zero_filled
from wsod_mammo.data.errors import not_a_file
from wsod_mammo.data.folder_metadata import is_folder_metadata
from wsod_mammo.data.geometry import Geometry, apply_to_image, apply_to_mask, inside_border_strips, make_geometry
from wsod_mammo.data.image_files import (
    IMAGE_SUFFIXES,
    JPEG_WARNING,
    displayed_size,
    has_image_signature,
    is_dicom,
    is_jpeg,
    read_image_file,
    scale_to_unit,
    starts_like_data_set,
)

log = logging.getLogger(__name__)


def infer_laterality(image: np.ndarray) -> str:
    """``L`` when the left half is brighter (the breast lies against the left edge), else ``R``. The halves are those
    of the image inside its bright border strips (``inside_border_strips``): a film's white border along one edge
    outweighed a narrow breast against the other."""
    x0, y0, x1, y1 = inside_border_strips(image)
    inner = image[y0:y1, x0:x1]
    half = inner.shape[1] // 2
    return "L" if float(inner[:, :half].mean()) >= float(inner[:, half:].mean()) else "R"


def read_any(path: str | Path) -> tuple[np.ndarray, str | None]:
    """A DICOM (by content) or PNG/TIFF/JPEG (by extension or signature) -> ``(H, W)`` float32 in [0, 1], DICOM
    laterality.

    Raises ValueError (DicomError for DICOMs) naming the file and what is wrong.
    """
    decoded = _read(path)
    return decoded.image, decoded.laterality


def _folder_error(path: Path) -> str:
    """Why a folder cannot be read as one image: ``wsod predict`` expands folders first (an empty one is kept, so that
    its row says so, as does one it cannot read); the Predictor and ``load_padded`` take one image per input, so they
    need its files."""
    try:
        os.scandir(path).close()
    except OSError as error:  # rglob below finds nothing in it: it said "a folder with no files in it"
        return f"{path}: a folder that cannot be read ({error.strerror}): its files are left out"
    metadata_only = False
    for entry in path.rglob("*"):  # up to the first file that is no folder metadata (a whole archive, by mistake)
        if entry.is_file() and not is_folder_metadata(entry):
            return f"{path}: a folder, not an image file: pass its files (only `wsod predict` expands folders)"
        metadata_only = metadata_only or entry.is_file()
    if metadata_only:
        return f"{path}: a folder with no files in it but folder metadata (.DS_Store, DICOMDIR, ...)"
    return f"{path}: a folder with no files in it"


class _Decoded(NamedTuple):
    """One file as ``_read`` decodes it (before the input frame)."""

    image: np.ndarray  # (H, W) float32 in [0, 1]
    laterality: str | None  # the DICOM's tag; None for PNG/TIFF and untagged DICOMs
    padding: np.ndarray | None  # (H, W) bool, the DICOM's padding pixels; None for none and for PNG/TIFF
    view: str  # ViewPosition (CC, MLO...); empty when untagged and for PNG/TIFF
    warnings: tuple[str, ...] = ()  # the DICOM's ``DicomInfo.warnings``; a JPEG's loss (``JPEG_WARNING``)
    study: str = ""  # the DICOM's StudyInstanceUID; empty when untagged and for PNG/TIFF
    spacing_mm: tuple[float, float] | None = None  # the DICOM's pixel spacing (``DicomInfo.spacing_mm``)
    kind: str = "DICOM"  # what the file is, as errors name it: ``DICOM``, ``PNG/TIFF image`` or ``JPEG image``
    instance: str = ""  # the DICOM's SOPInstanceUID; empty when untagged and for PNG/TIFF


def _read(path: str | Path) -> _Decoded:
    """``read_any`` plus the DICOM's padding mask, ViewPosition and reader warnings."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(_folder_error(path))
    if not path.is_file():
        raise DicomError(not_a_file(path))  # as read_dicom says it: naming a file of the name beside it
    if _file_kind(path) == "dicom":
        image, info = read_dicom(path)
        view = (info.view or "").strip().upper()
        tags = (info.laterality, info.padding, view, info.warnings, info.study, info.spacing_mm)
        return _Decoded(image, *tags, instance=info.instance)
    jpeg = is_jpeg(path)  # asked once: the reader and the warning both need it
    warnings, kind = ((JPEG_WARNING,), "JPEG image") if jpeg else ((), "PNG/TIFF image")
    image = read_image_file(path, jpeg)
    return _Decoded(image, None, None, "", warnings + _negative(image), kind=kind)


#: why a PNG/TIFF/JPEG or an array seems a negative (``looks_inverted``): such files carry no photometric
#: interpretation, so a MONOCHROME1 image saved as stored is read as it is
INVERTED_WARNING = (
    "its background is bright and even and its tissue darker, as in a negative (a MONOCHROME1 image saved without "
    "inversion?): it is read as it is, so the breast crop, a laterality inferred from it and the model see a "
    "negative; invert the file"
)


def looks_inverted(image: np.ndarray) -> bool:
    """Whether an ``(H, W)`` [0, 1] image looks like a negative: air bright, tissue dark.

    A mammogram's air is an even plateau at one end of its values: the dark end (a third to a half of NYU's samples
    and of ``wsod synth``'s images lie within 5% of the range of the minimum, under 1% within 5% of the maximum),
    the bright end in a negative. Only the clear case is said: at least 15% of the image (inside its bright border
    strips, ``inside_border_strips``, which a scanned film's border would otherwise make up) within 5% of the range
    of the maximum, at most 2% as near the minimum, and a quarter of the image's outer lines on that bright plateau
    (air reaches the edges). Searched on every ``step``-th pixel, as the breast crop is."""
    x0, y0, x1, y1 = inside_border_strips(image)
    step = max(1, image.shape[0] // 256)
    inner = image[y0:y1:step, x0:x1:step]
    low, high = float(inner.min()), float(inner.max())
    if high <= low:
        return False
    near = 0.05 * (high - low)
    bright = inner >= high - near
    edges = np.concatenate((bright[0], bright[-1], bright[:, 0], bright[:, -1]))
    return bool(bright.mean() >= 0.15 and np.mean(inner <= low + near) <= 0.02 and edges.mean() >= 0.25)


def _negative(image: np.ndarray) -> tuple[str, ...]:
    """``(INVERTED_WARNING,)`` for an image that ``looks_inverted``, else ()."""
    return (INVERTED_WARNING,) if looks_inverted(image) else ()


def _file_kind(path: Path) -> str:
    """``dicom`` or ``image`` (PNG/TIFF/JPEG), by content and name as the module's docstring says; else ValueError
    naming the file. A PNG/TIFF/JPEG signature wins over a DICOM extension (a converted file that kept its ``.dcm``
    name was refused as "not a DICOM file", while a DICOM named ``.png`` was read as one)."""
    suffix = path.suffix.lower()
    if is_dicom(path):
        return "dicom"
    if suffix in (".dcm", ".dicom") and has_image_signature(path):
        return "image"
    if suffix in (".dcm", ".dicom") or (suffix not in IMAGE_SUFFIXES and starts_like_data_set(path)):
        return "dicom"
    if suffix in IMAGE_SUFFIXES or has_image_signature(path):
        return "image"
    raise ValueError(
        f"{path}: neither a DICOM (no DICM marker at byte 128, no data set at its start) nor a PNG/TIFF/JPEG image "
        "(no such extension, no PNG, TIFF or JPEG signature at its start)"
    )


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header, no pixel decoded: a DICOM's Rows and Columns, a PNG's,
    TIFF's or JPEG's as Pillow reads it, transposed where its orientation does (``displayed_size``); the shape its
    decoding gives. What a finding CSV that leaves an image's height and width empty gets. Raises DicomError (a
    missing file) or ValueError naming the file and why."""
    path = Path(path)
    if not path.is_file():
        raise DicomError(not_a_file(path))
    if _file_kind(path) == "dicom":
        if zeros := zero_filled(path):  # forced, pydicom would read its zeros for hours
            raise DicomError(f"{path}: {zeros}")
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["Rows", "Columns"])
            size = int(header.Rows), int(header.Columns)
        except Exception as error:  # a truncated or foreign header makes pydicom raise many types
            raise DicomError(f"{path}: no image size in its DICOM header (Rows, Columns): {error}") from None
    else:
        from PIL import Image

        try:
            with Image.open(path) as image:
                size = displayed_size(image)
        except Exception as error:  # Pillow raises OSError, ValueError, SyntaxError... on a broken header
            raise ValueError(f"{path}: no image size in its PNG/TIFF/JPEG header: {error}") from None
    if min(size) < 1:
        raise ValueError(f"{path}: its header gives an image of {size[0]}x{size[1]} pixels")
    return size


def to_input_frame(
    image: np.ndarray,
    laterality: str | None,
    input_size: tuple[int, int],
    crop_breast: bool = True,
    resize: str = "stretch",
    spacing_mm: tuple[float, float] | None = None,
) -> tuple[np.ndarray, Geometry, str, str]:
    """``(H, W)`` [0, 1] image -> input-frame image, its geometry (with the DICOM's ``spacing_mm``, for lesion sizes
    in mm), laterality and how that laterality was found."""
    if laterality is not None and laterality not in ("L", "R"):
        raise ValueError(f"laterality: expected 'L', 'R' or None, found {laterality!r}")
    side, source = (laterality, "given") if laterality else (infer_laterality(image), "inferred")
    geometry = make_geometry(image, side, input_size, crop_breast, resize=resize, spacing_mm=spacing_mm)
    return apply_to_image(image, geometry), geometry, side, source


class InputImage(NamedTuple):
    """One input brought to the model's input frame (``load_padded``)."""

    image: np.ndarray  # (H, W) float32, the input frame
    geometry: Geometry  # maps boxes and maps back to the original image
    laterality: str  # L or R, as the image is oriented now
    laterality_source: str  # "dicom" (its tag), "given" or "inferred"
    padding: np.ndarray | None  # (H, W) bool, True on DICOM padding pixels; None when the crop has none
    view: str  # the DICOM's ViewPosition (CC, MLO...); empty for PNG/TIFF files, arrays and untagged DICOMs
    # why the output may not be trusted as usual (another modality, raw data, a mirrored laterality tag), each
    # logged as a warning naming the file; empty for most inputs
    warnings: tuple[str, ...] = ()
    study: str = ""  # the DICOM's StudyInstanceUID: which exam (empty for PNG/TIFF files, arrays, untagged DICOMs)
    instance: str = ""  # the DICOM's SOPInstanceUID: which image, whatever file holds it (empty as ``study``)


def load_padded(
    item: str | Path | np.ndarray,
    input_size: tuple[int, int],
    laterality: str | None = None,
    crop_breast: bool = True,
    resize: str = "stretch",
    name: str = "array",
) -> InputImage:
    """A path or array -> the input-frame image, its geometry, laterality (a DICOM's own tag wins over
    ``laterality``; without either, it is inferred) and how that was found, the padding mask in the input frame
    (PNG/TIFF files and arrays have none) and the DICOM's ViewPosition, all from the one decoding of the file, and its
    warnings (each also logged, naming the file).
    ``name``: what errors call an array (the Predictor's ``array <i>``; a file is named by its path)."""
    if isinstance(item, np.ndarray):
        array = scale_to_unit(item, name)
        decoded = _Decoded(array, None, None, "", _negative(array))
    else:
        decoded = _read(item)
    image, tagged = decoded.image, decoded.laterality
    out, geometry, side, source = to_input_frame(image, tagged or laterality, input_size, crop_breast, resize,
                                                 decoded.spacing_mm)  # fmt: skip
    mirrored = mirrored_laterality(side, image, tagged=bool(tagged)) if source != "inferred" else None
    blank = blank_image(image)
    doubtful = blank or INVERTED_WARNING in decoded.warnings  # no side to read from a blank image or a negative
    warnings = decoded.warnings + tuple(w for w in (blank, None if doubtful else mirrored) if w)
    for warning in warnings:
        log.warning("%s: %s", name if isinstance(item, np.ndarray) else item, warning)
    padding = apply_to_mask(decoded.padding, geometry)
    return InputImage(out, geometry, side, "dicom" if tagged else source, padding, decoded.view, warnings,
                      decoded.study, decoded.instance)  # fmt: skip


def blank_image(image: np.ndarray) -> str | None:
    """Why an image of one value throughout (an empty export, a DICOM of zeros) is no mammogram, else None: the model
    still gives it a probability and boxes (over the whole frame), which mean nothing."""
    low, high = float(image.min()), float(image.max())
    return None if high > low else f"every pixel has the same value ({low:.3g} of 1): no breast to read"


def _breast_on_other_edge(laterality: str, image: np.ndarray) -> tuple[str, str] | None:
    """``(the side the image shows, "the breast lies against the <edge> edge, as in <side> images")`` when that side
    is not ``laterality``, else None."""
    seen = infer_laterality(image)
    if seen == laterality:
        return None
    return seen, f"the breast lies against the {'left' if seen == 'L' else 'right'} edge, as in {seen} images"


def mirrored_laterality(laterality: str, image: np.ndarray, tagged: bool) -> str | None:
    """Why the breast seems to lie against the other edge than its laterality says, else None. ``tagged``: the
    DICOM's tag (a mirrored export, or a wrong tag); else the one given for an untagged input (one
    ``predict_laterality`` for a folder of both sides, say). Either still orients the image, so the model may see
    this breast mirrored. Only inference asks (once per file); training takes the CSV's laterality."""
    other = _breast_on_other_edge(laterality, image)
    if other is None:
        return None
    seen, lies = other
    if tagged:
        return (
            f"the laterality tag says {laterality} but {lies}; the tag is kept, so if the image is stored mirrored "
            "the model sees it mirrored"
        )
    return (
        f"the laterality given is {laterality} but {lies}; the given one is kept, so the model may see this breast "
        f"mirrored (give {seen} for this file, or none to infer it from the image)"
    )


#: How the doubt of a breast against the other edge ended: a training statement, said as well when the image was
#: tested or predicted (``wsod test``'s log, ``predictions.csv``'s warning column). A cache ``wsod prepare`` wrote
#: then holds it in its manifest: :func:`current_doubt` words it as now.
_LEARNT_MIRRORED = "; the model learns it mirrored"
_SEEN_MIRRORED = "; the CSV's is used, so the model sees this breast mirrored"


def csv_laterality_doubts(laterality: str, tagged: str | None, image: np.ndarray) -> tuple[str, ...]:
    """Why the CSV's laterality may be wrong for this image: the DICOM's tag says the other side, or the breast lies
    against the other edge. Training and evaluation orient each image by the CSV's side, so such an image is learnt,
    validated, tested or predicted mirrored (its boxes follow it, so detection figures stay right); one wording says
    it for every stage, as a cache's manifest keeps it for every stage that reads the cache."""
    doubts = []
    if tagged and tagged != laterality:
        doubts.append(f"the CSV's laterality is {laterality} but the DICOM's laterality tag says {tagged}; "
                      "the CSV's is used")  # fmt: skip
    if other := _breast_on_other_edge(laterality, image):
        doubts.append(f"the CSV's laterality is {laterality} but {other[1]}{_SEEN_MIRRORED}")
    return tuple(doubts)


def current_doubt(warning: str) -> str:
    """A cached image's warning as :func:`csv_laterality_doubts` words it now (a cache prepared before said "the
    model learns it mirrored", which ``wsod test`` repeated of a test image)."""
    return warning[: -len(_LEARNT_MIRRORED)] + _SEEN_MIRRORED if warning.endswith(_LEARNT_MIRRORED) else warning


def load_input_image(
    path: str | Path,
    laterality: str | None,
    input_size: tuple[int, int],
    crop_breast: bool = True,
    expected_size: tuple[int, int] | None = None,
    resize: str = "stretch",
    warnings: list[str] | None = None,
) -> tuple[np.ndarray, Geometry, str, np.ndarray | None]:
    """Decode a dataset's image (a DICOM, or a PNG/TIFF/JPEG, :func:`read_any`'s rules) and bring it to the input frame:
    ``(H, W)`` float32 in [0, 1], its geometry, laterality and its padding mask in the input frame (``(H, W)`` bool,
    None when no padding pixel lies in the crop).

    ``laterality`` (the CSV's) wins; ``None`` takes it from the DICOM tags, else from the image (the breast lies
    against the brighter half). ``expected_size`` ``(height, width)`` (the CSV's) must equal the image's rows/columns,
    else DicomError naming the file and both sizes: the CSV's boxes would land in the wrong place.
    ``resize``: ``stretch``, ``fit`` or ``native`` (see ``geometry``).
    ``warnings``: a list that receives why this image may not be what training expects (the DICOM's own warnings,
    ``csv_laterality_doubts``): ``wsod prepare`` records them in its manifest, a dataset's sample carries them to
    the DataModule, which says them once per image (``data_warnings``).
    """
    decoded = _read(path)
    image = decoded.image
    if expected_size is not None and tuple(expected_size) != image.shape:
        raise DicomError(
            f"{path}: the {decoded.kind} is {image.shape[0]}x{image.shape[1]} (rows x columns) but the CSV says "
            f"{expected_size[0]}x{expected_size[1]} (height x width); its boxes would land in the wrong place"
        )
    if warnings is not None:
        warnings.extend(decoded.warnings)
        if blank := blank_image(image):
            warnings.append(blank)
        elif laterality and INVERTED_WARNING not in decoded.warnings:  # a negative's bright side is its air
            warnings.extend(csv_laterality_doubts(laterality, decoded.laterality, image))
    # the spacing kept in the geometry (cached with it) for lesion sizes in mm
    out, geometry, side, _ = to_input_frame(image, laterality or decoded.laterality, input_size, crop_breast, resize,
                                            decoded.spacing_mm)  # fmt: skip
    return out, geometry, side, apply_to_mask(decoded.padding, geometry)


__all__ = [
    "DicomError",
    "IMAGE_SUFFIXES",
    "INVERTED_WARNING",
    "InputImage",
    "blank_image",
    "csv_laterality_doubts",
    "current_doubt",
    "has_image_signature",
    "is_dicom",
    "load_input_image",
    "load_padded",
    "looks_inverted",
    "read_any",
    "read_image_file",
    "scale_to_unit",
]
