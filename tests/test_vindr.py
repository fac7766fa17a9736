"""VinDr CSV parsing, selection modes and the study-grouped validation split."""

from __future__ import annotations

import csv
import logging
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from wsod_mammo.data.vindr import (
    FINDING_COLUMNS,
    FINDING_CSV,
    Finding,
    ImageRecord,
    VinDrFormatError,
    find_image,
    load_records,
    parse_categories,
)
from wsod_mammo.data.vindr_selection import select_records, split_train_val


def test_synthetic_csv_quirks_parse(synthetic_root: Path) -> None:
    records = load_records(synthetic_root)
    assert len(records) == 24 and len({r.image_id for r in records}) == 24
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for r in records for i in (r.image_id, r.study_id, r.series_id))
    assert {r.split for r in records} == {"training", "test"}
    assert all(r.path.is_file() and r.path.suffix == ".dicom" for r in records)
    # several box rows per image, and multi-category rows parsed into tuples
    assert any(sum(f.box is not None for f in r.findings) >= 2 for r in records)
    assert any(set(f.categories) == {"Mass", "Suspicious Calcification"} for r in records for f in r.findings)
    normals = [r for r in records if r.is_normal]
    assert normals and all(r.findings == [Finding(("No Finding",), None, "")] for r in normals)
    # boxes outside the image are clipped (the synthetic chest-wall mass starts left of / right of the edge)
    boxes = np.array([f.box for r in records for f in r.findings if f.box])
    assert boxes.min() >= 0 and (boxes[:, [0, 2]].max() <= 160) and (boxes[:, [1, 3]].max() <= 256)
    assert np.isclose(boxes[:, 0], 0).any() or np.isclose(boxes[:, 2], 160).any()
    # BI-RADS per breast, as VinDr's: a No Finding view of a breast with a boxed finding carries its assessment
    breasts: dict[tuple[str, str], set] = {}
    for r in records:
        breasts.setdefault((r.study_id, r.laterality), set()).add(r.breast_birads)
    assert all(len(values) == 1 for values in breasts.values())
    assert 1 in {r.breast_birads for r in normals} and max(r.breast_birads for r in normals) >= 3
    # the breast's density as the CSV gives it, for the test report's Table II by density
    densities = {r.breast_density for r in records}
    assert densities <= {f"DENSITY {c}" for c in "ABCD"} and len(densities) > 1
    # one study has two LCC images and no LMLO; one has two series
    views = {}
    for r in records:
        views.setdefault(r.study_id, []).append(r.laterality + r.view)
    assert any(sorted(v) == ["LCC", "LCC", "RCC", "RMLO"] for v in views.values())
    series = {}
    for r in records:
        series.setdefault(r.study_id, set()).add(r.series_id)
    assert any(len(s) == 2 for s in series.values())


def test_parse_categories_is_safe() -> None:
    assert parse_categories("['Mass']") == ("Mass",)
    assert parse_categories("['Suspicious Calcification', 'Mass']") == ("Suspicious Calcification", "Mass")
    with pytest.raises(VinDrFormatError, match="f.csv, line 3"):
        parse_categories("__import__('os').getcwd()", "f.csv, line 3")
    with pytest.raises(VinDrFormatError):
        parse_categories("[]")


def _record(study: str, image: str, split: str, cats: list[tuple[str, ...]]) -> ImageRecord:
    findings = [Finding(c, None if c == ("No Finding",) else (1.0, 1.0, 5.0, 5.0)) for c in cats]
    return ImageRecord(study, "s", image, "L", "CC", split, 10, 10, Path(image), findings)


def _toy_records() -> list[ImageRecord]:
    mass, normal, calc = ("Mass",), ("No Finding",), ("Suspicious Calcification",)
    recs = [_record("a", "p1", "training", [mass, mass]), _record("b", "p2", "training", [mass])]
    recs += [_record("c", "p3", "training", [calc, ("Suspicious Calcification", "Mass")])]
    recs += [_record("d", f"n{i}", "training", [normal]) for i in range(5)]
    recs += [_record("e", "c1", "training", [calc])]
    recs += [_record("f", "p4", "test", [mass])] + [_record("g", f"t{i}", "test", [normal]) for i in range(3)]
    return recs


@pytest.mark.parametrize(("mode", "train", "test"), [("all", (3, 5), (1, 3)), ("balanced", (3, 3), (1, 1)),
                                                     ("paper", (4, 4), (1, 1))])  # fmt: skip
def test_selection_counts(mode: str, train: tuple[int, int], test: tuple[int, int]) -> None:
    chosen = select_records(_toy_records(), ["Mass"], mode, seed=0)
    for split, (n_pos, n_neg) in (("training", train), ("test", test)):
        in_split = [r for r in chosen if r.split == split]
        assert sum(r.has_class(["Mass"]) for r in in_split) == n_pos
        assert sum(r.is_normal for r in in_split) == n_neg
    assert all(r.image_id != "c1" for r in chosen)  # calcification-only images are neither
    for split in ("training", "test"):  # positives then negatives, per split
        kinds = [r.has_class(["Mass"]) for r in chosen if r.split == split]
        assert kinds == sorted(kinds, reverse=True), (split, kinds)
    assert [r.image_id for r in chosen] == [r.image_id for r in select_records(_toy_records(), ["Mass"], mode, 0)]


def test_balanced_negatives_are_distinct_images() -> None:
    """Drawn without replacement: 19 of 20 normal images, none twice (with replacement the counts still matched)."""
    recs = [_record(f"m{i}", f"mass{i}", "training", [("Mass",)]) for i in range(19)]
    recs += [_record(f"n{i}", f"normal{i}", "training", [("No Finding",)]) for i in range(20)]
    for seed in range(3):
        negatives = [r.image_id for r in select_records(recs, ["Mass"], "balanced", seed=seed) if r.is_normal]
        assert len(negatives) == len(set(negatives)) == 19


def test_normal_max_birads_leaves_out_no_finding_views_of_assessed_breasts() -> None:
    """VinDr boxes only non-benign findings, image by image: a No Finding image may be a benign breast (BI-RADS 2) or
    the other view of a breast whose mass was boxed in one view only (here BI-RADS 4)."""
    records = _toy_records()
    normals = [r for r in records if r.is_normal and r.split == "training"]
    for record, birads in zip(normals, [4, 2, 1, 1, None], strict=True):
        record.breast_birads = birads
    kept = {limit: {r.image_id for r in select_records(records, ["Mass"], "all", 0, limit) if r.is_normal and
                    r.split == "training"} for limit in (5, 2, 1)}  # fmt: skip
    assert kept == {5: {"n0", "n1", "n2", "n3", "n4"}, 2: {"n1", "n2", "n3"}, 1: {"n2", "n3"}}
    assert len([r for r in select_records(records, ["Mass"], "balanced", 0, 1) if r.split == "training"]) == 3 + 2
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="normal_max_birads: expected an integer from 1 to 5"):
            select_records(records, ["Mass"], "all", 0, bad)


def test_labels_and_boxes_per_class() -> None:
    record = _toy_records()[2]
    boxes, labels = record.boxes(["Mass", "Suspicious Calcification"])
    # two findings share the toy box: one calcification box (one object), and the second finding's mass box
    assert boxes.shape == (2, 4) and labels.tolist() == [1, 0]
    assert record.label(["Mass", "Architectural Distortion"]).tolist() == [1.0, 0.0]


def test_split_train_val_groups_studies() -> None:
    records = [_record(f"s{i // 4}", f"i{i}", "training", [("No Finding",)]) for i in range(40)]
    train, val = split_train_val(records, 0.2, seed=1)
    assert len(val) == 8 and len(train) == 32
    assert not {r.study_id for r in train} & {r.study_id for r in val}
    assert split_train_val(records, 0.2, seed=1)[1] == val
    # 10% of 4 studies rounds to none: one study is still held out (validation picks the checkpoint)
    held_out = {r.study_id for r in split_train_val(records[:16], 0.1, seed=1)[1]}
    assert len(held_out) == 1


def _write(tmp: Path, header: list[str], rows: list[list[str]]) -> Path:
    with (tmp / FINDING_CSV).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return tmp


ROW = ["a" * 32, "b" * 32, "c" * 32, "L", "CC", "100", "80", "BI-RADS 4", "DENSITY C", "['Mass']", "BI-RADS 4",
       "1.5", "2", "90", "30", "training"]  # fmt: skip


def test_bad_csv_errors_name_file_and_row(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=FINDING_CSV):
        load_records(tmp_path)
    _write(tmp_path, [c for c in FINDING_COLUMNS if c != "xmax"], [])
    with pytest.raises(VinDrFormatError, match=r"finding_annotations.csv: missing column\(s\) \['xmax'\]"):
        load_records(tmp_path)
    _write(tmp_path, FINDING_COLUMNS, [ROW, ROW[:-2]])
    with pytest.raises(VinDrFormatError, match="line 3: expected 16 fields, found 14"):
        load_records(tmp_path)
    _write(tmp_path, FINDING_COLUMNS, [ROW[:11] + ["x", "2", "90", "30", "training"]])
    with pytest.raises(VinDrFormatError, match="line 2: box fields must be numbers"):
        load_records(tmp_path)
    _write(tmp_path, FINDING_COLUMNS, [ROW[:11] + ["nan", "2", "90", "30", "training"]])
    with pytest.raises(VinDrFormatError, match=r"line 2: box fields must be finite numbers, got \['nan', "):
        load_records(tmp_path)  # NaN passed the empty-box check: a Mass image trained without its box
    _write(tmp_path, FINDING_COLUMNS, [ROW[:11] + ["60", "2", "40", "30", "training"]])
    with pytest.raises(VinDrFormatError, match=r"line 2: box has xmax < xmin or ymax < ymin \(corners swapped\?\)"):
        load_records(tmp_path)  # was "empty box after clipping to the 80x100 image"
    _write(tmp_path, FINDING_COLUMNS, [ROW[:9] + ["Mass"] + ROW[10:]])
    with pytest.raises(VinDrFormatError, match="line 2: finding_categories"):
        load_records(tmp_path)
    _write(tmp_path, FINDING_COLUMNS, [ROW[:-1] + ["train"]])
    with pytest.raises(VinDrFormatError, match="line 2: split must be one of"):
        load_records(tmp_path)
    _write(tmp_path, FINDING_COLUMNS, [ROW[:7] + ["BI-RADS four"] + ROW[8:]])
    with pytest.raises(VinDrFormatError, match="line 2: breast_birads must be like 'BI-RADS 4', got 'BI-RADS four'"):
        load_records(tmp_path)
    _write(tmp_path, FINDING_COLUMNS, [ROW[:10] + ["BI-RADS 7"] + ROW[11:]])
    with pytest.raises(VinDrFormatError, match="line 2: finding_birads must be like 'BI-RADS 4', got 'BI-RADS 7'"):
        load_records(tmp_path)  # said at setup, not by the first test batch that reads the mass's BI-RADS


def test_csvs_as_excel_saves_them_read_or_fail_naming_the_file_and_the_line(tmp_path: Path) -> None:
    """Excel's trailing rows of empty fields stopped the run ("height/width must be positive integers, got ''"); a
    cp1252 file gave the codec's words alone; an open quote was blamed on the line where the file ended, with every
    row after it in one message."""
    path = _write(tmp_path, FINDING_COLUMNS, [ROW, [""] * 16, [""] * 16]) / FINDING_CSV
    assert len(load_records(tmp_path)) == 1
    path.write_bytes(path.read_bytes().replace(b"DENSITY C", "DENSITY \u00c4".encode("cp1252"), 1))
    with pytest.raises(VinDrFormatError, match=rf"{FINDING_CSV}: not UTF-8 text \(byte 0xc4 at offset \d+\); save"):
        load_records(tmp_path)
    rows = [ROW[:8] + ['"' + ROW[8]] + ROW[9:]] + [[f"{'d' * 32}{i}"] + ROW[1:] for i in range(50)]
    with path.open("w") as handle:  # the quote opened on line 2 swallows the rows after it
        handle.write(",".join(FINDING_COLUMNS) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    with pytest.raises(VinDrFormatError, match=r"lines 2-\d+ \(a quote left open on line 2\?\): expected 16") as error:
        load_records(tmp_path)
    assert len(str(error.value)) < 600


def test_a_quote_left_open_past_the_csv_field_limit_names_the_file_and_the_line(tmp_path: Path) -> None:
    """In a real-size CSV (VinDr's finding CSV is 2.5 MB) a stray quote swallows more than the csv module's 128 KB
    field limit: the run stopped with a traceback ending ``_csv.Error: field larger than field limit``, no file."""
    rows = [ROW] + [ROW[:8] + ['"' + ROW[8]] + ROW[9:]] + [[f"{'d' * 32}{i}"] + ROW[1:] for i in range(3000)]
    path = tmp_path / FINDING_CSV
    with path.open("w") as handle:
        handle.write(",".join(FINDING_COLUMNS) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    assert path.stat().st_size > csv.field_size_limit()
    match = rf"{FINDING_CSV}, line 3: field larger than field limit \(\d+\) \(a quote left open on line 3\?\)"
    with pytest.raises(VinDrFormatError, match=match):
        load_records(tmp_path)


@pytest.mark.parametrize("height", ["inf", "1e400", "100.7", "0", "-100", ""])
def test_an_impossible_image_size_names_the_row(tmp_path: Path, height: str) -> None:
    """`inf` raised a bare OverflowError; `100.7` was cut to 100; 0 and negative sizes went through."""
    _write(tmp_path, FINDING_COLUMNS, [ROW[:5] + [height] + ROW[6:]])
    message = rf"line 2: height/width must be positive integers \(or both empty, .*\), got '{height}', '80'"
    with pytest.raises(VinDrFormatError, match=message):
        load_records(tmp_path)


def test_an_image_whose_rows_leave_height_and_width_empty_gets_its_files_size(
    tmp_path: Path, synthetic_root: Path
) -> None:
    """CSVs written for another dataset (CBIS-DDSM's and INbreast's annotations give no image size) may leave both
    cells empty: the size comes from the image file's header, whatever its name or format, and boxes are clipped to
    it; an image not on disk keeps no size and its box as given (``data.missing`` then decides about the image)."""
    import cv2

    from wsod_mammo.data.dicom import read_dicom

    dicoms = sorted((synthetic_root / "images").glob("*/*.dicom"))[:3]
    pixels = (read_dicom(dicoms[2])[0] * 65535).round().astype(np.uint16)
    study = tmp_path / "images" / "s1"
    study.mkdir(parents=True)
    (study / "plain.dicom").write_bytes(dicoms[0].read_bytes())
    (study / "bare").write_bytes(dicoms[1].read_bytes())  # a scanner export: no extension
    cv2.imwrite(str(study / "gray.png"), pixels)
    cv2.imwrite(str(study / "tiled.tif"), pixels[:200, :120])
    rows = [["s1", "", image, "L", "CC", "", "", "", "", "['Mass']", "", "10", "20", "400", "50", "test"]
            for image in ("plain", "bare", "gray", "tiled", "lost")]  # fmt: skip
    _write(tmp_path, FINDING_COLUMNS, rows)
    records = {r.image_id: r for r in load_records(tmp_path)}
    assert {i: r.size for i, r in records.items()} == {"plain": (256, 160), "bare": (256, 160), "gray": (256, 160),
                                                      "tiled": (200, 120), "lost": None}  # fmt: skip
    assert records["gray"].findings[0].box == (10.0, 20.0, 160.0, 50.0)  # clipped to the PNG's width
    assert records["tiled"].findings[0].box == (10.0, 20.0, 120.0, 50.0)
    assert records["lost"].findings[0].box == (10.0, 20.0, 400.0, 50.0)  # no size to clip it to
    (study / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 5)  # a PNG cut within its header
    _write(tmp_path, FINDING_COLUMNS, [rows[0][:2] + ["broken"] + rows[0][3:]])
    assert load_records(tmp_path)[0].size is None  # decoding it names the file and why
    _write(tmp_path, FINDING_COLUMNS, [rows[4][:11] + ["10", "20", "10", "50", "test"]])  # no size, and no width
    with pytest.raises(VinDrFormatError, match=r"line 2: empty box: \['10', '20', '10', '50'\]"):
        load_records(tmp_path)


@pytest.mark.parametrize(("column", "value"), [("study_id", "z" * 32), ("split", "test"), ("height", "4000"),
                                               ("laterality", "R")])  # fmt: skip
def test_rows_of_one_image_that_disagree_name_both_lines(tmp_path: Path, column: str, value: str) -> None:
    """The first row used to win in silence: the second row's box was clipped to the first row's size, or the image
    stayed in the first row's split."""
    other = dict(zip(FINDING_COLUMNS, ROW, strict=True)) | {column: value}
    _write(tmp_path, FINDING_COLUMNS, [ROW, ROW, [other[c] for c in FINDING_COLUMNS]])
    match = f"line 4: image {'c' * 32} has {column} '{value}' here but '.*' on line 2"
    with pytest.raises(VinDrFormatError, match=match):
        load_records(tmp_path)


def test_two_studies_images_of_one_id_are_said_to_need_ids_of_their_own(tmp_path: Path) -> None:
    """An external set converted with its file names as ids (CBIS-DDSM's and CMMD's files are all 1-1.dcm, one folder
    per study): the error said only that the rows of one image must agree, which they were not."""
    first = dict(zip(FINDING_COLUMNS, ROW, strict=True)) | {"image_id": "1-1", "study_id": "Mass-Test_P_00016_LEFT_CC"}
    second = first | {"study_id": "Mass-Test_P_00017_LEFT_CC"}
    _write(tmp_path, FINDING_COLUMNS, [[row[c] for c in FINDING_COLUMNS] for row in (first, second)])
    with pytest.raises(VinDrFormatError, match=r"line 3: image 1-1 has study_id .* or two images share this image_id"):
        load_records(tmp_path)


def test_a_class_no_finding_has_is_refused_listing_the_categories() -> None:
    """`classes: [mass]` (VinDr writes Mass) made every image a negative with `selection: all`, and with `balanced`
    an empty split blamed on the data."""
    with pytest.raises(ValueError, match=r"classes: \['mass'\] match no finding category .*'Mass', 'Suspicious Calc"):
        select_records(_toy_records(), ["mass"], "all")
    assert select_records(_toy_records(), ["Suspicious Calcification"], "all")


@pytest.mark.parametrize("variant", [("mass",), ("MASS",), ("Suspicious Calcification", "mass")])
def test_a_category_that_differs_from_a_class_only_in_case_is_refused(variant: tuple[str, ...]) -> None:
    """An external set's converted CSV writing some rows ['mass'] beside ['Mass'] ones: the image of such rows alone
    was left out of the test set, and a box of them beside a Mass box was no ground truth, all unsaid."""
    records = _toy_records() + [_record("h", "t9", "test", [variant]), _record("i", "t8", "test", [("Mass",), variant])]
    with pytest.raises(ValueError, match=r"differ from the classes \['Mass'\] only in case or spacing.* 2 image\(s\)"):
        select_records(records, ["Mass"], "all")
    calcification = [_record("j", "t7", "test", [("suspicious calcification",)])]
    assert select_records(_toy_records() + calcification, ["Mass"], "all")  # another class's variant: not Mass's


def test_a_row_repeated_field_for_field_is_one_ground_truth_box_with_a_warning_naming_both_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Concatenated CSVs repeat rows: the image had the same mass twice, and no box can match both, so its TPR was
    capped at one half. selection: paper still counts rows, as the study's counts do."""
    second = ROW[:11] + ["40", "40", "60", "60", "training"]  # another mass of the same image: kept
    _write(tmp_path, FINDING_COLUMNS, [ROW, second, ROW])
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.vindr"):
        (record,) = load_records(tmp_path)
    boxes, labels = record.boxes(["Mass"])
    assert boxes.tolist() == [[1.5, 2.0, 80.0, 30.0], [40.0, 40.0, 60.0, 60.0]] and labels.tolist() == [0, 0]
    assert "1 row(s) repeat an earlier row field for field; each repeated box counts once" in caplog.text
    assert "line 4 repeats line 2" in caplog.text
    assert len(select_records([record], ["Mass"], "paper")) == 3


BAD_IDS = [("image_id", "../../../../escaped"), ("image_id", "/tmp/abs"), ("study_id", ".."), ("image_id", "a\\b"),
           ("image_id", " ")]  # fmt: skip


@pytest.mark.parametrize(("column", "value"), BAD_IDS)
def test_an_id_that_is_not_one_plain_file_name_is_refused_naming_the_row(
    tmp_path: Path, column: str, value: str
) -> None:
    """The ids name the DICOM's folder and file and the cache's: `../../../../x` or an absolute id read a file
    elsewhere, and `wsod prepare` wrote its PNG and sidecar outside the cache folder, saying all was well."""
    row = dict(zip(FINDING_COLUMNS, ROW, strict=True)) | {column: value, "image_id": "d" * 32}
    row[column] = value
    _write(tmp_path, FINDING_COLUMNS, [ROW, [row[c] for c in FINDING_COLUMNS]])
    with pytest.raises(VinDrFormatError, match=rf"line 3: {column} must be one plain file name .*got '"):
        load_records(tmp_path)


def test_an_image_named_in_the_other_unicode_normal_form_is_found(tmp_path: Path) -> None:
    """macOS writes names decomposed (NFD: u and a combining diaeresis), a CSV typed on Linux composed (NFC): the
    image was "file not found" under the very name `ls` showed."""
    composed, decomposed = unicodedata.normalize("NFC", "Müller"), unicodedata.normalize("NFD", "Müller")
    folder = tmp_path / "images" / decomposed
    folder.mkdir(parents=True)
    (folder / f"{decomposed}_1.dcm").write_bytes(b"x")
    (folder / f"{composed}_2.dicom").write_bytes(b"x")  # a folder decomposed and a file composed: each found
    assert find_image(tmp_path / "images" / composed / f"{composed}_1.dicom") == folder / f"{decomposed}_1.dcm"
    assert find_image(tmp_path / "images" / composed / f"{decomposed}_2.dicom") == folder / f"{composed}_2.dicom"
    assert find_image(tmp_path / "images" / composed / "Mueller_1.dicom") is None


def test_an_image_id_too_long_for_a_dicom_extension_is_found_without_one(tmp_path: Path) -> None:
    """An id of 250 to 255 bytes (84 CJK characters: 252) named its file without an extension: the stat of
    ``<id>.dicom`` failed, ``[Errno 36] File name too long``, and fit, test and prepare stopped on it."""
    image_id = "中" * 84
    (tmp_path / "images" / "s").mkdir(parents=True)
    (tmp_path / "images" / "s" / image_id).write_bytes(b"x")
    assert find_image(tmp_path / "images" / "s" / f"{image_id}.dicom") == tmp_path / "images" / "s" / image_id
    assert find_image(tmp_path / "images" / "s" / f"{'文' * 84}.dicom") is None


def test_a_column_named_twice_in_the_header_is_refused(tmp_path: Path) -> None:
    """Each row kept the last `xmin` in silence (a box moved), or a bad value was blamed on the wrong field."""
    _write(tmp_path, [*FINDING_COLUMNS, "xmin"], [ROW + ["1"]])
    with pytest.raises(VinDrFormatError, match=r"line 1: column\(s\) \['xmin'\] appear more than once"):
        load_records(tmp_path)
    _write(tmp_path, [*FINDING_COLUMNS, "notes"], [ROW + ["x"]])  # an extra column of its own is fine
    assert len(load_records(tmp_path)) == 1


@pytest.mark.parametrize("missing", ["NA", "nan", "NaN", "null"])
def test_a_no_finding_rows_box_cells_written_as_missing_values_are_no_box(tmp_path: Path, missing: str) -> None:
    """R's write.csv writes a missing value as NA, pandas with na_rep as nan: a No Finding row's four box cells so
    written failed the whole CSV ("box fields must be finite numbers"). All four are no box; a Mass row's are
    still refused, as empty cells are."""
    no_finding = ROW[:9] + ["['No Finding']", "BI-RADS 1"] + [missing] * 4 + ["training"]
    _write(tmp_path, FINDING_COLUMNS, [no_finding])
    (record,) = load_records(tmp_path)
    assert record.is_normal and all(f.box is None for f in record.findings)
    _write(tmp_path, FINDING_COLUMNS, [ROW[:11] + [missing] * 4 + ["training"]])
    with pytest.raises(VinDrFormatError, match=r"line 2: finding \['Mass'\] has no box"):
        load_records(tmp_path)


@pytest.mark.parametrize("missing", ["NA", "nan", "NaN", "N/A", "null", "None"])
def test_missing_values_in_every_optional_column_read_as_empty_cells(tmp_path: Path, missing: str) -> None:
    """R's write.csv writes NA in every empty cell, not only in a No Finding row's box: an NA height/width or
    BI-RADS failed the CSV ("must be positive integers", "must be like 'BI-RADS 4'") and an NA density made a
    density stratum named "NA". Each optional cell so written reads as the empty cell it stands for."""
    empty = ROW[:1] + [""] + ROW[2:5] + ["", "", "", ""] + ROW[9:10] + [""] + ROW[11:]
    written = ROW[:1] + [missing] + ROW[2:5] + [missing] * 4 + ROW[9:10] + [missing] + ROW[11:]
    _write(tmp_path, FINDING_COLUMNS, [written, written[:9] + ["['Calcification']"] + written[10:]])
    records = load_records(tmp_path)
    _write(tmp_path, FINDING_COLUMNS, [empty, empty[:9] + ["['Calcification']"] + empty[10:]])
    assert records == load_records(tmp_path)
    (record,) = records
    assert (record.series_id, record.size, record.breast_birads, record.breast_density) == ("", None, None, "")
    assert [f.birads for f in record.findings] == ["", ""]
    _write(tmp_path, FINDING_COLUMNS, [written, empty[:9] + ["['Calcification']"] + empty[10:]])
    assert len(load_records(tmp_path)) == 1  # NA on one row, empty on the other: the same image
    _write(tmp_path, FINDING_COLUMNS, [ROW[:5] + [missing, "80"] + ROW[7:]])  # a size half missing: still refused
    with pytest.raises(VinDrFormatError, match=r"line 2: height/width must be positive integers"):
        load_records(tmp_path)


def test_box_clipped_to_image(tmp_path: Path) -> None:
    _write(tmp_path, FINDING_COLUMNS, [ROW[:11] + ["-3.2", "2", "85.5", "130", "training"]])
    (record,) = load_records(tmp_path)
    assert record.findings[0].box == (0.0, 2.0, 80.0, 100.0)


def test_utf8_bom_is_read(tmp_path: Path) -> None:
    """Excel writes CSVs with a UTF-8 BOM; the first column's name must still be `study_id`."""
    _write(tmp_path, FINDING_COLUMNS, [ROW])
    path = tmp_path / FINDING_CSV
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    (record,) = load_records(tmp_path)
    assert record.study_id == "a" * 32 and record.findings[0].box == (1.5, 2.0, 80.0, 30.0)


def test_a_box_wholly_outside_the_image_is_an_error_naming_the_row(tmp_path: Path) -> None:
    """Clipped to the image, a box right of it has no width left: no object, an error rather than a 0-wide box."""
    _write(tmp_path, FINDING_COLUMNS, [ROW[:11] + ["85", "2", "95", "30", "training"]])
    with pytest.raises(VinDrFormatError, match=r"line 2: empty box after clipping to the 80x100 image"):
        load_records(tmp_path)


def test_a_box_without_area_stops_only_a_run_of_its_class(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """INbreast's point ROIs of calcifications, converted to boxes, have xmin == xmax: such a row stopped the whole
    CSV of a Mass run. A finding outside the run's classes keeps no box (a warning names its line); one of the
    classes stays an error naming the line: no detection can overlap a box without area (a certain miss)."""
    point = ROW[:9] + ["['Suspicious Calcification']", "BI-RADS 4", "40", "20", "40", "20", "training"]
    outside = ROW[:9] + ["['Architectural Distortion']", "BI-RADS 4", "85", "2", "95", "30", "training"]
    _write(tmp_path, FINDING_COLUMNS, [ROW, point, outside])
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.vindr"):
        (record,) = load_records(tmp_path, ["Mass"])
    assert [f.box for f in record.findings] == [(1.5, 2.0, 80.0, 30.0), None, None]
    assert record.boxes(["Mass"])[0].tolist() == [[1.5, 2.0, 80.0, 30.0]] and not record.is_normal
    assert "2 row(s) of findings outside the classes ['Mass'] have no box, or one without area" in caplog.text
    assert "line(s) 3 ['Suspicious Calcification'], 4 ['Architectural Distortion']" in caplog.text
    for classes in (None, ["Mass", "Suspicious Calcification"]):  # None: every category is used
        with pytest.raises(VinDrFormatError, match=r"line 3: empty box: \['40', '20', '40', '20'\] \(zero width"):
            load_records(tmp_path, classes)
    both = ROW[:9] + ["['Mass', 'Suspicious Calcification']"] + point[10:]  # one of its categories is a class
    _write(tmp_path, FINDING_COLUMNS, [ROW, both])
    with pytest.raises(VinDrFormatError, match=r"line 3: empty box: "):
        load_records(tmp_path, ["Mass"])


@pytest.mark.parametrize("blank", ["", "NA"])
def test_a_finding_without_box_cells_stops_only_a_run_of_its_class(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, blank: str
) -> None:
    """A converter that leaves calcifications' box cells blank: such a row stopped a Mass run's whole CSV ("has no
    box") where a calcification's box without area is kept without a box. The same rule now: kept without a box
    outside the run's classes (one warning naming the line), an error for a finding of its classes."""
    blank_row = ROW[:9] + ["['Suspicious Calcification']", "BI-RADS 4", *[blank] * 4, "training"]
    _write(tmp_path, FINDING_COLUMNS, [ROW, blank_row])
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.vindr"):
        (record,) = load_records(tmp_path, ["Mass"])
    assert [f.box for f in record.findings] == [(1.5, 2.0, 80.0, 30.0), None]
    assert record.label(["Mass", "Suspicious Calcification"]).tolist() == [1.0, 1.0]
    assert "1 row(s) of findings outside the classes ['Mass'] have no box" in caplog.text
    assert "line(s) 3 ['Suspicious Calcification']" in caplog.text
    for classes in (None, ["Mass", "Suspicious Calcification"]):
        with pytest.raises(VinDrFormatError, match=r"line 3: finding \['Suspicious Calcification'\] has no box"):
            load_records(tmp_path, classes)


def test_the_breast_level_csv_header_is_checked_when_the_file_is_there(tmp_path: Path) -> None:
    from wsod_mammo.data.vindr import BREAST_CSV

    _write(tmp_path, FINDING_COLUMNS, [ROW])
    assert len(load_records(tmp_path)) == 1  # it holds no boxes: a dataset without it is read
    (tmp_path / BREAST_CSV).write_text("study_id,image_id\n")
    with pytest.raises(VinDrFormatError, match=r"breast-level_annotations.csv: missing column\(s\) \['series_id'"):
        load_records(tmp_path)


def test_split_counts_name_the_normals_of_a_bi_rads_3_breast() -> None:
    from wsod_mammo.data.vindr_selection import describe_splits

    records = _toy_records()
    for record, birads in zip([r for r in records if r.is_normal], [3, 2, 1], strict=False):
        record.breast_birads = birads
    text = describe_splits({"train": [r for r in records if r.split == "training"]}, ["Mass"])
    assert text == "train 9 images (3 with Mass, 5 normal, 1 of them views of a BI-RADS 3-5 breast)"


def test_a_validation_split_of_one_kind_of_image_is_named() -> None:
    """Its AUROC is undefined: the DataModule says so when it prints the split counts, before any epoch runs."""
    from wsod_mammo.data.vindr_selection import one_class_warning

    records = [r for r in _toy_records() if r.split == "training"]
    normals = [r for r in records if r.is_normal]
    assert one_class_warning(records, ["Mass"]) is None
    assert "has no image with Mass" in one_class_warning(normals, ["Mass"])
    text = one_class_warning([r for r in records if r.has_class(["Mass"])], ["Mass", "Suspicious Calcification"])
    assert "has no image without Mass" in text and "Suspicious Calcification" not in text
    assert "no image with Suspicious Calcification" in one_class_warning(
        normals + records[:1], ["Mass", "Suspicious Calcification"]
    )


def test_each_box_carries_its_finding_birads_in_the_boxes_order() -> None:
    """Table II per BI-RADS reads each mass's finding BI-RADS beside its box: same order, a repeated box once, an
    empty cell 0 (unknown), the 5th edition's 4B as 4."""
    record = ImageRecord("s", "e", "i", "L", "CC", "test", 100, 80, Path("i.dicom"), findings=[
        Finding(("Mass",), (1.0, 2.0, 9.0, 9.0), "BI-RADS 5"),
        Finding(("Suspicious Calcification",), (20.0, 2.0, 29.0, 9.0), "BI-RADS 4"),
        Finding(("Mass", "Suspicious Calcification"), (40.0, 2.0, 49.0, 9.0), "BI-RADS 4B"),
        Finding(("Mass",), (1.0, 2.0, 9.0, 9.0), "BI-RADS 5"),  # a repeated row
        Finding(("Mass",), (60.0, 2.0, 69.0, 9.0), ""),
    ])  # fmt: skip
    boxes, labels, birads = record.box_findings(["Mass", "Suspicious Calcification"])
    assert boxes[:, 0].tolist() == [1.0, 20.0, 40.0, 40.0, 60.0] and labels.tolist() == [0, 1, 0, 1, 0]
    assert birads.tolist() == [5, 4, 4, 4, 0]
    plain, plain_labels = record.boxes(["Mass", "Suspicious Calcification"])
    assert np.array_equal(plain, boxes) and np.array_equal(plain_labels, labels)
