"""``wsod predict`` output: per image the mass probability, scored boxes in DICOM pixels, and an overlay PNG."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from wsod_mammo.data.geometry import boxes_to_original
from wsod_mammo.detection.boxes import saliency_to_boxes
from wsod_mammo.detection.overlay import method_panels, render_overlay, write_png
from wsod_mammo.training.callbacks import Alignment, map_placement

log = logging.getLogger(__name__)

CSV_COLUMNS = ["image_id", "path", "probability", "box", "xmin", "ymin", "xmax", "ymax", "score", "error"]


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` (one row per box, or per image when it has none) and ``predictions.json``.

    Boxes come from the module's ``predict_saliency`` map at its validated threshold and are mapped back to the
    original DICOM pixel frame (flip, breast crop and resize undone). An input that could not be read gets a row
    with its error; the other images still get results. Under DDP each process writes its own ``.rankN`` files.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        class_index: int = 0,
        overlays: bool = True,
        alignment: Alignment = "resize",
    ) -> None:
        super().__init__(write_interval="batch")
        self.alignment = alignment
        self.output_dir = Path(output_dir)
        self.class_index = class_index
        self.overlays = overlays
        self._records: list[dict[str, Any]] = []

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._records = []

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        size = tuple(batch["image"].shape[-2:])
        for i, meta in enumerate(batch["meta"]):
            record: dict[str, Any] = {"image_id": batch["image_id"][i], "path": meta.get("path", "")}
            if meta.get("error"):
                record["error"] = meta["error"]
                log.error("predict: %s", meta["error"])
                self._records.append(record)
                continue
            probability = prediction["probabilities"][i : i + 1, self.class_index]
            saliency = prediction["maps"][i : i + 1, self.class_index]  # (1, h, w)
            cell0 = map_placement(pl_module, self.alignment) if pl_module is not None else None
            threshold = prediction["threshold"]
            boxes, scores = saliency_to_boxes(saliency, size, threshold, probability, cell0_center=cell0)[0]
            original = boxes_to_original(boxes.double(), meta["geometry"]).float()
            record |= {
                "laterality": meta.get("laterality"),
                "view": meta.get("view"),
                "probability": float(probability),
                "method": prediction["method"],
                "threshold": float(prediction["threshold"]),
                "boxes": [
                    {"xmin": b[0], "ymin": b[1], "xmax": b[2], "ymax": b[3], "score": s}
                    for b, s in zip(original.tolist(), scores.tolist(), strict=True)
                ],
            }
            if self.overlays:
                method, probability_value = prediction["method"], record["probability"]
                overlay = self._write_overlay(batch, i, saliency, (boxes, scores), method, probability_value, cell0)
                record["overlay"] = str(overlay)
            self._records.append(record)

    def _write_overlay(
        self,
        batch: dict[str, Any],
        i: int,
        saliency: torch.Tensor,
        boxes,
        method: str,
        probability: float,
        cell0_center: float | None,
    ) -> Path:
        size = tuple(batch["image"].shape[-2:])
        title = f"{batch['image_id'][i][:8]} p(mass)={probability:.2f}"
        picture = render_overlay(
            batch["image"][i, 0],
            torch.zeros(0, 4),
            method_panels({method: saliency[0]}, size, cell0_center),
            {method: boxes},
            title,
        )
        path = self.output_dir / "overlays" / f"{batch['image_id'][i]}.png"
        write_png(path, picture)
        return path

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        suffix = f".rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        json_path = self.output_dir / f"predictions{suffix}.json"
        json_path.write_text(json.dumps(self._records, indent=2))
        with open(self.output_dir / f"predictions{suffix}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in _csv_rows(self._records):
                writer.writerow(row)
        failed = sum(1 for r in self._records if r.get("error"))
        log.info("predictions for %d images (%d unreadable) in %s", len(self._records), failed, self.output_dir)


def _csv_rows(records: list[dict[str, Any]]):
    for record in records:
        base = {"image_id": record["image_id"], "path": record["path"], "error": record.get("error", "")}
        if record.get("error"):
            yield base
            continue
        base["probability"] = f"{record['probability']:.6f}"
        if not record["boxes"]:
            yield base
        for k, box in enumerate(record["boxes"]):
            yield (
                base
                | {"box": k}
                | {key: f"{box[key]:.2f}" for key in ("xmin", "ymin", "xmax", "ymax")}
                | {"score": f"{box['score']:.6f}"}
            )
