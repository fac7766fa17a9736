"""`wsod prepare`: decode the selected DICOMs once into a cache of 16-bit images plus a manifest.

Each image is flipped, breast-cropped and brought to ``input_size`` exactly as the DataModule would do on
the fly, quantized to 16 bits (lossless for the 12-bit sources, to within 1/65535 of [0, 1]) and written as
PNG (``cache_format: png``, compact) or as raw ``.npy`` (``npy``, read by memory mapping, the fastest).

Layout: ``<cache_dir>/images/<image_id>.{png,npy}``, for an image with DICOM padding inside its crop a
``<image_id>.mask.png`` (8-bit, 255 on padding pixels; its entry's ``padding`` names it, absent for images without
padding and in caches written before masks existed), a ``<image_id>.json`` sidecar per image (geometry, source path
and the source file's stamp) and ``<cache_dir>/manifest.json``. Resumable: every file goes to a temporary name and
is renamed into place, the sidecar last, so an image counts as done only when all of it is there; a rerun skips
done images (and converts again one whose sidecar is damaged, whose image or mask file is cut short, or whose
source file was replaced). The manifest is written first with the options (``input_size``, ``crop_breast``,
``resize``, ``cache_format``) and no image, then whole at the end; a rerun with other options is refused, since it
would keep the earlier images. A bad file does not stop the others; it is listed at the end with its path and
reason. An image cached with doubts (its DICOM's tag or the breast's edge disagrees with the CSV's laterality, raw
or non-mammography data) has them under its entry's ``warnings``, and the end of the run names it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from tqdm import tqdm

from wsod_mammo.atomic_files import write_atomic
from wsod_mammo.data.cache_space import check_cache_space
from wsod_mammo.data.lifetime import exit_with
from wsod_mammo.data.vindr import ImageRecord, Selection, find_image, is_existing_file, load_records
from wsod_mammo.data.vindr_selection import select_records
from wsod_mammo.folder_locks import hold

MANIFEST = "manifest.json"
#: 2: the breast crop found on a copy scaled by bright tissue (05956ba, 2026-12-03); a version-1 cache holds crops
#: of the earlier search, which differ on some images (a label burned in at full scale) from what decoding gives now.
#: 3: bright strips along the edges (a film's border) left out of the breast crop and the inferred laterality
#: (2026-12-07); a version-2 cache holds crops that differ on images with such strips.
MANIFEST_VERSION = 3
#: which fix changed the crops since a cache of each older version was written
_CROP_FIXES = {
    1: "the breast crop's fix of 2026-12-03",
    2: "the breast crop's fix for bright edge strips of 2026-12-07",
}
CacheFormat = Literal["png", "npy"]
REPORTED_WARNINGS = 20  # images whose warnings the end of a run prints; the manifest holds them all


def encode_image(image: np.ndarray, cache_format: CacheFormat) -> bytes:
    """``(H, W)`` float image in [0, 1] -> bytes of a 16-bit PNG or ``.npy`` file."""
    from wsod_mammo.data.transforms import to_uint16  # with torch and albumentations: only when encoding

    quantized = to_uint16(image)
    if cache_format == "png":
        # Huffman-only deflate: as small as level 1 on mammograms and about 30% faster to decode.
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
        ok, buffer = cv2.imencode(".png", quantized, params)
        if not ok:
            raise RuntimeError("cv2.imencode failed to write a 16-bit PNG")
        return buffer.tobytes()
    header = np.lib.format.header_data_from_array_1_0(quantized)
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + quantized.tobytes()


def encode_padding(padding: np.ndarray) -> bytes:
    """``(H, W)`` bool padding mask -> bytes of an 8-bit PNG (255 on padding)."""
    ok, buffer = cv2.imencode(".png", np.multiply(padding, np.uint8(255), dtype=np.uint8))
    if not ok:
        raise RuntimeError("cv2.imencode failed to write an 8-bit PNG")
    return buffer.tobytes()


def read_padding(path: str | Path) -> np.ndarray:
    """A cached padding mask (``encode_padding``) -> ``(H, W)`` bool, True on padding."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D 8-bit padding mask, found {None if mask is None else mask.dtype}")
    return mask >= 128


#: how a cut or damaged cached image is mended: prepare's rerun checks every image's file and converts it again
_CONVERTED_AGAIN = "`wsod prepare` into its cache_dir again converts it again"


def _listed_but_missing(path: Path) -> ValueError:
    return ValueError(f"{path}: file not found (the cache's manifest lists it)")


def read_cached(path: str | Path, raw: bool = False) -> np.ndarray:
    """A cached image -> ``(H, W)`` float32 in [0, 1], or with ``raw`` its uint16 values (0..65535).

    ``.npy`` files are memory-mapped, so ``raw`` reads cost no copy until the pixels are used.
    """
    path = Path(path)
    if path.suffix == ".npy":
        try:
            image = np.load(path, mmap_mode="r")
        except FileNotFoundError:  # asked on failure only: no stat per read
            raise _listed_but_missing(path) from None
        except (EOFError, ValueError) as error:  # an empty or cut header (np.load says EOFError, naming no file)
            raise ValueError(
                f"{path}: not a readable cached image ({type(error).__name__}: {error}); {_CONVERTED_AGAIN}"
            ) from None
    else:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None and not path.is_file():  # cv2 says None for a missing file too
            raise _listed_but_missing(path)
        if image is None:  # said "expected a 2-D 16-bit cached image, found None" for a PNG a power cut left short
            raise ValueError(f"{path}: not a readable cached image (a PNG cut short or damaged); {_CONVERTED_AGAIN}")
    if image is None or image.dtype != np.uint16 or image.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D 16-bit cached image, found {None if image is None else image.dtype}")
    if raw:
        return image
    return np.multiply(image, np.float32(1.0 / 65535.0), dtype=np.float32)  # one pass, no float64


#: ``(image_id, source, laterality, input_size, crop_breast, cache_dir, cache_format, csv_size, resize)`` of an
#: image to convert (``_plan`` has found it not cached, cached cut short or damaged, or from a replaced source)
Job = tuple[str, str, str, tuple[int, int], bool, str, CacheFormat, tuple[int, int] | None, str]


def _done_entry(sidecar: Path, image_id: str, cache_format: str) -> dict[str, Any] | None:
    """A converted image's sidecar entry, or None when the sidecar, its image or its mask is damaged (empty or cut
    after a power cut: renames are not fsynced; edited by hand) and the image is converted again. A sidecar that
    parsed as any JSON was taken, and the DataModule later failed on it with a bare KeyError, or prepare itself with
    an AttributeError."""
    try:
        entry = json.loads(sidecar.read_text(encoding="utf-8"))
        geometry = entry["geometry"]
        sizes = [geometry[k] for k in ("orig_height", "orig_width", "out_height", "out_width")] + list(geometry["crop"])
    except (ValueError, OSError, KeyError, TypeError):
        return None
    if len(sizes) != 8 or not all(isinstance(v, int) for v in sizes) or not isinstance(geometry.get("flip"), bool):
        return None
    padding = entry.get("padding", f"images/{image_id}.mask.png")
    if entry.get("file") != f"images/{image_id}.{cache_format}" or padding != f"images/{image_id}.mask.png":
        return None
    shape = (geometry["out_height"], geometry["out_width"])
    files = [(entry["file"], 16)] + [(padding, 8)] * ("padding" in entry)  # the mask, where the image has one
    if not all(_whole(sidecar.parent.parent / name, shape, bits) for name, bits in files):
        return None
    return entry


#: a PNG's last chunk, IEND (no data, its CRC): a PNG cut short lacks it
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _whole(path: Path, shape: tuple[int, int], bits: int) -> bool:
    """Whether a cached image (``bits`` 16) or padding mask (8) of ``shape`` is all there, read from its header and
    end, not its pixels. Renames are not fsynced: after a power cut a file can be empty or cut under its whole
    sidecar, and a rerun took the image as done ("0 failed") until the fit stopped on it, hours in."""
    try:
        if path.suffix == ".npy":
            image = np.load(path, mmap_mode="r")  # its header; the mapping fails on a file shorter than it says
            return bool(image.shape == shape and image.dtype == np.uint16)
        with path.open("rb") as file:
            head = file.read(25)  # the signature, then IHDR: width, height, bit depth
            file.seek(-len(_PNG_END), os.SEEK_END)
            end = file.read()
    except (OSError, ValueError, EOFError):
        return False
    size = (int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big"))
    return len(head) == 25 and head[12:16] == b"IHDR" and size == shape and head[24] == bits and end == _PNG_END


#: bytes of each end of a source file that its stamp's digest covers (the header; the pixel data's end)
STAMP_END_BYTES = 65536


def source_stamp(source: str) -> dict[str, Any] | None:
    """``{"size", "mtime_ns", "ends"}`` of a source file (``ends``: a digest of its first and last
    ``STAMP_END_BYTES``), kept in its cache entry; None where it cannot be read."""
    try:
        with open(source, "rb") as file:
            stat = os.fstat(file.fileno())
            digest = hashlib.sha256(file.read(STAMP_END_BYTES))
            if stat.st_size > STAMP_END_BYTES:
                file.seek(max(STAMP_END_BYTES, stat.st_size - STAMP_END_BYTES))
                digest.update(file.read())
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ends": digest.hexdigest()[:32]}


def _source_replaced(entry: dict[str, Any], source: str) -> bool:
    """Whether a cached image's source file was replaced since it was cached (a mended or re-exported DICOM of the
    same name): a rerun kept the old pixels without a word. Another size says so at once; the same size and time,
    not; the same size at another time (a copy without its times, ``cp -r``) reads the file's ends again, so a copied
    dataset is not decoded again. Entries cached before stamps were kept, and sources no longer there, count as
    unchanged (a cache may outlive its images)."""
    cached = entry.get("source_file")
    if not isinstance(cached, dict):
        return False
    try:
        stat = os.stat(source)
    except OSError:
        return False
    if stat.st_size != cached.get("size"):
        return True
    if stat.st_mtime_ns == cached.get("mtime_ns"):
        return False
    now = source_stamp(source)
    return now is not None and now["ends"] != cached.get("ends")


def _convert(job: Job) -> tuple[str, dict[str, Any] | None, str]:
    """Convert one image (in a worker); returns ``(image_id, entry or None, error)``."""
    image_id, source, laterality, input_size, crop_breast, cache_dir, cache_format, csv_size, resize = job
    folder = Path(cache_dir) / "images"
    sidecar = folder / f"{image_id}.json"
    from wsod_mammo.data.dicom import DicomError, describe_failure  # pydicom, torch: only when converting
    from wsod_mammo.data.images import load_input_image

    stamp = source_stamp(source)  # before decoding: a file replaced meanwhile differs from it at the next run
    warnings: list[str] = []
    try:
        image, geometry, _, padding = load_input_image(
            source, laterality, input_size, crop_breast, csv_size, resize, warnings=warnings
        )
    except (DicomError, OSError, ValueError) as err:
        return image_id, None, describe_failure(source, err)
    name = f"{image_id}.{cache_format}"
    files = {folder / name: encode_image(image, cache_format)}
    entry = {"file": f"images/{name}", "source": source, "geometry": geometry.to_dict()}
    if stamp is not None:
        entry["source_file"] = stamp
    if warnings:  # cached all the same: the report and the manifest name them
        entry["warnings"] = warnings
    if padding is not None:  # before the sidecar, like the image: the sidecar marks the image done
        files[folder / f"{image_id}.mask.png"] = encode_padding(padding)
        entry["padding"] = f"images/{image_id}.mask.png"
    files[sidecar] = json.dumps(entry, sort_keys=True).encode()
    written = []
    try:
        for path, data in files.items():
            write_atomic(path, data)
            written.append(path)
    except OSError as err:  # a name too long is this image's alone: the run goes on, the image failed
        if err.errno != errno.ENAMETOOLONG:
            raise
        for path in written:  # no part of it left behind (its image without its mask)
            path.unlink(missing_ok=True)
        return image_id, None, _name_too_long(source, image_id, err)
    return image_id, entry, ""


def _name_too_long(source: str, image_id: str, error: OSError) -> str:
    """Why an image whose cache file name the file system refuses is not cached. An image_id of 247 to 250 bytes
    with padding (``<id>.mask.png``), or of 251 to 255 (``<id>.png``), stopped the whole prepare on that one name,
    no manifest written, and every rerun stopped on it again; fit and test without a cache read such an image."""
    return (
        f"{source}: not cached: its image_id ({len(os.fsencode(image_id))} bytes) makes a cache file name too long "
        f"for the file system ({error.strerror}); a shorter image_id (its file and CSV rows) caches it"
    )


def prepare(
    data_root: str,
    cache_dir: str,
    classes: list[str] | None = None,
    selection: Selection = "all",
    input_size: tuple[int, int] = (2944, 1920),
    crop_breast: bool = True,
    cache_format: CacheFormat = "png",
    workers: int = 4,
    seed: int = 42,
    resize: Literal["stretch", "fit", "native"] = "stretch",
    normal_max_birads: int = 5,
) -> dict[str, Any]:
    """Convert the selected images of ``data_root`` into ``cache_dir``; returns the manifest.

    Args:
        data_root: VinDr-Mammo folder (the CSVs and ``images/``).
        cache_dir: output folder; an earlier, interrupted run there is resumed.
        classes: finding classes that make an image positive (default ``["Mass"]``).
        selection: which images to convert; ``all`` (default) covers every selection the DataModule offers.
        input_size: ``(H, W)`` of the cached images, the model's input size.
        crop_breast: crop to the breast (largest bright component) before resizing.
        cache_format: ``png`` (16-bit, lossless, compact) or ``npy`` (raw uint16, memory-mapped reads).
        workers: worker processes (0: convert in this process).
        seed: seed of the negative sampling of the ``balanced``/``paper`` selections.
        resize: ``stretch`` the crop to ``input_size`` (the study), ``fit`` it (aspect kept, padded), or keep it
            ``native`` (scale 1, cut to a window of ``input_size`` or padded).
        normal_max_birads: the negatives' largest breast BI-RADS, as the DataModule's: the ``balanced``/``paper``
            selections draw their negatives among those (prepare drew them among every No Finding image, and a
            fit with 2 decoded the negatives it lacked from their DICOMs, every epoch, whatever prepare was rerun).
    """
    if cache_format not in ("png", "npy"):
        raise ValueError(f"cache_format: expected 'png' or 'npy', got {cache_format!r}")
    # `~` as the shell reads it (`--cache_dir=~/cache` leaves it to the program): it made a folder `~` here
    data_root, cache_dir = os.path.expanduser(data_root), os.path.expanduser(cache_dir)
    from wsod_mammo.data.geometry import RESIZE_MODES  # torch: not at import (`wsod prepare --help` stays light)

    if resize not in RESIZE_MODES:
        raise ValueError(f"resize: expected one of {RESIZE_MODES}, got {resize!r}")
    if len(input_size) != 2 or min(input_size) < 1 or any(int(v) != v for v in input_size):
        raise ValueError(f"input_size: expected [height, width], two positive integers, got {list(input_size)}")
    if workers < 0:  # it converted every image in this process, as 0 does, saying nothing
        raise ValueError(f"workers: expected 0 (convert in this process) or more worker processes, got {workers}")
    size = (int(input_size[0]), int(input_size[1]))
    from wsod_mammo.models.resnet import GLOBAL_STRIDE  # torch, as above

    if size[0] % GLOBAL_STRIDE or size[1] % GLOBAL_STRIDE:  # said before hours of conversion, not after them
        print(f"prepare: input_size {list(size)} is not a multiple of {GLOBAL_STRIDE} per side: GMIC cannot take it, "
              "and wsod fit, test and predict refuse it as data.input_size, so no run can read this cache",
              file=sys.stderr)  # fmt: skip
    options = {"input_size": list(size), "crop_breast": crop_breast, "resize": resize, "cache_format": cache_format}
    classes = classes or ["Mass"]
    records = select_records(  # before any folder
        load_records(data_root, classes), classes, selection, seed, normal_max_birads
    )
    then = "run this one when it has finished (done images are skipped)"
    try:  # held to the end: a second prepare here removed this one's files in flight and mixed two frames
        lock = hold(cache_dir, "wsod prepare", "cache_dir", then)
    except OSError as err:  # another user's cache, a read-only disk: the folder and why, not "<cache>/.wsod.lock"
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        plan = _planned(records, cache_dir, options, size)
        if plan.complete:  # nothing to write: a lab's shared cache, read-only to its users, is used as it is
            _report(plan.manifest, cache_dir)
            return plan.manifest
        work = f"{len(plan.jobs)} images to convert" if plan.jobs else "nothing to convert, but its manifest to update"
        raise ValueError(
            f"cache_dir: {cache_dir} cannot be written ({err.strerror}): {work}; give a --cache_dir you can write"
        ) from None
    with lock:  # looked at under the lock: a prepare that finished a moment ago has its images seen, not lost
        plan = _planned(records, cache_dir, options, size)
        if plan.complete:  # nothing to write: the manifest stays as it is
            _report(plan.manifest, cache_dir)
            return plan.manifest
        return _prepare_locked(plan, cache_dir, workers, options)


def _planned(records: list[ImageRecord], cache_dir: str, options: dict[str, Any], size: tuple[int, int]) -> _Plan:
    """``_plan``, and the images it will convert said against the disk's free space, before any is."""
    plan = _plan(records, cache_dir, options, size)
    print(f"prepare: {check_cache_space(cache_dir, len(plan.jobs), size, options['cache_format'])}", file=sys.stderr)
    return plan


@dataclass
class _Plan:
    """What a prepare finds in its cache before writing anything: the manifest it would write for the images already
    cached whole (the cache's own when ``complete``), and the jobs of the images to convert."""

    manifest: dict[str, Any]
    jobs: list[Job]
    complete: bool  # nothing to convert and the manifest as it would be written: nothing to write, no lock to take
    new: bool  # the cache has no manifest yet: the options are written first, before any image


def _plan(records: list[ImageRecord], cache_dir: str, options: dict[str, Any], size: tuple[int, int]) -> _Plan:
    """Which selected images are cached whole from their current source, and which to convert (counted before the
    run and against the disk: those converted again were not, "0 to convert" of a run that converted 3); a replaced
    source is said here, before the progress bar (a worker's line broke it). Reads, writes nothing."""
    crop_breast, resize, cache_format = options["crop_breast"], options["resize"], options["cache_format"]
    try:
        earlier = load_manifest(cache_dir)
    except DamagedManifest as damaged:  # every converted image has its sidecar: none is decoded again
        print(f"prepare: {damaged.path}: {damaged.reason}; rebuilding it from the images' sidecars", file=sys.stderr)
        earlier = None
        # what it listed: every image with a sidecar, also those this run does not select (another selection's)
        listed = {path.stem for path in (Path(cache_dir) / "images").glob("*.json")}
    else:
        listed = set(earlier.get("images", {})) if earlier is not None else set()
    check_cache_options(cache_dir, options, earlier)
    unique = {r.image_id: r for r in records}
    folder = Path(cache_dir) / "images"
    done, jobs, replaced = {}, [], []
    for image_id, record in unique.items():
        source = str(find_image(record.path) or record.path)
        sidecar = folder / f"{image_id}.json"  # looked for once a run (~15,000 stats on VinDr, a network disk)
        # an image_id of 251 to 255 bytes has no sidecar: its name is too long (the stat's error stopped a rerun)
        entry = _done_entry(sidecar, image_id, cache_format) if is_existing_file(sidecar) else None
        if entry is not None and _source_replaced(entry, source):
            replaced.append(f"prepare: {source} changed since {image_id} was cached: converting it again")
            entry = None
        if entry is not None:
            done[image_id] = entry
        else:
            jobs.append((image_id, source, record.laterality, size, crop_breast, str(cache_dir), cache_format,
                         record.size, resize))  # fmt: skip
    for line in replaced[:REPORTED_WARNINGS]:
        print(line, file=sys.stderr)
    if len(replaced) > REPORTED_WARNINGS:
        print(f"prepare: ... and {len(replaced) - REPORTED_WARNINGS} more sources changed since they were cached: "
              "converting them again", file=sys.stderr)  # fmt: skip
    images = _kept_from_earlier(listed, folder, cache_format, set(unique)) | done
    manifest = {"version": MANIFEST_VERSION, **options, "images": dict(sorted(images.items())), "errors": {}}
    return _Plan(manifest, jobs, complete=not jobs and manifest == earlier, new=earlier is None)


@contextmanager
def _worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """``workers`` processes converting images, each with one OpenCV thread, as DataLoader workers have
    (``dataset.seed_worker``): they inherited this process's pool size (its CPU count by default), so 8 workers on
    16 cores ran 16 threads each. Set here before they are forked (setting it in a forked child whose parent had started
    OpenCV's pool can deadlock), and back after; workers started otherwise (spawn, forkserver) set it themselves."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(os.getpid(),)) as pool:
            yield pool
    finally:
        cv2.setNumThreads(threads)


def _start_worker(owner_pid: int) -> None:
    """A conversion worker: it ends with ``owner_pid`` (``exit_with``) and uses one OpenCV thread."""
    exit_with(owner_pid)
    if cv2.getNumThreads() != 1:  # a worker not forked from prepare's process (see _worker_pool)
        cv2.setNumThreads(1)


def _prepare_locked(plan: _Plan, cache_dir: str | Path, workers: int, options: dict[str, Any]) -> dict[str, Any]:
    """``prepare``'s conversion of ``plan``'s jobs, its options checked and the cache folder held."""
    folder = Path(cache_dir) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp"):  # left by an interrupted run; never read
        stale.unlink()
    if plan.new:  # the options, before any image: a rerun after an interruption checks them
        started = {"version": MANIFEST_VERSION, **options, "images": {}, "errors": {}}
        write_atomic(Path(cache_dir) / MANIFEST, json.dumps(started, indent=1, sort_keys=True).encode())
    images, errors = dict(plan.manifest["images"]), {}
    with _worker_pool(workers) if workers > 0 and plan.jobs else nullcontext() as pool:
        results = pool.map(_convert, plan.jobs, chunksize=1) if pool is not None else map(_convert, plan.jobs)
        for image_id, entry, error in tqdm(results, total=len(plan.jobs), desc="prepare", unit="img"):
            images[image_id], errors[image_id] = entry, error
    manifest = {
        "version": MANIFEST_VERSION,
        **options,
        "images": {k: v for k, v in sorted(images.items()) if v is not None},
        "errors": {k: v for k, v in sorted(errors.items()) if v},
    }
    write_atomic(Path(cache_dir) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    _report(manifest, cache_dir)
    return manifest


def _kept_from_earlier(
    listed: set[str], folder: Path, cache_format: str, selected: set[str]
) -> dict[str, dict[str, Any]]:
    """The images an earlier run cached that this run did not select (other classes or selection), whose files are
    still there: the manifest lists them still. It listed only this run's, so a prepare for calcifications dropped
    the masses from the manifest of a cache that holds them, and a fit on masses decoded them all again.
    ``listed``: the images the cache's manifest lists (those with a sidecar, where it was damaged)."""
    kept = {}
    for image_id in sorted(listed - selected):  # the manifest's order: the same every run
        entry = _done_entry(folder / f"{image_id}.json", image_id, cache_format)  # its image file there and whole
        if entry is not None:
            kept[image_id] = entry
    return kept


def check_cache_options(cache_dir: str | Path, options: dict[str, Any], manifest: dict[str, Any] | None) -> None:
    """A cache folder holds images of one setting: a rerun with another ``input_size``, ``crop_breast``, ``resize``
    or ``cache_format`` would keep the earlier images (done images are skipped) under a manifest naming the new
    setting, and the DataModule would be fed images of the old one. ValueError naming the cache, the options that
    differ and both values. ``manifest``: the cache's (``load_manifest``), None when it has none."""
    if differing := cache_option_differences(cache_dir, options, manifest):
        was, now = differing
        raise ValueError(
            f"cache_dir: {cache_dir} holds images prepared with {was}, this run asks for {now}; give another "
            "--cache_dir (or delete that one to rebuild it)"
        )


def cache_option_differences(
    cache_dir: str | Path, options: dict[str, Any], manifest: dict[str, Any] | None
) -> tuple[str, str] | None:
    """``("input_size=[..], ...", "input_size=[..], ...")``: the cache's setting and ``options`` where they differ
    (None where they agree, or the cache has no setting yet). The cache's is its manifest's (written when a run
    starts), else (a damaged manifest, a cache interrupted before manifests were written first) each image's
    sidecar's (size, resize, format): the first sidecar's alone let a cache of another size be reused, its images
    kept under a manifest naming this run's, where that sidecar was damaged or another JSON file sorted first.
    Shared by ``wsod prepare`` (rerun into a cache) and the DataModule (reading one)."""
    if manifest is not None:
        settings: Iterable[dict[str, Any]] = [
            {key: manifest.get(key, "stretch" if key == "resize" else None) for key in options}
        ]
    else:
        settings = _sidecar_settings(Path(cache_dir) / "images")
    for earlier in settings:
        differing = [key for key in options if earlier.get(key) is not None and earlier[key] != options[key]]
        if differing:
            said = [", ".join(f"{key}={setting[key]}" for key in differing) for setting in (earlier, options)]
            return said[0], said[1]
    return None


def _sidecar_settings(folder: Path) -> Iterator[dict[str, Any]]:
    """The setting (``input_size``, ``resize``, ``cache_format``) each sidecar in ``folder`` was written with, in
    name order; sidecars that give none (damaged, another JSON file) are passed over."""
    for sidecar in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(sidecar.read_text(encoding="utf-8"))
            geometry = entry["geometry"]
            setting = {
                "input_size": [geometry["out_height"], geometry["out_width"]],
                "resize": geometry.get("resize", "stretch"),
                "cache_format": Path(entry["file"]).suffix[1:],
            }
        except (ValueError, OSError, KeyError, TypeError, AttributeError):
            continue
        yield setting


def _report(manifest: dict[str, Any], cache_dir: str | Path) -> None:
    from wsod_mammo.data.images import current_doubt  # an earlier run's entries may word a doubt as it was

    done, failed = len(manifest["images"]), manifest["errors"]
    doubtful = {k: v for k, v in manifest["images"].items() if v.get("warnings")}
    print(f"prepare: {done} images cached in {cache_dir}, {len(failed)} failed", file=sys.stderr)
    if doubtful:
        print(f"prepare: {len(doubtful)} cached images have warnings (\"warnings\" in {Path(cache_dir) / MANIFEST}):",
              file=sys.stderr)  # fmt: skip
        for image_id, entry in list(doubtful.items())[:REPORTED_WARNINGS]:
            for warning in entry["warnings"]:
                print(f"  {image_id} ({entry['source']}): {current_doubt(warning)}", file=sys.stderr)
        if len(doubtful) > REPORTED_WARNINGS:
            print(f"  ... and {len(doubtful) - REPORTED_WARNINGS} more images", file=sys.stderr)
    for reason in failed.values():
        print(f"  failed: {reason}", file=sys.stderr)


class DamagedManifest(ValueError):
    """A cache's manifest that cannot be read: empty or cut after a power cut (renames are not fsynced), or edited
    by hand. The images' sidecars hold all it listed, and ``wsod prepare`` rebuilds it from them: its message said
    "prepare the cache again", and prepare itself refused the cache with it, leaving only a rebuild from scratch."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(
            f"{path}: {reason}; `wsod prepare` into {path.parent} again rebuilds it from the images' sidecars "
            "(the converted images are kept)"
        )


def load_manifest(cache_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a prepared cache, or ``None`` when there is none."""
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # a cache cut short while writing it, or edited by hand
        raise DamagedManifest(path, f"not a readable cache manifest ({error})") from None
    if not isinstance(manifest, dict):
        raise DamagedManifest(path, f"expected a JSON object (a cache manifest), found {type(manifest).__name__}")
    if isinstance(version := manifest.get("version"), int) and version in _CROP_FIXES:  # same layout: crops mixed
        raise ValueError(
            f"{path}: a cache written before {_CROP_FIXES[version]} (manifest version {version}): some of its "
            "crops differ from what the images give now; prepare it again into a new cache_dir (or delete this one)"
        )
    if manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: expected manifest version {MANIFEST_VERSION}, found {manifest.get('version')}")
    return manifest


def main(argv: list[str] | None = None) -> None:
    """``wsod prepare --data_root DIR --cache_dir DIR [--input_size [H,W] --workers N --cache_format png|npy]``."""
    from jsonargparse import CLI

    # allow_abbrev off, as fit: a misspelt option is refused, not taken as the one it begins
    manifest = CLI(prepare, args=argv, as_positional=False, prog="wsod prepare", allow_abbrev=False)
    if not isinstance(manifest, dict):  # --help, --print_config
        return
    failed, cached = len(manifest["errors"]), len(manifest["images"])
    if not cached:  # a cache of nothing is a failure, as predict's is
        raise ValueError(
            f"no image cached ({failed} failed, their reasons above)" if failed else
            "no image cached: the CSVs select none (check --data_root, --classes and --selection)"
        )  # fmt: skip
    if failed:  # exit status 1: `wsod prepare ... && wsod fit ...` went on to a fit that refused the cache
        raise ValueError(
            f"{failed} of {failed + cached} images failed (their reasons above); the other {cached} are cached: "
            "mend or remove the failed files and run prepare again (cached images are skipped), or leave them out "
            "of a fit with the data option missing: skip"
        )


if __name__ == "__main__":  # `python -m wsod_mammo.data.prepare`: `wsod prepare` (it ran nothing and exited 0)
    from wsod_mammo.commands import main as _main

    _main(["prepare", *sys.argv[1:]])
