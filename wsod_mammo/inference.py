"""Inference from any mammogram, for notebooks and scripts: load once, then call on paths or arrays.

    from wsod_mammo.inference import Predictor
    predictor = Predictor.from_nyu("sample_model_1.p")            # or Predictor.from_checkpoint("best.ckpt")
    result = predictor("scan.dcm", methods=["gradcampp", "cam"])[0]  # also PNG/TIFF paths, numpy arrays
    result.probabilities, result.boxes, result.scores                # boxes: (M, 4) xyxy in the ORIGINAL pixels
    result.class_name, predictor.class_names   # "benign" (class_index=0), ["benign", "malignant"] for NYU's
    result.maps["cam"]                                               # (C, h, w) saliency map of each method

Every output is in the original image's pixel frame (flip, breast crop and resize undone by ``geometry``).
``wsod predict`` is a thin layer on this module: its writer turns each batch's outputs into ``Prediction``s with the
same ``predictions_from_outputs`` and only serializes them. Weights are read with ``weights_only=True`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from wsod_mammo.data.dicom import describe_failure, not_an_image
from wsod_mammo.data.geometry import Geometry, box_sizes_mm, boxes_to_original
from wsod_mammo.data.images import load_padded
from wsod_mammo.data.transforms import stack_padding, standardize_batch
from wsod_mammo.detection.boxes import DEFAULT_THRESHOLD, saliency_to_boxes
from wsod_mammo.models.nyu import NYU_CLASS_NAMES, from_nyu_checkpoint
from wsod_mammo.saliency.base import SaliencyMethod
from wsod_mammo.training.checkpoints import PAPER_INPUT_SIZE, read_lightning_checkpoint
from wsod_mammo.training.checkpoints import recorded_frame as recorded_frame  # the Python API's, as before
from wsod_mammo.training.evaluation_options import Alignment, map_placement
from wsod_mammo.training.module import GMICLitModule
from wsod_mammo.training.module_from_checkpoint import module_from_checkpoint, nyu_to_checkpoint
from wsod_mammo.training.predict_breasts import breast_rows

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
    geometry = Geometry.coerce(geometry)
    regions = [geometry.content_box]  # the padding of fit and native is not the image: no box there
    boxes, scores = saliency_to_boxes(
        saliency, size, threshold, probability, cell0_center=cell0_center, regions=regions
    )[0]
    return boxes, scores, boxes_to_original(boxes.double(), geometry).float()


def output_names(module: GMICLitModule, given: Sequence[str] | None) -> list[str]:
    """The names of ``module``'s outputs: its checkpoint's, else ``given`` (one per output), else ``class <k>``."""
    count, recorded = module.model.num_classes, module.recorded_class_names()
    given = [str(name) for name in given] if given is not None else None
    if given is not None and len(given) != count:
        raise ValueError(f"Predictor.class_names: the model has {count} output(s), {len(given)} names given: {given}")
    if recorded and given is not None and given != recorded:
        raise ValueError(f"Predictor.class_names: the checkpoint names its outputs {recorded}, not {given}")
    return padded_class_names(recorded or given, count)


def padded_class_names(names: Sequence[str] | None, count: int) -> list[str]:
    """``count`` output names: ``names`` in order, ``class <k>`` for the outputs it does not name (a checkpoint or
    data that records none)."""
    given = list(names or [])
    return [str(given[k]) if k < len(given) else f"class {k}" for k in range(count)]


@dataclass
class Prediction:
    """What the model says about one image; boxes in the original image's pixel frame.

    An input that could not be read (``errors="report"``, and every unreadable file of ``wsod predict``) is a
    Prediction whose ``error`` says ``"<path>: <reason>"``, with empty outputs and no geometry.
    """

    source: str  # the path, or "array <i>"
    probabilities: np.ndarray  # (C,) y_fusion
    boxes: np.ndarray  # (M, 4) xyxy, original pixels, from the `method` map of class `class_index`
    scores: np.ndarray  # (M,)
    maps: dict[str, np.ndarray]  # method -> (C, h, w), non-negative, un-normalized
    laterality: str
    laterality_source: str | None  # "dicom", "given", "inferred" or "annotations" (the data's CSV); None if unreadable
    geometry: Geometry | None
    method: str = ""  # the map the boxes come from
    threshold: float = DEFAULT_THRESHOLD  # its binarization threshold (on the min-max normalized map)
    class_index: int = 0  # the class of the boxes
    class_names: list[str] = field(default_factory=list)  # the model's output classes, in `probabilities` order
    input_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # (M, 4) the model's frame
    error: str | None = None
    # why this output may not be trusted as usual: another modality, raw (FOR PROCESSING) data, a mirrored tag
    warnings: list[str] = field(default_factory=list)
    study: str = ""  # the DICOM's StudyInstanceUID: the exam, whose views of one side are one breast ("" for others)
    view: str = ""  # the DICOM's ViewPosition (CC, MLO...); empty for PNG/TIFF files, arrays and untagged DICOMs
    # a DICOM object holding no image, by its class ("Mammography CAD SR Storage"): no failure, nothing to predict
    not_an_image: str = ""
    instance: str = ""  # the DICOM's SOPInstanceUID: one image, whichever copies of it were given ("" for others)

    @property
    def probability(self) -> float:
        """The probability of ``class_index`` (NaN for an unreadable input)."""
        return float(self.probabilities[self.class_index]) if self.error is None else float("nan")

    @property
    def box_sizes_mm(self) -> list[float]:
        """Each box's longer side in mm, by the DICOM's pixel spacing (NaN for PNG/TIFF files, arrays and DICOMs
        without one): what a reader measures a finding by."""
        spacing = None if self.geometry is None else self.geometry.spacing_mm
        return box_sizes_mm(self.boxes, spacing).tolist()

    @property
    def class_name(self) -> str:
        """The name of ``class_index`` (``class <k>`` where the model records none)."""
        return padded_class_names(self.class_names, self.class_index + 1)[self.class_index]

    @classmethod
    def failed(cls, source: str, error: str, not_an_image: str = "") -> Prediction:
        """The Prediction of an input that could not be read: ``error`` says why, every output is empty;
        ``not_an_image`` names the class of a DICOM object that holds no image."""
        empty = np.zeros((0, 4), np.float32)
        nothing = np.zeros(0, np.float32)
        return cls(source, nothing, empty, nothing, {}, "", None, None, error=error, not_an_image=not_an_image)


class Loaded(NamedTuple):
    """One input as the model saw it: where it came from and how it was brought to the input frame."""

    source: str
    geometry: Geometry | dict[str, Any]
    laterality: str
    laterality_source: str | None
    warnings: tuple[str, ...] = ()  # ``InputImage.warnings``
    study: str = ""  # ``InputImage.study``
    view: str = ""  # ``InputImage.view``
    instance: str = ""  # ``InputImage.instance``


def check_class_index(class_index: int, classes: int) -> None:
    """``class_index`` must name one of the model's ``classes`` outputs."""
    if not 0 <= class_index < classes:
        raise ValueError(f"class_index: expected 0..{classes - 1}, found {class_index}")


def predictions_from_outputs(
    probabilities: Tensor,
    maps: dict[str, Tensor],
    inputs: Sequence[Loaded],
    method: str,
    threshold: float,
    input_size: tuple[int, int],
    class_index: int = 0,
    cell0_center: float | None = None,
    min_score: float = 0.0,
    class_names: Sequence[str] = (),
) -> list[Prediction]:
    """A batch's model outputs -> one ``Prediction`` per input (the one path of ``Predictor`` and ``wsod predict``).

    Args:
        probabilities: ``(N, C)`` y_fusion.
        maps: method -> ``(N, C, h, w)`` saliency maps; the boxes come from ``maps[method]`` of ``class_index``.
        inputs: per image its source and geometry (input frame ``input_size`` -> original pixels).
        threshold: binarization threshold of the min-max normalized map (see ``saliency_to_boxes``).
        cell0_center: where the map's first cell sits (``map_placement``; None: plain resizing).
        min_score: boxes scoring below it are left out.
        class_names: the model's output classes (``Prediction.class_name``).
    """
    if method not in maps:
        raise ValueError(f"method: {method!r} is not among the maps computed ({sorted(maps)})")
    check_class_index(class_index, probabilities.shape[1])
    probabilities = probabilities.detach().float().cpu()
    maps = {name: value.detach().float().cpu() for name, value in maps.items()}
    out = []
    for i, loaded in enumerate(inputs):
        saliency, probability = maps[method][i : i + 1, class_index], probabilities[i : i + 1, class_index]
        found = detections_in_original(saliency, input_size, threshold, probability, loaded.geometry, cell0_center)
        keep = found[1] >= min_score
        boxes, scores, original = (t[keep].numpy() for t in found)
        out.append(Prediction(
            source=loaded.source, probabilities=probabilities[i].numpy().copy(), boxes=original, scores=scores,
            maps={name: value[i].numpy().copy() for name, value in maps.items()}, laterality=loaded.laterality,
            laterality_source=loaded.laterality_source, geometry=Geometry.coerce(loaded.geometry), method=method,
            threshold=float(threshold), class_index=class_index, class_names=list(class_names), input_boxes=boxes,
            warnings=list(loaded.warnings) + _nonfinite_warning(probabilities[i]), study=loaded.study,
            view=loaded.view, instance=loaded.instance,
        ))  # fmt: skip
    return out


#: the warning of an image whose probabilities are NaN or infinite (``wsod predict`` counts these)
NONFINITE_OUTPUT = "the model's probability is NaN or infinite: its weights diverged; this image's figures mean nothing"


def _nonfinite_warning(probabilities: Tensor) -> list[str]:
    return [] if bool(torch.isfinite(probabilities).all()) else [NONFINITE_OUTPUT]


class Predictor:
    """A GMIC loaded once; ``predictor(inputs)`` -> one ``Prediction`` per input.

    Args:
        module: the model (``from_checkpoint`` / ``from_nyu`` build it, or ``GMICLitModule.load_from_checkpoint``).
        input_size: ``(H, W)`` the images are brought to (the model's training size; 2944 x 1920 in the study).
            ``input_size``, ``crop_breast`` and ``resize`` not given are those the module's checkpoint was trained
            with, else the study's (2944 x 1920, cropped, ``stretch``).
        crop_breast: crop to the breast before resizing, as in training.
        device: where the model runs.
        resize: ``stretch`` (the study), ``fit`` (aspect kept, one scale, padded) or ``native`` (scale 1, cut to
            a window of ``input_size`` or padded: the closest to the input NYU's weights get in nyukat/GMIC).
        alignment: where each map cell is placed on the image: ``resize`` (plain resizing, the study's and
            ``wsod predict``'s default) or ``receptive_field`` (each cell centred on its receptive field), as the
            ``alignment`` of the ``PredictionWriter`` callback.
        class_names: the names of the model's outputs, for a checkpoint that records none (``wsod fit``
            checkpoints before 2026-12-03; ``wsod predict`` names them by its config's ``data.classes``); a
            checkpoint that records names keeps them, and other names given are an error.
    """

    def __init__(
        self, module: GMICLitModule, input_size: tuple[int, int] | None = None, crop_breast: bool | None = None,
        device: str | torch.device = "cpu", resize: str | None = None,
        alignment: Alignment = "resize", class_names: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        self.module = module.eval().to(device)
        self.cell0_center = map_placement(self.module, alignment)  # checks alignment, as the callbacks do
        # what is not given: the frame the module's checkpoint was trained in (a module loaded in Python with
        # load_from_checkpoint ran at 2944 x 1920 whatever it was trained at), else the study's
        recorded = getattr(module, "recorded_input_frame", None) or {}
        input_size = input_size or recorded.get("input_size") or PAPER_INPUT_SIZE
        self.resize = resize or recorded.get("resize") or "stretch"
        crop_breast = crop_breast if crop_breast is not None else bool(recorded.get("crop_breast", True))
        self.input_size, self.crop_breast, self.device = (int(input_size[0]), int(input_size[1])), crop_breast, device
        #: the model's output classes: those its checkpoint recorded, else those given, else ``class <k>``
        self.class_names = output_names(self.module, class_names)

    @classmethod
    def from_checkpoint(cls, path: str | Path, input_size: tuple[int, int] | None = None, **kwargs: Any) -> Predictor:
        """From a ``wsod fit`` checkpoint; ``input_size``, ``crop_breast`` and ``resize`` default to the input frame
        the checkpoint was trained in (``input_frame``, as ``wsod predict --ckpt_path`` with the run's config)."""
        checkpoint = read_lightning_checkpoint(path, "checkpoint:")  # its frame: the module's recorded_input_frame
        frame = recorded_frame(checkpoint, f"checkpoint: {path}")  # checked whatever is given, naming the file
        if input_size is None and "input_size" not in frame:
            # `wsod fit` checkpoints record it since 2026-11-26; an older one ran at 2944 x 1920 without a word
            raise ValueError(
                f"{path}: the checkpoint records no input size (`wsod fit` checkpoints before 2026-11-26 do not): "
                "give the one its fit trained at, Predictor.from_checkpoint(path, input_size=(H, W)), and crop_breast "
                "and resize where they were not the defaults"
            )
        return cls(module_from_checkpoint(checkpoint, path), input_size, **kwargs)

    @classmethod
    def from_nyu(
        cls, path: str | Path, input_size: tuple[int, int] = PAPER_INPUT_SIZE, predict_saliency: str = "gradcampp",
        model_overrides: dict[str, Any] | None = None, **kwargs: Any,
    ) -> Predictor:  # fmt: skip
        """From nyukat/GMIC's ``sample_model_<i>.p`` (2 classes: benign, malignant), no training.

        ``model_overrides`` go to ``GMIC`` (e.g. ``crop_shape`` for small inputs)."""
        model = from_nyu_checkpoint(path, **(model_overrides or {}))
        module = GMICLitModule(model, predict_saliency=predict_saliency)
        module.class_names = list(NYU_CLASS_NAMES) if model.num_classes == len(NYU_CLASS_NAMES) else None
        return cls(module, input_size, **kwargs)

    def __call__(
        self,
        inputs: Input | Sequence[Input],
        laterality: str | Sequence[str | None] | None = None,
        methods: Sequence[str | SaliencyMethod] | None = None,
        class_index: int = 0,
        threshold: float | None = None,
        min_score: float = 0.0,
        batch_size: int = 1,
        errors: Literal["raise", "report"] = "raise",
    ) -> list[Prediction]:
        """Classify and localize each input.

        Args:
            inputs: a file path (DICOM by content, PNG/TIFF) or ``(H, W)`` array (uint8, uint16, float in [0, 1]),
                or a list of them; a folder is not expanded (one Prediction per input): list its files.
            laterality: ``L``/``R`` per input (or one for all) for non-DICOM inputs; None infers it.
            methods: saliency methods (names or instances) whose maps are returned (default: the model's
                ``predict_saliency``); boxes come from the first.
            class_index: the class whose boxes are returned.
            threshold: binarization threshold of the normalized map, in [0, 1] (default: the checkpoint's validated
                one for the first method, with its settings; else 0.5).
            min_score: boxes scoring below it, in [0, 1], are left out.
            batch_size: inputs per forward pass.
            errors: ``raise`` a ValueError naming an input that cannot be read, or ``report`` it as a Prediction
                whose ``error`` says why (what ``wsod predict`` does), keeping the other inputs' results.
        """
        items = [inputs] if isinstance(inputs, str | Path | np.ndarray) else list(inputs)
        sides = [laterality] * len(items) if laterality is None or isinstance(laterality, str) else list(laterality)
        if len(sides) != len(items):
            raise ValueError(f"laterality: expected one per input ({len(items)}), found {len(sides)}")
        if errors not in ("raise", "report") or batch_size < 1:
            raise ValueError(f"errors: expected 'raise' or 'report', batch_size >= 1; found {errors!r}, {batch_size}")
        for option, value in (("threshold", threshold), ("min_score", min_score)):  # as PredictionWriter refuses
            if value is not None and not 0.0 <= value <= 1.0:  # min_score=10 (0.10 meant) left no box, unsaid
                raise ValueError(f"{option}: expected a value in [0, 1], found {value}")
        check_class_index(class_index, self.module.model.num_classes)  # before any image is read and run through
        # a name as the maps are keyed: ``GradCAM`` is looked up as ``gradcam`` (it failed after the forward, "not
        # among the maps computed", and missed its validated threshold)
        given = list(methods or [self.module.predict_saliency])
        chosen = [m if isinstance(m, SaliencyMethod) else self.module._named(m).name for m in given]
        validated = self.module.validated_threshold(chosen[0])  # an instance's, only for the settings validated
        cut = threshold if threshold is not None else (DEFAULT_THRESHOLD if validated is None else validated)
        out: list[Prediction] = []
        for start in range(0, len(items), batch_size):  # one batch of images in memory at a time
            pairs = zip(items[start : start + batch_size], sides[start : start + batch_size], strict=True)
            chunk = [self._load(item, side, start + i, errors) for i, (item, side) in enumerate(pairs)]
            readable = [loaded for loaded in chunk if not isinstance(loaded, Prediction)]
            made = iter(self._predict(readable, chosen, cut, class_index, min_score) if readable else [])
            out += [read if isinstance(read, Prediction) else next(made) for read in chunk]  # failures keep their place
        return out

    def _load(
        self, item: Input, side: str | None, index: int, errors: str
    ) -> tuple[np.ndarray, np.ndarray | None, Loaded] | Prediction:
        """One input -> its input-frame image, its padding mask (None when it has none) and ``Loaded``;
        unreadable with ``errors="report"``: its Prediction."""
        source = str(item) if not isinstance(item, np.ndarray) else f"array {index}"
        try:
            loaded = load_padded(item, self.input_size, side, self.crop_breast, self.resize, name=source)
        except Exception as err:  # with errors="report" no input may cost the others their results
            if errors == "raise":
                raise
            return Prediction.failed(source, describe_failure(source, err), not_an_image(err))
        info = Loaded(source, loaded.geometry, loaded.laterality, loaded.laterality_source, loaded.warnings,
                      loaded.study, loaded.view, loaded.instance)  # fmt: skip
        return loaded.image, loaded.padding, info

    def _predict(
        self, readable: list[tuple[np.ndarray, np.ndarray | None, Loaded]], methods: list[str | SaliencyMethod],
        threshold: float, class_index: int, min_score: float,
    ) -> list[Prediction]:  # fmt: skip
        images = torch.stack([torch.from_numpy(image) for image, _, _ in readable])[:, None]  # (N, 1, H, W)
        padding = stack_padding([mask for _, mask, _ in readable])  # left out of the standardization statistics
        x = standardize_batch(images.to(self.device), None if padding is None else padding.to(self.device))
        output, maps = self.module.evaluate(x, methods)
        infos = [info for _, _, info in readable]
        first = methods[0] if isinstance(methods[0], str) else methods[0].name  # the maps are named
        args = (first, threshold, self.input_size, class_index, self.cell0_center, min_score, self.class_names)
        return predictions_from_outputs(output.y_fusion, maps, infos, *args)


def prediction_record(result: Prediction, image_id: str, class_names: list[str] | None = None) -> dict[str, Any]:
    """One image's ``predictions.json`` record (an unreadable input's: ``image_id``, ``path`` and ``error``, and
    ``not_an_image`` naming the class of a DICOM object that holds none):
    ``class`` and ``probability`` of the boxes' class, ``probabilities`` of every class by name, ``study`` (the
    DICOM's StudyInstanceUID; empty for other files), its boxes with their ``size_mm`` (null without a pixel
    spacing)."""
    record: dict[str, Any] = {"image_id": image_id, "path": result.source}
    if result.error:
        kind = {"not_an_image": result.not_an_image} if result.not_an_image else {}  # what the DICOM object is
        return record | {"error": result.error} | kind
    names = padded_class_names(class_names, len(result.probabilities))
    return record | {
        "laterality": result.laterality,
        "laterality_source": result.laterality_source,
        "view": result.view,
        "study": result.study,
        "instance": result.instance,
        "class": names[result.class_index],
        "probability": _json_number(result.probability),
        "probabilities": dict(zip(names, (_json_number(p) for p in result.probabilities), strict=True)),
        "warnings": list(result.warnings),
        "method": result.method,
        "threshold": result.threshold,
        "boxes": [
            {"xmin": b[0], "ymin": b[1], "xmax": b[2], "ymax": b[3], "score": s, "size_mm": _json_number(size)}
            for b, s, size in zip(result.boxes.tolist(), result.scores.tolist(), result.box_sizes_mm, strict=True)
        ],
    }


def _json_number(value: Any) -> float | None:
    """A probability as JSON takes it: NaN and infinity (a diverged model's) are not JSON numbers, so null."""
    value = float(value)
    return value if math.isfinite(value) else None


def breast_predictions(predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """The Predictor's results per breast, as ``wsod predict``'s ``breasts.json``: one dict per (study, laterality)
    of the readable inputs that name their exam (DICOMs), in the order of each breast's first image, with its
    ``image_ids`` (here the inputs' sources), ``views``, ``probability`` (of the boxes' class) and ``probabilities``
    (per class): the mean of its views' (None where a view's output is not finite). PNG/TIFF files and arrays name
    no exam and are left out."""
    return breast_rows([prediction_record(p, p.source, p.class_names) for p in predictions])


__all__ = [
    "Loaded", "Prediction", "Predictor", "breast_predictions", "detections_in_original", "nyu_to_checkpoint",
    "prediction_record", "predictions_from_outputs",
]  # fmt: skip
