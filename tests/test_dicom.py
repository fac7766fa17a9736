"""DICOM decoding: rescale, window (first of several), VOI LUT, MONOCHROME1 inversion, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from wsod_mammo.data.dicom import DicomError, read_dicom

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


def test_voi_lut_sequence(tmp_path: Path) -> None:
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    lut = (np.arange(4096) ** 2 / 4095**2 * 65535).astype(np.uint16)  # a gamma-like LUT
    item.LUTData = lut.tobytes()
    image, _ = read_dicom(write(tmp_path / "lut.dcm", VOILUTSequence=[item], WindowCenter=10, WindowWidth=2))
    np.testing.assert_allclose(image, lut[PIXELS] / 65535.0, atol=1e-6)


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


def test_jpeg2000_lossless_decodes_like_uncompressed(tmp_path: Path) -> None:
    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
    plain = write(tmp_path / "plain.dcm", pixels, WindowCenter=2048, WindowWidth=4096)
    ds = pydicom.dcmread(plain)
    ds.compress(JPEG2000Lossless)
    ds.save_as(tmp_path / "j2k.dcm")
    assert pydicom.dcmread(tmp_path / "j2k.dcm").file_meta.TransferSyntaxUID == JPEG2000Lossless
    np.testing.assert_array_equal(read_dicom(tmp_path / "j2k.dcm")[0], read_dicom(plain)[0])
