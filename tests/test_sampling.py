"""Every sample of an epoch draws its own augmentation, and every epoch draws anew."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from wsod_mammo.data.datamodule import VinDrMammoDataModule, batches_done_within_epoch, unvalidated_epoch_note
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


def _restarted(ready: int, processed: int, batches: int, last: bool, restarting: bool = True) -> SimpleNamespace:
    """A trainer whose loops were restored as Lightning restores them: ``ready`` epochs started, ``processed`` of
    them done, ``batches`` of the current one processed, ``last``: the last of its epoch."""
    epochs = SimpleNamespace(ready=ready, started=ready, processed=processed, completed=processed)
    batch_progress = SimpleNamespace(current=SimpleNamespace(processed=batches), is_last_batch=last)
    fit = SimpleNamespace(restarting=restarting, epoch_progress=SimpleNamespace(total=epochs, current=epochs),
                          epoch_loop=SimpleNamespace(batch_progress=batch_progress))  # fmt: skip
    return SimpleNamespace(fit_loop=fit)


def test_a_restart_within_an_epoch_is_told_from_one_after_its_last_batch() -> None:
    """Within an epoch: its batches done are left out of it. After its last batch (saved before its validation)
    Lightning goes on at the next epoch, which starts whole, and that epoch is never validated: said. The loops'
    numbers are those a checkpoint saved on batch end restores (Lightning 2.6)."""
    mid = _restarted(ready=2, processed=1, batches=1, last=False)
    assert batches_done_within_epoch(mid) == 1 and unvalidated_epoch_note(mid) is None
    after_last = _restarted(ready=1, processed=0, batches=4, last=True)
    assert batches_done_within_epoch(after_last) == 0
    assert unvalidated_epoch_note(after_last) == (
        "the checkpoint was saved after epoch 0's last batch, before its validation: Lightning goes on at epoch 1 "
        "without validating epoch 0 (its best checkpoint will not weigh it)"
    )
    at_epoch_end = _restarted(ready=2, processed=2, batches=4, last=True)  # saved after the epoch, validated
    fresh = _restarted(ready=0, processed=0, batches=0, last=False, restarting=False)
    for trainer in (at_epoch_end, fresh):
        assert batches_done_within_epoch(trainer) == 0 and unvalidated_epoch_note(trainer) is None
