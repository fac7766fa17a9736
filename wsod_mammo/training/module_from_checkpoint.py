"""A GMICLitModule rebuilt from a ``wsod fit`` checkpoint read as data (``weights_only=True``): its model and saliency
methods built from the classes the checkpoint records, each checked to be one of wsod_mammo's before anything is
imported or called; and NYU's weights written as such a checkpoint."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from wsod_mammo import __version__
from wsod_mammo.models import GMIC
from wsod_mammo.models.gmic import COMPILE_OPTIONS
from wsod_mammo.models.nyu import NYU_CLASS_NAMES, from_nyu_checkpoint
from wsod_mammo.saliency import SaliencyMethod
from wsod_mammo.training.checkpoints import check_detection_thresholds, check_finite_weights
from wsod_mammo.training.module import GMICLitModule


def _build_gmic(config: Any, path: str | Path) -> GMIC:
    """The GMIC a checkpoint's ``hyper_parameters.model`` (``{"class_path", "init_args"}``, as LightningCLI saves
    it) describes, with eager networks: its compile options say how the fit ran (CUDA graphs on a training GPU, as
    configs/trainer/gpu.yaml), and a reader would spend minutes compiling them before its first image."""
    if not (isinstance(config, dict) and isinstance(config.get("class_path"), str)):
        raise ValueError(
            f"checkpoint: {path}: its hyper_parameters record no model (a checkpoint saved outside `wsod fit`, "
            "without LightningCLI): its crop shape and patch count are unknown; run it with the config that "
            "trained it, `wsod predict --config CONFIG --ckpt_path ...`, or build the module in Python "
            "(`GMICLitModule.load_from_checkpoint(path, model=GMIC(...))`) and give it to "
            "`Predictor(module)`"
        )
    init_args = {k: v for k, v in (config.get("init_args") or {}).items() if k not in COMPILE_OPTIONS}
    return _build_recorded(config | {"init_args": init_args}, GMIC, path, "model")


def _build_recorded(config: dict[str, Any], base: type, path: str | Path, what: str) -> Any:
    """An object a checkpoint records as ``{"class_path", "init_args"}``. The class is looked up and checked to be
    one of wsod_mammo's and a ``base`` BEFORE anything is called: a checkpoint is data, and naming any other
    callable (``wsod_mammo.commands.main``, a module of the user's...) must not import or run it."""
    class_path = config["class_path"]
    module, _, name = class_path.rpartition(".")
    if not module.startswith("wsod_mammo."):
        raise ValueError(
            f"checkpoint: {path}: its {what} is {class_path}, not one of wsod_mammo's, and a checkpoint is data: "
            "Predictor.from_checkpoint imports no module it names. If you trust it, load it with "
            "`GMICLitModule.load_from_checkpoint(path)` (which imports that module) and give the module to "
            "`Predictor(module)`"
        )
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:  # raised bare: "No module named 'wsod_mammo.saliency.x'", naming neither file nor entry
        found = None
    if found is None:
        raise ValueError(
            f"checkpoint: {path}: its {what} is {class_path}, which wsod_mammo {__version__} does not have (a "
            "checkpoint of another version?)"
        )
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ValueError(f"checkpoint: {path}: refusing to build {class_path} (the {what} must be a {base.__name__})")
    try:
        return found(**(config.get("init_args") or {}))
    except (TypeError, ValueError) as error:
        raise ValueError(f"checkpoint: {path}: its {what} {class_path} cannot be built ({error})") from None


def module_from_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> GMICLitModule:
    """A read ``wsod fit`` checkpoint -> GMICLitModule on the CPU (weights only; thresholds restored)."""
    check_detection_thresholds(checkpoint, f"checkpoint: {path}")
    check_finite_weights(checkpoint, f"checkpoint: {path}")
    state, hparams = checkpoint["state_dict"], checkpoint.get("hyper_parameters") or {}
    model = _build_gmic(hparams.get("model"), path)
    options = ("train_saliency", "test_saliency", "saliency_target", "predict_saliency")
    kwargs = {k: _recorded_methods(hparams[k], path, f"model.{k}") for k in options if k in hparams}
    module = GMICLitModule(model, **kwargs)
    try:
        module.load_state_dict(state)
    except RuntimeError as error:  # keys or shapes the recorded model does not have
        raise ValueError(f"checkpoint: {path}: its weights do not fit its recorded model ({error})") from None
    module.on_load_checkpoint(checkpoint)
    return module


def _recorded_methods(value: Any, path: str | Path, option: str) -> Any:
    """A recorded option with its saliency methods built where LightningCLI recorded them by ``class_path``."""
    if isinstance(value, list):
        return [_recorded_methods(item, path, option) for item in value]
    if isinstance(value, dict) and isinstance(value.get("class_path"), str):
        return _build_recorded(value, SaliencyMethod, path, option)
    return value


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
        "gradient_target": model.gradient_target, "global_stem": model.global_network.stem,
        "local_stem": model.local_stem, "patch_ties": model.patch_ties,
    }  # fmt: skip
    module = GMICLitModule(model, predict_saliency=predict_saliency)
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": {
            "_class_path": f"{GMICLitModule.__module__}.{GMICLitModule.__name__}",
            # as LightningCLI records it: GMICLitModule.load_from_checkpoint builds the model from its class_path
            "_instantiator": "lightning.pytorch.cli.instantiate_module",
            "model": {"class_path": "wsod_mammo.models.GMIC", "init_args": init_args},
            "predict_saliency": module.predict_saliency,
        },
        "pytorch-lightning_version": lightning.__version__,
        "detection_thresholds": {},
        "init_from_nyu": str(nyu_path),
        "class_names": list(NYU_CLASS_NAMES) if model.num_classes == len(NYU_CLASS_NAMES) else None,
    }
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    return out
