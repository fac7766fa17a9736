"""What the test split's image records say about its images: their studies, breasts and densities, keyed as the
metrics key images (``image_keys`` of ``image_id``), for the report's bootstrap to draw whole studies and for the
per-breast and per-density tables."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer

from wsod_mammo.detection.breasts import breast_key_of_images
from wsod_mammo.detection.image_keys import image_keys


def _test_records(trainer: Trainer | None) -> list[Any]:
    """The test split's image records (``VinDrDataset.records``); none for a dataset that lists none."""
    dataset = getattr(getattr(trainer, "datamodule", None), "datasets", {}).get("test")
    return list(getattr(dataset, "records", []))


def split_image_count(trainer: Trainer | None) -> int | None:
    """How many distinct images the test split holds (None for a dataset that lists no records): a report over
    fewer (``--trainer.limit_test_batches``) says so."""
    records = _test_records(trainer)
    return len({r.image_id for r in records}) if records else None


def study_groups(trainer: Trainer | None) -> dict[int, int]:
    """``{image key: study key}`` of the test split's images (``image_keys`` of their ``image_id`` and
    ``study_id``), for the bootstrap to draw whole studies; empty where the data names no studies."""
    records = [r for r in _test_records(trainer) if getattr(r, "study_id", None)]
    if not records:
        return {}
    images, studies = image_keys([r.image_id for r in records]), image_keys([r.study_id for r in records])
    return dict(zip(images.tolist(), studies.tolist(), strict=True))


def breast_groups(trainer: Trainer | None) -> dict[int, int]:
    """``{image key: breast key}`` of the test split's images (``breasts.breast_key_of_images``), for Table I at
    breast level; empty where the data names no studies or sides."""
    records = [r for r in _test_records(trainer) if getattr(r, "study_id", None) and getattr(r, "laterality", None)]
    if not records:
        return {}
    return breast_key_of_images([r.image_id for r in records], [r.study_id for r in records],
                                [r.laterality for r in records])  # fmt: skip


def density_labels(trainer: Trainer | None) -> dict[int, str]:
    """``{image key: breast density}`` of the test split's images (VinDr's ``breast_density``, ``DENSITY A`` to
    ``D``), for Table II by density; empty where the data gives no image a density."""
    records = _test_records(trainer)
    if not any(getattr(r, "breast_density", "") for r in records):
        return {}
    keys = image_keys([r.image_id for r in records]).tolist()
    return dict(zip(keys, [r.breast_density for r in records], strict=True))
