"""DICOM decoding against pydicom: rescale, windows and VOI LUT functions, VOI LUT, MONOCHROME1, padding, bad files."""

from __future__ import annotations

import multiprocessing
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from dicom_objects import damaged_jpeg, gdcm_transcode, object_without_image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from wsod_mammo.data import codestream, decoder_process, dicom, dicom_display
from wsod_mammo.data.dicom import DicomError, NotAnImageError, read_dicom
from wsod_mammo.data.dicom_display import stored_codes
from wsod_mammo.data.geometry import breast_bbox

PIXELS = np.array([[0, 1000, 2000], [3000, 4000, 4095]], np.uint16)


def write(path: Path, pixels: np.ndarray = PIXELS, photometric: str = "MONOCHROME2", **tags: object) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0, 1)


def test_window_first_value_and_rescale(tmp_path: Path) -> None:
    path = write(tmp_path / "a.dcm", WindowCenter=[2000, 100], WindowWidth=[2001, 50], RescaleSlope=2,
                 RescaleIntercept=-1000, ImageLaterality="R", ViewPosition="MLO")  # fmt: skip
    image, info = read_dicom(path)
    assert image.dtype == np.float32 and image.shape == (2, 3)
    expected = window(PIXELS * 2.0 - 1000, 2000, 2001)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert image[0, 0] == 0 and image[0, 1] == pytest.approx(0.5 / 2000, abs=1e-6) and image[0, 2] == 1
    assert (info.laterality, info.view, info.height, info.width) == ("R", "MLO", 2, 3)


def test_monochrome1_inverted(tmp_path: Path) -> None:
    image, info = read_dicom(write(tmp_path / "m1.dcm", photometric="MONOCHROME1", WindowCenter=2048, WindowWidth=4096))
    np.testing.assert_allclose(image, 1 - PIXELS / 4095.0, atol=1e-6)
    assert info.photometric == "MONOCHROME1" and image[1, 2] == 0 and image[0, 0] == 1


def test_no_window_is_min_max_and_laterality_tag_fallback(tmp_path: Path) -> None:
    image, info = read_dicom(write(tmp_path / "mm.dcm", Laterality="L"))
    np.testing.assert_allclose(image, PIXELS / 4095.0, atol=1e-6)
    assert info.laterality == "L"


def test_the_study_uid_is_read_as_spelt_without_a_warning_for_anonymized_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """predict groups an exam's views by StudyInstanceUID; VinDr-style hex UIDs made pydicom warn on every read."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")  # pydicom on writing the hex one
        files = [write(tmp_path / "hex.dcm", StudyInstanceUID="0a67a8bcd2bfd6539adb136fd48e2461"),
                 write(tmp_path / "dotted.dcm", StudyInstanceUID="1.2.840.1234.5"),  # odd length: padded with NUL
                 write(tmp_path / "none.dcm")]  # fmt: skip
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        studies = [read_dicom(path)[1].study for path in files]
    assert studies == ["0a67a8bcd2bfd6539adb136fd48e2461", "1.2.840.1234.5", ""]
    assert not [w for w in caught if "VR UI" in str(w.message)] and "VR UI" not in caplog.text


def test_voi_lut_sequence(tmp_path: Path) -> None:
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    lut = (np.arange(4096) ** 2 / 4095**2 * 65535).astype(np.uint16)  # a gamma-like LUT
    item.LUTData = lut.tobytes()
    image, _ = read_dicom(write(tmp_path / "lut.dcm", VOILUTSequence=[item], WindowCenter=10, WindowWidth=2))
    np.testing.assert_allclose(image, lut[PIXELS] / 65535.0, atol=1e-6)


@pytest.mark.parametrize("vr", ["OW", "US"])
def test_a_voi_lut_of_8_bit_entries_over_12_bit_values_is_read_not_wrapped_round(tmp_path: Path, vr: str) -> None:
    """PS3.3 allows 8-bit VOI LUT entries over a 12-bit input (4096 entries of 0..255); pydicom indexed such a table
    in uint8, so stored value 4000 read entry 4000 % 256 and the breast came out as noise."""
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 8]
    lut = (np.arange(4096) // 16).astype(np.uint16)  # 0..255
    item.LUTData = lut.tobytes() if vr == "OW" else lut.tolist()
    item["LUTData"].VR = vr
    image, _ = read_dicom(write(tmp_path / "lut8.dcm", VOILUTSequence=[item]))
    np.testing.assert_allclose(image, lut[PIXELS] / 255.0, atol=1e-6)


@pytest.mark.parametrize("vr", ["OW", "US"])
@pytest.mark.parametrize("bits", [10, 12])
def test_a_modality_lut_of_12_bit_entries_is_read_as_one_of_16_bit_entries(tmp_path: Path, vr: str, bits: int) -> None:
    """Older writers give a Modality LUT's descriptor the depth of its values (12), where PS3.3 asks 8 or 16: pydicom
    asked numpy for a dtype 'uint12' and the file failed ("data type 'uint12' not understood"). Its entries are
    16-bit words, as PS3.3 stores those of the other LUTs of 9 to 16 bits; a window reads them over the descriptor's
    output range, 0 .. 2^bits - 1."""
    item = Dataset()
    item.LUTDescriptor = [4096, 0, bits]
    lut = ((4095 - np.arange(4096)) >> (12 - bits)).astype(np.uint16)  # 0 .. 2^bits - 1, dense tissue dark
    item.LUTData = lut.tobytes() if vr == "OW" else lut.tolist()
    item["LUTData"].VR = vr
    values = lut[PIXELS].astype(np.float64)
    image, _ = read_dicom(write(tmp_path / "m.dcm", ModalityLUTSequence=[item]))
    np.testing.assert_allclose(image, (values - values.min()) / np.ptp(values), atol=1e-6)  # no window: min-max
    center, width = 2 ** (bits - 1), 2**bits
    path = write(tmp_path / "w.dcm", ModalityLUTSequence=[item], WindowCenter=center, WindowWidth=width)
    np.testing.assert_allclose(read_dicom(path)[0], window(values, center, width), atol=1e-6)


@pytest.mark.parametrize("bits", [7, 20])
def test_a_modality_lut_of_another_entry_depth_is_an_error_naming_it(tmp_path: Path, bits: int) -> None:
    """A bit depth no reading makes sense of is named, not pydicom's "data type 'uint7' not understood"."""
    item = Dataset()
    item.LUTDescriptor = [4096, 0, bits]
    item.LUTData = np.arange(4096, dtype=np.uint16).tobytes()
    path = write(tmp_path / "lut.dcm", ModalityLUTSequence=[item])
    problem = f"Modality LUT Sequence (0028,3000): its LUT Descriptor (0028,3002) gives {bits} bits per LUT entry"
    with pytest.raises(DicomError, match=re.escape(f"lut.dcm: {problem} (its third value); PS3.3 allows 8 or 16")):
        read_dicom(path)


def test_bad_files_name_path_and_reason(tmp_path: Path) -> None:
    good = write(tmp_path / "good.dcm")
    with pytest.raises(DicomError, match=r"absent.dcm: file not found"):
        read_dicom(tmp_path / "absent.dcm")
    (tmp_path / "text.dcm").write_text("hello, not a DICOM")
    with pytest.raises(DicomError, match=r"text.dcm: .*DICOM"):
        read_dicom(tmp_path / "text.dcm")
    data = good.read_bytes()
    (tmp_path / "trunc.dcm").write_bytes(data[: len(data) - 4])
    with pytest.raises(DicomError, match=r"trunc.dcm: pixel data"):
        read_dicom(tmp_path / "trunc.dcm")
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(DicomError, match=r"nopix.dcm: no pixel data"):
        read_dicom(tmp_path / "nopix.dcm")


def test_a_dicom_that_is_no_image_is_named_by_its_class(tmp_path: Path) -> None:
    """A study exported to CD or from a PACS holds, beside its images, a DICOMDIR (the medium's index) and objects
    without pixels (CAD structured reports, presentation states); `wsod predict` of the folder listed each as an
    unreadable image with "no pixel data". The error now says what the file is; an image whose pixels are missing
    still reads as that."""
    from pydicom.fileset import FileSet

    # what the DICOMDIR's patient, study, series and image records need
    study = {"PatientID": "P1", "PatientName": "P1", "StudyInstanceUID": generate_uid(), "StudyDate": "20200101",
             "StudyTime": "000000", "StudyID": "1", "AccessionNumber": "", "SeriesInstanceUID": generate_uid(),
             "Modality": "MG", "SeriesNumber": 1, "InstanceNumber": 1}  # fmt: skip
    cd = FileSet()  # pydicom's FileSet writes the DICOMDIR and its file tree as media tools do
    cd.add(pydicom.dcmread(write(tmp_path / "image.dcm", **study)))
    cd.write(tmp_path / "cd")
    with pytest.raises(DicomError, match=r"DICOMDIR: no pixel data .*: a DICOMDIR, the index of a medium's files, not"):
        read_dicom(tmp_path / "cd" / "DICOMDIR")
    listed = next(p for p in (tmp_path / "cd").rglob("*") if p.is_file() and p.name != "DICOMDIR")
    assert read_dicom(listed)[0].shape == PIXELS.shape  # the image it lists, a file without an extension
    mammogram = " in a Digital Mammography X-Ray Image Storage - For Presentation object of "  # missing its pixels
    for uid, said in (("1.2.840.10008.5.1.4.1.1.88.50", ": a Mammography CAD SR Storage object, not an image"),
                      ("1.2.840.10008.5.1.4.1.1.11.1", ": a Grayscale Softcopy Presentation State Storage object"),
                      ("1.2.3.4.5", ": SOP class 1.2.3.4.5, not an image"),
                      ("1.2.840.10008.5.1.4.1.1.1.2", mammogram)):  # fmt: skip
        object_without_image(tmp_path / "image.dcm", tmp_path / "object.dcm", uid)
        with pytest.raises(DicomError) as refused:
            read_dicom(tmp_path / "object.dcm")
        assert str(refused.value).startswith(f"{tmp_path / 'object.dcm'}: no pixel data (PixelData tag absent){said}")
        # wsod predict counts the objects that hold no image apart; the error crosses from a worker whole
        kind = getattr(refused.value, "kind", None)
        assert isinstance(refused.value, NotAnImageError) == (said != mammogram) and (kind or "") in said
        again = pickle.loads(pickle.dumps(refused.value))
        assert (type(again), str(again), getattr(again, "kind", None)) == (
            type(refused.value),
            str(refused.value),
            kind,
        )


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("window", [{}, {"WindowCenter": 1500, "WindowWidth": 2000}])
def test_big_endian_pixels_read_as_little_endian_ones(tmp_path: Path, signed: bool, window: dict, monkeypatch) -> None:
    """Explicit VR Big Endian (retired, still in old archives): pydicom gives a '>u2' array, which used to index the
    display table byte-swapped (0.82 off without a window, saturated with one) when unsigned. The image is swapped
    to native order once, on reading: the display steps after it get native pixels (no swapped copy of their own)."""
    seen = []

    def spy(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(pixels.dtype.isnative)
        return stored_codes(pixels)

    monkeypatch.setattr(dicom, "stored_codes", spy)
    monkeypatch.setattr(dicom_display, "stored_codes", spy)
    pixels = PIXELS.astype(np.int16) - (2048 if signed else 0)
    tags = {"PixelRepresentation": int(signed), **window}
    little = write(tmp_path / "little.dcm", pixels.astype(np.uint16), **tags)
    ds = pydicom.dcmread(little)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = pixels.astype(">i2" if signed else ">u2").tobytes()
    pydicom.dcmwrite(tmp_path / "big.dcm", ds, implicit_vr=False, little_endian=False)
    assert pydicom.dcmread(tmp_path / "big.dcm").pixel_array.dtype.byteorder == ">"
    image, _ = read_dicom(tmp_path / "big.dcm")
    np.testing.assert_array_equal(image, read_dicom(little)[0])
    assert len(np.unique(image)) >= 4  # not saturated
    assert seen and all(seen)


def test_a_volume_or_a_colour_image_is_refused_from_its_tags_before_decoding(tmp_path: Path, monkeypatch) -> None:
    """A tomosynthesis file is hundreds of MB to decompress only to be refused: its frame count, like a colour
    image's samples, is read from the tags first, and the error says what the file holds."""
    decoded = []
    monkeypatch.setattr(dicom, "_pixels", lambda ds, path: decoded.append(path) or ds.pixel_array)
    volume = write(tmp_path / "dbt.dcm", NumberOfFrames=3)
    ds = pydicom.dcmread(volume)
    ds.PixelData = np.stack([PIXELS] * 3).tobytes()
    ds.save_as(volume)
    with pytest.raises(DicomError, match=r"dbt.dcm: 3 frames \(tomosynthesis"):
        read_dicom(volume)
    rgb = write(tmp_path / "shot.dcm", photometric="RGB")
    ds = pydicom.dcmread(rgb)
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PixelData = np.repeat(PIXELS[..., None], 3, axis=2).tobytes()
    ds.save_as(rgb)
    with pytest.raises(DicomError, match=r"shot.dcm: 3 samples per pixel \(a colour image\)"):
        read_dicom(rgb)
    assert decoded == []
    read_dicom(write(tmp_path / "one.dcm", NumberOfFrames=1))  # a single-frame file may say so
    assert len(decoded) == 1


def test_another_modality_or_raw_detector_data_is_read_with_warnings(tmp_path: Path) -> None:
    """Readable, so the reader still answers, but its output must say why it may not be trusted as usual."""
    _, info = read_dicom(write(tmp_path / "mg.dcm", Modality="MG", PresentationIntentType="FOR PRESENTATION"))
    assert info.warnings == ()
    _, info = read_dicom(write(tmp_path / "raw.dcm", Modality="MG", PresentationIntentType="FOR PROCESSING"))
    assert len(info.warnings) == 1 and info.warnings[0].startswith("a FOR PROCESSING image")
    _, info = read_dicom(write(tmp_path / "us.dcm", Modality="US"))
    assert info.warnings == ("Modality US, not MG (mammography): the model was trained on mammograms",)
    # the standard pairs Presentation LUT Shape INVERSE with MONOCHROME1: either alone is what it says, a
    # contradiction is read as the Photometric Interpretation says, with a warning
    agreeing, info = read_dicom(write(tmp_path / "m2_identity.dcm", Modality="MG", PresentationLUTShape="IDENTITY"))
    assert info.warnings == ()
    _, info = read_dicom(write(tmp_path / "m1_inverse.dcm", photometric="MONOCHROME1", PresentationLUTShape="INVERSE"))
    assert info.warnings == ()
    pixels, info = read_dicom(write(tmp_path / "m2_inverse.dcm", Modality="MG", PresentationLUTShape="INVERSE"))
    assert info.warnings[0].startswith("Presentation LUT Shape INVERSE with MONOCHROME2 (the standard pairs INVERSE")
    assert np.array_equal(pixels, agreeing)  # read as MONOCHROME2 says, not inverted
    _, info = read_dicom(
        write(tmp_path / "m1_identity.dcm", photometric="MONOCHROME1", PresentationLUTShape="IDENTITY")
    )
    assert info.warnings[0].startswith("Presentation LUT Shape IDENTITY with MONOCHROME1")


EMPTY = "expected one number, found an empty value"


@pytest.mark.parametrize(
    ("tags", "tag", "problem"),
    [
        ({"RescaleSlope": None, "RescaleIntercept": None}, "Rescale Slope (0028,1053)", EMPTY),
        ({"RescaleSlope": 2, "RescaleIntercept": None}, "Rescale Intercept (0028,1052)", EMPTY),
        ({"RescaleSlope": [1, 2], "RescaleIntercept": 0}, "Rescale Slope (0028,1053)", "expected one number, found ["),
        ({"RescaleSlope": 0, "RescaleIntercept": 0}, "Rescale Slope (0028,1053)", "0 would give every pixel one value"),
        ({"WindowCenter": 1500, "WindowWidth": None}, "Window Width (0028,1051)", "expected a number, found an empty"),
        ({"WindowCenter": None, "WindowWidth": 900}, "Window Center (0028,1050)", "expected a number, found an empty"),
        ({"PixelPaddingValue": 0, "PixelPaddingRangeLimit": None}, "Pixel Padding Range Limit (0028,0121)", EMPTY),
    ],
)
def test_malformed_display_tags_are_errors_naming_file_and_tag(
    tmp_path: Path, tags: dict, tag: str, problem: str
) -> None:
    """An empty Rescale Slope used to escape as a bare TypeError (no file name) and end ``wsod prepare``."""
    path = write(tmp_path / "bad.dcm", **tags)
    with pytest.raises(DicomError, match=re.escape(f"bad.dcm: {tag}: {problem}")):
        read_dicom(path)


def test_any_failure_of_the_display_transform_names_the_file(tmp_path: Path) -> None:
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]  # no LUTData: pydicom's apply_modality_lut raises KeyError
    with pytest.raises(DicomError, match=r"nolut.dcm: display transform failed \(KeyError"):
        read_dicom(write(tmp_path / "nolut.dcm", ModalityLUTSequence=[item]))


def test_a_one_row_image_or_one_all_padding_is_an_error_not_an_empty_crop(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match=r"row.dcm: expected at least 2x2 pixels, found 1x3 \(rows x columns\)"):
        read_dicom(write(tmp_path / "row.dcm", PIXELS[:1]))
    padded = write(tmp_path / "pad.dcm", PixelPaddingValue=0, PixelPaddingRangeLimit=4095)
    with pytest.raises(DicomError, match=r"pad.dcm: Pixel Padding Value \(0028,0120\): every pixel is padding"):
        read_dicom(padded)


def test_a_dicom_without_preamble_is_read_and_other_content_is_not(tmp_path: Path) -> None:
    """Old exports lack the 128-byte preamble and DICM marker (some the file meta too); pydicom refused them with
    advice the user cannot act on ("Use force=True")."""
    full = write(tmp_path / "full.dcm", WindowCenter=2048, WindowWidth=4096, ImageLaterality="R")
    expected = read_dicom(full)[0]
    (tmp_path / "meta_only.dcm").write_bytes(full.read_bytes()[132:])  # file meta, no preamble, no DICM
    for implicit in (True, False):
        ds = pydicom.dcmread(full)
        del ds.file_meta
        ds.preamble = None
        ds.save_as(tmp_path / f"bare_{implicit}.dcm", implicit_vr=implicit, little_endian=True)
    for implicit in (True, False):  # the DICM marker, but file meta without (0002,0010) (some anonymizers)
        ds = pydicom.dcmread(full)
        del ds.file_meta.TransferSyntaxUID
        ds.save_as(tmp_path / f"no_syntax_{implicit}.dcm", implicit_vr=implicit, little_endian=True)
        assert pydicom.misc.is_dicom(tmp_path / f"no_syntax_{implicit}.dcm")
        np.testing.assert_array_equal(read_dicom(tmp_path / f"no_syntax_{implicit}.dcm")[0], expected)
    for name in ("meta_only.dcm", "bare_True.dcm", "bare_False.dcm"):
        assert not pydicom.misc.is_dicom(tmp_path / name)
        image, info = read_dicom(tmp_path / name)
        np.testing.assert_array_equal(image, expected)
        assert info.laterality == "R"
    (tmp_path / "notes.dcm").write_bytes(b"\x08\x00\x16\x00" + b"not a DICOM at all" * 20)  # starts like one
    with pytest.raises(DicomError, match=r"notes.dcm: not a DICOM file: no DICOM Part 10 header") as raised:
        read_dicom(tmp_path / "notes.dcm")
    assert "force" not in str(raised.value)


def test_a_zero_filled_file_named_as_a_dicom_is_refused_without_reading_it_through(tmp_path: Path) -> None:
    """A download whose space was allocated and whose data never came: pydicom, forced to read it as a data set,
    took each 8 zero bytes for an element, 2.5 s a MB (80 MB: 97 s; 8 GB: hours), for `wsod predict` and for a
    CSV row whose image size is read from the file. A Part 10 file's 128 zero bytes of preamble are no such start."""
    from wsod_mammo.data.images import image_size

    zeros = tmp_path / "1.2.3.dicom"
    with zeros.open("wb") as handle:
        handle.truncate(2**20)  # sparse: no disk used
    said = r"not a DICOM file: no DICOM Part 10 header .*, and it begins with zero bytes \(a zero-filled file"
    with pytest.raises(DicomError, match=rf"1.2.3.dicom: {said}"):
        read_dicom(zeros)
    with pytest.raises(DicomError, match=rf"1.2.3.dicom: {said}"):
        image_size(zeros)
    full = write(tmp_path / "full.dcm", PIXELS)
    assert full.read_bytes()[:128] == bytes(128)
    assert read_dicom(full)[0].shape == PIXELS.shape and image_size(full) == PIXELS.shape


def test_a_part_10_header_followed_by_zeros_is_refused_without_reading_them_through(tmp_path: Path) -> None:
    """A file cut after its file meta and zero-filled (its space allocated, its data set never written): pydicom took
    every 8 zero bytes for an empty element, ~1 s a MB, for `wsod predict` and for a CSV row's image size, only to
    say that it has no pixel data. Zeros where the data set begins are refused at once, naming the file."""
    from wsod_mammo.data.images import image_size

    full = write(tmp_path / "full.dcm", PIXELS)
    data = full.read_bytes()
    meta_end = 132 + 12 + pydicom.dcmread(full).file_meta.FileMetaInformationGroupLength
    zeros = tmp_path / "zeros.dcm"
    with zeros.open("wb") as handle:
        handle.write(data[:meta_end])
        handle.truncate(meta_end + 2**20)  # sparse: no disk used
    said = r"a DICOM file header, then zero bytes where its data set begins \(a zero-filled file"
    with pytest.raises(DicomError, match=rf"zeros.dcm: {said}"):
        read_dicom(zeros)
    with pytest.raises(DicomError, match=rf"zeros.dcm: {said}"):
        image_size(zeros)
    assert not dicom.zero_filled(full) and read_dicom(full)[0].shape == PIXELS.shape


def test_a_data_set_zero_filled_after_some_elements_is_refused_without_reading_the_zeros_through(
    tmp_path: Path,
) -> None:
    """A file whose data set was written for a few elements and then zero-filled (a failed copy, a preallocated file)
    passed both zero checks: pydicom read every 8 zero bytes as an empty element, ~1 s a MB (minutes for a 100-MB
    file), then said that it has no pixel data. Zeros to the end and no PixelData tag before them refuse it at once,
    naming the file; a mammogram whose last rows are zero-valued background is read."""
    from wsod_mammo.data.images import image_size

    pixels = np.zeros((64, 80), np.uint16)
    pixels[:8] = 4000  # the last 56 rows (8,960 bytes) are zeros, to the file's end
    full = write(tmp_path / "full.dcm", pixels, Modality="MG", StudyInstanceUID="1.2.3", ViewPosition="CC")
    data = full.read_bytes()
    meta_end = 132 + 12 + pydicom.dcmread(full).file_meta.FileMetaInformationGroupLength
    zeros = tmp_path / "zeros.dcm"
    with zeros.open("wb") as handle:
        handle.write(data[: meta_end + 40])  # two elements, then zeros from inside the third
        handle.truncate(meta_end + 2**20)  # sparse: no disk used
    assert dicom.zero_filled(zeros) == dicom.ZEROS_IN_DATA_SET  # not ZEROS_AFTER_META: they start inside the data set
    said = r"a DICOM data set that gives way to zero bytes before any pixel data \(a zero-filled file"
    with pytest.raises(DicomError, match=rf"zeros.dcm: {said}"):
        read_dicom(zeros)
    with pytest.raises(DicomError, match=rf"zeros.dcm: {said}"):
        image_size(zeros)
    assert data.endswith(bytes(dicom.ZERO_RUN)) and not dicom.zero_filled(full)
    assert read_dicom(full)[0].shape == pixels.shape and image_size(full) == pixels.shape


def test_a_header_declaring_far_more_pixels_than_a_mammogram_is_refused_before_decoding(tmp_path: Path) -> None:
    """Nothing checked a DICOM's size before decoding it: a JPEG 2000 file of 9 KB declaring 8000 x 8000 took 0.8 GB
    to read (the decoder process, the pipe, the float image), so one declaring 60000 x 60000 would exhaust any
    machine. Its header's Rows x Columns over MAX_PIXELS is refused, naming the file, before the decoder runs."""
    plain = write(tmp_path / "plain.dcm", (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096)
    ds = pydicom.dcmread(plain)
    ds.compress(JPEG2000Lossless)
    ds.Rows = ds.Columns = 12000  # 144 M pixels
    ds.save_as(tmp_path / "huge.dcm")
    started = decoder_process.helper_pid()
    with pytest.raises(DicomError, match=r"huge.dcm: its header declares 12000x12000 pixels \(rows x columns\), over"):
        read_dicom(tmp_path / "huge.dcm")
    assert decoder_process.helper_pid() == started  # refused before any decoding
    assert 3 * 7000 * 5500 < dicom.MAX_PIXELS < 12000 * 12000  # thrice a film scanned at 50 um


def _claim_size(path: Path, marker: bytes, offset: int, fmt: str, size: tuple[int, ...], out: Path) -> Path:
    """A copy of ``path`` at ``out`` whose codestream's size fields after ``marker`` say ``size`` instead."""
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, data.index(marker) + offset, *size)
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, JPEGExtended12Bit])
def test_a_codestream_declaring_another_size_than_the_header_is_refused_before_decoding(
    tmp_path: Path, syntax: UID
) -> None:
    """The decoder allocates the size a compressed stream declares, and pydicom compares it with Rows x Columns only
    after decoding: a JPEG 2000 file of 1.3 KB whose SIZ said 12000 x 12000 made the decoder process take 1.4 GB
    (60000 x 60000: ~35 GB). The stream's own size (SIZ, SOFn) is read first: over MAX_PIXELS, or unlike the
    header's, refused naming the file."""
    from wsod_mammo.data.codestream import declared_size

    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
    plain = write(tmp_path / "plain.dcm", pixels, WindowCenter=2048, WindowWidth=4096, Modality="MG")
    if syntax == JPEG2000Lossless:
        ds = pydicom.dcmread(plain)
        ds.compress(JPEG2000Lossless)
        packed = tmp_path / "packed.dcm"
        ds.save_as(packed)
        marker, offset, fmt, huge, other = b"\xff\x4f\xff\x51", 8, ">2I", (12000, 12000), (48, 80)  # Xsiz, Ysiz
    else:
        packed = gdcm_transcode(plain, tmp_path / "packed.dcm", syntax)
        sof = {JPEGLosslessSV1: b"\xff\xc3", JPEGLSLossless: b"\xff\xf7", JPEGExtended12Bit: b"\xff\xc1"}[syntax]
        marker, offset, fmt, huge, other = sof, 5, ">2H", (12000, 12000), (80, 48)  # Y, X
    started = decoder_process.helper_pid()
    for name, size, said in [("other.dcm", other, "80x48 pixels"), ("huge.dcm", huge, "12000x12000 pixels, over the")]:
        claim = _claim_size(packed, marker, offset, fmt, size, tmp_path / name)
        with pytest.raises(DicomError, match=rf"{name}: its compressed pixel data declare {said}.* its header 64x48"):
            read_dicom(claim)
    assert decoder_process.helper_pid() == started  # refused before any decoding
    assert declared_size(pydicom.dcmread(packed), packed) == (64, 48)
    np.testing.assert_allclose(
        read_dicom(packed)[0], read_dicom(plain)[0], atol=0 if syntax != JPEGExtended12Bit else 0.01
    )


def _restream(
    packed: Path, out: Path, before: bytes = b"", size: tuple[int, int] | None = None, split: int = 0
) -> Path:
    """A copy of the JPEG DICOM ``packed`` at ``out``: ``before`` inserted after the stream's SOI, its frame header
    declaring ``size`` (rows, columns) where given, its stream split in fragments of ``split`` bytes where given."""
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(packed)
    stream = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    if size is not None:
        struct.pack_into(">2H", stream, stream.index(b"\xff\xc1") + 5, *size)
    stream[2:2] = before
    fragments = [bytes(stream[i : i + split]) for i in range(0, len(stream), split)] if split else [bytes(stream)]
    ds.PixelData = encapsulate([b"".join(fragments)], fragments_per_frame=len(fragments))
    ds.save_as(out)
    return out


def test_a_jpeg_frame_header_far_into_its_stream_or_giving_no_rows_is_checked_before_decoding(tmp_path: Path) -> None:
    """A JPEG's frame header (SOFn) was looked for in the stream's first 64 KB only: after large APPn/COM segments
    (or in a later fragment) its size went unchecked, and a 130-KB file declaring 20000 x 20000 pixels took the
    decoder 14 s and 2.4 GB. Its segments are now walked by their lengths, across fragments: its size is checked
    wherever the header lies; 0 rows (a DNL marker's count, which the decoders do not read) and a stream made to be
    walked for long are refused naming the file, before the decoder runs."""
    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
    plain = write(tmp_path / "plain.dcm", pixels, WindowCenter=2048, WindowWidth=4096, Modality="MG")
    packed = gdcm_transcode(plain, tmp_path / "packed.dcm", JPEGExtended12Bit)
    comments = (b"\xff\xfe" + struct.pack(">H", 65535) + bytes(65533)) * 2  # two COM segments: 128 KB
    started = decoder_process.helper_pid()
    for name, size, split in [("far.dcm", (12000, 12000), 0), ("split.dcm", (12000, 12000), 4096)]:
        with pytest.raises(DicomError, match=rf"{name}: its compressed pixel data declare 12000x12000 pixels, over"):
            read_dicom(_restream(packed, tmp_path / name, comments, size, split))
    said = r"declare 0x48 pixels \(0 rows: a count given after the image data, by a DNL marker"
    for name, before in [("dnl.dcm", b""), ("far_dnl.dcm", comments)]:
        with pytest.raises(DicomError, match=rf"{name}: its compressed pixel data {said}"):
            read_dicom(_restream(packed, tmp_path / name, before, (0, 48)))
    fill = _restream(packed, tmp_path / "fill.dcm", b"\xff" * (codestream.MAX_STEPS + 1) + b"\xfe\x00\x02")
    with pytest.raises(DicomError, match=r"fill.dcm: its compressed pixel data hold over 4,096 markers before"):
        read_dicom(fill)
    assert decoder_process.helper_pid() == started  # refused before any decoding
    fragments = _restream(packed, tmp_path / "fragments.dcm", comments, split=1000)
    assert codestream.declared_size(pydicom.dcmread(fragments), fragments) == (64, 48)  # GDCM decodes no such split
    kept = _restream(packed, tmp_path / "comments.dcm", comments)
    assert codestream.declared_size(pydicom.dcmread(kept), kept) == (64, 48)
    np.testing.assert_allclose(read_dicom(kept)[0], read_dicom(plain)[0], atol=0.01)


def _jp2(stream: bytes, size: tuple[int, int], xml: int) -> bytes:
    """A JPEG 2000 codestream in a JP2 file of ``size`` (rows, columns), with an XML box of ``xml`` bytes before it."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    header = box(b"ihdr", struct.pack(">2IH4B", *size, 1, 15, 7, 0, 0)) + box(b"colr", bytes(3) + bytes([0, 0, 0, 17]))
    return b"".join([box(b"jP  ", b"\r\n\x87\n"), box(b"ftyp", b"jp2 " + bytes(4) + b"jp2 "), box(b"jp2h", header),
                     box(b"xml ", b" " * xml), box(b"jp2c", stream)])  # fmt: skip


def test_a_jp2_file_whose_codestream_lies_after_large_boxes_has_its_size_checked_before_decoding(
    tmp_path: Path,
) -> None:
    """A JPEG 2000 stream wrapped in a JP2 file had its SIZ looked for in its first KB: after a large box (XML, an
    ICC profile) it was not found, and a 5-KB file declaring 20000 x 20000 pixels (SIZ and the JP2 header alike)
    was decoded, 0.9 GB in the decoder. Its boxes are now walked by their lengths to the codestream."""
    from pydicom.encaps import encapsulate, generate_frames

    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
    plain = write(tmp_path / "plain.dcm", pixels, WindowCenter=2048, WindowWidth=4096, Modality="MG")
    ds = pydicom.dcmread(plain)
    ds.compress(JPEG2000Lossless)
    stream = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    ds.PixelData = encapsulate([_jp2(bytes(stream), (64, 48), 4000)])
    ds.save_as(tmp_path / "jp2.dcm")
    assert codestream.declared_size(ds, tmp_path / "jp2.dcm") == (64, 48)
    np.testing.assert_array_equal(read_dicom(tmp_path / "jp2.dcm")[0], read_dicom(plain)[0])
    struct.pack_into(">6I", stream, 8, 12000, 12000, 0, 0, 12000, 12000)  # Xsiz, Ysiz, offsets, one tile
    ds.PixelData = encapsulate([_jp2(bytes(stream), (12000, 12000), 4000)])
    ds.save_as(tmp_path / "huge.dcm")
    started = decoder_process.helper_pid()
    with pytest.raises(DicomError, match=r"huge.dcm: its compressed pixel data declare 12000x12000 pixels, over"):
        read_dicom(tmp_path / "huge.dcm")
    assert decoder_process.helper_pid() == started  # refused before any decoding


def test_an_rle_stream_holding_the_bytes_of_a_jpeg_2000_header_is_read(tmp_path: Path) -> None:
    """RLE declares no size: its first fragment's bytes, where they hold SOC and SIZ's markers by chance, are not
    read as a JPEG 2000 header (which refused the file as declaring 0x0 pixels)."""
    pixels = ((np.arange(64 * 48).reshape(64, 48) * 37) % 65536).astype(np.uint16)
    pixels[0, :4] = [0xFF00, 0x4F00, 0xFF00, 0x5100]  # the high bytes' segment begins with FF4F FF51
    plain = write(tmp_path / "plain.dcm", pixels, BitsStored=16, HighBit=15)
    ds = pydicom.dcmread(plain)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    assert b"\xff\x4f\xff\x51" in (tmp_path / "rle.dcm").read_bytes()
    np.testing.assert_array_equal(read_dicom(tmp_path / "rle.dcm")[0], read_dicom(plain)[0])


def test_a_volume_refused_from_its_tags_is_not_read_and_large_pixels_read_when_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tomosynthesis volume in a clinic's folder (300 MB to 1 GB uncompressed) was read whole, into memory, only
    to be refused for its frame count. Pixels over DEFER_SIZE are now read when decoded: a refused file's never; an
    image's as before, and one cut short inside them is said to be."""
    pixels = (np.arange(1100 * 1000, dtype=np.uint32).reshape(1100, 1000) % 4096).astype(np.uint16)
    assert pixels.nbytes > 2**20  # over DEFER_SIZE
    image = write(tmp_path / "large.dcm", pixels, WindowCenter=2048, WindowWidth=4096)
    volume = pydicom.dcmread(image)
    volume.NumberOfFrames, volume.PixelData = 3, pixels.tobytes() * 3
    volume.save_as(tmp_path / "volume.dcm")
    data = image.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 1000])

    def never(*args: object) -> None:
        raise AssertionError("the refused volume's pixels were read")

    read, datasets = pydicom.dcmread, []

    def recording(*args: Any, **kwargs: Any) -> Any:
        datasets.append(read(*args, **kwargs))
        return datasets[-1]

    monkeypatch.setattr(pydicom.filereader, "read_deferred_data_element", never)
    monkeypatch.setattr(pydicom, "dcmread", recording)
    with pytest.raises(DicomError, match=r"volume.dcm: 3 frames \(tomosynthesis"):
        read_dicom(tmp_path / "volume.dcm")
    assert [ds.get_item("PixelData", keep_deferred=True).value for ds in datasets] == [None]  # 6.6 MB not read
    monkeypatch.undo()
    expected = apply_voi_lut(pixels, pydicom.dcmread(image)).astype(np.float32) / 4095
    np.testing.assert_allclose(read_dicom(image)[0], expected, atol=1e-6)
    with pytest.raises(DicomError, match=r"cut.dcm: the file ends inside its pixel data \(cut short"):
        read_dicom(tmp_path / "cut.dcm")  # was pydicom's "less than expected (2199000 vs 2200000 bytes)"


def test_jpeg2000_lossless_decodes_like_uncompressed(tmp_path: Path) -> None:
    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
    plain = write(tmp_path / "plain.dcm", pixels, WindowCenter=2048, WindowWidth=4096)
    ds = pydicom.dcmread(plain)
    ds.compress(JPEG2000Lossless)
    ds.save_as(tmp_path / "j2k.dcm")
    assert pydicom.dcmread(tmp_path / "j2k.dcm").file_meta.TransferSyntaxUID == JPEG2000Lossless
    np.testing.assert_array_equal(read_dicom(tmp_path / "j2k.dcm")[0], read_dicom(plain)[0])
    # cut short inside its pixel data (an interrupted download): pydicom drops the element with a warning, and the
    # file was said to have no pixel data at all
    data = (tmp_path / "j2k.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) * 7 // 10])
    with pytest.raises(DicomError, match=r"cut.dcm: the file ends inside its pixel data \(cut short"):
        read_dicom(tmp_path / "cut.dcm")


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless])
def test_jpeg_lossless_and_jpeg_ls_decode_like_uncompressed(tmp_path: Path, syntax: UID) -> None:
    """JPEG Lossless SV1 is the common clinical mammography export (Hologic); both decode through GDCM."""
    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
    plain = write(tmp_path / "plain.dcm", pixels, WindowCenter=2048, WindowWidth=4096, Modality="MG")
    packed = gdcm_transcode(plain, tmp_path / "packed.dcm", syntax)
    np.testing.assert_array_equal(read_dicom(packed)[0], read_dicom(plain)[0])


def test_12_bit_jpeg_extended_decodes_close_to_uncompressed(tmp_path: Path) -> None:
    """pydicom's GDCM plugin refuses 12-bit JPEG Extended: GDCM decodes it directly (lossy: a few levels off)."""
    pixels = np.add.outer(np.arange(64) * 30, np.arange(48) * 20).astype(np.uint16)  # smooth, 0 .. 2830
    plain = write(tmp_path / "plain.dcm", pixels, WindowCenter=2048, WindowWidth=4096, Modality="MG")
    packed = gdcm_transcode(plain, tmp_path / "lossy.dcm", JPEGExtended12Bit)
    image, info = read_dicom(packed)
    assert (info.height, info.width) == (64, 48)
    np.testing.assert_allclose(image, read_dicom(plain)[0], atol=4 / 4095)


def test_an_enhanced_objects_functional_groups_are_read_as_a_classic_images_tags(tmp_path: Path) -> None:
    """A Breast Projection X-Ray image (the enhanced MG object: synthesized 2D views) keeps its window, rescale, side
    and spacing in functional groups: they were ignored (the min-max instead of the window, 0.61 off; the side
    guessed; no spacing) without a word. Read as a classic image's, the frame's own groups over the shared ones."""
    pixels = (np.arange(64 * 40, dtype=np.uint16).reshape(64, 40) * 13) % 4096
    classic = write(tmp_path / "classic.dcm", pixels, WindowCenter=1800, WindowWidth=1000, RescaleSlope=2,
                    RescaleIntercept=-100, ImageLaterality="R", PixelSpacing=[0.07, 0.07])  # fmt: skip
    ds = pydicom.dcmread(write(tmp_path / "enhanced.dcm", pixels, NumberOfFrames=1))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.13.1.4"
    shared, frame = Dataset(), Dataset()
    shared.FrameVOILUTSequence = [Dataset()]
    shared.FrameVOILUTSequence[0].WindowCenter, shared.FrameVOILUTSequence[0].WindowWidth = 900, 300
    shared.PixelValueTransformationSequence = [Dataset()]
    transform = shared.PixelValueTransformationSequence[0]
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, -100, "US"
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [0.07, 0.07]
    shared.FrameAnatomySequence = [Dataset()]
    shared.FrameAnatomySequence[0].FrameLaterality = "R"
    frame.FrameVOILUTSequence = [Dataset()]  # the frame's own window: it takes precedence over the shared one
    frame.FrameVOILUTSequence[0].WindowCenter, frame.FrameVOILUTSequence[0].WindowWidth = 1800, 1000
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [frame]
    ds.save_as(tmp_path / "enhanced.dcm")
    (image, info), (expected, tags) = read_dicom(tmp_path / "enhanced.dcm"), read_dicom(classic)
    np.testing.assert_array_equal(image, expected)
    assert (info.laterality, info.spacing_mm) == (tags.laterality, tags.spacing_mm) == ("R", (0.07, 0.07))


def test_a_damaged_element_an_empty_image_and_a_cut_header_are_named(tmp_path: Path) -> None:
    """pydicom parses an element when it is first read: one damaged byte (an unknown VR) raised its own error, which
    named no file, out of ``read_dicom``; an anonymizer's blanked Pixel Data said "object of type 'NoneType' has no
    len()"; a file cut before its pixels read as an intact object without any."""
    good = write(tmp_path / "good.dcm", Modality="MG")
    data = bytearray(good.read_bytes())
    at = data.index(b"\x28\x00\x04\x00CS")  # (0028,0004) Photometric Interpretation, explicit VR
    data[at + 4 : at + 6] = b"C\xa2"
    (tmp_path / "bad_vr.dcm").write_bytes(bytes(data))
    with pytest.raises(DicomError, match=re.escape(f"{tmp_path / 'bad_vr.dcm'}: malformed DICOM element (Not")):
        read_dicom(tmp_path / "bad_vr.dcm")
    blank = pydicom.dcmread(good)
    blank.PixelData = b""
    blank.save_as(tmp_path / "blank.dcm")
    with pytest.raises(DicomError, match=r"blank.dcm: its Pixel Data element \(7FE0,0010\) is empty \(0 bytes\)"):
        read_dicom(tmp_path / "blank.dcm")
    (tmp_path / "cut.dcm").write_bytes(good.read_bytes()[:300])
    expected = (r"cut.dcm: no pixel data \(PixelData tag absent\) in a Digital Mammography X-Ray Image Storage - For "
                r"Presentation object of 300 bytes: cut short before its pixels, or stripped")  # fmt: skip
    with pytest.raises(DicomError, match=expected):
        read_dicom(tmp_path / "cut.dcm")


def test_a_damaged_compressed_stream_costs_its_file_not_the_process(tmp_path: Path) -> None:
    """GDCM aborts (an uncaught C++ exception) or segfaults on some damaged JPEG streams, which killed the process
    reading them: a ``wsod predict`` over an archive lost every image's result and never named the file. Compressed
    pixels are decoded in a helper process: such a file is a DicomError naming it and how the decoder died, and
    the files after it are read. Run in a process of its own, so that a crash fails this test, not the suite."""
    pixels = np.add.outer(np.arange(64) * 30, np.arange(48) * 20).astype(np.uint16)
    plain = write(tmp_path / "plain.dcm", pixels, WindowCenter=2048, WindowWidth=4096, Modality="MG")
    files = [damaged_jpeg(plain, tmp_path / "aborts.dcm", "SIGABRT"),
             damaged_jpeg(plain, tmp_path / "segfaults.dcm", "SIGSEGV"),
             gdcm_transcode(plain, tmp_path / "lossless.dcm", JPEGLosslessSV1), plain]  # fmt: skip
    script = (
        "import sys\n"
        "from wsod_mammo.data.dicom import DicomError, read_dicom\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        print(read_dicom(path)[0].tobytes().hex())\n"
        "    except DicomError as err:\n"
        "        print(err)\n"
    )
    run = subprocess.run([sys.executable, "-c", script, *map(str, files)], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    aborted, segfaulted, lossless, uncompressed = run.stdout.splitlines()
    damaged = "pixel data cannot be decoded (the decoder crashed on them, {}: the compressed stream is damaged)"
    assert aborted == f"{files[0]}: " + damaged.format("SIGABRT")
    assert segfaulted == f"{files[1]}: " + damaged.format("SIGSEGV")
    assert lossless == uncompressed == read_dicom(plain)[0].tobytes().hex()


def test_compressed_pixels_decode_in_a_forked_process_by_its_own_helper(tmp_path: Path) -> None:
    """A DataLoader worker forked from a process that decoded already starts a helper of its own: sharing the
    parent's pipes would mix the processes' replies (one reading another's image, or half of it)."""
    files, expected = _lossless_files(tmp_path, 3)
    np.testing.assert_array_equal(read_dicom(files[0])[0], expected[0])
    parent_helper = decoder_process.helper_pid()
    assert parent_helper is not None
    with multiprocessing.get_context("fork").Pool(2) as pool:
        decoded = pool.map(_decoded, files * 4, chunksize=1)
    for (image, helper), truth in zip(decoded, expected * 4, strict=True):
        np.testing.assert_array_equal(image, truth)
        assert helper not in (None, parent_helper)
    np.testing.assert_array_equal(read_dicom(files[1])[0], expected[1])  # this process's helper still answers
    assert decoder_process.helper_pid() == parent_helper


def test_a_decode_interrupted_mid_reply_leaves_no_reply_for_the_next_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C while the helper's reply was read (a notebook's Predictor) left the rest of it in the pipe, read as
    the next file's pixels: the next call returned the interrupted file's image. The helper is replaced instead."""
    files, expected = _lossless_files(tmp_path, 2)
    read_dicom(files[0])  # the helper running
    calls = []

    def interrupted(stream, size, timeout=None):  # the Ctrl-C lands after the reply's first byte was read
        calls.append(size)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return receive(stream, size, timeout)

    receive = decoder_process._receive
    monkeypatch.setattr(decoder_process, "_receive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_dicom(files[0])
    monkeypatch.setattr(decoder_process, "_receive", receive)
    np.testing.assert_array_equal(read_dicom(files[1])[0], expected[1])


def _lossless_files(folder: Path, count: int) -> tuple[list[Path], list[np.ndarray]]:
    """``count`` different 12-bit images as GDCM's JPEG Lossless files, and each one's image read uncompressed."""
    files, expected = [], []
    for k in range(count):
        pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * (k + 3)) % 4096
        plain = write(folder / f"plain{k}.dcm", pixels, WindowCenter=2048, WindowWidth=4096, Modality="MG")
        files.append(gdcm_transcode(plain, folder / f"packed{k}.dcm", JPEGLosslessSV1))
        expected.append(read_dicom(plain)[0])
    return files, expected


def _decoded(path: Path) -> tuple[np.ndarray, int | None]:
    return read_dicom(path)[0], decoder_process.helper_pid()


def pydicom_display(path: Path, low: float, high: float) -> np.ndarray:
    """pydicom's own chain (modality LUT, then VOI LUT or window), scaled from [low, high] to [0, 1]."""
    ds = pydicom.dcmread(path)
    out = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    return np.clip((out - low) / (high - low), 0, 1)


RAMP = (np.arange(64 * 40, dtype=np.uint16).reshape(64, 40) * 13) % 4096


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_functions_match_pydicom(tmp_path: Path, function: str) -> None:
    path = write(tmp_path / f"{function}.dcm", RAMP, WindowCenter=1800.5, WindowWidth=1500, VOILUTFunction=function)
    image, _ = read_dicom(path)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, pydicom_display(path, 0, 4095), atol=2e-6)
    assert image.min() < 0.05 and image.max() > 0.95  # the window really saturates at both ends


@pytest.mark.parametrize("function", ["LINEAR", "SIGMOID"])
def test_a_signed_windowed_image_matches_pydicom(tmp_path: Path, function: str) -> None:
    """Signed 12-bit pixels: the window maps onto -2048 .. 2047 (PS3.3 C.11.2.1.2), not 2048 at the top."""
    pixels = (RAMP.astype(np.int16) - 2048).astype(np.int16)
    path = write(tmp_path / f"s{function}.dcm", pixels, PixelRepresentation=1, WindowCenter=100, WindowWidth=3000,
                 VOILUTFunction=function)  # fmt: skip
    np.testing.assert_allclose(read_dicom(path)[0], pydicom_display(path, -2048, 2047), atol=2e-6)


def test_voi_lut_sequence_and_rescaled_window_match_pydicom(tmp_path: Path) -> None:
    item = Dataset()
    item.LUTDescriptor = [3000, 500, 12]  # 3000 entries starting at stored value 500, 12-bit output
    item.LUTData = (np.sqrt(np.arange(3000) / 2999) * 4095).astype(np.uint16).tobytes()
    path = write(tmp_path / "seq.dcm", RAMP, VOILUTSequence=[item], WindowCenter=10, WindowWidth=2)
    np.testing.assert_allclose(read_dicom(path)[0], pydicom_display(path, 0, 4095), atol=2e-6)
    path = write(tmp_path / "resc.dcm", RAMP, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=3000,
                 WindowWidth=5000, VOILUTFunction="SIGMOID")  # fmt: skip
    np.testing.assert_allclose(read_dicom(path)[0], pydicom_display(path, -100, 4095 * 2 - 100), atol=2e-6)


@pytest.mark.parametrize("function", ["LINEAR", "SIGMOID"])
def test_negative_rescale_slope_with_window_is_displayed_not_black(tmp_path: Path, function: str) -> None:
    """Modality value 4095 - stored: the window shows it as PS3.3 draws it (high modality value bright), which is
    pydicom's output read from the end its lower window side maps to (4095) to its upper side's (0)."""
    path = write(tmp_path / "neg.dcm", RAMP, RescaleSlope=-1, RescaleIntercept=4095, WindowCenter=2048,
                 WindowWidth=4096, VOILUTFunction=function)  # fmt: skip
    image, _ = read_dicom(path)
    np.testing.assert_allclose(image, pydicom_display(path, 4095, 0), atol=2e-6)
    if function == "LINEAR":
        np.testing.assert_allclose(image, window(4095.0 - RAMP, 2048, 4096), atol=2e-6)
    stored = RAMP.ravel()
    assert image.ravel()[stored.argmin()] > 0.85 and image.ravel()[stored.argmax()] < 0.15  # not black, not inverted


def mammogram_with_padding(photometric: str) -> tuple[np.ndarray, np.ndarray]:
    """256 x 160 stored values: a breast on the left, air, and a padded band (stored 0 .. 30) on the right."""
    rows, cols = np.mgrid[0:256, 0:160]
    breast = ((rows - 128) / 110.0) ** 2 + (cols / 70.0) ** 2 < 1
    dense = 3000 if photometric == "MONOCHROME2" else 600
    air = 200 if photometric == "MONOCHROME2" else 3800
    pixels = np.where(breast, dense, air).astype(np.uint16)
    padding = cols >= 120
    pixels[padding] = (rows[padding] % 31).astype(np.uint16)
    return pixels, padding


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_padding_is_background_and_left_out_of_crop(tmp_path: Path, photometric: str) -> None:
    pixels, padding = mammogram_with_padding(photometric)
    path = write(tmp_path / "pad.dcm", pixels, photometric, PixelPaddingValue=0, PixelPaddingRangeLimit=30)
    image, _ = read_dicom(path)
    assert (image[padding] == 0).all()
    np.testing.assert_allclose(image.max(), 1.0)  # min-max over the non-padding values only
    assert image[128, 10] == 1.0 and image[5, 110] == 0.0  # breast bright, air dark on both interpretations
    x0, y0, x1, y1 = breast_bbox(image)
    assert x0 == 0 and x1 <= 80 and y0 >= 10 and y1 <= 246  # the breast, not the whole image


def test_single_padding_value_without_range_limit(tmp_path: Path) -> None:
    pixels, _ = mammogram_with_padding("MONOCHROME1")
    pixels[:, 120:] = 4095
    image, _ = read_dicom(write(tmp_path / "p.dcm", pixels, "MONOCHROME1", PixelPaddingValue=4095))
    assert (image[:, 120:] == 0).all() and image[128, 10] == 1.0 and breast_bbox(image)[2] <= 80


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("limit", [30, None])
def test_padding_mask_marks_exactly_the_padding_pixels(tmp_path: Path, photometric: str, limit: int | None) -> None:
    pixels, padding = mammogram_with_padding(photometric)
    if limit is None:
        pixels[padding] = 0
    tags = {"PixelPaddingValue": 0} | ({"PixelPaddingRangeLimit": limit} if limit is not None else {})
    image, info = read_dicom(write(tmp_path / "pad.dcm", pixels, photometric, **tags))
    assert info.padding is not None and info.padding.dtype == bool and info.padding.shape == image.shape
    np.testing.assert_array_equal(info.padding, padding)


def test_no_padding_mask_without_padding_pixels(tmp_path: Path) -> None:
    pixels, padding = mammogram_with_padding("MONOCHROME2")
    pixels[padding] = 200  # air, not padding
    assert read_dicom(write(tmp_path / "none.dcm", pixels))[1].padding is None
    # the tag names a value that no pixel holds: still no mask
    assert read_dicom(write(tmp_path / "unused.dcm", pixels, PixelPaddingValue=0))[1].padding is None


@pytest.mark.parametrize(
    ("bits", "signed", "stored", "written"),
    [(16, True, -32768, ("US", 32768)), (12, True, -2048, ("US", 2048)), (12, True, -2048, ("US", 0xF800)),
     (16, False, 65535, ("SS", -1))],
)  # fmt: skip
def test_a_padding_value_of_the_other_sign_is_read_as_its_bit_pattern(
    tmp_path: Path, bits: int, signed: bool, stored: int, written: tuple[str, int]
) -> None:
    """Writers put Pixel Padding Value as US beside signed pixels (32768 for -32768; a 12-bit 0x800 for -2048, or its
    16-bit pattern sign-extended, 0xF800), or SS beside unsigned ones: the padding was not found, and its extreme
    value entered the min-max, which squeezed the breast into a sliver of grey."""
    pixels, padding = mammogram_with_padding("MONOCHROME2")
    values = pixels.astype(np.int32) - (2048 if signed else 0)
    values[padding] = stored
    dtype = np.int16 if signed else np.uint16
    tags = {"BitsStored": bits, "HighBit": bits - 1, "PixelRepresentation": int(signed)}
    path = write(tmp_path / "pad.dcm", values.astype(dtype), **tags)
    ds = pydicom.dcmread(path)
    ds.add_new(0x00280120, *written)  # the VR as the writer chose it, not as pydicom would resolve it
    ds.save_as(path)
    image, info = read_dicom(path)
    np.testing.assert_array_equal(info.padding, padding)
    assert image[128, 10] == 1.0 and image[5, 110] == 0.0  # breast white, air black: the full range again


def test_a_modality_lut_sequence_with_a_window_uses_the_luts_output_range(tmp_path: Path) -> None:
    """Windowed after a 16-bit Modality LUT (stored x 16): a window over the whole LUT range shows the LUT's values
    as fractions of 65535; the stored 12-bit range instead made almost everything white."""
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = (np.arange(4096) * 16).astype(np.uint16).tobytes()
    pixels = np.array([[0, 1024, 2048], [3072, 4000, 4095]], np.uint16)
    path = write(tmp_path / "m.dcm", pixels, ModalityLUTSequence=[item], WindowCenter=32768, WindowWidth=65536)
    image, _ = read_dicom(path)
    np.testing.assert_allclose(image[0], [0.0, 0.25, 0.5], atol=1e-3)


def test_a_voi_lut_sequence_with_an_identity_rescale_reads_without_warnings(tmp_path: Path) -> None:
    """Rescale 1/0 makes float modality values; pydicom warns on a VOI LUT over floats unless they become integers."""
    import warnings

    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = (4095 - np.arange(4096)).astype(np.uint16).tobytes()
    pixels = np.array([[0, 2048], [4095, 1]], np.uint16)
    path = write(tmp_path / "v.dcm", pixels, VOILUTSequence=[item], RescaleSlope=1, RescaleIntercept=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_dicom(path)


def test_pixel_spacing_is_the_calibrated_one_else_the_detectors_and_never_an_error(tmp_path: Path) -> None:
    """Lesion sizes in mm read PixelSpacing where the file calibrates it, else ImagerPixelSpacing (Type 1 in a
    digital mammogram); a spacing that is absent, empty or not two positive numbers is no spacing, not a failure to
    read the image (only Table II per mass size uses it)."""
    both = write(tmp_path / "both.dcm", PixelSpacing=[0.07, 0.065], ImagerPixelSpacing=[0.085, 0.085])
    assert read_dicom(both)[1].spacing_mm == (0.07, 0.065)
    detector = write(tmp_path / "detector.dcm", ImagerPixelSpacing=[0.1, 0.1])
    assert read_dicom(detector)[1].spacing_mm == (0.1, 0.1)
    assert read_dicom(write(tmp_path / "none.dcm"))[1].spacing_mm is None
    for name, value in (("zero", [0.0, 0.1]), ("one", [0.1]), ("empty", "")):
        path = write(tmp_path / f"{name}.dcm", PixelSpacing=value, ImagerPixelSpacing=[0.2, 0.2])
        assert read_dicom(path)[1].spacing_mm == (0.2, 0.2), name  # the bad one skipped, the detector's read
