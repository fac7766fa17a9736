"""Why a training or evaluation image may not be what the model should learn from (a blank image, a laterality the
DICOM's tag or the image itself contradicts, every box left out of the input frame), said once per image by each
process that trains (under DDP an image read by two processes over the epochs is said by both).

Workers find the reasons (``images.load_input_image``'s ``warnings``; a prepared cache holds those ``wsod prepare``
found), but a worker that logged them would repeat them every epoch and once per worker; the samples carry them in
``meta["warnings"]`` instead, and the DataModule hands each batch to ``ImageWarnings`` in the main process.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

SHOWN_IMAGES = 20  # images named one by one; one line then says that more have warnings


class ImageWarnings:
    """Logs the ``meta["warnings"]`` of each image the first time a batch brings it, the first ``limit`` images by
    name, then one line saying that more have them."""

    def __init__(self, limit: int = SHOWN_IMAGES) -> None:
        self.limit = limit
        self.warned: set[str] = set()

    def report(self, batch: Any) -> None:
        if not isinstance(batch, dict):
            return
        for image_id, meta in zip(batch.get("image_id", ()), batch.get("meta", ()), strict=False):
            warnings = meta.get("warnings") if isinstance(meta, dict) else None
            if not warnings or image_id in self.warned:
                continue
            self.warned.add(image_id)
            if len(self.warned) <= self.limit:
                log.warning("%s (image %s): %s", meta.get("path"), image_id, "; ".join(warnings))
            elif len(self.warned) == self.limit + 1:
                log.warning(
                    "more images have warnings than the %d named above; they are not named (`wsod prepare` records "
                    "blank images and laterality doubts under \"warnings\" in its cache's manifest.json)", self.limit,
                )  # fmt: skip
