"""VinDr-Mammo index: the finding CSV -> typed per-image records, class selection and splits.

The dataset is laid out as ``images/<study_id>/<image_id>.dicom`` (or another of :data:`IMAGE_NAMES`' endings) beside
``finding_annotations.csv`` (one row per finding box, or one ``['No Finding']`` row per normal image) and
``breast-level_annotations.csv``. Boxes are float ``(xmin, ymin, xmax, ymax)`` in original DICOM pixels,
clipped here to the image because a few lie slightly outside it.
"""

from __future__ import annotations

import ast
import csv
import errno
import itertools
import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

FINDING_CSV = "finding_annotations.csv"
BREAST_CSV = "breast-level_annotations.csv"
BREAST_COLUMNS = (
    "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,split"
).split(",")
FINDING_COLUMNS = BREAST_COLUMNS[:-1] + "finding_categories,finding_birads,xmin,ymin,xmax,ymax,split".split(",")
#: How tools write a missing value: a cell empty in VinDr's file reads "NA" after R's write.csv and "nan" after
#: pandas with na_rep. In the columns that may be empty (:data:`OPTIONAL_COLUMNS`) each is read as an empty cell.
NO_VALUE = frozenset({"", "nan", "na", "n/a", "null", "none"})
#: The columns a row may leave empty: no breast-level assessment, no size (read from the image file), no box.
OPTIONAL_COLUMNS = frozenset(
    "series_id height width breast_birads breast_density finding_birads xmin ymin xmax ymax".split()
)
NO_FINDING = "No Finding"
SPLITS = ("training", "test")
Selection = Literal["balanced", "all", "paper"]

log = logging.getLogger(__name__)


class VinDrFormatError(ValueError):
    """A CSV that does not follow the VinDr-Mammo format; the message names the file, row and problem."""


class EmptyBoxError(VinDrFormatError):
    """A box without area (``xmin == xmax`` or ``ymin == ymax``, or none left inside the image): an error for a
    finding of the run's classes only."""


@dataclass(frozen=True)
class Finding:
    """One finding row: its categories and its box (``None`` for ``No Finding``, and for a finding outside the run's
    classes whose box is missing or has no area: :func:`load_records`), in DICOM pixels."""

    categories: tuple[str, ...]
    box: tuple[float, float, float, float] | None
    birads: str = ""


@dataclass
class ImageRecord:
    """One image of the dataset with every finding row that belongs to it."""

    study_id: str
    series_id: str
    image_id: str
    laterality: str
    view: str
    split: str
    height: int  # the CSV's, or its image file's header's where the CSV leaves both empty; 0 where neither gave one
    width: int
    path: Path
    findings: list[Finding] = field(default_factory=list)
    breast_birads: int | None = None  # the breast's assessment, 1-5 (None: the cell is empty)
    breast_density: str = ""  # the breast's density category as the CSV gives it ("DENSITY C"; "": empty)

    @property
    def size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the original image; None where the CSV left them empty and the image file could not
        be read when the CSV was (a missing file: ``data.missing`` decides)."""
        return (self.height, self.width) if self.height and self.width else None

    @property
    def is_normal(self) -> bool:
        """True when the image's only findings are ``No Finding``."""
        return all(c == NO_FINDING for f in self.findings for c in f.categories)

    def is_negative(self, normal_max_birads: int = 5) -> bool:
        """A ``No Finding`` image of a breast assessed at most ``normal_max_birads``: VinDr boxes only non-benign
        findings, image by image, so ``No Finding`` also covers benign (BI-RADS 2) breasts and views of a breast
        whose suspicious finding was boxed in its other view only (BI-RADS 3-5). 5 takes every ``No Finding``."""
        if not self.is_normal:
            return False
        return normal_max_birads >= 5 or (self.breast_birads is not None and self.breast_birads <= normal_max_birads)

    def has_class(self, classes: Sequence[str]) -> bool:
        return any(c in classes for f in self.findings for c in f.categories)

    def boxes(self, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(M, 4)`` float32 and class indices ``(M,)`` int64 of the findings of ``classes``.

        A finding with two listed classes gives one box per class. The same box of the same class twice (a CSV row
        repeated, as concatenated CSVs do) is one object: no detection can match both, so it would cap the image's TPR.
        """
        boxes, labels, _ = self.box_findings(classes)
        return boxes, labels

    def box_findings(self, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`boxes` and, in their order, each box's finding BI-RADS ``(M,)`` int64 (0: the cell is empty), for
        detection figures per kind of lesion."""
        boxes, labels, birads, seen = [], [], [], set()
        for finding in self.findings:
            for index, name in enumerate(classes):
                if finding.box is not None and name in finding.categories and (finding.box, index) not in seen:
                    seen.add((finding.box, index))
                    boxes.append(finding.box)
                    labels.append(index)
                    birads.append(parse_birads(finding.birads) or 0)
        return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
                np.asarray(birads, np.int64))  # fmt: skip

    def label(self, classes: Sequence[str]) -> np.ndarray:
        """Multi-hot ``(C,)`` float32 image label."""
        found = {c for f in self.findings for c in f.categories}
        return np.asarray([name in found for name in classes], np.float32)


def parse_categories(text: str, where: str = "") -> tuple[str, ...]:
    """Parse a ``finding_categories`` cell such as ``['Mass']`` safely (a literal, never evaluated code)."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as err:
        raise VinDrFormatError(
            f"{where}: finding_categories must be a list literal like ['Mass'], got {text!r}"
        ) from err
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) for v in value):
        raise VinDrFormatError(f"{where}: finding_categories must be a non-empty list of strings, got {text!r}")
    return tuple(v.strip() for v in value)


def parse_birads(text: str, where: str = "", column: str = "breast_birads") -> int | None:
    """``BI-RADS 4`` (the CSVs' form; a bare ``4``, and the 5th edition's ``4A``-``4C``, too) -> 4; an empty cell
    -> None. ``column`` names the cell in the error."""
    text = text.strip()
    if not text:
        return None
    match = re.fullmatch(r"(?:BI-?RADS\s*)?([0-6])[ABC]?", text, flags=re.IGNORECASE)
    if match is None:
        raise VinDrFormatError(f"{where}: {column} must be like 'BI-RADS 4', got {text!r}")
    return int(match.group(1))


def _read_rows(path: Path, columns: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)``; check the header and the field count of every row. A row whose fields are all
    empty (Excel's trailing ``,,,,`` rows) is skipped, as a blank line is."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: VinDr-Mammo CSV not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's UTF-8 BOM is not part of a name
            yield from _checked_rows(path, csv.reader(handle), columns)
    except UnicodeDecodeError as error:
        raise VinDrFormatError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); save it as "
            "CSV UTF-8 (Excel's 'CSV UTF-8 (Comma delimited)')"
        ) from None


def _checked_rows(path: Path, reader: Any, columns: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    header = next(reader, None)
    if header is None:
        raise VinDrFormatError(f"{path}: empty file, expected the header {','.join(columns)}")
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise VinDrFormatError(f"{path}: missing column(s) {missing}; found columns {header}")
    repeated = sorted({c for c in columns if header.count(c) > 1})
    if repeated:  # a row would keep the last one's value, silently (or blame the wrong field for a bad value)
        raise VinDrFormatError(f"{path}, line 1: column(s) {repeated} appear more than once in the header {header}")
    for first, ended, fields in _records(path, reader):  # a quoted field may span lines: the record starts at `first`
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            lines = f"line {first}" if first == ended else f"lines {first}-{ended} (a quote left open on line {first}?)"
            shown = repr(fields)
            shown = shown if len(shown) <= 300 else shown[:300] + " ..."
            raise VinDrFormatError(f"{path}, {lines}: expected {len(header)} fields, found {len(fields)}: {shown}")
        yield first, dict(zip(header, fields, strict=True))


def _records(path: Path, reader: Any) -> Iterable[tuple[int, int, list[str]]]:
    """``(first line, last line, fields)`` of each of ``reader``'s records. A ``csv.Error`` (a quote left open in a
    real-size CSV swallows more than the csv module's 128 KB field limit) is a VinDrFormatError naming the file and
    the line: it stopped the run with a traceback ending ``_csv.Error: field larger than field limit`` (no file)."""
    ended = reader.line_num
    try:
        for fields in reader:
            yield ended + 1, reader.line_num, fields
            ended = reader.line_num
    except csv.Error as error:
        raise VinDrFormatError(f"{path}, line {ended + 1}: {error} (a quote left open on line {ended + 1}?)") from None


def _cell(row: dict[str, str], column: str) -> str:
    """The row's ``column`` stripped; ``""`` for a missing value (:data:`NO_VALUE`) in an optional column: one rule
    for every such cell (an ``NA`` height or BI-RADS was an error, an ``NA`` density a stratum named "NA")."""
    value = row[column].strip()
    return "" if column in OPTIONAL_COLUMNS and value.lower() in NO_VALUE else value


def _parse_box(row: dict[str, str], height: int, width: int, where: str) -> tuple[float, float, float, float] | None:
    """The row's box in the image's pixels, clipped to its ``height`` x ``width`` (0: an unknown size, not clipped);
    None for a row without one."""
    cells = [row[k].strip() for k in ("xmin", "ymin", "xmax", "ymax")]
    if not any(_cell(row, k) for k in ("xmin", "ymin", "xmax", "ymax")):  # R's write.csv writes NA, pandas nan
        return None
    try:
        x0, y0, x1, y1 = (float(c) for c in cells)
    except ValueError as err:
        raise VinDrFormatError(f"{where}: box fields must be numbers, got {cells}") from err
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):  # NaN passed every comparison below: a box lost
        raise VinDrFormatError(f"{where}: box fields must be finite numbers, got {cells}")
    if x1 < x0 or y1 < y0:  # swapped corners: not a clipping matter
        raise VinDrFormatError(f"{where}: box has xmax < xmin or ymax < ymin (corners swapped?): {cells}")
    if x1 == x0 or y1 == y0:  # a point or a line (a point ROI converted to a box)
        raise EmptyBoxError(f"{where}: empty box: {cells} (zero width or height: no detection could match it)")
    if height and width:
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        raise EmptyBoxError(f"{where}: empty box after clipping to the {width}x{height} image: {cells}")
    return (x0, y0, x1, y1)


def _image_size(row: dict[str, str], where: str) -> tuple[int, int] | None:
    """``(height, width)``: positive whole numbers (``2800`` or ``2800.0``); None where both cells are empty (read
    from the image file); else VinDrFormatError naming the row."""
    if not _cell(row, "height") and not _cell(row, "width"):
        return None
    try:
        values = [float(_cell(row, "height")), float(_cell(row, "width"))]
    except ValueError:
        values = []
    if len(values) != 2 or not all(math.isfinite(v) and v >= 1 and v == int(v) for v in values):
        raise VinDrFormatError(
            f"{where}: height/width must be positive integers (or both empty, to read them from the image file), "
            f"got {row['height']!r}, {row['width']!r}"
        )
    return int(values[0]), int(values[1])


#: The columns every row of one image must agree on (the first row's values make the record).
IMAGE_COLUMNS = ("study_id", "series_id", "laterality", "view_position", "height", "width", "split")


def _check_same_image(row: dict[str, str], first: dict[str, str], first_line: int, where: str) -> None:
    """A later row of an image that disagrees with its first row (another study, split, size...) is an error
    naming both lines: merging them would put boxes on the wrong image or the image in the wrong split. Another
    study is more often another image of the same id (an external set converted with its file names as ids: every
    CBIS-DDSM and CMMD file is ``1-1.dcm`` or so, in a folder per study), which the error says."""
    for column in IMAGE_COLUMNS:
        if _cell(row, column) != _cell(first, column):
            shared = (
                "; or two images share this image_id: each image needs an id of its own across the whole CSV (the "
                "cache and the reports key images by it), e.g. its study_id and file name joined"
                if column == "study_id" else ""
            )  # fmt: skip
            raise VinDrFormatError(
                f"{where}: image {row['image_id']} has {column} {row[column]!r} here but {first[column]!r} on line "
                f"{first_line}; every row of one image must agree on {', '.join(IMAGE_COLUMNS)}{shared}"
            )


def _file_name_part(row: dict[str, str], column: str, where: str) -> str:
    """``study_id`` / ``image_id``, which name the DICOM's folder and file and the cache's files: one plain name
    (VinDr's are hex hashes). A ``/``, ``..`` or absolute id read a file elsewhere and made ``wsod prepare`` write
    outside its cache folder."""
    value = row[column]
    if not value.strip() or value in (".", "..") or any(c in "/\\" or ord(c) < 32 for c in value):
        raise VinDrFormatError(
            f"{where}: {column} must be one plain file name (no '/', '\\', '..', control characters or empty value), "
            f"got {value!r}"
        )
    return value


def _new_record(row: dict[str, str], root: Path, where: str) -> ImageRecord:
    study_id, image_id = _file_name_part(row, "study_id", where), _file_name_part(row, "image_id", where)
    path = root / "images" / study_id / f"{image_id}.dicom"
    height, width = _image_size(row, where) or _size_from_file(path)
    if row["laterality"] not in ("L", "R"):
        raise VinDrFormatError(f"{where}: laterality must be L or R, got {row['laterality']!r}")
    if row["split"] not in SPLITS:
        raise VinDrFormatError(f"{where}: split must be one of {SPLITS}, got {row['split']!r}")
    return ImageRecord(
        study_id=row["study_id"],
        series_id=_cell(row, "series_id"),
        image_id=row["image_id"],
        laterality=row["laterality"],
        view=row["view_position"],
        split=row["split"],
        height=height,
        width=width,
        path=path,
        breast_birads=parse_birads(_cell(row, "breast_birads"), where),
        breast_density=" ".join(_cell(row, "breast_density").split()),
    )


#: The names an image file may have beside VinDr's ``<image_id>.dicom``, in the order they are looked for: another
#: DICOM extension, none (as scanners export), a PNG/TIFF (datasets shared as 16-bit PNGs) or a JPEG (lossy 8-bit
#: conversions, read with a warning); each also in capitals
#: (``IMG0001.DCM`` from a CD).
IMAGE_NAMES = (".dicom", ".dcm", "", ".png", ".tif", ".tiff", ".jpg", ".jpeg")


def find_image(path: Path) -> Path | None:
    """The file of a record's image: ``path`` (``images/<study_id>/<image_id>.dicom``) where it exists, else the
    first of the same name with another of :data:`IMAGE_NAMES`' endings that does, its study folder and file name
    as the CSV spells them, else in Unicode's other normal form; None where none exists."""
    if is_existing_file(path):
        return path
    for spelt in _unicode_spellings(path):
        stem = spelt.with_suffix("")  # only ".dicom" goes: a UID image_id keeps its dots
        for ending in dict.fromkeys(e for name in IMAGE_NAMES for e in (name, name.upper())):
            if is_existing_file(candidate := stem.with_name(stem.name + ending)):
                return candidate
    return None


def is_existing_file(path: Path) -> bool:
    """``path.is_file()``, False for a name too long for the file system (no such file can exist): an image_id of
    250 to 255 bytes, its file without an extension, made ``<image_id>.dicom`` too long, and the stat's
    ``[Errno 36] File name too long`` of that name stopped fit, test and prepare."""
    try:
        return path.is_file()
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            return False
        raise


def _unicode_spellings(path: Path) -> list[Path]:
    """``path``, then with its study folder and file name composed (NFC) and decomposed (NFD), where that differs:
    macOS writes ``ü`` decomposed (u and a combining diaeresis), a CSV typed elsewhere composed, and Linux compares
    the bytes: the image was "file not found" under the very name ``ls`` showed."""
    folder, name = path.parent.name, path.name
    spellings = [path]
    forms: tuple[Literal["NFC", "NFD"], ...] = ("NFC", "NFD")
    for folder_form, name_form in itertools.product(forms, repeat=2):
        spelt = path.parent.parent / unicodedata.normalize(folder_form, folder) / unicodedata.normalize(name_form, name)
        if spelt not in spellings:
            spellings.append(spelt)
    return spellings


def _size_from_file(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the header of the record's image file (:func:`find_image`'s), for a CSV without
    them (an external dataset's, written by hand); ``(0, 0)`` where the file is missing or its header unreadable:
    whoever reads the image then says why it cannot (``data.missing``, ``wsod prepare``'s errors)."""
    from wsod_mammo.data.images import image_size

    if (found := find_image(path)) is None:
        return 0, 0
    try:
        return image_size(found)
    except ValueError:  # DicomError is one
        return 0, 0


def load_records(root: str | Path, classes: Sequence[str] | None = None) -> list[ImageRecord]:
    """Read ``<root>/finding_annotations.csv`` into one record per image, in file order.

    The breast-level CSV's header is checked when the file is present (it holds no boxes). An image whose rows leave
    ``height`` and ``width`` empty gets them from its file's header (:func:`_size_from_file`). A box without area
    (zero width or height, or none left inside the image), or no box cells at all, is an error naming its line when
    its finding is of ``classes`` (None: of any category); a finding of other categories keeps no box, with one
    warning listing their lines (INbreast's point ROIs of calcifications, converted to boxes, and a converter leaving
    calcifications' boxes blank stopped a Mass run's CSV).
    """
    root = Path(root)
    if (root / BREAST_CSV).is_file():
        next(iter(_read_rows(root / BREAST_CSV, BREAST_COLUMNS)), None)
    images: dict[str, tuple[ImageRecord, int, dict[str, str]]] = {}  # image_id -> its record, first line and row
    path = root / FINDING_CSV
    seen: dict[tuple[str, ...], int] = {}  # each row's fields -> its first line
    repeats: list[str] = []
    unused: list[str] = []  # the lines of findings of other categories than ``classes`` without a box with area
    for line, row in _read_rows(path, FINDING_COLUMNS):
        fields = tuple(_cell(row, column) for column in row)
        if fields in seen:  # concatenated CSVs: kept as a row (selection: paper counts rows), one box (``boxes``)
            repeats.append(f"line {line} repeats line {seen[fields]}")
        seen.setdefault(fields, line)
        where = f"{path}, line {line}"
        if row["image_id"] not in images:
            images[row["image_id"]] = _new_record(row, root, where), line, row
        record, first_line, first = images[row["image_id"]]
        if first_line != line:
            _check_same_image(row, first, first_line, where)
        categories = parse_categories(row["finding_categories"], where)
        try:
            box = _parse_box(row, record.height, record.width, where)
        except EmptyBoxError:
            if classes is None or any(c in classes for c in categories):
                raise
            unused.append(f"{line} {list(categories)}")
            box = None
        else:  # no box cells at all (a converter leaving other categories' boxes blank): the same rule
            if box is None and categories != (NO_FINDING,):
                if classes is None or any(c in classes for c in categories):
                    raise VinDrFormatError(f"{where}: finding {list(categories)} has no box")
                unused.append(f"{line} {list(categories)}")
        birads = _cell(row, "finding_birads")
        parse_birads(birads, where, "finding_birads")  # a bad cell named here, not in a worker
        record.findings.append(Finding(categories, box, birads))
    if repeats:
        listing = "; ".join(repeats[:10]) + (" ..." if len(repeats) > 10 else "")
        log.warning("%s: %d row(s) repeat an earlier row field for field; each repeated box counts once as ground "
                    "truth: %s", path, len(repeats), listing)  # fmt: skip
    if unused:
        listing = ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else "")
        log.warning("%s: %d row(s) of findings outside the classes %s have no box, or one without area (zero width or "
                    "height, or none left inside the image); unused by this run, they are kept without a box: line(s) "
                    "%s",
                    path, len(unused), list(classes or ()), listing)  # fmt: skip
    return [record for record, _, _ in images.values()]
