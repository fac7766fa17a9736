"""The files that describe a folder rather than hold an image: what operating systems write into folders of a disk
they browse, beside the images, and the DICOMDIR index of a CD or DVD. They are left out of the folders ``wsod
predict`` expands; a DICOMDIR given itself stands for the files it lists."""

from __future__ import annotations

from pathlib import Path

DICOMDIR = "DICOMDIR"  # the name DICOM media give their index (PS3.10), in the root folder of the medium
# by name in any case (THUMBS.DB on FAT disks); the folder walk finds the files a DICOMDIR lists
FOLDER_METADATA_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", DICOMDIR.lower()})
APPLE_DOUBLE_MAGIC = b"\x00\x05\x16\x07"  # macOS's ``._<name>`` files on disks without its metadata (USB, SMB)
# the folders operating systems keep on a disk they use, in any case: the trash (macOS's, Windows', Linux's
# ``.Trash-<uid>``), macOS's search index and event log, Windows' restore points. A deleted view in the trash was
# predicted and joined its breast; the index's files were rows of unreadable images.
SYSTEM_FOLDER_NAMES = frozenset({".trashes", ".trash", "$recycle.bin", "recycler", ".spotlight-v100", ".fseventsd",
                                 ".temporaryitems", "system volume information"})  # fmt: skip


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


def in_system_folder(relative: Path) -> bool:
    """Whether a file found below a folder, ``relative`` to it, lies in one of the operating system's own folders
    (:data:`SYSTEM_FOLDER_NAMES`; a folder given itself is read whatever its name)."""
    return any(_system_folder(part) for part in relative.parts[:-1])


def _system_folder(name: str) -> bool:
    lower = name.lower()
    return lower in SYSTEM_FOLDER_NAMES or lower.startswith(".trash-")


def dicomdir_files(path: Path) -> list[Path]:
    """The files a DICOMDIR's records reference, in its order; the DICOMDIR itself where it cannot be read as one or
    references none, so that its row says why. A name the DICOMDIR spells in capitals is found in any case: Linux
    mounts a CD's ISO 9660 file system with lowercase names (``pt000000/st000000/...`` for ``PT000000\\ST000000``),
    where pydicom's ``FileSet`` finds none of them."""
    import pydicom

    try:
        records = pydicom.dcmread(path, force=True).DirectoryRecordSequence
    except Exception:  # pydicom raises several types on a file that is no DICOMDIR
        return [path]
    folders: dict[Path, dict[str, Path]] = {}  # each folder's entries by lowercase name, listed once
    listed = []
    for record in records:
        parts = record.get("ReferencedFileID")
        if parts:
            listed.append(_in_any_case(path.parent, [parts] if isinstance(parts, str) else list(parts), folders))
    return listed or [path]


def _in_any_case(root: Path, parts: list[str], folders: dict[Path, dict[str, Path]]) -> Path:
    """``root / parts``, each part matched in any case where its exact spelling is absent (missing: as spelt, so
    that its row says the file was not found)."""
    current = root
    for part in parts:
        exact = current / part
        if not exact.exists() and current.is_dir():
            if current not in folders:
                folders[current] = {entry.name.lower(): entry for entry in current.iterdir()}
            exact = folders[current].get(part.lower(), exact)
        current = exact
    return current
