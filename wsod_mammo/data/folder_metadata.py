"""The files that describe a folder rather than hold an image: what operating systems write into folders of a disk
they browse, beside the images, and the DICOMDIR index of a CD or DVD. They are left out of the folders ``wsod
predict`` expands; a DICOMDIR given itself stands for the files it lists."""

from __future__ import annotations

from pathlib import Path

DICOMDIR = "DICOMDIR"  # the name DICOM media give their index (PS3.10), in the root folder of the medium
# by name in any case (THUMBS.DB on FAT disks); the folder walk finds the files a DICOMDIR lists
FOLDER_METADATA_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", DICOMDIR.lower()})
APPLE_DOUBLE_MAGIC = b"\x00\x05\x16\x07"  # macOS's ``._<name>`` files on disks without its metadata (USB, SMB)


def is_folder_metadata(path: Path) -> bool:
    """``.DS_Store``, ``Thumbs.db``, ``desktop.ini`` and ``DICOMDIR`` by name, and macOS's AppleDouble ``._<name>``
    files by name and content (a ``._`` file that is an image is read as one)."""
    if path.name.lower() in FOLDER_METADATA_NAMES:
        return True
    if not path.name.startswith("._"):
        return False
    try:
        with path.open("rb") as file:
            return file.read(4) == APPLE_DOUBLE_MAGIC
    except OSError:  # unreadable: its sample says why
        return False


def dicomdir_files(path: Path) -> list[Path]:
    """The files a DICOMDIR lists, in its order (patient, study, series, image); the DICOMDIR itself where it
    cannot be read as one or lists none, so that its row says why."""
    from pydicom.fileset import FileSet

    try:
        listed = [Path(instance.path) for instance in FileSet(path)]
    except Exception:  # pydicom raises several types on a file that is no DICOMDIR
        return [path]
    return listed or [path]
