"""Every sample of an epoch draws its own augmentation, and every epoch draws anew."""

from __future__ import annotations

from pathlib import Path

import torch

from wsod_mammo.data.datamodule import VinDrMammoDataModule
from wsod_mammo.data.sampling import EpochShuffleSampler
from wsod_mammo.data.transforms import AugmentationConfig


def test_flips_differ_between_the_samples_of_one_epoch_with_workers(synthetic_root: Path) -> None:
    """hflip_p 0.5: one epoch's images are flipped some and not others (theta[0, 0] is -1 for a flip)."""
    dm = VinDrMammoDataModule(
        str(synthetic_root),
        input_size=(128, 80),
        batch_size=4,
        num_workers=2,
        val_fraction=0.25,
        standardize_on="device",
        augment_on="device",
        augmentation=AugmentationConfig(hflip_p=0.5, crop_p=0.0, affine_p=0.0),
    )
    dm.setup("fit")
    theta = torch.cat([b["theta"] for b in dm.train_dataloader()])
    flipped = (theta[:, 0, 0] < 0).tolist()
    assert len(flipped) >= 8 and any(flipped) and not all(flipped), flipped


def test_an_image_at_the_same_position_draws_anew_each_epoch() -> None:
    """A one-image dataset (or any image that lands where it was last epoch) must not repeat its augmentation."""
    sampler = EpochShuffleSampler(1, seed=42, augmentation_seed=42)
    seeds = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seeds.append(list(sampler)[0][1])
    assert len(set(seeds)) == 3, seeds
