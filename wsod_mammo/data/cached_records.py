"""Which of a DataModule's selected images can be read, and from where: a ``wsod prepare`` cache is used only when
its options are the data's and its images' sizes the CSV's; images it lacks are decoded from their DICOMs, and said;
images missing from disk, or that prepare could not read, are refused or left out as ``missing`` says."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from wsod_mammo.data.errors import file_not_found
from wsod_mammo.data.prepare import cache_option_differences, load_manifest
from wsod_mammo.data.vindr import ImageRecord, find_image
from wsod_mammo.folder_locks import holder

log = logging.getLogger(__name__)

#: bytes an ``.npy`` file holds before its header's text: its magic string, version and header length
NPY_MAGIC = 10

Cache = tuple[Path, dict[str, Any]]  # the cache's folder and its manifest


def open_cache(cache_dir: str | None, input_size: tuple[int, int], crop_breast: bool, resize: str) -> Cache | None:
    """The cache at ``cache_dir`` (None where there is none, or no manifest); ValueError naming the options where it
    was prepared with other ones than the data's."""
    if cache_dir is None or (manifest := load_manifest(cache_dir)) is None:
        return None
    options = {"input_size": list(input_size), "crop_breast": crop_breast, "resize": resize}
    if differing := cache_option_differences(cache_dir, options, manifest):
        was, now = differing
        raise ValueError(
            f"cache_dir: {cache_dir} holds images prepared with {was}, the data asks for {now}; run "
            "`wsod prepare` with the data's options into another cache_dir, or set the data's to the cache's"
        )
    return Path(cache_dir), manifest


def check_cache_sizes(records: list[ImageRecord], manifest: dict[str, Any], cache_dir: Any, root: Any) -> None:
    """A cache prepared from another copy of the data (other sizes, boxes, pixels under the same image ids) was used
    as it was: its pixels, mapped with the boxes of this one. Each cached image's original size must be the CSV's
    (where the CSV or its image file gave one: a cache may outlive the image files)."""
    cached = manifest["images"]
    wrong = [
        (r, g) for r in records if r.image_id in cached and r.size is not None
        and ((g := cached[r.image_id]["geometry"])["orig_height"], g["orig_width"]) != r.size
    ]  # fmt: skip
    if wrong:
        r, g = wrong[0]
        raise ValueError(
            f"cache_dir: {cache_dir} was prepared from other images than {root}'s: {r.image_id} is "
            f"{g['orig_height']}x{g['orig_width']} there, {r.height}x{r.width} in the CSV ({len(wrong)} image(s) "
            "differ); prepare this data into another cache_dir"
        )


def check_cache_lateralities(records: list[ImageRecord], manifest: dict[str, Any], cache_dir: Any, root: Any) -> None:
    """A cached image keeps the orientation its CSV laterality gave when it was prepared (an ``R`` image flipped): a
    laterality corrected in the CSV since (after the laterality warnings of an external set) was read as the cache's,
    the model seeing the breast mirrored as before, unsaid. Each cached image's flip must be the CSV's laterality's."""
    cached = manifest["images"]
    wrong = [r for r in records if r.image_id in cached
             and bool(cached[r.image_id]["geometry"]["flip"]) != (r.laterality == "R")]  # fmt: skip
    if wrong:
        r = wrong[0]
        was = "R" if cached[r.image_id]["geometry"]["flip"] else "L"
        raise ValueError(
            f"cache_dir: {cache_dir} was prepared with other lateralities than {root}'s CSV gives: {r.image_id} was "
            f"cached as {was}, the CSV says {r.laterality} ({len(wrong)} image(s) differ); prepare this data into "
            "another cache_dir"
        )


def warn_if_partly_cached(splits: dict[str, list[ImageRecord]], cache: Cache, selected_by: str = "") -> None:
    """Images of this data the cache does not hold are decoded from their DICOMs, many times slower, unsaid: a
    cache prepared for another selection or classes, or one a ``wsod prepare`` is still writing. ``selected_by``:
    the ``wsod prepare`` options that select this data's images (its classes, selection, seed and
    normal_max_birads); the warning said "with this data's classes and selection", and a prepare of those alone,
    with its own seed and every No Finding image a negative, added none of a fit's other negatives."""
    ids = {r.image_id for records in splits.values() for r in records}
    uncached = ids - set(cache[1]["images"]) - set(cache[1]["errors"])
    if not uncached:
        return
    writing = holder(cache[0])
    log.warning(
        "cache_dir %s holds %d of this data's %d images; the other %d are decoded from their DICOMs, many times "
        "slower (%s)", cache[0], len(ids) - len(uncached), len(ids), len(uncached),
        f"{writing} is writing the cache now" if writing else "`wsod prepare` with this data's classes and "
        f"selection adds them{f': {selected_by}' if selected_by else ''}",
    )  # fmt: skip


def cached_file_problem(cache_dir: Path, entry: dict[str, Any]) -> str | None:
    """Why a cached image's file cannot be read, found from one stat (None: it may be): absent, or an ``.npy``
    shorter than its pixels, as a power cut soon after ``wsod prepare`` leaves it (renames are not fsynced): the fit
    stopped on it when its batch came, an epoch in, saying to leave it out, not that a rerun of prepare mends it."""
    file = cache_dir / entry["file"]
    try:
        size = file.stat().st_size
    except OSError:  # as is_file() took it
        return f"{file}: file not found (the cache's manifest lists it)"
    pixels = 2 * entry["geometry"]["out_height"] * entry["geometry"]["out_width"]
    if file.suffix == ".npy" and size < NPY_MAGIC + pixels:
        return (
            f"{file}: cut short ({size} bytes, its pixels alone take {pixels}); `wsod prepare` into {cache_dir} "
            "again converts it again"
        )
    return None


def drop_missing(records: list[ImageRecord], cache: Cache | None, missing: str, say: bool = True) -> list[ImageRecord]:
    """Apply ``missing`` to images absent from disk (the cache's file, or else the image file, ``find_image``'s
    names) or that ``wsod prepare`` could not read; an image found under another name is read from it. ``say``:
    log the images ``skip`` leaves out (DDP: the first process only, not once per process)."""
    failed = cache[1]["errors"] if cache else {}
    cached = cache[1]["images"] if cache else {}
    bad = {}
    for r in records:
        if r.image_id in failed:
            bad[r.image_id] = failed[r.image_id]
        elif cache and r.image_id in cached and (problem := cached_file_problem(cache[0], cached[r.image_id])):
            bad[r.image_id] = problem
        elif r.image_id not in cached:
            if (found := find_image(r.path)) is None:
                bad[r.image_id] = file_not_found(r.path)
            else:
                r.path = found  # the splits hold these same records
    if not bad:
        return records
    listing = "; ".join(sorted(bad.values())[:10]) + (" ..." if len(bad) > 10 else "")
    if missing == "error":
        raise FileNotFoundError(
            f"{len(bad)} listed image(s) cannot be read (set missing: skip to leave them out): {listing}"
        )
    if say:
        log.warning("missing=skip: leaving out %d unreadable image(s): %s", len(bad), listing)
    return [r for r in records if r.image_id not in bad]
