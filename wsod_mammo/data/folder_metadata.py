"""The files operating systems write into folders of a disk they browse, beside the images: never an image, they
are left out of the folders ``wsod predict`` expands."""

from __future__ import annotations

from pathlib import Path

FOLDER_METADATA_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})  # in any case: THUMBS.DB on FAT disks
APPLE_DOUBLE_MAGIC = b"\x00\x05\x16\x07"  # macOS's ``._<name>`` files on disks without its metadata (USB, SMB)


def is_folder_metadata(path: Path) -> bool:
    """``.DS_Store``, ``Thumbs.db``, ``desktop.ini`` by name, and macOS's AppleDouble ``._<name>`` files by name and
    content (a ``._`` file that is an image is read as one)."""
    if path.name.lower() in FOLDER_METADATA_NAMES:
        return True
    if not path.name.startswith("._"):
        return False
    try:
        with path.open("rb") as file:
            return file.read(4) == APPLE_DOUBLE_MAGIC
    except OSError:  # unreadable: its sample says why
        return False
