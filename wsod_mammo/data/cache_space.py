"""Whether a cache fits on its disk, said before ``wsod prepare`` converts anything: a full disk stopped it hours in,
each later image failing with ENOSPC, and a VinDr cache is large (``--selection all``: ~15,000 images, about 170 GB
as npy at 2944 x 1920, where the study's ``paper`` selection needs ~2,400)."""

from __future__ import annotations

import shutil
from pathlib import Path

#: bytes of an ``.npy`` file's header (numpy writes a multiple of 64: 128 for a 2-D uint16 array)
NPY_HEADER = 128


def cache_bytes(images: int, size: tuple[int, int], cache_format: str) -> int:
    """Bytes ``images`` cached images take at most: uint16 pixels as ``npy`` (exact), or no more than that as a
    lossless ``png`` (its deflate never grows a mammogram; typically about half)."""
    return images * (size[0] * size[1] * 2 + (NPY_HEADER if cache_format == "npy" else 0))


def free_bytes(folder: str | Path) -> int:
    """Free bytes on the disk that holds ``folder``, or the nearest folder above it that exists."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_cache_space(cache_dir: str | Path, images: int, size: tuple[int, int], cache_format: str) -> str:
    """ValueError naming ``cache_dir`` where ``images`` more ``npy`` images cannot fit on its disk; otherwise a line
    saying what the conversion needs (for ``png``, where it may not fit, that too)."""
    need, free = cache_bytes(images, size, cache_format), free_bytes(cache_dir)
    gb = 1e9
    line = (f"{images} images to convert into {cache_dir}: {need / gb:.1f} GB as {cache_format}"
            f"{' at most' if cache_format == 'png' else ''}, {free / gb:.1f} GB free")  # fmt: skip
    if need > free and cache_format == "npy":
        raise ValueError(
            f"cache_dir: {line}: the cache does not fit; free some space, cache fewer images (--selection paper, the "
            "study's), or use --cache_format png (lossless, about half the size)"
        )
    if need > free:
        return f"{line} (it may not fit: a png's size depends on the image)"
    return line
