"""Pluggable saliency methods (CAM, GradCAM, GradCAM++, XGradCAM, LayerCAM), registered by name."""

from wsod_mammo.saliency.base import (
    SaliencyInputs,
    SaliencyMethod,
    available_saliency_methods,
    distinct_methods,
    get_saliency_method,
    min_max_normalize,
    normalize_saliency,
    register_saliency_method,
    same_settings,
    upsample_saliency,
)
from wsod_mammo.saliency.compute import compute_saliency
from wsod_mammo.saliency.methods import CAM, GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM

__all__ = [
    "CAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerCAM",
    "SaliencyInputs",
    "SaliencyMethod",
    "XGradCAM",
    "available_saliency_methods",
    "compute_saliency",
    "distinct_methods",
    "get_saliency_method",
    "min_max_normalize",
    "normalize_saliency",
    "register_saliency_method",
    "same_settings",
    "upsample_saliency",
]
