"""Inference from any mammogram, for notebooks and scripts: load once, then call on paths or arrays.

    from wsod_mammo.inference import Predictor
    predictor = Predictor.from_nyu("sample_model_1.p")            # or Predictor.from_checkpoint("best.ckpt")
    result = predictor("scan.dcm", methods=["gradcampp", "cam"])[0]  # also PNG/TIFF paths, numpy arrays
    result.probabilities, result.boxes, result.scores                # boxes: (M, 4) xyxy in the ORIGINAL pixels
    result.maps["cam"]                                               # (C, h, w) saliency map of each method

Every output is in the original image's pixel frame (flip, breast crop and resize undone by ``geometry``);
``wsod predict`` writes its boxes with the same ``detections_in_original``. Weights are read with
``weights_only=True`` only.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsod_mammo.data.geometry import Geometry, boxes_to_original
from wsod_mammo.data.images import load_padded
from wsod_mammo.data.transforms import standardize_batch
from wsod_mammo.detection.boxes import saliency_to_boxes
from wsod_mammo.models import GMIC
from wsod_mammo.models.nyu import from_nyu_checkpoint
from wsod_mammo.training.checkpoints import read_lightning_checkpoint
from wsod_mammo.training.module import GMICLitModule

PAPER_INPUT_SIZE = (2944, 1920)
Input = str | Path | np.ndarray


def detections_in_original(
    saliency: Tensor,
    size: tuple[int, int],
    threshold: float,
    probability: Tensor,
    geometry: Geometry | dict[str, Any],
    cell0_center: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One image's map ``(1, h, w)`` -> boxes in the input frame ``(M, 4)``, scores ``(M,)``, boxes in the original
    image's pixels ``(M, 4)`` (float32; see ``saliency_to_boxes`` for thresholding and scores)."""
    boxes, scores = saliency_to_boxes(saliency, size, threshold, probability, cell0_center=cell0_center)[0]
    return boxes, scores, boxes_to_original(boxes.double(), geometry).float()


@dataclass
class Prediction:
    """What the model says about one image; boxes in the original image's pixel frame."""

    source: str  # the path, or "array <i>"
    probabilities: np.ndarray  # (C,) y_fusion
    boxes: np.ndarray  # (M, 4) xyxy, original pixels, from the `box_method` map of class `class_index`
    scores: np.ndarray  # (M,)
    maps: dict[str, np.ndarray]  # method -> (C, h, w), non-negative, un-normalized
    laterality: str
    laterality_source: str  # "dicom", "given" or "inferred"
    geometry: Geometry
    extra: dict[str, Any] = field(default_factory=dict)


def _instantiate(config: Any) -> Any:
    """``{"class_path": ..., "init_args": {...}}`` (as LightningCLI saves it) -> the object; other values unchanged."""
    if not (isinstance(config, dict) and "class_path" in config):
        return config
    module, _, name = config["class_path"].rpartition(".")
    if not module.startswith("wsod_mammo."):
        raise ValueError(f"checkpoint: refusing to build {config['class_path']} (only wsod_mammo classes)")
    return getattr(importlib.import_module(module), name)(**config.get("init_args", {}))


def _module_from_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> GMICLitModule:
    """A read ``wsod fit`` checkpoint -> GMICLitModule on the CPU (weights only; thresholds restored)."""
    state, hparams = checkpoint["state_dict"], checkpoint.get("hyper_parameters", {})
    model = _instantiate(hparams.get("model"))
    if not isinstance(model, GMIC):
        if "model.classifier.weight" not in state:
            raise ValueError(f"checkpoint: {path}: no GMIC weights (model.classifier.weight) in its state_dict")
        model = GMIC(num_classes=int(state["model.classifier.weight"].shape[0]))
    kwargs = {k: hparams[k] for k in ("train_saliency", "saliency_target", "predict_saliency") if k in hparams}
    module = GMICLitModule(model, **kwargs)
    module.load_state_dict(state)
    module.on_load_checkpoint(checkpoint)
    return module


def nyu_to_checkpoint(
    nyu_path: str | Path, out_path: str | Path, predict_saliency: str = "gradcampp", **model_overrides: Any
) -> Path:
    """Write a Lightning checkpoint (``wsod test/predict --ckpt_path``, ``Predictor.from_checkpoint``) holding NYU's
    weights as a ``GMICLitModule``; ``model_overrides`` go to ``GMIC`` (``num_classes`` defaults to NYU's 2)."""
    import lightning

    model = from_nyu_checkpoint(nyu_path, **model_overrides)
    init_args = {
        "num_classes": model.num_classes, "percent_t": model.percent_t, "num_patches": model.num_patches,
        "crop_shape": list(model.crop_shape), "post_processing_dim": model.saliency_head.in_channels,
    }  # fmt: skip
    module = GMICLitModule(model, predict_saliency=predict_saliency)
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": {
            "_class_path": f"{GMICLitModule.__module__}.{GMICLitModule.__name__}",
            "model": {"class_path": "wsod_mammo.models.GMIC", "init_args": init_args},
            "predict_saliency": module.predict_saliency,
        },
        "pytorch-lightning_version": lightning.__version__,
        "detection_thresholds": {},
        "init_from_nyu": str(nyu_path),
    }
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    return out


class Predictor:
    """A GMIC loaded once; ``predictor(inputs)`` -> one ``Prediction`` per input.

    Args:
        module: the model (``from_checkpoint`` / ``from_nyu`` build it).
        input_size: ``(H, W)`` the images are brought to (the model's training size; 2944 x 1920 in the study).
        crop_breast: crop to the breast before resizing, as in training.
        device: where the model runs.
        resize: ``stretch`` (the study) or ``fit`` (aspect kept, padded: how NYU's weights saw images).
    """

    def __init__(
        self, module: GMICLitModule, input_size: tuple[int, int] = PAPER_INPUT_SIZE, crop_breast: bool = True,
        device: str | torch.device = "cpu", resize: str = "stretch",
    ) -> None:  # fmt: skip
        self.module = module.eval().to(device)
        self.resize = resize
        self.input_size, self.crop_breast, self.device = (int(input_size[0]), int(input_size[1])), crop_breast, device

    @classmethod
    def from_checkpoint(cls, path: str | Path, input_size: tuple[int, int] | None = None, **kwargs: Any) -> Predictor:
        """From a ``wsod fit`` checkpoint; ``input_size`` defaults to the size the checkpoint's data used."""
        checkpoint = read_lightning_checkpoint(path, "checkpoint:")
        checkpoint_size = (checkpoint.get("datamodule_hyper_parameters") or {}).get("input_size")
        size = input_size or checkpoint_size or PAPER_INPUT_SIZE
        return cls(_module_from_checkpoint(checkpoint, path), tuple(size), **kwargs)

    @classmethod
    def from_nyu(
        cls, path: str | Path, input_size: tuple[int, int] = PAPER_INPUT_SIZE, predict_saliency: str = "gradcampp",
        model_overrides: dict[str, Any] | None = None, **kwargs: Any,
    ) -> Predictor:  # fmt: skip
        """From nyukat/GMIC's ``sample_model_<i>.p`` (2 classes: benign, malignant), no training.

        ``model_overrides`` go to ``GMIC`` (e.g. ``crop_shape`` for small inputs)."""
        model = from_nyu_checkpoint(path, **(model_overrides or {}))
        return cls(GMICLitModule(model, predict_saliency=predict_saliency), input_size, **kwargs)

    def __call__(
        self,
        inputs: Input | Sequence[Input],
        laterality: str | Sequence[str | None] | None = None,
        methods: Sequence[str] | None = None,
        class_index: int = 0,
        threshold: float | None = None,
    ) -> list[Prediction]:
        """Classify and localize each input.

        Args:
            inputs: a path (DICOM by content, PNG/TIFF) or ``(H, W)`` array (uint8, uint16, float in [0, 1]), or a
                list of them.
            laterality: ``L``/``R`` per input (or one for all) for non-DICOM inputs; None infers it.
            methods: saliency methods whose maps are returned (default: the model's ``predict_saliency``); boxes
                come from the first.
            class_index: the class whose boxes are returned.
            threshold: binarization threshold of the normalized map (default: the checkpoint's validated one, 0.5).
        """
        items = [inputs] if isinstance(inputs, str | Path | np.ndarray) else list(inputs)
        sides = list(laterality) if isinstance(laterality, list | tuple) else [laterality] * len(items)
        if len(sides) != len(items):
            raise ValueError(f"laterality: expected one per input ({len(items)}), found {len(sides)}")
        names = list(methods or [self.module.predict_saliency])
        pairs = enumerate(zip(items, sides, strict=True))
        return [self._one(item, side, names, class_index, threshold, i) for i, (item, side) in pairs]

    def _one(self, item: Input, side: str | None, methods: list[str], class_index: int, threshold: float | None,
             index: int) -> Prediction:  # fmt: skip
        image, geometry, side_out, side_source, padding = load_padded(
            item, self.input_size, side, self.crop_breast, self.resize
        )
        mask = None if padding is None else torch.from_numpy(padding)[None, None]  # (1, 1, H, W) bool
        x = standardize_batch(torch.from_numpy(image)[None, None].to(self.device), mask)
        output, maps = self.module.evaluate(x, methods)
        cut = threshold if threshold is not None else self.module.detection_thresholds.get(methods[0], 0.5)
        probability = output.y_fusion[:, class_index].float().cpu()
        saliency = maps[methods[0]][:, class_index].float().cpu()  # (1, h, w)
        _, scores, boxes = detections_in_original(saliency, self.input_size, cut, probability, geometry)
        return Prediction(
            source=str(item) if not isinstance(item, np.ndarray) else f"array {index}",
            probabilities=output.y_fusion[0].float().cpu().numpy(),
            boxes=boxes.numpy(),
            scores=scores.numpy(),
            maps={name: value[0].float().cpu().numpy() for name, value in maps.items()},
            laterality=side_out,
            laterality_source=side_source,
            geometry=geometry,
        )


__all__ = ["Prediction", "Predictor", "detections_in_original", "nyu_to_checkpoint"]
