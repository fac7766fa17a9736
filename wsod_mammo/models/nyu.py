"""NYU's pretrained GMIC checkpoints (nyukat/GMIC `models/sample_model_{1..5}.p`): key mapping and loading.

The files are torch-saved state dicts; they are read with `torch.load(..., weights_only=True)` only, so nothing
from a file is ever executed. Key layout -> our modules:

    ds_net.*                              -> global_network.*   (ResNet-22)
    left_postprocess_net.gn_conv_last.*   -> saliency_head.*    (class-specific)
    dn_resnet.*                           -> local_network.*    (timm ResNet-18)
    mil_attn_V / mil_attn_U / mil_attn_w  -> attention_v / attention_u / attention_w
    classifier_linear.*                   -> classifier.*       (class-specific)
    fusion_dnn.*                          -> fusion.*           (class-specific)
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from wsod_mammo.models.gmic import GMIC

log = logging.getLogger(__name__)

KEY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("ds_net.", "global_network."),
    ("left_postprocess_net.gn_conv_last.", "saliency_head."),
    ("dn_resnet.", "local_network."),
    ("mil_attn_V.", "attention_v."),
    ("mil_attn_U.", "attention_u."),
    ("mil_attn_w.", "attention_w."),
    ("classifier_linear.", "classifier."),
    ("fusion_dnn.", "fusion."),
)
#: Our layers whose first dimension is the number of classes; freshly initialized when it differs from the file.
CLASS_SPECIFIC_LAYERS: tuple[str, ...] = ("saliency_head", "classifier", "fusion")
#: percent_t of NYU's five sample models (nyukat/GMIC README), used when a file is named sample_model_<i>.p.
NYU_PERCENT_T: dict[int, float] = {1: 0.02, 2: 0.03, 3: 0.03, 4: 0.05, 5: 0.1}
NYU_NUM_CLASSES = 2


def _swap_prefix(key: str, to_ours: bool) -> str | None:
    for nyu, ours in KEY_PREFIXES:
        src, dst = (nyu, ours) if to_ours else (ours, nyu)
        if key.startswith(src):
            return dst + key[len(src) :]
    return None


def to_nyu_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our GMIC state dict -> NYU's key layout (same tensors)."""
    out = {}
    for key, value in state_dict.items():
        nyu_key = _swap_prefix(key, to_ours=False)
        if nyu_key is None:
            raise ValueError(f"to_nyu_keys: key {key!r} has no NYU counterpart")
        out[nyu_key] = value
    return out


def load_nyu_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read a NYU checkpoint file as a state dict {key: tensor}, with `weights_only=True` on the CPU."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path}: not a weights-only torch state dict ({error})") from error
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise ValueError(f"{path}: expected a state dict {{str: Tensor}}, found {type(obj).__name__}")
    return obj


def _check_keys(model: nn.Module, state_dict: dict[str, Tensor], source: str) -> tuple[dict[str, Tensor], set[str]]:
    """Map NYU keys onto ours; raise listing missing, unexpected and mis-shaped keys. Returns (mapped, fresh)."""
    own = model.state_dict()
    mapped, unexpected = {}, []
    for key, value in state_dict.items():
        ours = _swap_prefix(key, to_ours=True)
        if ours is None or ours not in own:
            unexpected.append(key)
        else:
            mapped[ours] = value
    missing = [_swap_prefix(k, to_ours=False) for k in own if k not in mapped]
    fresh, misshaped = set(), []
    for key, value in mapped.items():
        if tuple(value.shape) == tuple(own[key].shape):
            continue
        layer = key.split(".")[0]
        if layer in CLASS_SPECIFIC_LAYERS and value.ndim >= 1 and value.shape[1:] == own[key].shape[1:]:
            fresh.add(layer)
        else:
            misshaped.append(
                f"{_swap_prefix(key, to_ours=False)}: file {tuple(value.shape)}, model {tuple(own[key].shape)}"
            )
    if missing or unexpected or misshaped:
        raise ValueError(
            f"{source}: does not match GMIC's NYU key layout; missing keys: {missing}; unexpected keys: {unexpected}; "
            f"mis-shaped keys: {misshaped}"
        )
    return mapped, fresh


def load_nyu_state_dict(model: GMIC, state_dict: dict[str, Tensor], source: str = "state dict") -> list[str]:
    """Load a NYU-layout state dict into `model` in place; return the layers left freshly initialized.

    Class-specific layers (`CLASS_SPECIFIC_LAYERS`) whose class count differs from the model's are skipped
    (and logged at WARNING); every other key must be present with the right shape, else ValueError naming
    `source` and listing the missing, unexpected and mis-shaped keys.
    """
    mapped, fresh = _check_keys(model, state_dict, source)
    kept = {k: v for k, v in mapped.items() if k.split(".")[0] not in fresh}
    model.load_state_dict(kept, strict=False)
    layers = sorted(fresh)
    if layers:
        log.warning(
            "%s: freshly initialized %s (the file has %d classes, the model %d)",
            source,
            layers,
            state_dict["classifier_linear.weight"].shape[0],
            model.num_classes,
        )
    return layers


def gmic_from_nyu_checkpoint(cls: type[GMIC], path: str | Path, **overrides: object) -> GMIC:
    """Build `cls(**overrides)` and load the NYU file at `path` into it.

    Defaults taken from the file unless overridden: `num_classes` (2 in NYU's files) and, for a file named
    `sample_model_<i>.p`, NYU's `percent_t` for model i.
    """
    state_dict = load_nyu_checkpoint(path)
    kwargs = dict(overrides)
    if "classifier_linear.weight" in state_dict:
        kwargs.setdefault("num_classes", int(state_dict["classifier_linear.weight"].shape[0]))
    match = re.fullmatch(r"sample_model_(\d)\.p", Path(path).name)
    if match and int(match.group(1)) in NYU_PERCENT_T:
        kwargs.setdefault("percent_t", NYU_PERCENT_T[int(match.group(1))])
    model = cls(**kwargs)  # type: ignore[arg-type]
    load_nyu_state_dict(model, state_dict, source=str(path))
    return model
