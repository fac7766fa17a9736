"""`pixel_reads: main` with `augment_on: worker` still augments the training images."""

from __future__ import annotations

from pathlib import Path

import torch

from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.data.prepare import prepare
from wsod_mammo.data.transforms import AugmentationConfig

SIZE = (128, 80)


def _dm(root: Path, cache: Path, pixel_reads: str, augment: bool = True) -> VinDrMammoDataModule:
    dm = VinDrMammoDataModule(
        str(root),
        cache_dir=str(cache),
        input_size=SIZE,
        batch_size=3,
        num_workers=2,
        val_fraction=0.25,
        standardize_on="device",
        augment_on="worker",
        pixel_reads=pixel_reads,
        augmentation=AugmentationConfig(enabled=augment, crop_p=1.0, affine_p=1.0),
    )
    dm.setup("fit")
    return dm


def test_main_pixel_reads_with_worker_augmentation_gives_the_worker_batches(synthetic_root: Path, tmp_path: Path):
    prepare(str(synthetic_root), str(tmp_path), input_size=SIZE, workers=0, cache_format="npy")
    worker, main = _dm(synthetic_root, tmp_path, "worker"), _dm(synthetic_root, tmp_path, "main")
    plain = _dm(synthetic_root, tmp_path, "main", augment=False)
    batches = list(zip(worker.train_dataloader(), main.train_dataloader(), plain.train_dataloader(), strict=True))
    assert batches
    augmented = []
    for expected, sent, unaugmented in batches:
        read = main.on_after_batch_transfer(main.on_before_batch_transfer(sent, 0), 0)
        torch.testing.assert_close(read["image"], worker.on_after_batch_transfer(expected, 0)["image"])
        assert read["image_id"] == unaugmented["image_id"]
        without = plain.on_after_batch_transfer(plain.on_before_batch_transfer(unaugmented, 0), 0)["image"]
        augmented += (read["image"] - without).abs().flatten(1).amax(1).tolist()
    # both paths unaugmented would agree too: every image (crop_p and affine_p 1) must differ from its plain read
    assert min(augmented) > 0.1, augmented
