"""NYU's pretrained GMIC checkpoints (nyukat/GMIC `models/sample_model_{1..5}.p`): key mapping and loading.

The files are torch-saved state dicts (NYU's own are torch 1.x's legacy non-zip format; both formats load); they are
read with `torch.load(..., weights_only=True)` only, so nothing from a file is ever executed. Keys GMIC does not use
(NYU's files hold `shared_rep_filter.weight`, 1024 x 1024, that NYU's code also ignores) are dropped and listed in
one log line. Imports run one way: this module depends on `gmic`, never the reverse. Key layout -> our modules:

    ds_net.*                              -> global_network.*   (ResNet-22)
    left_postprocess_net.gn_conv_last.*   -> saliency_head.*    (class-specific)
    dn_resnet.*                           -> local_network.*    (timm ResNet-18)
    mil_attn_V / mil_attn_U / mil_attn_w  -> attention_v / attention_u / attention_w
    classifier_linear.*                   -> classifier.*       (class-specific)
    fusion_dnn.*                          -> fusion.*           (class-specific)
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from wsod_mammo.models.gmic import GMIC
from wsod_mammo.weights_only import WeightsOnlyLoadError, first_nonfinite, load_weights_only

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
#: The two heads of nyukat/GMIC's sample models, in their order.
NYU_CLASS_NAMES = ("benign", "malignant")


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


def load_nyu_checkpoint(path: str | Path, option: str = "init_from_nyu") -> dict[str, Tensor]:
    """Read a NYU checkpoint file (zip or legacy format) as a state dict {key: tensor}, weights only, on the CPU.

    Every failure (missing, foreign, malicious or not-a-state-dict file) is a ValueError naming `option` and the path.
    """
    where = f"{option}: {path}"
    if not Path(path).is_file():
        raise ValueError(f"{where}: no such file (expected an NYU GMIC checkpoint such as sample_model_1.p)")
    try:
        obj = load_weights_only(path)
    except WeightsOnlyLoadError as error:
        raise ValueError(f"{where}: not a weights-only torch state dict ({error})") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise ValueError(f"{where}: expected a state dict {{str: Tensor}}, found {_not_a_state_dict(obj)}")
    if (bad := first_nonfinite(obj)) is not None:  # a fit from them "diverged at step 0": lower the learning rate
        raise ValueError(f"{where}: its weights hold NaN or infinite values (first: {bad}): damaged, or of a fit that "
                         "diverged; nothing can be trained or evaluated from them")  # fmt: skip
    return obj


def _not_a_state_dict(obj: Any) -> str:
    """What a file holds instead of a state dict. A dict names its entries that are no tensors: a checkpoint that
    wraps its weights (a `wsod fit` checkpoint given as ``init_from_nyu``) said only "found dict"."""
    if not isinstance(obj, dict):
        return type(obj).__name__
    others = [
        f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)
    ]
    what = f"a dict with {len(others)} of its {len(obj)} entries not tensors: {_some(others)}"
    if "pytorch-lightning_version" in obj:
        return f"{what}; a Lightning checkpoint, not NYU's weights (give it as --ckpt_path)"
    nested = [k for k, v in obj.items() if isinstance(v, dict) and v and all(isinstance(t, Tensor) for t in v.values())]
    return f"{what}; the weights may be the dict under {nested[0]!r} (save that dict itself)" if nested else what


def _check_keys(
    model: nn.Module, state_dict: dict[str, Tensor], source: str
) -> tuple[dict[str, Tensor], set[str], list[str]]:
    """Map NYU keys onto ours; raise listing missing and mis-shaped keys. Returns (mapped, fresh layers, the keys
    GMIC does not use, such as ``shared_rep_filter.weight``)."""
    own = model.state_dict()
    mapped, unexpected = {}, []
    for key, value in state_dict.items():
        ours = _swap_prefix(key, to_ours=True)
        if ours is None or ours not in own:
            unexpected.append(key)
        else:
            mapped[ours] = value
    missing = [_swap_prefix(k, to_ours=False) or k for k in own if k not in mapped]
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
    counts = {k: int(v.shape[0]) for k, v in mapped.items() if k.split(".")[0] in CLASS_SPECIFIC_LAYERS and v.ndim}
    if len(set(counts.values())) > 1:  # a damaged or hand-edited file: which heads are its? (they were started fresh)
        said = ", ".join(f"{_swap_prefix(k, to_ours=False)} {n}" for k, n in counts.items())
        raise ValueError(f"{source}: its class-specific layers disagree on the number of classes, the first dimension "
                         f"of each ({said}): not one model's weights")  # fmt: skip
    if not mapped:  # another network's weights: listing GMIC's ~300 keys as missing says less than this
        expected = [k for k in (_swap_prefix(key, to_ours=False) for key in own) if k]
        raise ValueError(
            f"{source}: none of its {len(state_dict)} keys is one of GMIC's NYU keys ({_some(expected, 3)}): not "
            f"nyukat/GMIC weights; its keys look like {_some(list(state_dict))}"
        )
    if missing or misshaped:
        problems = [f"{len(found)} {what}: {_some(found)}" for what, found in
                    (("missing key(s)", missing), ("mis-shaped key(s)", misshaped)) if found]  # fmt: skip
        raise ValueError(f"{source}: does not match GMIC's NYU key layout; {'; '.join(problems)}")
    return mapped, fresh, unexpected


def check_nyu_state_dict(model: GMIC, state_dict: dict[str, Tensor], source: str = "state dict") -> list[str]:
    """ValueError naming `source` where `state_dict` cannot be loaded into `model` (the check
    `load_nyu_state_dict` makes first, loading nothing): for a command to refuse a file before it runs. Returns the
    class-specific layers loading would leave freshly initialized (another class count than the file's)."""
    return sorted(_check_keys(model, state_dict, source)[1])


def _some(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` names, and how many more: an error line stays readable."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def load_nyu_state_dict(model: GMIC, state_dict: dict[str, Tensor], source: str = "state dict") -> list[str]:
    """Load a NYU-layout state dict into `model` in place; return the layers left freshly initialized.

    Class-specific layers (`CLASS_SPECIFIC_LAYERS`) whose class count differs from the model's are skipped
    (and logged at WARNING); keys GMIC does not use are dropped (one INFO line: names and shapes); every GMIC key
    must be present with the right shape, else ValueError naming `source` and listing missing and mis-shaped keys.
    """
    mapped, fresh, unexpected = _check_keys(model, state_dict, source)
    if unexpected:
        listing = ", ".join(f"{k} {tuple(state_dict[k].shape)}" for k in unexpected)
        log.info("%s: dropped %d key(s) that GMIC does not use: %s", source, len(unexpected), listing)
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


def nyu_percent_t(path: str | Path) -> float | None:
    """NYU's percent_t for a file named ``sample_model_<i>.p`` (nyukat/GMIC runs model i with it); else None."""
    match = re.fullmatch(r"sample_model_(\d)\.p", Path(path).name)
    return NYU_PERCENT_T.get(int(match.group(1))) if match else None


def from_nyu_checkpoint(path: str | Path, **overrides: Any) -> GMIC:
    """Build `GMIC(**overrides)` and load the NYU file at `path` into it (nyukat/GMIC `sample_model_{1..5}.p`).

    Defaults taken from the file unless overridden: `num_classes` (2 in NYU's files) and, for a file named
    `sample_model_<i>.p`, NYU's `percent_t` for model i.
    """
    state_dict = load_nyu_checkpoint(path)
    kwargs = dict(overrides)
    if "classifier_linear.weight" in state_dict:
        kwargs.setdefault("num_classes", int(state_dict["classifier_linear.weight"].shape[0]))
    if (percent_t := nyu_percent_t(path)) is not None:
        kwargs.setdefault("percent_t", percent_t)
    model = GMIC(**kwargs)
    load_nyu_state_dict(model, state_dict, source=f"init_from_nyu: {path}")
    return model


def to_nyu_state_dict(model: GMIC) -> dict[str, Tensor]:
    """`model`'s state dict in NYU's key layout (loadable by nyukat/GMIC's code when num_classes == 2)."""
    return to_nyu_keys(model.state_dict())
