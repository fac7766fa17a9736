"""pixel_reads: main: workers send where the cached pixels lie; the main process reads them, bit for bit the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data._utils.pin_memory import pin_memory as dataloader_pin_memory

from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.data.pixel_reads import PixelBatch, PixelRef, pixel_ref
from wsod_mammo.data.prepare import prepare
from wsod_mammo.data.transforms import AugmentationConfig

SIZE = (128, 80)


def _dm(root: Path, cache: Path, pixel_reads: str, workers: int = 2, copy_ahead: bool = False) -> VinDrMammoDataModule:
    dm = VinDrMammoDataModule(
        str(root), cache_dir=str(cache), input_size=SIZE, batch_size=3, num_workers=workers, val_fraction=0.25,
        standardize_on="device", augment_on="device", augmentation=AugmentationConfig(crop_p=0.7, affine_p=0.7),
        pixel_reads=pixel_reads, copy_ahead=copy_ahead,
    )  # fmt: skip
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def cache_missing_one(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An NPY cache without one training image: that one is decoded from its DICOM in the worker."""
    cache = tmp_path_factory.mktemp("pixel_reads_cache")
    prepare(str(synthetic_root), str(cache), input_size=SIZE, workers=0, cache_format="npy")
    manifest = json.loads((cache / "manifest.json").read_text())
    train_ids = {r.image_id for r in _dm(synthetic_root, cache, "worker", 0).datasets["train"].records}
    dropped = sorted(train_ids & set(manifest["images"]))[0]
    del manifest["images"][dropped]
    (cache / "manifest.json").write_text(json.dumps(manifest))
    return cache, dropped


@pytest.mark.parametrize("copy_ahead", [False, True])
def test_main_reads_give_the_worker_batches_bit_for_bit(synthetic_root: Path, cache_missing_one, copy_ahead) -> None:
    """2 workers, train (augment_on: device) and val: the same batches, whether pixels come through the workers or
    are read by this process: in on_before_batch_transfer (CPU runs) or by the DataLoader's pin-memory function.
    copy_ahead reaches the batches through the workers and, without CUDA, changes nothing (tests/test_cuda.py has
    the GPU side)."""
    cache, decoded = cache_missing_one
    worker_dm, main_dm = _dm(synthetic_root, cache, "worker"), _dm(synthetic_root, cache, "main", copy_ahead=copy_ahead)
    seen_decoded = False
    for stage in ("train", "val"):
        worker_batches = list(getattr(worker_dm, f"{stage}_dataloader")())
        main_batches = list(getattr(main_dm, f"{stage}_dataloader")())
        assert len(worker_batches) == len(main_batches) > 0
        for expected, sent in zip(worker_batches, main_batches, strict=True):
            assert isinstance(sent["image"], PixelBatch), "the workers shipped pixels"
            assert sent["image"].copy_ahead is copy_ahead
            seen_decoded |= decoded in sent["image_id"]
            refs = [i for i in sent["image"].items if isinstance(i, PixelRef)]
            assert len(refs) == len(sent["image_id"]) - (decoded in sent["image_id"])
            pinned = sent | {"image": dataloader_pin_memory(sent["image"])}  # the pin thread's call (CPU: unpinned)
            for read in (main_dm.on_before_batch_transfer(sent, 0), pinned):
                assert read["image"].dtype == torch.uint16 and torch.equal(read["image"], expected["image"])
                assert read["image_id"] == expected["image_id"]
                for key in ("theta", "label"):
                    assert torch.equal(read.get(key, torch.zeros(0)), expected.get(key, torch.zeros(0)))
                for a, b in zip(read["boxes"], expected["boxes"], strict=True):
                    assert torch.equal(a, b)
            standardized = main_dm.on_after_batch_transfer(main_dm.on_before_batch_transfer(sent, 0), 0)
            assert standardized["image"].dtype == torch.float32
    assert seen_decoded, "the image missing from the cache was not in any batch"


def test_pixel_ref_only_for_a_whole_memory_mapped_uint16_npy(tmp_path: Path) -> None:
    path = tmp_path / "image.npy"
    np.save(path, np.arange(12, dtype=np.uint16).reshape(3, 4))
    mapped = np.load(path, mmap_mode="r")
    ref = pixel_ref(mapped)
    assert ref == PixelRef(str(path), path.stat().st_size - 24, (3, 4))
    assert torch.equal(PixelBatch([ref]).read()[0, 0], torch.from_numpy(np.array(mapped)))
    assert pixel_ref(np.array(mapped)) is None  # decoded: already in memory
    assert pixel_ref(mapped[1:]) is None  # a slice of the file
    np.save(tmp_path / "big.npy", np.zeros((3, 4), ">u2"))
    assert pixel_ref(np.load(tmp_path / "big.npy", mmap_mode="r")) is None  # byte order the batch does not use


def test_a_cache_file_cut_short_after_the_worker_read_it_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "image.npy"
    np.save(path, np.ones((64, 32), np.uint16))
    ref = pixel_ref(np.load(path, mmap_mode="r"))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=rf"{path}: the cached image ends after 3996 of its 4096 bytes"):
        PixelBatch([ref]).read()
    with pytest.raises(ValueError, match=rf"differ in size: {path} 64x32; a decoded image 32x32"):
        PixelBatch([ref, torch.zeros(1, 32, 32, dtype=torch.uint16)])


def test_pixel_reads_main_needs_device_standardization(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match="pixel_reads: expected 'worker', or 'main' with standardize_on: device"):
        VinDrMammoDataModule(str(synthetic_root), pixel_reads="main")


def test_copy_ahead_needs_main_pixel_reads(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match="copy_ahead: .* with pixel_reads: main \\(got pixel_reads='worker'\\)"):
        VinDrMammoDataModule(str(synthetic_root), standardize_on="device", copy_ahead=True)
