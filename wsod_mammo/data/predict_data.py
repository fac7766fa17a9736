"""Inputs of ``wsod predict``: any files and folders -> samples, an error sample for what cannot be read.

The sample dict is the DataModule's (see ``datamodule``), with zero labels, no boxes, and ``meta`` holding
``laterality_source`` (``dicom``, ``given`` or ``inferred``) and ``error`` (None, or ``"<path>: <reason>"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from wsod_mammo.data.dicom import describe_failure, not_an_image
from wsod_mammo.data.folder_metadata import DICOMDIR, dicomdir_files, in_system_folder, is_folder_metadata
from wsod_mammo.data.geometry import Geometry
from wsod_mammo.data.image_files import IMAGE_SUFFIXES
from wsod_mammo.data.images import load_padded
from wsod_mammo.data.transforms import BoxTransform


class PredictInputs(NamedTuple):
    """``wsod predict``'s inputs: the files to predict, and those found in folders that were folder metadata (the
    operating system's files and DICOMDIR indexes; left out: counted, never read as images)."""

    files: list[Path]
    folder_metadata: list[Path]


def find_predict_inputs(paths: Sequence[str]) -> PredictInputs:
    """Files and folders -> sorted file list: every file found in a folder (recursively), whatever its type, but the
    folder metadata (``is_folder_metadata``: the operating system's and DICOMDIR indexes; every file in the operating
    system's own folders, ``in_system_folder``: the trash, the search index), which is listed apart; a
    DICOMDIR given itself stands for the files it lists (``dicomdir_files``).

    Nothing else is dropped: a file that is neither a DICOM (by content) nor a PNG/TIFF is kept so that its sample
    reports why; so are a path that does not exist, a folder with no file in it, a broken link and any other file
    named itself (metadata too). Links to folders are followed (each folder read once: a link back up does not
    loop), as ``find -L`` does.
    """
    files: list[Path] = []
    metadata: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if not path.is_dir():
            files += dicomdir_files(path) if path.name.upper() == DICOMDIR else [path]
            continue
        kept: list[Path] = []
        for found in _files_below(path):
            system = in_system_folder(found.relative_to(path))  # the trash, the search index
            (metadata if system or is_folder_metadata(found) else kept).append(found)
        files += kept or [path]
    return PredictInputs(files, metadata)


def expand_predict_paths(paths: Sequence[str]) -> list[Path]:
    """``find_predict_inputs``' files."""
    return find_predict_inputs(paths).files


def _files_below(folder: Path) -> list[Path]:
    """The files below ``folder``, and each folder below it that cannot be read (its row says so: ``os.walk`` skipped
    it without a word, and its images were missing from the run's outputs as if there were none)."""
    files: list[Path] = []
    seen = set()

    def unreadable(error: OSError) -> None:
        files.append(Path(error.filename))

    for top, folders, names in os.walk(folder, onerror=unreadable, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # reached again through a link
            folders[:] = []
            continue
        seen.add(real)
        files += [Path(top, name) for name in names]  # broken links too: their samples say why
    return sorted(files)


_NAMED_SUFFIXES = (".dcm", ".dicom", *IMAGE_SUFFIXES)  # dropped from an id; any other dot is part of the name


def predict_image_ids(files: Sequence[str | Path]) -> list[str]:
    """One distinct ``image_id`` per input file: it names the file's rows in the outputs and its overlay PNG.

    The file name without its image extension (``.dcm``, ``.dicom``, ``.png``, ``.tif``, ``.tiff``); a name with other
    dots is kept whole (scanner exports named by a UID, ``1.2.840...``, have no extension). Names two inputs share
    (``studyA/IMG0001.dcm`` and ``studyB/IMG0001.dcm``) become the path below the inputs' common folder
    (``studyA/IMG0001``), with the extension when that is still shared (``a.dcm`` beside ``a.png``); the same path
    given twice gets ``-2``, ``-3``...
    """
    absolute = [Path(os.path.normpath(Path(f).absolute())) for f in files]  # no `..`: ids stay below the run folder
    top = Path(os.path.commonpath([a.parent for a in absolute])) if absolute else Path()
    relative = [a.relative_to(top) for a in absolute]

    def bare(path: Path) -> str:
        return path.stem if path.suffix.lower() in _NAMED_SUFFIXES else path.name

    def clashing(ids: list[str]) -> set[str]:
        """The ids that different files share."""
        files_of: dict[str, set[Path]] = {}
        for image_id, path in zip(ids, absolute, strict=True):
            files_of.setdefault(image_id, set()).add(path)
        return {image_id for image_id, paths in files_of.items() if len(paths) > 1}

    ids = [bare(r) for r in relative]
    for longer in ((r.parent / bare(r)).as_posix() for r in relative), (r.as_posix() for r in relative):
        clash = clashing(ids)
        ids = [name if image_id in clash else image_id for image_id, name in zip(ids, longer, strict=True)]
    taken, counts, unique = set(ids), dict.fromkeys(ids, 0), []
    for image_id in ids:
        counts[image_id] += 1
        if counts[image_id] > 1:  # a suffix no other input's id already is (`x-2` beside a repeated `x`)
            while f"{image_id}-{counts[image_id]}" in taken:
                counts[image_id] += 1
            image_id = f"{image_id}-{counts[image_id]}"
            taken.add(image_id)
        unique.append(image_id)
    return [spelt_out(i) for i in unique]


def spelt_out(text: str) -> str:
    """A name that is not UTF-8 (`m\xfcller.png` from a Latin-1 archive) holds surrogates no CSV, PNG title or
    overlay file name can take: its bytes spelt out instead (`m\\xfcller`), alike in every column that names it."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class PredictDataset(Dataset):
    """DICOMs, PNG/TIFF files -> samples with zero labels and no boxes; an unreadable file gives an error sample.

    Laterality: the DICOM tags, else ``laterality`` when given, else inferred from the image; ``meta`` says which
    (``laterality_source``). ``meta["view"]``: the DICOM's ViewPosition, ``meta["study"]`` its StudyInstanceUID
    (both empty for PNG/TIFF and untagged files);
    ``meta["warnings"]``: ``InputImage.warnings``.
    Each sample's ``image_id`` is the file's from ``predict_image_ids``: distinct per input.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        num_classes: int,
        transform: BoxTransform,
        crop_breast: bool = True,
        laterality: str | None = None,
        resize: str = "stretch",
    ):
        self.paths, self.num_classes, self.transform = list(paths), num_classes, transform
        self.image_ids = predict_image_ids(self.paths)
        self.crop_breast, self.laterality, self.resize = crop_breast, laterality, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = Path(self.paths[index])
        height, width = self.transform.input_size
        meta: dict[str, Any] = {"study_id": path.parent.name, "view": "", "split": "predict", "path": str(path)}
        padding = None  # (H, W) bool where the DICOM has padding pixels: left out of the standardization
        try:
            loaded = load_padded(path, (height, width), self.laterality, self.crop_breast, self.resize)
            image, geometry, padding = loaded.image, loaded.geometry, loaded.padding
            meta.update(laterality=loaded.laterality, laterality_source=loaded.laterality_source, view=loaded.view,
                        study=loaded.study, instance=loaded.instance)  # fmt: skip
            meta.update(warnings=list(loaded.warnings), error=None)
        except Exception as err:  # any unreadable file must leave the other images' results intact
            meta["error"] = describe_failure(path, err)
            meta["not_an_image"] = not_an_image(err)
            image, geometry = (
                np.zeros((height, width), np.float32),
                Geometry(height, width, False, (0, 0, width, height), height, width),
            )
            meta["laterality"], meta["laterality_source"] = "L", None
        meta["geometry"] = geometry.to_dict()
        out = self.transform.apply(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), padding)
        return out | {"label": torch.zeros(self.num_classes), "image_id": self.image_ids[index], "meta": meta}
