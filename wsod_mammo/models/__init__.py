"""GMIC and its parts: the global ResNet-22, patch selection, and NYU checkpoint loading."""

from wsod_mammo.models.gmic import GMIC, GlobalScore, GMICOutput
from wsod_mammo.models.nyu import from_nyu_checkpoint, load_nyu_checkpoint, load_nyu_state_dict, to_nyu_state_dict
from wsod_mammo.models.resnet import ACTIVATION_NAMES, ResNet22

__all__ = [
    "ACTIVATION_NAMES",
    "GMIC",
    "GMICOutput",
    "GlobalScore",
    "ResNet22",
    "from_nyu_checkpoint",
    "load_nyu_checkpoint",
    "load_nyu_state_dict",
    "to_nyu_state_dict",
]
