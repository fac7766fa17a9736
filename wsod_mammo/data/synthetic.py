"""`wsod synth`: a small dataset in exactly the VinDr-Mammo layout, with learnable masses.

Each study has four images (L/R x CC/MLO) written as real uncompressed 16-bit DICOM files with 12-bit
values: breast-shaped tissue with multi-scale texture, a pectoral muscle on MLO views, a bright label in
a corner (so the breast crop must pick the breast), calcification-like specks on every image as
distractors, and on about ``mass_fraction`` of the images one or two masses: soft-edged bright blobs of
varied size, contrast, elongation and lobulation whose boxes go to ``finding_annotations.csv``.

The CSVs carry the quirks of the real data the loader must handle: 32-character hex ids, box rows
first, empty fields for ``No Finding``, quoted multi-category rows, boxes slightly outside the image,
BI-RADS and density per breast (a No Finding view of a breast with a boxed mass carries its BI-RADS), a study
with several series, both MONOCHROME1 and MONOCHROME2, multi-valued window tags and rescale tags; and, which
VinDr's four views per study never show, a study with two LCC images and no LMLO (nothing may assume four).

OpenCV and pydicom are imported where they are used, so that ``wsod synth --help`` starts in a fraction of a second.
"""

from __future__ import annotations

import csv
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from wsod_mammo.data.errors import DataError
from wsod_mammo.data.synthetic_image import MASS_RADIUS, render_image, write_dicom
from wsod_mammo.data.vindr import BREAST_COLUMNS, BREAST_CSV, FINDING_COLUMNS, FINDING_CSV, parse_birads

log = logging.getLogger(__name__)

#: Written first into every synthetic dataset: the mark that lets ``--overwrite`` replace it (and nothing else).
MARKER_FILE = "WSOD_SYNTHETIC.txt"
MARKER_TEXT = (
    "A synthetic VinDr-Mammo-format dataset written by `wsod synth` (wsod-mammo): no patient data.\n"
    "`wsod synth --overwrite` may replace its images/ and CSVs; it replaces no folder without this file.\n"
)


def _hex(rng: np.random.Generator) -> str:
    return "".join(f"{b:02x}" for b in rng.integers(0, 256, 16, dtype=np.uint8))


def _plan(rng: np.random.Generator, n_studies: int, test_fraction: float) -> list[dict[str, str]]:
    """One dict per image: ids, laterality, view, split (study-level)."""
    if test_fraction <= 0 or n_studies < 2:
        n_test = 0  # 0 asked for: a training-only set (the benchmarks' shards, each its own call, rely on it)
    else:
        n_test = min(n_studies - 1, max(1, int(round(test_fraction * n_studies))))
    test_studies = set(rng.permutation(n_studies)[:n_test].tolist())
    images = []
    for index in range(n_studies):
        study, series = _hex(rng), _hex(rng)
        views = [("L", "CC"), ("L", "CC"), ("R", "CC"), ("R", "MLO")] if index == 1 else None
        views = views or [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
        extra_series = _hex(rng) if index == 2 else series  # a study with two series
        for lat, view in views:
            images.append(
                {"study_id": study, "series_id": extra_series if view == "MLO" else series, "image_id": _hex(rng),
                 "laterality": lat, "view_position": view, "split": "test" if index in test_studies else "training"}
            )  # fmt: skip
    return images


def _finding_rows(image: dict, masses: list, calcs: list, rng: np.random.Generator) -> list[dict[str, str]]:
    rows = []
    for box in masses:
        both = rng.uniform() < 0.2
        rows.append({"finding_categories": str(["Suspicious Calcification", "Mass"] if both else ["Mass"]),
                     "finding_birads": f"BI-RADS {rng.integers(3, 6)}", "box": box})  # fmt: skip
    for box in calcs:
        rows.append(
            {"finding_categories": str(["Suspicious Calcification"]), "finding_birads": "BI-RADS 4", "box": box}
        )
    if not rows:
        rows.append({"finding_categories": str(["No Finding"]), "finding_birads": "", "box": None})
    out = []
    for row in rows:
        box = row.pop("box")
        cells = dict(zip(("xmin", "ymin", "xmax", "ymax"), (f"{v:.2f}" for v in box) if box else [""] * 4, strict=True))
        out.append({**image, **row, **cells})
    return out


#: the options ``check_synthetic_options`` names: ``wsod synth``'s own, unless the caller's are others
SYNTH_OPTION_NAMES = {"n_studies": "n_studies", "size": "height, width", "mass_radius": "mass_radius"}
MIN_SYNTHETIC_SIDE = 32


def check_synthetic_options(
    n_studies: int, height: int, width: int, mass_radius: tuple[float, float], names: dict[str, str] | None = None
) -> None:
    """ValueError naming the option (``names``: the caller's, e.g. the DataModule's ``data.synthetic_size``) whose
    value no synthetic dataset can be written with."""
    names = names or SYNTH_OPTION_NAMES
    if not 0 < mass_radius[0] <= mass_radius[1] < 0.5:
        raise ValueError(
            f"{names['mass_radius']}: expected 0 < low <= high < 0.5 (fractions of the width), got {mass_radius}"
        )
    if n_studies < 1:
        raise ValueError(f"{names['n_studies']}: expected at least 1 study, got {n_studies}")
    if height < MIN_SYNTHETIC_SIDE or width < MIN_SYNTHETIC_SIDE:
        raise ValueError(
            f"{names['size']}: expected a height and width of at least {MIN_SYNTHETIC_SIDE} pixels, "
            f"got {height}, {width}"
        )


def make_synthetic_dataset(
    root: str | Path,
    n_studies: int = 24,
    height: int = 256,
    width: int = 160,
    seed: int = 0,
    mass_fraction: float = 0.5,
    calc_fraction: float = 0.1,
    test_fraction: float = 0.25,
    mass_radius: tuple[float, float] = MASS_RADIUS,
    overwrite: bool = False,
) -> Path:
    """Write a VinDr-Mammo-layout dataset of ``4 * n_studies`` images under ``root``; returns ``root``.

    Args:
        root: output folder (``images/<study_id>/<image_id>.dicom``, the two CSVs and WSOD_SYNTHETIC.txt go
            here); a new or empty folder, unless ``overwrite``.
        n_studies: number of studies (4 images each).
        height, width: image size in pixels (real VinDr images are about 3518 x 2800).
        seed: seed of everything random (same seed, same files).
        mass_fraction: fraction of images with one or two masses (at least one per split when above 0; 0: none).
        calc_fraction: fraction of the other images with only a calcification finding (neither positive
            nor negative for the default ``[Mass]`` selection).
        test_fraction: fraction of studies in the ``test`` split (at least one when ``n_studies > 1``; 0: none).
        mass_radius: range of mass radii as fractions of the width. Real masses span 2 to 6 cells of GMIC's
            64-pixel saliency grid at 2944 x 1920; small inputs need larger fractions for the same ratio
            (on the command line as a list: ``--mass_radius '[0.12, 0.2]'``).
        overwrite: replace the synthetic dataset an earlier ``wsod synth`` wrote in ``root`` (its images/ and the
            two CSVs are deleted first; other files stay). A folder without its WSOD_SYNTHETIC.txt (real data,
            anything else) is never replaced.
    """
    check_synthetic_options(n_studies, height, width, mass_radius)
    fractions = {"mass_fraction": mass_fraction, "calc_fraction": calc_fraction, "test_fraction": test_fraction}
    for name, value in fractions.items():  # out of range, they wrote a set without masses or without negatives
        if not 0 <= value <= 1:
            raise ValueError(f"{name}: expected a fraction in [0, 1], got {value}")
    root = Path(root).expanduser()  # `--root=~/x` or a config's: the home folder, not a folder named ~ here
    _clear_for_writing(root, overwrite)
    root.mkdir(parents=True, exist_ok=True)
    # first: an interrupted write can be replaced with --overwrite
    (root / MARKER_FILE).write_text(MARKER_TEXT, encoding="utf-8")
    rng = np.random.default_rng(seed)
    images = _plan(rng, n_studies, test_fraction)
    n_masses, n_calcs = _assign_findings(rng, images, mass_fraction, calc_fraction)
    chest_wall_mass = int(np.argmax(n_masses > 0)) if n_masses.any() else -1  # its box will leave the image
    box_rows: list[dict[str, str]] = []
    normal_rows: list[dict[str, str]] = []
    breast_rows: list[dict[str, str]] = []
    import pydicom

    settings = pydicom.config.settings
    old_modes = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = settings.writing_validation_mode = pydicom.config.IGNORE  # hex ids: no UIDs
    try:
        for index, image in enumerate(images):
            if index == chest_wall_mass:
                pixels, masses, calcs = _chest_wall_variant(rng, height, width, image["view_position"], mass_radius)
            else:
                pixels, masses, calcs = render_image(rng, height, width, image["view_position"], n_masses[index],
                                                     n_calcs[index], mass_radius)  # fmt: skip
            if image["laterality"] == "R":  # right breasts lie against the right edge
                pixels = np.ascontiguousarray(pixels[:, ::-1])
                masses = [(width - b[2], b[1], width - b[0], b[3]) for b in masses]
                calcs = [(width - b[2], b[1], width - b[0], b[3]) for b in calcs]
            path = root / "images" / image["study_id"] / f"{image['image_id']}.dicom"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_dicom(path, pixels, image, image["laterality"], image["view_position"], style=index)
            base = {**image, "height": str(height), "width": str(width)}
            rows = _finding_rows({k: base[k] for k in FINDING_COLUMNS if k in base}, masses, calcs, rng)
            (box_rows if rows[0]["xmin"] else normal_rows).extend(rows)
            breast_rows.append(base)
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = old_modes
    _assess_breasts(box_rows + normal_rows, breast_rows)
    _write_csv(root / BREAST_CSV, BREAST_COLUMNS, breast_rows)
    _write_csv(root / FINDING_CSV, FINDING_COLUMNS, box_rows + normal_rows)  # last: its presence means complete
    return root


def _clear_for_writing(root: Path, overwrite: bool) -> None:
    """Refuse a ``root`` that exists and is not empty (real VinDr annotations, an older dataset whose DICOMs would be
    left as orphans), unless ``overwrite`` and it holds a dataset ``wsod synth`` wrote: then remove that dataset."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"--root {root} is a file; expected a new or empty folder")
    if not root.is_dir() or not any(root.iterdir()):
        return
    if not overwrite:
        raise ValueError(
            f"--root {root} exists and is not empty; wsod synth writes into a new or empty folder (--overwrite "
            f"replaces a synthetic dataset written there earlier, one with its {MARKER_FILE})"
        )
    if not (root / MARKER_FILE).is_file():
        raise ValueError(
            f"--root {root} holds no {MARKER_FILE}: not a dataset written by wsod synth, so --overwrite leaves it "
            "alone; give a new or empty folder, or empty this one yourself"
        )
    shutil.rmtree(root / "images", ignore_errors=True)
    for name in (FINDING_CSV, BREAST_CSV, MARKER_FILE):  # the finding CSV first: a half-removed set reads incomplete
        (root / name).unlink(missing_ok=True)


def synthesize_once(root: str | Path, **options: Any) -> bool:
    """``make_synthetic_dataset(root, **options)`` written whole or not at all, however many processes call it at
    once (SLURM array tasks, the nodes of a multi-node run): each writes into its own staging folder beside
    ``root`` and moves it into place in one rename; the first to finish wins, the others drop theirs. A folder
    already holding a complete dataset (its finding CSV) is left alone; an incomplete one (an interrupted write, its
    marker file written first) is filled, its finding CSV moved in last, as is a folder of hidden files only (a
    ``.gitkeep``) or an empty mount point. Any other folder with files in it (real data whose CSV has another name)
    is refused with a DataError naming it: its files would be overwritten. Returns whether this call wrote it."""
    root = Path(root)
    if (root / FINDING_CSV).is_file():
        return False
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        make_synthetic_dataset(staging, **options)
        try:
            staging.rename(root)  # atomic; refused when root exists and is not empty
            return True
        except OSError:
            if (root / FINDING_CSV).is_file():  # another process finished first: its dataset stays
                return False
            # hidden files only (.gitkeep) or an empty mount point: filled like an empty folder
            holds_files = not root.is_dir() or any(not p.name.startswith(".") for p in root.iterdir())
            if holds_files and not (root / MARKER_FILE).is_file():
                raise DataError(
                    f"data.synthesize_if_missing: {root} holds files but neither {FINDING_CSV} nor {MARKER_FILE}: not "
                    "a synthetic dataset, so none is written over it (its files are left as they are); give data_root "
                    "a new or empty folder for the synthetic demo data, or a VinDr-Mammo folder"
                ) from None

        def finding_csv_last(folder: str, names: list[str]) -> list[str]:
            return [FINDING_CSV] if Path(folder) == staging else []

        shutil.copytree(staging, root, dirs_exist_ok=True, ignore=finding_csv_last)
        (staging / FINDING_CSV).replace(root / FINDING_CSV)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _assess_breasts(finding_rows: list[dict[str, str]], breast_rows: list[dict[str, str]]) -> None:
    """Fill ``breast_birads`` and ``breast_density`` per breast, as VinDr's radiologists assessed them: one value for
    both views of a breast, BI-RADS the highest of its findings' (so the other view of a breast with a boxed mass,
    a No Finding image, carries it too), else 1 or, for every third breast without a box, 2 (benign: VinDr boxes
    none of those); density per study. Drawn from no generator: the images and boxes of a seed stay as they were."""
    studies = list(dict.fromkeys(row["study_id"] for row in breast_rows))
    birads: dict[tuple[str, str], int] = {}
    for row in finding_rows:
        breast, finding = (row["study_id"], row["laterality"]), parse_birads(row["finding_birads"]) or 0
        birads[breast] = max(birads.get(breast, 0), finding)
    unboxed = [breast for breast, value in birads.items() if value == 0]  # in file order
    birads |= {breast: 2 if k % 3 == 1 else 1 for k, breast in enumerate(unboxed)}
    for row in finding_rows + breast_rows:
        row["breast_birads"] = f"BI-RADS {birads[row['study_id'], row['laterality']]}"
        row["breast_density"] = f"DENSITY {'ABCD'[studies.index(row['study_id']) % 4]}"


def _assign_findings(
    rng: np.random.Generator, images: list[dict[str, str]], mass_fraction: float, calc_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Masses (0, 1 or 2) and calcification findings (0 or 1) per image; at least one mass image per split."""
    n_masses, n_calcs = np.zeros(len(images), int), np.zeros(len(images), int)
    for split in ("training", "test"):
        idx = [i for i, im in enumerate(images) if im["split"] == split]
        order = rng.permutation(idx).tolist()
        k = max(1, int(round(mass_fraction * len(idx)))) if idx and mass_fraction > 0 else 0
        for i in order[:k]:
            n_masses[i] = 2 if rng.uniform() < 0.25 else 1
        for i in order[k : k + int(round(calc_fraction * (len(idx) - k)))]:
            n_calcs[i] = 1
    return n_masses, n_calcs


def _chest_wall_variant(
    rng: np.random.Generator, height: int, width: int, view: str, mass_radius: tuple[float, float]
) -> tuple[np.ndarray, list[tuple[float, float, float, float]], list[tuple[float, float, float, float]]]:
    """Render until a mass sits against the chest wall (its box then starts slightly left of x = 0)."""
    for _ in range(50):
        pixels, masses, calcs = render_image(rng, height, width, view, 1, mass_radius=mass_radius)
        if masses[0][0] < 0:
            return pixels, masses, calcs
    return pixels, masses, calcs


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    """``wsod synth --root DIR [--n_studies N --height H --width W --seed S ...] [--overwrite]``."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog="wsod synth",
        allow_abbrev=False,  # as fit: a misspelt option is refused, not taken as the one it begins
        description="Write a VinDr-Mammo-layout dataset of 4 * n_studies images under --root, a new or empty "
        f"folder; --overwrite replaces a dataset wsod synth wrote there (one with its {MARKER_FILE}).",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    parser.add_function_arguments(make_synthetic_dataset, as_group=False, skip={"overwrite"})
    parser.add_argument(
        "--overwrite", action="store_true",
        help=f"replace the synthetic dataset an earlier wsod synth wrote in --root (its images/ and two CSVs are "
             f"deleted first, other files stay); a folder without {MARKER_FILE} (real data) is never replaced",
    )  # fmt: skip
    options = parser.parse_args(argv).as_dict()
    options.pop("config", None)
    root = make_synthetic_dataset(**options)
    log.info("synthetic VinDr-Mammo dataset written to %s", root)  # a [wsod] line on stderr, as every other


if __name__ == "__main__":  # `python -m wsod_mammo.data.synthetic`: `wsod synth` (it ran nothing and exited 0)
    import sys as _sys

    from wsod_mammo.commands import main as _main

    _main(["synth", *_sys.argv[1:]])
