"""`wsod prepare`: cache equals on-the-fly decoding, resumes after an interruption, reports bad files."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
import pytest
from processes import all_end_within

import wsod_mammo.data.prepare as prep
from wsod_mammo import commands
from wsod_mammo.data.cache_space import check_cache_space, free_bytes
from wsod_mammo.data.cached_records import drop_missing, open_cache
from wsod_mammo.data.dataset import VinDrDataset
from wsod_mammo.data.images import load_input_image
from wsod_mammo.data.lifetime import is_running
from wsod_mammo.data.transforms import AugmentationConfig, BoxTransform
from wsod_mammo.data.vindr import BREAST_CSV, FINDING_CSV, load_records

SIZE = (128, 80)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cache_matches_dicom_decoding(synthetic_root: Path, tmp_path: Path) -> None:
    manifest = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    assert manifest == prep.load_manifest(tmp_path) and not manifest["errors"]
    records = {r.image_id: r for r in load_records(synthetic_root)}
    assert set(manifest["images"]) <= set(records) and len(manifest["images"]) >= 12
    for image_id, entry in list(manifest["images"].items())[:4]:
        cached = prep.read_cached(tmp_path / entry["file"])
        decoded, geometry, _, padding = load_input_image(records[image_id].path, records[image_id].laterality, SIZE)
        assert padding is None and "padding" not in entry  # the synthetic DICOMs have no padding
        assert cached.dtype == np.float32 and cached.shape == SIZE
        assert np.abs(cached - decoded).max() <= 0.5 / 65535 + 1e-7
        assert entry["geometry"] == geometry.to_dict()


def test_npy_format_is_memory_mapped_and_equal(synthetic_root: Path, tmp_path: Path) -> None:
    png = prep.prepare(str(synthetic_root), str(tmp_path / "png"), input_size=SIZE, workers=0)
    npy = prep.prepare(str(synthetic_root), str(tmp_path / "npy"), input_size=SIZE, workers=0, cache_format="npy")
    image_id = next(iter(npy["images"]))
    raw = np.load(tmp_path / "npy" / npy["images"][image_id]["file"], mmap_mode="r")
    assert isinstance(raw, np.memmap) and raw.dtype == np.uint16
    a = prep.read_cached(tmp_path / "png" / png["images"][image_id]["file"])
    b = prep.read_cached(tmp_path / "npy" / npy["images"][image_id]["file"])
    np.testing.assert_array_equal(a, b)


def test_worker_processes_write_what_one_process_writes(synthetic_root: Path, tmp_path: Path) -> None:
    serial = prep.prepare(str(synthetic_root), str(tmp_path / "serial"), input_size=SIZE, workers=0)
    parallel = prep.prepare(str(synthetic_root), str(tmp_path / "parallel"), input_size=SIZE, workers=2)
    assert parallel == serial and serial["images"]
    for entry in serial["images"].values():
        files = (tmp_path / folder / entry["file"] for folder in ("serial", "parallel"))
        assert len({f.read_bytes() for f in files}) == 1, entry["file"]


def test_interrupted_then_resumed_equals_uninterrupted(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prep.prepare(str(synthetic_root), str(tmp_path / "full"), input_size=SIZE, workers=0)
    convert, calls = prep._convert, []

    def interrupted(job):  # dies after 5 images, leaving a half-written temporary file behind
        calls.append(job)
        if len(calls) > 5:
            (tmp_path / "part" / "images" / f".{job[0]}.png.999.tmp").write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        return convert(job)

    monkeypatch.setattr(prep, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(str(synthetic_root), str(tmp_path / "part"), input_size=SIZE, workers=0)
    started = prep.load_manifest(tmp_path / "part")  # the options, written before any image: no image listed yet
    assert started["input_size"] == list(SIZE) and started["images"] == {} and started["cache_format"] == "png"
    assert len(list((tmp_path / "part" / "images").glob("*.json"))) == 5
    monkeypatch.setattr(prep, "_convert", convert)
    prep.prepare(str(synthetic_root), str(tmp_path / "part"), input_size=SIZE, workers=2)
    assert _files(tmp_path / "part") == _files(tmp_path / "full")


@pytest.mark.parametrize("manifest", [True, False])
def test_a_rerun_with_other_options_is_refused_and_loses_nothing(
    synthetic_root: Path, tmp_path: Path, manifest: bool
) -> None:
    """A rerun used to skip the done images (of the earlier size, resize or format) and write a manifest naming the
    new options, so the DataModule fed the model images of the old size without a word. Also for a cache
    interrupted before its manifest (sidecars only, as an older version left it; they do not say crop_breast)."""
    prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    if not manifest:
        (tmp_path / "manifest.json").unlink()
    before = _files(tmp_path)
    for options, named in [
        ({"input_size": (64, 40)}, r"input_size=\[128, 80\], this run asks for input_size=\[64, 40\]"),
        ({"input_size": SIZE, "resize": "fit"}, "resize=stretch, this run asks for resize=fit"),
        ({"input_size": SIZE, "cache_format": "npy"}, "cache_format=png, this run asks for cache_format=npy"),
    ] + [
        ({"input_size": SIZE, "crop_breast": False}, "crop_breast=True, this run asks for crop_breast=False")
    ] * manifest:
        with pytest.raises(ValueError, match=f"cache_dir: {tmp_path} holds images prepared with {named}; give another"):
            prep.prepare(str(synthetic_root), str(tmp_path), workers=0, **options)
    assert _files(tmp_path) == before
    again = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)  # the same options resume
    assert again["images"] and not again["errors"]


@pytest.mark.parametrize("first", ["damaged", "another JSON"])
def test_a_cache_of_another_size_under_a_damaged_manifest_is_refused_whatever_its_first_sidecar(
    synthetic_root: Path, tmp_path: Path, first: str
) -> None:
    """Without a readable manifest the cache's setting was its first sidecar's: where that one was damaged (a power
    cut) or another JSON file sorted first, nothing was checked (or a bare KeyError stopped prepare), and a rerun of
    another input_size kept the images of the old one under a manifest naming the new. Every sidecar that gives a
    setting is compared."""
    prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    (tmp_path / prep.MANIFEST).write_text("")  # a power cut
    sidecar = sorted((tmp_path / "images").glob("*.json"))[0]
    if first == "damaged":
        sidecar.write_text(sidecar.read_text()[:20])
    else:
        (tmp_path / "images" / f"0{sidecar.name}").write_text('{"notes": "a reader\'s own file"}')
    before = _files(tmp_path)
    named = r"input_size=\[128, 80\], this run asks for input_size=\[64, 48\]"
    with pytest.raises(ValueError, match=f"cache_dir: {tmp_path} holds images prepared with {named}; give another"):
        prep.prepare(str(synthetic_root), str(tmp_path), input_size=(64, 48), workers=0)
    assert _files(tmp_path) == before
    again = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)  # the same options resume
    assert again["images"] and not again["errors"] and again == prep.load_manifest(tmp_path)


@pytest.mark.parametrize("damage", ["", '{"a": 1}', "[1]", "geometry-null", "file-elsewhere"])
def test_a_damaged_sidecar_is_converted_again(synthetic_root: Path, tmp_path: Path, damage: str) -> None:
    """An empty sidecar (renames are not fsynced: a power cut) stopped the whole rerun with a bare JSONDecodeError;
    any other JSON was taken as done: `{"a": 1}` failed the DataModule later with a bare KeyError, `[1]` prepare
    itself with an AttributeError, and a `file` of another name would have been read as this image."""
    first = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    image_id, other = sorted(first["images"])[:2]
    sidecar = tmp_path / "images" / f"{image_id}.json"
    entry = json.loads(sidecar.read_text())
    edited = {"geometry-null": {**entry, "geometry": None}, "file-elsewhere": {**entry, "file": f"images/{other}.png"}}
    sidecar.write_text(json.dumps(edited[damage]) if damage in edited else damage)
    assert prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0) == first


@pytest.mark.parametrize("cache_format", ["png", "npy"])
@pytest.mark.parametrize("cut", ["image-empty", "image-cut", "mask-cut"])
def test_a_cached_file_cut_short_under_its_sidecar_is_converted_again(
    padded_root: Path, tmp_path: Path, cache_format: str, cut: str
) -> None:
    """Renames are not fsynced: after a power cut an image's file can be empty or cut while its sidecar is whole.
    A rerun took the image as done and said "0 failed", and the fit stopped on it when its batch came, hours in."""
    first = prep.prepare(str(padded_root), str(tmp_path), input_size=SIZE, workers=0, cache_format=cache_format)
    before = _files(tmp_path)
    entry = next(e for e in first["images"].values() if "padding" in e)
    damaged = tmp_path / entry["padding" if cut == "mask-cut" else "file"]
    damaged.write_bytes(b"" if cut == "image-empty" else damaged.read_bytes()[: damaged.stat().st_size // 2])
    assert prep.prepare(str(padded_root), str(tmp_path), input_size=SIZE, workers=0, cache_format=cache_format) == first
    assert _files(tmp_path) == before


def test_a_source_replaced_since_it_was_cached_is_converted_again_and_a_copied_dataset_is_not(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A DICOM replaced under its name (mended, re-exported: the same size) kept its old pixels through a rerun,
    which said nothing; a copy of the dataset whose files lost their times (``cp -r``) is not decoded again."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    cache = tmp_path / "cache"
    first = prep.prepare(str(root), str(cache), input_size=SIZE, workers=0)
    record = next(r for r in load_records(root) if r.image_id in first["images"])
    dicom = pydicom.dcmread(record.path)
    dicom.PixelData = np.ascontiguousarray(dicom.pixel_array[::-1]).tobytes()  # another image, the same size
    dicom.save_as(record.path)
    os.utime(record.path, ns=(os.stat(record.path).st_atime_ns, os.stat(record.path).st_mtime_ns + 10**9))
    capsys.readouterr()
    again = prep.prepare(str(root), str(cache), input_size=SIZE, workers=0)
    assert f"{record.path} changed since {record.image_id} was cached: converting it again" in capsys.readouterr().err
    expected = load_input_image(record.path, record.laterality, SIZE)[0]
    cached = prep.read_cached(cache / again["images"][record.image_id]["file"])
    np.testing.assert_allclose(cached, expected, atol=1 / 65535)
    assert {k: e for k, e in again["images"].items() if k != record.image_id} == {
        k: e for k, e in first["images"].items() if k != record.image_id
    }
    copied = Path(shutil.copytree(root, tmp_path / "copy", copy_function=shutil.copyfile))  # new times

    def decoded_again(*args, **kwargs):
        raise AssertionError("an image was decoded again")

    monkeypatch.setattr(prep, "load_input_image", decoded_again, raising=False)
    import wsod_mammo.data.images as images

    monkeypatch.setattr(images, "load_input_image", decoded_again)
    moved = prep.prepare(str(copied), str(cache), input_size=SIZE, workers=0)
    assert {k: e["file"] for k, e in moved["images"].items()} == {k: e["file"] for k, e in again["images"].items()}


def test_images_converted_again_are_counted_and_a_replaced_source_is_said_before_the_progress_bar(
    synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    """The start-of-run count (and the disk-space check) counted missing sidecars only: a rerun that converted again
    an image cut short, one of a damaged sidecar and one of a replaced source said "0 images to convert"; and the
    replaced source's line came from the job, in the middle of the progress bar."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    cache = tmp_path / "cache"
    first = prep.prepare(str(root), str(cache), input_size=SIZE, workers=0)
    cut, damaged, replaced = sorted(first["images"])[:3]
    image = cache / first["images"][cut]["file"]
    image.write_bytes(image.read_bytes()[:100])
    (cache / "images" / f"{damaged}.json").write_text("")
    source = next(r.path for r in load_records(root) if r.image_id == replaced)
    with open(source, "ab") as file:  # another size: replaced
        file.write(b"\0\0")
    capsys.readouterr()
    again = prep.prepare(str(root), str(cache), input_size=SIZE, workers=0)
    assert again["images"].keys() == first["images"].keys() and not again["errors"]
    said = capsys.readouterr().err
    assert f"prepare: 3 images to convert into {cache}: " in said
    line = f"prepare: {source} changed since {replaced} was cached: converting it again\n"
    assert line in said and said.index(line) < said.index("prepare:   0%")  # a line of its own, before the bar


def test_a_complete_cache_that_cannot_be_written_is_used_as_it_is_and_work_there_refused_in_one_line(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A lab's shared cache, read-only to its users: prepare on it, complete, failed with "[Errno 13] Permission
    denied: '<cache>/.wsod.lock'" (it took the lock and wrote the manifest again); with images to convert, the same
    line named the lock file. Denied here as to a user without the permission (the tests may run as root)."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    cache = tmp_path / "cache"
    args = ["prepare", "--data_root", str(root), "--cache_dir", str(cache), "--input_size", "[128, 80]",
            "--workers", "0"]  # fmt: skip
    commands.main(args)
    first, before = prep.load_manifest(cache), _files(cache)

    def denied(path: Any, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(prep, "hold", lambda folder, *args: denied(Path(folder) / ".wsod.lock"))
    monkeypatch.setattr(prep, "write_atomic", denied)
    capsys.readouterr()
    commands.main(args)  # complete: nothing to write
    assert _files(cache) == before and prep.load_manifest(cache) == first
    said = capsys.readouterr().err
    assert f"prepare: 0 images to convert into {cache}" in said
    assert f"prepare: {len(first['images'])} images cached in {cache}, 0 failed" in said
    (cache / "images" / f"{sorted(first['images'])[0]}.json").unlink()
    with pytest.raises(SystemExit) as exit_info:
        commands.main(args)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"[wsod] wsod prepare: cache_dir: {cache} cannot be written (Permission denied): 1 images to convert; give a "
        "--cache_dir you can write"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input_size": (0, 40)}, r"input_size: expected \[height, width\], two positive integers, got \[0, 40\]"),
        ({"input_size": (64.5, 40)}, "input_size: expected"),
        ({"resize": "strech"}, "resize: expected one of .*'stretch'.*, got 'strech'"),
        ({"workers": -3}, r"workers: expected 0 \(convert in this process\) or more worker processes, got -3"),
    ],
)
def test_impossible_options_are_refused_before_any_file(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prep.prepare(str(tmp_path / "nowhere"), str(tmp_path / "cache"), **({"workers": 0} | options))
    assert not (tmp_path / "cache").exists()


def test_bad_files_reported_and_others_cached(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    records = load_records(root)
    normals = [r for r in records if r.is_normal]
    normals[0].path.write_bytes(normals[0].path.read_bytes()[:1000])  # truncated
    normals[1].path.unlink()  # listed but absent
    manifest = prep.prepare(str(root), str(tmp_path / "cache"), input_size=SIZE, workers=0)
    errors = manifest["errors"]
    assert set(errors) == {normals[0].image_id, normals[1].image_id}
    assert errors[normals[1].image_id] == f"{normals[1].path}: file not found"
    assert errors[normals[0].image_id].startswith(f"{normals[0].path}: ")
    assert len(manifest["images"]) == len({r.image_id for r in records if r.is_normal or r.has_class(["Mass"])}) - 2
    assert str(normals[1].path) in capsys.readouterr().err
    assert json.loads((tmp_path / "cache" / "manifest.json").read_text())["errors"] == errors


def test_an_image_id_too_long_for_its_cache_files_name_fails_that_image_alone(
    padded_root: Path, tmp_path: Path, capsys
) -> None:
    """An image_id of 249 bytes (83 CJK characters) with DICOM padding (`<id>.mask.png`: 258 bytes), or of 252
    bytes (84, its file without an extension: `<id>.png`), stopped the whole prepare on "[Errno 36] ... File name too
    long", no manifest written, and a rerun stopped on it again (the stat of its sidecar). That image fails with its
    reason, no part of it left; the others and the manifest are written, and a fit leaves it out as it leaves out the
    images prepare could not read."""
    root = Path(shutil.copytree(padded_root, tmp_path / "data"))
    normals = [r for r in load_records(root) if r.is_normal]
    masked = next(r for r in normals if "PixelPaddingValue" in pydicom.dcmread(r.path))
    other = next(r for r in normals if r.image_id != masked.image_id)
    renamed = {masked.image_id: ("中" * 83, ".dicom"), other.image_id: ("文" * 84, "")}
    for record in (masked, other):
        new, ending = renamed[record.image_id]
        record.path.rename(record.path.with_name(new + ending))
    for csv in (root / FINDING_CSV, root / BREAST_CSV):
        text = csv.read_text(encoding="utf-8")
        for old, (new, _) in renamed.items():
            text = text.replace(old, new)
        csv.write_text(text, encoding="utf-8")
    long_ids = {"中" * 83, "文" * 84}
    for _ in range(2):  # the rerun looks for their sidecars in the cache's images folder
        manifest = prep.prepare(str(root), str(tmp_path / "cache"), input_size=SIZE, workers=0)
        assert set(manifest["errors"]) == long_ids
        assert manifest["errors"]["中" * 83].endswith(".mask.png: not written (File name too long)); a shorter "
                                                       "image_id (its file and CSV rows) caches it")  # fmt: skip
        assert "(252 bytes) makes a cache file name too long" in manifest["errors"]["文" * 84]
        selected = {r.image_id for r in load_records(root) if r.is_normal or r.has_class(["Mass"])}
        assert len(manifest["images"]) == len(selected) - 2
        assert prep.load_manifest(tmp_path / "cache") == manifest
        assert not [p for p in (tmp_path / "cache" / "images").iterdir() if p.name[0] in "中文."]
        assert capsys.readouterr().err.count("not cached: its image_id") == 2
    cache = open_cache(str(tmp_path / "cache"), SIZE, True, "stretch")
    kept = drop_missing(load_records(root), cache, "skip")
    assert long_ids.isdisjoint(r.image_id for r in kept) and len(kept) == len(load_records(root)) - 2


def test_a_prepare_that_failed_on_some_images_exits_1_after_caching_the_others(
    synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    """`wsod prepare ... && wsod fit ...`: a prepare that could not read an image said so and exited 0, and the fit
    refused the cache. It now ends in one line and exit status 1, its manifest and the other images written (a rerun
    converts only the failed ones)."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    missing = next(r for r in load_records(root) if r.is_normal)
    missing.path.unlink()
    args = ["prepare", "--data_root", str(root), "--cache_dir", str(tmp_path / "cache"), "--input_size", "[64, 40]",
            "--workers", "0"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        commands.main(args)
    assert exit_info.value.code == 1
    manifest = prep.load_manifest(tmp_path / "cache")
    cached = len(manifest["images"])
    assert list(manifest["errors"]) == [missing.image_id] and cached > 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        f"[wsod] wsod prepare: 1 of {cached + 1} images failed (their reasons above); the other {cached} are "
        "cached: mend or remove the failed files and run prepare again (cached images are skipped), or leave them "
        "out of a fit with the data option missing: skip"
    )


def test_an_input_size_gmic_cannot_take_is_said_before_converting(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    """`wsod prepare --input_size '[1000, 800]'` (half a resolution, rounded by hand) converted every image, hours on
    VinDr, into a frame that `wsod fit` then refused as data.input_size (GMIC's sides are multiples of 64)."""
    args = ["--data_root", str(synthetic_root), "--input_size", "[96, 64]", "--workers", "0"]
    prep.main([*args, "--cache_dir", str(tmp_path / "odd")])
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert first == ("prepare: input_size [96, 64] is not a multiple of 64 per side: GMIC cannot take it, and wsod "
                     "fit, test and predict refuse it as data.input_size, so no run can read this cache")  # fmt: skip
    prep.main(["--data_root", str(synthetic_root), "--input_size", "[128, 64]", "--workers", "0", "--cache_dir",
               str(tmp_path / "even")])  # fmt: skip
    assert "not a multiple of 64" not in capsys.readouterr().err


def test_cli(synthetic_root: Path, tmp_path: Path) -> None:
    prep.main(["--data_root", str(synthetic_root), "--cache_dir", str(tmp_path), "--input_size", "[64, 40]",
               "--workers", "0", "--cache_format", "npy"])  # fmt: skip
    manifest = prep.load_manifest(tmp_path)
    assert manifest["input_size"] == [64, 40] and manifest["cache_format"] == "npy"


def test_a_tilde_in_the_paths_is_the_home_folder(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--cache_dir=~/cache` (the shell expands no `~` after `=`) made a folder `~` in the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    prep.main([f"--data_root={synthetic_root}", "--cache_dir=~/cache", "--input_size", "[64, 40]", "--workers", "0"])
    assert prep.load_manifest(tmp_path / "home" / "cache") is not None and not (tmp_path / "~").exists()


def test_a_cache_of_nothing_fails_and_renamed_images_are_named(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    """Images renamed .dicom -> .dcm (or without an extension) are read under their names; renamed to what is no
    image name (.dic) they gave one "file not found" per image, no clue, and exit status 0 with nothing cached; so
    did CSVs that select no image."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    dicoms = sorted(root.glob("images/*/*.dicom"))
    for i, dicom in enumerate(dicoms):
        dicom.rename(dicom.with_suffix(".dcm" if i % 2 else ""))
    args = ["--data_root", str(root), "--input_size", "[64, 40]", "--workers", "0"]
    prep.main([*args, "--cache_dir", str(tmp_path / "renamed")])
    prep.main(["--data_root", str(synthetic_root), *args[2:], "--cache_dir", str(tmp_path / "named")])
    cached = {name: prep.load_manifest(tmp_path / name)["images"] for name in ("renamed", "named")}
    assert cached["renamed"].keys() == cached["named"].keys() and len(cached["renamed"]) > len(dicoms) // 2
    for image in root.glob("images/*/*"):
        image.rename(image.with_suffix(".dic"))
    with pytest.raises(ValueError, match=r"^no image cached \(\d+ failed, their reasons above\)"):
        prep.main([*args, "--cache_dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    named = re.findall(r"/(\w+)\.dicom: file not found \((\w+)\.dic is there: another extension\)", err)
    assert len(named) == len(cached["named"]) and all(a == b for a, b in named)  # each selected image, its own name
    csv_file = root / FINDING_CSV
    csv_file.write_text(csv_file.read_text().splitlines()[0] + "\n")  # the header alone
    with pytest.raises(ValueError, match="^no image cached: the CSVs select none"):
        prep.main([*args, "--cache_dir", str(tmp_path / "none")])


SLOW_PREPARE = """
import os, sys, time
import wsod_mammo.data.prepare as prep
from wsod_mammo import commands

def slow(job):
    os.write(1, f"worker {os.getpid()}\\n".encode())  # one write: the two workers' lines never interleave
    time.sleep(300)

prep._convert = slow
prep.prepare(sys.argv[1], sys.argv[2], input_size=(64, 48), workers=2)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_exit_when_prepare_is_killed(synthetic_root: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    args = [sys.executable, "-c", SLOW_PREPARE, str(synthetic_root), str(tmp_path / "cache")]
    parent = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        workers = [int(parent.stdout.readline().split()[1]) for _ in range(2)]  # both busy converting
        assert all(is_running(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        assert all_end_within(workers, 15), "prepare's workers outlived it"
    finally:
        parent.kill()


def opencv_threads(job: prep.Job) -> tuple[str, None, str]:
    """A conversion that reports, as its error, how many threads OpenCV uses in the worker running it."""
    return job[0], None, f"{cv2.getNumThreads()} OpenCV threads"


def test_each_worker_converts_with_one_opencv_thread_and_prepare_restores_its_own(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked workers inherited the OpenCV pool size of the process that ran prepare (its CPU count by default), so
    N workers ran N times the cores in threads; DataLoader workers use one each. Set before the fork (setting it in
    a forked child whose parent had run OpenCV's pool can deadlock), and the caller's back afterwards."""
    threads = cv2.getNumThreads()
    monkeypatch.setattr(prep, "_convert", opencv_threads)
    try:
        cv2.setNumThreads(3)
        cv2.resize(np.zeros((1000, 800), np.float32), (400, 500))  # this process's pool running before the fork
        manifest = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=2)
        assert set(manifest["errors"].values()) == {"1 OpenCV threads"} and len(manifest["errors"]) >= 12
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(threads)


def shrink_dicom(path: Path, rows: int = 8) -> tuple[int, int]:
    """Rewrite a DICOM without its last `rows` rows (its CSV height now disagrees); returns the new size."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array[:-rows].copy()
    ds.Rows = pixels.shape[0]
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)
    return pixels.shape


def test_size_mismatch_with_csv_names_file_and_both_sizes(synthetic_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    record = next(r for r in load_records(root) if r.has_class(["Mass"]))
    height, width = shrink_dicom(record.path)
    manifest = prep.prepare(str(root), str(tmp_path / "cache"), input_size=SIZE, workers=0)
    assert record.image_id not in manifest["images"]
    message = manifest["errors"][record.image_id]
    assert message.startswith(f"{record.path}: the DICOM is {height}x{width}")
    assert f"CSV says {record.height}x{record.width}" in message


def test_padding_masks_are_cached_beside_their_images(padded_root: Path, tmp_path: Path) -> None:
    manifest = prep.prepare(str(padded_root), str(tmp_path), input_size=SIZE, workers=2)
    records = {r.image_id: r for r in load_records(padded_root)}
    masked = {k: e for k, e in manifest["images"].items() if "padding" in e}
    assert 8 <= len(masked) < len(manifest["images"])
    for image_id, entry in masked.items():
        assert entry["padding"] == f"images/{image_id}.mask.png"
        assert json.loads((tmp_path / "images" / f"{image_id}.json").read_text()) == entry  # the sidecar has it
        stored = cv2.imread(str(tmp_path / entry["padding"]), cv2.IMREAD_UNCHANGED)
        assert stored.dtype == np.uint8 and set(np.unique(stored)) == {0, 255}
        padding = load_input_image(records[image_id].path, records[image_id].laterality, SIZE)[3]
        np.testing.assert_array_equal(prep.read_padding(tmp_path / entry["padding"]), padding)
    assert prep.prepare(str(padded_root), str(tmp_path), input_size=SIZE, workers=0) == manifest  # resumed: same


def test_a_damaged_manifest_is_an_error_naming_it(tmp_path: Path) -> None:
    """It is written atomically, but a disk or a hand can still damage it: a bare JSONDecodeError named no file."""
    for content, found in [("{nope", "not a readable cache manifest"), ("[1, 2]", "found list")]:
        (tmp_path / prep.MANIFEST).write_text(content)
        with pytest.raises(ValueError, match=f"{tmp_path / prep.MANIFEST}: .*{found}"):
            prep.load_manifest(tmp_path)


@pytest.mark.parametrize("damage", ["empty", "cut", "list"])
def test_a_damaged_manifest_is_rebuilt_by_prepare_from_the_sidecars_decoding_nothing(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, damage: str
) -> None:
    """An empty manifest (a power cut after its write: renames are not fsynced) said "prepare the cache again", and
    prepare refused the cache with that same message: only deleting the whole cache (hours) got further."""
    import wsod_mammo.data.images as images

    first = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    path = tmp_path / prep.MANIFEST
    path.write_text({"empty": "", "cut": path.read_text()[:100], "list": "[1]"}[damage])
    with pytest.raises(ValueError, match=f"{path}: .*; `wsod prepare` into {tmp_path} again rebuilds it"):
        prep.load_manifest(tmp_path)

    converted = {entry["source"] for entry in first["images"].values()}
    load_input_image = images.load_input_image

    def decoded_once(source, *args, **kwargs):
        assert str(source) not in converted, "an image was decoded again"
        return load_input_image(source, *args, **kwargs)

    monkeypatch.setattr(images, "load_input_image", decoded_once)
    capsys.readouterr()
    # a run of other classes (calcification-only images added): the rebuilt manifest lists the masses too
    calcs = prep.prepare(
        str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0, classes=["Suspicious Calcification"]
    )
    assert f"prepare: {path}: " in capsys.readouterr().err
    assert {k: calcs["images"].get(k) for k in first["images"]} == first["images"] and calcs == prep.load_manifest(
        tmp_path
    )


def test_a_cut_cached_png_is_an_error_naming_it_and_the_rerun_that_mends_it(tmp_path: Path) -> None:
    """cv2 reads a PNG cut short (a power cut after prepare) as None: the error said "expected a 2-D 16-bit cached
    image, found None", neither what is wrong with the file nor that a rerun of prepare converts it again."""
    whole = prep.encode_image(np.linspace(0, 1, 64 * 40, dtype=np.float32).reshape(64, 40), "png")
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=f"{tmp_path / 'cut.png'}: not a readable cached image \\(a PNG cut short.*"
                       "`wsod prepare` into its cache_dir again converts it again"):  # fmt: skip
        prep.read_cached(tmp_path / "cut.png", raw=True)


def test_an_empty_cached_npy_is_an_error_naming_it(tmp_path: Path) -> None:
    """np.load's EOFError named no file and was not one of the errors `missing: skip` skips."""
    (tmp_path / "cut.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=f"{tmp_path / 'cut.npy'}: not a readable cached image \\(EOFError"):
        prep.read_cached(tmp_path / "cut.npy", raw=True)


def test_a_rerun_decodes_nothing_already_cached(synthetic_root: Path, tmp_path: Path, monkeypatch) -> None:
    """wsod prepare resumes: a second run over a finished cache decodes no DICOM (hours on VinDr)."""
    import wsod_mammo.data.images as images

    first = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)

    def decoded_again(*args, **kwargs):
        raise AssertionError("an image was decoded again")

    monkeypatch.setattr(images, "load_input_image", decoded_again)
    monkeypatch.setattr(prep, "load_input_image", decoded_again, raising=False)
    assert prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0) == first


def test_each_sidecar_is_looked_for_once_and_read_once_per_run(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare looked for each image's sidecar when it counted the images to convert and again in the job: two
    stats per image a run (~15,000 on VinDr, over a network disk); a done image's sidecar is read once as well."""
    touched: list[tuple[str, str]] = []
    is_file, read_text = Path.is_file, Path.read_text

    def counted(call, what: str):
        def wrapper(path: Path, *args, **kwargs):
            if path.parent.name == "images" and path.suffix == ".json":
                touched.append((what, path.name))
            return call(path, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(Path, "is_file", counted(is_file, "stat"))
    monkeypatch.setattr(Path, "read_text", counted(read_text, "read"))
    for rerun in (False, True):
        touched.clear()
        manifest = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
        sidecars = {f"{image_id}.json" for image_id in manifest["images"]}
        for what in ("stat", "read"):
            calls = sorted(name for kind, name in touched if kind == what)
            assert calls == (sorted(sidecars) if what == "stat" or rerun else []), (what, rerun)


def test_a_manifest_written_before_resize_existed_counts_as_stretch(synthetic_root: Path, tmp_path: Path) -> None:
    """Caches prepared before the ``resize`` option hold stretched images: their manifest has no ``resize`` key,
    and a rerun asking for ``fit`` is refused as for any other setting."""
    prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    manifest = json.loads((tmp_path / prep.MANIFEST).read_text())
    del manifest["resize"]
    (tmp_path / prep.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="holds images prepared with resize=stretch, this run asks for resize=fit"):
        prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0, resize="fit")


def test_an_image_cut_short_while_written_has_no_sidecar(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar is written last: it marks an image done, so an interruption while its pixels are written leaves
    no sidecar, and a rerun converts that image again rather than list a missing file."""
    write_atomic = prep.write_atomic

    def interrupted(path: Path, data: bytes) -> None:
        if path.suffix == ".png":  # the first image's pixels
            raise KeyboardInterrupt
        write_atomic(path, data)

    monkeypatch.setattr(prep, "write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    assert not list((tmp_path / "images").glob("*.json"))
    monkeypatch.setattr(prep, "write_atomic", write_atomic)
    manifest = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    assert manifest["images"] and all((tmp_path / e["file"]).is_file() for e in manifest["images"].values())


def test_images_the_csv_may_mislabel_are_cached_with_warnings_the_manifest_keeps(
    synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    """Training orients each image by the CSV's laterality: a mirrored export, a tag that disagrees with the CSV or
    raw detector data was cached in silence; now the manifest and the report name each such image and why."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    mirrored, retagged, raw = [r for r in load_records(root) if r.is_normal][:3]
    ds = pydicom.dcmread(mirrored.path)
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()  # the breast against the other edge
    ds.save_as(mirrored.path)
    other = {"L": "R", "R": "L"}
    ds = pydicom.dcmread(retagged.path)
    ds.ImageLaterality = other[retagged.laterality]
    ds.save_as(retagged.path)
    ds = pydicom.dcmread(raw.path)
    ds.PresentationIntentType = "FOR PROCESSING"
    ds.save_as(raw.path)
    manifest = prep.prepare(str(root), str(tmp_path / "cache"), input_size=SIZE, workers=2)
    warned = {k: e["warnings"] for k, e in manifest["images"].items() if "warnings" in e}
    assert set(warned) == {mirrored.image_id, retagged.image_id, raw.image_id} and not manifest["errors"]
    edge = {"L": "right", "R": "left"}[mirrored.laterality]
    assert warned[mirrored.image_id] == [
        f"the CSV's laterality is {mirrored.laterality} but the breast lies against the {edge} edge, as in "
        f"{other[mirrored.laterality]} images; the CSV's is used, so the model sees this breast mirrored"
    ]
    assert warned[retagged.image_id] == [
        f"the CSV's laterality is {retagged.laterality} but the DICOM's laterality tag says "
        f"{other[retagged.laterality]}; the CSV's is used"
    ]
    assert len(warned[raw.image_id]) == 1 and "FOR PROCESSING" in warned[raw.image_id][0]
    report = capsys.readouterr().err
    assert f'3 cached images have warnings ("warnings" in {tmp_path / "cache" / "manifest.json"})' in report
    for record in (mirrored, retagged, raw):
        assert f"  {record.image_id} ({record.path}): " in report
    # each is cached all the same (oriented by the CSV), and a rerun keeps the warnings its sidecars hold
    assert prep.prepare(str(root), str(tmp_path / "cache"), input_size=SIZE, workers=0) == manifest
    # the doubt is said in every stage that reads the image (wsod test's log, predict's rows), no longer as a
    # training statement ("the model learns it mirrored"); a cache prepared with that wording says it as now
    sidecar = tmp_path / "cache" / "images" / f"{mirrored.image_id}.json"
    entry = json.loads(sidecar.read_text())
    old = entry["warnings"][0].replace("; the CSV's is used, so the model sees this breast mirrored", "")
    sidecar.write_text(json.dumps(entry | {"warnings": [old + "; the model learns it mirrored"]}))
    capsys.readouterr()
    cached = prep.prepare(str(root), str(tmp_path / "cache"), input_size=SIZE, workers=0)
    assert "learns" not in capsys.readouterr().err and "learns" in json.dumps(cached)
    transform = BoxTransform(SIZE, AugmentationConfig(), train=False, standardize=True)
    sample = VinDrDataset([mirrored], ["Mass"], transform, cache=(tmp_path / "cache", cached))[0]
    assert sample["meta"]["warnings"] == warned[mirrored.image_id]


def test_a_second_prepare_into_a_cache_another_is_writing_is_refused_and_touches_nothing(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """Two jobs preparing one cache_dir at once: the second deleted the first's files in flight (the first then
    failed on its rename), and with other options both 'succeeded' into one cache of two frames."""
    from wsod_mammo.folder_locks import FolderBusyError, hold

    in_flight = tmp_path / "images" / ".a1b2.npy.123.tmp"
    in_flight.parent.mkdir(parents=True)
    in_flight.write_bytes(b"half an image")
    handle = hold(tmp_path, "wsod prepare")  # as the first job holds it while it runs
    try:
        busy = rf"^cache_dir {re.escape(str(tmp_path))} is being written by wsod prepare, pid {os.getpid()} on .*; run "
        with pytest.raises(FolderBusyError, match=busy + "this one when it has finished"):
            prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, resize="fit", workers=0)
        assert in_flight.read_bytes() == b"half an image" and not (tmp_path / prep.MANIFEST).exists()
    finally:
        handle.close()
    assert prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)["images"]


@pytest.mark.parametrize(
    ("version", "fix"),
    [(1, "the breast crop's fix of 2026-12-03"), (2, "the breast crop's fix for bright edge strips of 2026-12-07")],
)
def test_a_cache_from_before_the_breast_crop_fix_is_refused_naming_it(
    synthetic_root: Path, tmp_path: Path, version: int, fix: str
) -> None:
    """05956ba changed where the breast crop lies on some images; a cache written before it (same layout, version 1)
    was read as it was, and a rerun of prepare skipped its images: old and new crops mixed, silently. Leaving bright
    edge strips out of the crop changed it again on images with such strips (version 2)."""
    prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    manifest = json.loads((tmp_path / prep.MANIFEST).read_text())
    (tmp_path / prep.MANIFEST).write_text(json.dumps(manifest | {"version": version}))
    refused = rf"^{re.escape(str(tmp_path / prep.MANIFEST))}: a cache written before {re.escape(fix)}"
    with pytest.raises(ValueError, match=refused):
        prep.load_manifest(tmp_path)
    with pytest.raises(ValueError, match=refused + r".*prepare it again into a new cache_dir"):
        prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)


def test_a_rerun_for_other_classes_keeps_the_images_cached_before_in_the_manifest(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """The manifest listed only the last run's images: a prepare for calcifications into a cache of masses dropped
    the masses from it (their files still there), and a fit on masses decoded them all from the DICOMs again."""
    masses = prep.prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0)
    calcs = prep.prepare(str(synthetic_root), str(tmp_path), ["Suspicious Calcification"], input_size=SIZE, workers=0)
    only_masses = set(masses["images"]) - {r.image_id for r in load_records(synthetic_root)
                                           if r.has_class(["Suspicious Calcification"]) or r.is_normal}  # fmt: skip
    assert only_masses and set(calcs["images"]) >= set(masses["images"])
    assert all(calcs["images"][i] == masses["images"][i] for i in masses["images"])
    assert prep.load_manifest(tmp_path) == calcs
    (tmp_path / masses["images"][min(only_masses)]["file"]).unlink()  # a file gone since: no longer listed
    again = prep.prepare(str(synthetic_root), str(tmp_path), ["Suspicious Calcification"], input_size=SIZE, workers=0)
    assert set(again["images"]) == set(calcs["images"]) - {min(only_masses)}


def test_a_cache_that_cannot_fit_on_its_disk_is_refused_before_any_image_and_the_rest_is_said(
    synthetic_root: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A VinDr cache is large (``--selection all`` as npy: ~170 GB at 2944 x 1920): a full disk stopped prepare hours
    in, every later image failing. The images still to convert are counted against the disk's free space first: npy
    (whose size is exact) is refused naming the cache, before any image; a rerun counts only what is missing."""
    cache = tmp_path / "cache"
    args = ["prepare", "--data_root", str(synthetic_root), "--cache_dir", str(cache), "--input_size", "[64, 40]",
            "--workers", "0", "--cache_format", "npy"]  # fmt: skip
    one = 64 * 40 * 2 + 128  # an npy image's bytes
    monkeypatch.setattr("wsod_mammo.data.cache_space.free_bytes", lambda folder: one)
    with pytest.raises(SystemExit) as exit_info:
        commands.main(args)
    assert exit_info.value.code == 1 and not list(cache.glob("images/*"))
    error = capsys.readouterr().err.strip().splitlines()[-1]
    images = int(re.search(r"cache_dir: (\d+) images to convert", error).group(1))  # the selected ones
    assert images > 1 and re.search(r"images to convert into .*cache: 0\.0 GB as npy, 0\.0 GB free: the cache does "
                                    r"not fit; .*--selection paper", error), error  # fmt: skip
    monkeypatch.setattr("wsod_mammo.data.cache_space.free_bytes", lambda folder: images * one)
    commands.main(args)
    assert f"prepare: {images} images to convert into " in capsys.readouterr().err
    monkeypatch.setattr("wsod_mammo.data.cache_space.free_bytes", lambda folder: 0)
    commands.main(args)  # everything cached: nothing more to fit
    assert f"prepare: 0 images to convert into {cache}: 0.0 GB as npy, 0.0 GB free" in capsys.readouterr().err
    assert check_cache_space(cache, 10, (2944, 1920), "png").endswith(
        "(it may not fit: a png's size depends on the image)"
    )
    assert free_bytes(tmp_path / "not" / "yet") == shutil.disk_usage(tmp_path).free


def test_a_cache_file_the_disk_cannot_hold_is_named_and_leaves_no_part_behind(tmp_path: Path) -> None:
    """A full disk ended `wsod prepare` with "[Errno 28] No space left on device" alone (Python's error from a write
    names no file), its cut temporary file left holding space. The kernel's ENOSPC (a write to /dev/full, where the
    temporary file would be) now comes with the file's name, and the temporary file is removed."""
    path = tmp_path / "abc.png"
    partial = tmp_path / f".abc.png.{os.getpid()}.tmp"
    partial.symlink_to("/dev/full")
    written = rf"^\[Errno 28\] {re.escape(str(path))}: not written \(No space left on device\)"
    with pytest.raises(OSError, match=written):
        prep.write_atomic(path, b"x" * 10000)
    assert list(tmp_path.iterdir()) == []
    prep.write_atomic(path, b"x")
    assert path.read_bytes() == b"x"


def test_a_cache_file_whose_name_nears_the_file_systems_limit_is_written(tmp_path: Path) -> None:
    """An image id of 245 characters: its cache file's name (249 bytes) fits the 255-byte limit, its temporary name
    (`.<name>.<pid>.tmp`) did not, and `wsod prepare` ended in "File name too long"."""
    for name in ("L" * 245 + ".png", "é" * 125 + ".png"):  # 249 and 254 bytes
        prep.write_atomic(tmp_path / name, b"x")
        assert (tmp_path / name).read_bytes() == b"x"
    assert len(list(tmp_path.iterdir())) == 2  # nothing else left
