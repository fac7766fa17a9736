"""Test helpers: DICOM objects as other tools write them: of a class that holds no image (a PACS export or a CD
holds them beside the images), re-encoded by GDCM, and compressed streams damaged where a decoder crashes on them."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import UID, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless

CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"  # Mammography CAD SR Storage
PRESENTATION_STATE = "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy Presentation State Storage
GDCM_SYNTAX = {JPEGLosslessSV1: "JPEGLosslessProcess14_1", JPEGLSLossless: "JPEGLSLossless",
               JPEGExtended12Bit: "JPEGExtendedProcess2_4"}  # fmt: skip
# (transfer syntax, offset from the JPEG stream's start, byte written there) -> how GDCM fails on it
DAMAGE = {
    "SIGABRT": (JPEGExtended12Bit, 2, 0x00),  # the marker after SOI gone: an uncaught gdcm::Exception, abort()
    "SIGSEGV": (JPEGLosslessSV1, 6, 0x21),  # the frame header's sample precision 33 bits: a segfault
}


def object_without_image(image: Path, path: Path, sop_class: str = CAD_SR) -> Path:
    """A copy of the DICOM ``image`` at ``path`` with its pixels gone and its SOP class ``sop_class`` (a CAD
    structured report by default)."""
    ds = pydicom.dcmread(image)
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.save_as(path)
    return path


def gdcm_transcode(plain: Path, out: Path, syntax: UID) -> Path:
    """``plain`` re-encoded by GDCM in ``syntax`` (pydicom encodes none of these). GDCM's writer aborts the process
    on a file without Modality, so ``plain`` must have one."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(plain))
    assert reader.Read() and pydicom.dcmread(plain).Modality
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, GDCM_SYNTAX[syntax])))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(out))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write() and pydicom.dcmread(out).file_meta.TransferSyntaxUID == syntax
    return out


def damaged_jpeg(plain: Path, out: Path, crash: str) -> Path:
    """``plain`` (12-bit, with a Modality) re-encoded by GDCM and one byte of its JPEG stream changed so that GDCM
    decoding it dies of ``crash`` (``SIGABRT`` or ``SIGSEGV``, :data:`DAMAGE`): a damaged archive's file."""
    syntax, offset, value = DAMAGE[crash]
    data = bytearray(gdcm_transcode(plain, out, syntax).read_bytes())
    data[data.index(b"\xff\xd8\xff") + offset] = value
    out.write_bytes(bytes(data))
    return out
