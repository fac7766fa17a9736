"""GMIC and its parts: the global ResNet-22, patch selection, and NYU checkpoint loading."""

from wsod_mammo.models.gmic import GMIC, GlobalScore, GMICOutput
from wsod_mammo.models.nyu import load_nyu_checkpoint, load_nyu_state_dict
from wsod_mammo.models.resnet import ACTIVATION_NAMES, ResNet22

__all__ = [
    "ACTIVATION_NAMES",
    "GMIC",
    "GMICOutput",
    "GlobalScore",
    "ResNet22",
    "load_nyu_checkpoint",
    "load_nyu_state_dict",
]
