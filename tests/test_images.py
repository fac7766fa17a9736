"""Any input -> the model's input frame: shapes, colour, folders and pages are checked before OpenCV sees them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image, ImageOps

from wsod_mammo.data.dicom import read_dicom
from wsod_mammo.data.images import (
    INVERTED_WARNING,
    image_size,
    load_input_image,
    load_padded,
    looks_inverted,
    read_any,
)
from wsod_mammo.data.synthetic_image import render_image
from wsod_mammo.data.vindr import load_records

SIZE = (64, 32)
# An upright (48, 32) image that no flip or turn leaves as it is, and how a camera or an export stores it under each
# EXIF orientation: what ImageOps.exif_transpose, as a viewer, undoes.
UPRIGHT = np.add.outer(np.arange(48) * 3, np.arange(32) * 2).astype(np.uint8)
UPRIGHT_16 = UPRIGHT.astype(np.uint16) * 100  # up to 20300: 16 bits, scaled by 65535
STORED_BY = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_270}  # fmt: skip


def _stored(upright: np.ndarray, orientation: int) -> Image.Image:
    image = Image.fromarray(upright)
    return image.transpose(STORED_BY[orientation]) if orientation in STORED_BY else image


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[274] = orientation
    return exif


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (1, 40), (40, 1), (0, 5, 3)])
def test_empty_or_one_pixel_thin_arrays_are_rejected_before_opencv(shape: tuple[int, ...]) -> None:
    """An empty array used to end the whole process with a segfault inside OpenCV (the breast crop)."""
    with pytest.raises(ValueError, match=rf"at least 2x2 pixels, found shape \({shape[0]}, {shape[1]}\)"):
        load_padded(np.zeros(shape, np.uint8), SIZE)


def _png_header_only(path: Path, height: int, width: int) -> Path:
    """An 8-bit gray PNG declaring ``height`` x ``width`` whose data holds one row: what its header says is all a
    size check may read."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes(width + 1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def test_a_png_declaring_far_more_pixels_than_a_mammogram_is_refused_from_its_header(tmp_path: Path) -> None:
    """Pillow's decompression-bomb error was caught (its header read as no TIFF) and OpenCV decoded the file up to
    its own limit, 2**30 pixels: a PNG of 2 MB could take 6 GB on its way to the input frame. Over MAX_PIXELS (or
    Pillow's limit) it is refused, naming the file, before any decoding."""
    with pytest.raises(ValueError, match=r"wide.png: its header declares 12000x12000 pixels \(rows x columns\), over"):
        read_any(_png_header_only(tmp_path / "wide.png", 12000, 12000))
    with pytest.raises(ValueError, match=r"huge.png: Image size \(3600000000 pixels\) exceeds limit"):
        read_any(_png_header_only(tmp_path / "huge.png", 60000, 60000))


def test_grayscale_saved_as_rgb_loads_but_a_red_mark_makes_it_colour(tmp_path: Path) -> None:
    """A BGR file whose red channel alone holds a mark used to pass as gray (channels 0 and 1 agree), losing it."""
    gray = np.tile(np.arange(0, 240, 4, dtype=np.uint8), (40, 1))  # (40, 60)
    cv2.imwrite(str(tmp_path / "gray.png"), np.dstack([gray] * 3))
    cv2.imwrite(str(tmp_path / "gray_alpha.png"), np.dstack([gray] * 3 + [np.full_like(gray, 255)]))
    for name in ("gray.png", "gray_alpha.png"):
        np.testing.assert_allclose(read_any(tmp_path / name)[0], gray / 255, atol=1e-6)
    marked = np.dstack([gray] * 3)
    marked[10:20, 10:20] = (0, 0, 255)  # pure red in BGR order: only channel 2 differs from the others
    cv2.imwrite(str(tmp_path / "red.png"), marked)
    with pytest.raises(ValueError, match=r"red.png: expected one grayscale \(H, W\) image, found shape \(40, 60, 3\)"):
        read_any(tmp_path / "red.png")


def test_a_jpeg_cut_short_is_refused_not_predicted_half_gray(tmp_path: Path) -> None:
    """libjpeg fills the rows a truncated JPEG lacks with mid-gray and says only "Premature end of JPEG file" on
    stderr: such a file (an interrupted download, or cut while the run listed its folder) was read as an image
    whose lower part was gray, with no word in its row (a truncated PNG or TIFF is refused). A complete one is read,
    progressive, or with data after its end (a camera's trailer) too."""
    ramp = np.tile(np.linspace(0, 255, 200).astype(np.uint8), (300, 1))
    assert cv2.imwrite(str(tmp_path / "whole.jpg"), ramp, [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    assert (cv2.imread(str(tmp_path / "cut.jpg"), cv2.IMREAD_UNCHANGED)[-1] == 128).all()  # what was predicted
    with pytest.raises(ValueError, match=r"cut.jpg: a JPEG cut short: no end-of-image marker after its last scan"):
        read_any(tmp_path / "cut.jpg")
    Image.fromarray(ramp).save(tmp_path / "progressive.jpg", progressive=True)
    (tmp_path / "trailer.jpg").write_bytes(data + b"vendor trailer" * 10)
    for name in ("whole.jpg", "progressive.jpg", "trailer.jpg"):
        assert read_any(tmp_path / name)[0].shape == (300, 200)
    cut = (tmp_path / "progressive.jpg").read_bytes()
    (tmp_path / "progressive_cut.jpg").write_bytes(cut[: len(cut) * 4 // 5])
    with pytest.raises(ValueError, match=r"progressive_cut.jpg: a JPEG cut short"):
        read_any(tmp_path / "progressive_cut.jpg")


def test_a_jpeg_is_read_with_a_warning_a_gray_one_saved_in_colour_too_but_not_a_coloured_mark(tmp_path: Path) -> None:
    """Datasets circulate as lossy 8-bit JPEG conversions (Kaggle's CBIS-DDSM): read, saying so in the image's
    warnings; a gray image saved as a colour JPEG, its channels equal or a faint tint a few levels apart, is gray;
    a red mark on it still makes it a colour image. A JPEG without an extension is known by its signature."""
    gray = np.tile(np.arange(0, 240, 4, dtype=np.uint8), (40, 1))  # (40, 60)
    assert cv2.imwrite(str(tmp_path / "gray.jpg"), gray, [cv2.IMWRITE_JPEG_QUALITY, 95])
    tinted = np.dstack([np.minimum(gray + 3, 255), gray, gray])  # a scanner's faint tint: not quite gray
    assert cv2.imwrite(str(tmp_path / "colour.jpeg"), tinted, [cv2.IMWRITE_JPEG_QUALITY, 80])
    colour_read = cv2.imread(str(tmp_path / "colour.jpeg"), cv2.IMREAD_UNCHANGED)
    assert colour_read.ndim == 3 and not np.array_equal(colour_read[..., 0], colour_read[..., 2])  # JPEG moved them
    (tmp_path / "gray.jpg").rename(tmp_path / "export")
    for name in ("export", "colour.jpeg"):
        image = load_padded(tmp_path / name, SIZE)
        assert image.warnings and image.warnings[0].startswith("a lossy 8-bit JPEG")
        np.testing.assert_allclose(read_any(tmp_path / name)[0], gray / 255, atol=0.04)
    marked = np.dstack([gray] * 3)
    marked[10:20, 10:20] = (0, 0, 255)
    assert cv2.imwrite(str(tmp_path / "red.jpg"), marked)
    with pytest.raises(ValueError, match=r"red.jpg: expected one grayscale \(H, W\) image, found shape \(40, 60, 3\)"):
        read_any(tmp_path / "red.jpg")
    assert cv2.imwrite(str(tmp_path / "gray.png"), gray)
    assert load_padded(tmp_path / "gray.png", SIZE).warnings == ()  # a lossless PNG: nothing to say


def _mammogram_12_bit(seed: int = 0) -> np.ndarray:
    """A left CC view of ``wsod synth`` as a 12-bit export stores it (uint16, 0..4095, air 0)."""
    image, _, _ = render_image(np.random.default_rng(seed), 300, 200, "CC", 1)
    return np.round(image * 4095).astype(np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_negative_png_or_tiff_is_read_as_it_is_with_a_warning_naming_it(
    tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A MONOCHROME1 mammogram saved as stored (air bright, tissue dark) was read without a word: the breast crop took
    the whole image, the laterality inferred came out the other side and the model saw a negative. It is still read as
    it is (the file says nothing of its photometry), but its warnings say so, as do the log and a training image's
    warnings, which no longer doubt the CSV's laterality from a negative's bright air."""
    stored = _mammogram_12_bit()
    cv2.imwrite(str(tmp_path / f"positive{suffix}"), stored)
    cv2.imwrite(str(tmp_path / f"negative{suffix}"), 4095 - stored)
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.images"):
        negative = load_padded(tmp_path / f"negative{suffix}", SIZE)
        positive = load_padded(tmp_path / f"positive{suffix}", SIZE, laterality="L")
    assert negative.warnings == (INVERTED_WARNING,) and positive.warnings == ()
    assert [r.getMessage() for r in caplog.records] == [f"{tmp_path / f'negative{suffix}'}: {INVERTED_WARNING}"]
    np.testing.assert_allclose(read_any(tmp_path / f"negative{suffix}")[0], (4095 - stored) / 4095, atol=1e-6)
    warnings: list[str] = []
    load_input_image(tmp_path / f"negative{suffix}", "L", SIZE, warnings=warnings)
    assert warnings == [INVERTED_WARNING]  # and no doubt of the CSV's side
    given = load_padded(tmp_path / f"negative{suffix}", SIZE, laterality="L")
    assert given.warnings == (INVERTED_WARNING,)  # not also "the breast lies against the right edge"
    assert load_padded(4095 - stored, SIZE).warnings == (INVERTED_WARNING,)  # an array, as the Predictor takes it


def test_mammograms_bright_strips_and_flat_images_are_not_taken_for_negatives() -> None:
    """Real mammograms' air is dark: no ``wsod synth`` view, nor one with a scanned film's white border along every
    edge, nor a bright block on black, nor a ramp looks inverted; their negatives do."""
    for seed in range(6):
        for view in ("CC", "MLO"):
            image, _, _ = render_image(np.random.default_rng(seed), 300, 200, view, 1)
            framed = image.copy()
            framed[:20], framed[-20:], framed[:, :15], framed[:, -15:] = 1.0, 1.0, 1.0, 1.0
            assert not looks_inverted(image) and not looks_inverted(framed)
            assert looks_inverted(1 - image)
    block = np.zeros((300, 200), np.float32)
    block[40:260, :140] = 0.4
    ramp = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (300, 1))
    assert not any(looks_inverted(a) for a in (block, ramp, np.full((30, 20), 0.5, np.float32)))


def test_a_folder_is_not_an_image_and_the_error_says_so(tmp_path: Path) -> None:
    """A folder with files in it used to be called 'a folder with no files in it' by the Predictor and load_padded."""
    (tmp_path / "scans").mkdir()
    cv2.imwrite(str(tmp_path / "scans" / "a.png"), np.zeros((40, 30), np.uint8))
    with pytest.raises(ValueError, match=r"scans: a folder, not an image file: pass its files"):
        load_padded(tmp_path / "scans", SIZE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: a folder with no files in it"):  # what wsod predict reports
        load_padded(tmp_path / "empty", SIZE)


def test_a_multi_page_tiff_is_an_error_naming_its_page_count(tmp_path: Path) -> None:
    """OpenCV reads page 1 of a multi-page TIFF in silence; a multi-frame DICOM was already an error."""
    pages = [np.full((40, 30), 60 * i, np.uint16) for i in range(3)]
    assert cv2.imwritemulti(str(tmp_path / "stack.tif"), pages)
    with pytest.raises(ValueError, match=r"stack.tif: expected one 2-D grayscale image, found a file of 3 pages"):
        read_any(tmp_path / "stack.tif")
    assert cv2.imwrite(str(tmp_path / "one.tif"), pages[1])
    assert read_any(tmp_path / "one.tif")[0].shape == (40, 30)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_png_or_jpeg_is_read_upright_by_its_exif_orientation(tmp_path: Path, orientation: int) -> None:
    """OpenCV's IMREAD_UNCHANGED ignores the EXIF Orientation: an image stored turned was read as stored (the breast
    against another edge, boxes in a frame no viewer shows), and its size from the header was the stored one."""
    _stored(UPRIGHT, orientation).save(tmp_path / "x.png", exif=_exif(orientation))
    _stored(UPRIGHT, orientation).save(tmp_path / "x.jpg", exif=_exif(orientation), quality=95)
    np.testing.assert_allclose(read_any(tmp_path / "x.png")[0], UPRIGHT / 255, atol=1e-6)
    jpeg = read_any(tmp_path / "x.jpg")[0]
    with Image.open(tmp_path / "x.jpg") as image:
        shown = np.asarray(ImageOps.exif_transpose(image))  # as a viewer shows it, through Pillow's decoder
    np.testing.assert_allclose(jpeg, shown / 255, atol=2 / 255)
    np.testing.assert_allclose(jpeg, UPRIGHT / 255, atol=0.04)  # lossy
    for name in ("x.png", "x.jpg"):
        assert image_size(tmp_path / name) == read_any(tmp_path / name)[0].shape == UPRIGHT.shape


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_8_and_a_16_bit_tiff_are_read_upright_by_their_orientation(tmp_path: Path, orientation: int) -> None:
    """OpenCV refused a valid TIFF whose orientation transposes it ('original_ptr == real_mat.data'), so wsod called
    it no readable image; Pillow reads it. (Pillow's exif_transpose of one opened by name is no reference: Pillow 13
    memory-maps an uncompressed TIFF and garbles such a one's rows.)"""
    for name, upright in (("x8.tif", UPRIGHT), ("x16.tif", UPRIGHT_16)):
        Image.fromarray(upright).save(tmp_path / f"upright_{name}")
        _stored(upright, orientation).save(tmp_path / name, tiffinfo={274: orientation})
        image = read_any(tmp_path / name)[0]
        np.testing.assert_array_equal(image, read_any(tmp_path / f"upright_{name}")[0])
        assert image_size(tmp_path / name) == image.shape == UPRIGHT.shape


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_white_is_zero_tiff_is_read_as_a_viewer_shows_it_at_8_and_16_bits(tmp_path: Path, orientation: int) -> None:
    """TIFF's WhiteIsZero (Photometric Interpretation 0, DICOM's MONOCHROME1): 0 is shown white. OpenCV and Pillow
    invert an 8-bit one as they decode it, but return a 16-bit one as stored: its breast was read dark on a white
    background (the laterality inferred from the background, the crop around it, the model shown a negative)."""
    for name, shown, stored in (("w8.tif", UPRIGHT, UPRIGHT), ("w16.tif", UPRIGHT_16, 65535 - UPRIGHT_16)):
        # Pillow writes an 8-bit image's values inverted under WhiteIsZero (its shown values are the array given),
        # a 16-bit one's as given (stored)
        _stored(stored, orientation).save(tmp_path / name, tiffinfo={262: 0, 274: orientation})
        np.testing.assert_allclose(read_any(tmp_path / name)[0], shown / np.iinfo(shown.dtype).max, atol=1e-6)


def test_an_oriented_image_under_a_name_that_is_not_utf8_is_read_upright(tmp_path: Path) -> None:
    """A Latin-1 name from an old archive: OpenCV decodes a PNG from its bytes, Pillow opens a TIFF by the name."""
    names = [os.fsdecode(os.fsencode(tmp_path) + b"/m\xfcller" + suffix) for suffix in (b".png", b".tif")]
    _stored(UPRIGHT, 6).save(names[0], exif=_exif(6))
    _stored(UPRIGHT_16, 6).save(names[1], tiffinfo={274: 6})
    np.testing.assert_allclose(read_any(names[0])[0], UPRIGHT / 255, atol=1e-6)
    np.testing.assert_allclose(read_any(names[1])[0], UPRIGHT_16 / 65535, atol=1e-6)
    assert image_size(names[0]) == image_size(names[1]) == UPRIGHT.shape


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_an_old_export_without_preamble_or_extension_is_read_as_a_dicom(synthetic_root: Path, tmp_path: Path) -> None:
    """No 128-byte preamble, no DICM marker, no file meta, no extension: found by its first tag, then read."""
    record = next(r for r in load_records(synthetic_root) if r.laterality == "R")
    ds = pydicom.dcmread(record.path)
    del ds.file_meta
    ds.preamble = None
    ds.save_as(tmp_path / "IMG0001", implicit_vr=True, little_endian=True)
    image, laterality = read_any(tmp_path / "IMG0001")
    np.testing.assert_array_equal(image, read_dicom(record.path)[0])
    assert laterality == "R"
    for tag in [t for t in ds.keys() if t.group == 0x0008]:  # a writer that left group 0008 out: it starts at 0010
        del ds[tag]
    ds.save_as(tmp_path / "IMG0002", implicit_vr=True, little_endian=True)
    np.testing.assert_array_equal(read_any(tmp_path / "IMG0002")[0], image)
    (tmp_path / "notes").write_text("hello")
    with pytest.raises(ValueError, match="notes: neither a DICOM"):
        read_any(tmp_path / "notes")
    # its size from the header alone, as a finding CSV without sizes gets it
    assert image_size(tmp_path / "IMG0001") == image.shape
    with pytest.raises(ValueError, match="notes: neither a DICOM"):
        image_size(tmp_path / "notes")


def test_a_png_or_jpeg_that_kept_a_dicom_name_is_read_as_what_it_is(synthetic_root: Path, tmp_path: Path) -> None:
    """A converted file that kept its ``.dcm``/``.dicom`` name was refused, "not a DICOM file", while a DICOM named
    ``.png`` was read by its content: each is now read as its signature says."""
    record = load_records(synthetic_root)[0]
    stored = pydicom.dcmread(record.path).pixel_array.astype(np.uint16)  # 12-bit values, as a 16-bit PNG holds them
    assert cv2.imwrite(str(tmp_path / "converted.png"), stored)
    (tmp_path / "converted.dcm").write_bytes((tmp_path / "converted.png").read_bytes())
    assert cv2.imwrite(str(tmp_path / "lossy.jpg"), (stored >> 4).astype(np.uint8))
    (tmp_path / "lossy.dicom").write_bytes((tmp_path / "lossy.jpg").read_bytes())
    np.testing.assert_array_equal(read_any(tmp_path / "converted.dcm")[0], read_any(tmp_path / "converted.png")[0])
    assert image_size(tmp_path / "converted.dcm") == image_size(tmp_path / "lossy.dicom") == stored.shape
    assert any("JPEG" in warning for warning in load_padded(tmp_path / "lossy.dicom", SIZE).warnings)  # lossy


def test_an_image_size_is_read_from_the_header_and_a_broken_one_is_named(synthetic_root: Path, tmp_path: Path) -> None:
    from wsod_mammo.data.dicom import DicomError

    record = load_records(synthetic_root)[0]
    assert image_size(record.path) == read_dicom(record.path)[0].shape == record.size
    (tmp_path / "cut.dicom").write_bytes(record.path.read_bytes()[:140])  # the preamble, DICM and a few bytes
    with pytest.raises(DicomError, match=r"cut.dicom: no image size in its DICOM header \(Rows, Columns\)"):
        image_size(tmp_path / "cut.dicom")
    with pytest.raises(DicomError, match="gone.png: file not found"):
        image_size(tmp_path / "gone.png")


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_a_dicom_tagged_r_with_its_breast_on_the_left_warns_once_and_keeps_the_tag(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = next(r for r in load_records(synthetic_root) if r.laterality == "L")  # breast against the left edge
    ds = pydicom.dcmread(record.path)
    ds.ImageLaterality = "R"
    ds.save_as(tmp_path / "mirrored.dcm")
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.images"):
        loaded = load_padded(tmp_path / "mirrored.dcm", SIZE)
        geometry, side, source = loaded.geometry, loaded.laterality, loaded.laterality_source
        load_padded(record.path, SIZE)  # tag and content agree: no warning
        load_input_image(tmp_path / "mirrored.dcm", None, SIZE)  # training and wsod prepare: no warning per image
    assert (side, source, geometry.flip) == ("R", "dicom", True)  # the tag is kept, not silently overridden
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    message = caplog.records[0].getMessage()
    assert "mirrored.dcm: the laterality tag says R but the breast lies against the left edge" in message


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_a_png_given_the_other_laterality_than_its_breast_shows_warns_and_keeps_the_given_one(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One ``predict_laterality`` for a folder holding both sides: the images it does not fit are named."""
    record = next(r for r in load_records(synthetic_root) if r.laterality == "L")  # breast against the left edge
    image, _ = read_dicom(record.path)
    cv2.imwrite(str(tmp_path / "left.png"), np.round(image * 65535).astype(np.uint16))
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.images"):
        given_r = load_padded(tmp_path / "left.png", SIZE, laterality="R")
        load_padded(tmp_path / "left.png", SIZE, laterality="L")  # given and content agree: no warning
        inferred = load_padded(tmp_path / "left.png", SIZE)  # nothing given: inferred, nothing to contradict
    assert (given_r.laterality, given_r.laterality_source, given_r.geometry.flip) == ("R", "given", True)
    assert inferred.laterality == "L" and inferred.warnings == ()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "left.png: the laterality given is R but the breast lies against the left edge" in caplog.text
    assert given_r.warnings and "give L for this file" in given_r.warnings[0]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the synthetic data's VinDr-style hex UIDs
def test_a_blank_input_is_predicted_with_a_warning_that_there_is_no_breast(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An empty export (one grey value, or a DICOM of zeros) got a probability and a whole-frame box with no word."""
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((64, 48), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((64, 48), np.uint16))
    record = next(r for r in load_records(synthetic_root) if r.laterality == "R")
    ds = pydicom.dcmread(record.path)
    ds.PixelData = np.zeros_like(ds.pixel_array).tobytes()
    ds.save_as(tmp_path / "zero.dcm")  # tagged R: a blank image gives no "mirrored" warning as well
    with caplog.at_level(logging.WARNING, logger="wsod_mammo.data.images"):
        for name in ("grey.png", "black.png", "zero.dcm"):
            loaded = load_padded(tmp_path / name, SIZE)
            assert len(loaded.warnings) == 1 and "every pixel has the same value" in loaded.warnings[0], name
            assert loaded.warnings[0].endswith("no breast to read")
        assert load_padded(record.path, SIZE).warnings == ()
    named = [str(tmp_path / n) for n in ("grey.png", "black.png", "zero.dcm")]
    assert [r.getMessage().split(": ")[0] for r in caplog.records] == named
    warnings: list[str] = []  # wsod prepare's path: the CSV's laterality is not doubted for a blank image
    load_input_image(tmp_path / "zero.dcm", "L", SIZE, warnings=warnings)
    assert len(warnings) == 1 and "every pixel has the same value" in warnings[0]
