"""The `SaliencyMethod` base class, the name -> class registry, and the normalize / upsample helpers.

A method turns the global network's activations (and, for gradient methods, the gradients of a per-class
target score with respect to them) into a non-negative, un-normalized map per class, `(N, C, h, w)` at the
saliency-map resolution. Methods never run the network themselves: `GMIC` runs one forward and at most one
`torch.autograd.grad` call for all requested methods (see `saliency/compute.py`; the gradient on h_g, `final`, it
writes in closed form) and hands each method a `SaliencyInputs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class SaliencyInputs:
    """What a method may read. Shapes: `cam (N, C, h, w)` (GMIC's sigmoid map A);
    `activations[name] (N, K, h', w')`; `gradients[name] (N, C, K, h', w')`, the gradient of class c's target
    score with respect to that activation (empty for methods that need none). All float32, under bf16-mixed too."""

    cam: Tensor
    activations: dict[str, Tensor] = field(default_factory=dict)
    gradients: dict[str, Tensor] = field(default_factory=dict)


class SaliencyMethod:
    """Base class: subclasses set `needs_gradients`, say which activations they read (`layers`) and `compute`.

    Instances are plain, typed objects, so LightningCLI / jsonargparse can build them from a name or a
    `class_path` in YAML. `name` labels the method's maps, thresholds and Table II cells: the name it is
    registered under (`register_saliency_method`), else the one its class sets, else its class name in lower
    case (a subclass never inherits its parent's: its maps are not the parent's).
    """

    name: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # an unnamed method had "" (a Table II row without a label, maps under "")
            cls.name = cls.__name__.lower()

    def layers(self) -> tuple[str, ...]:
        """Names of the global-network activations this method reads (see `models.resnet.ACTIVATION_NAMES`)."""
        return ()

    def compute(self, inputs: SaliencyInputs) -> Tensor:
        """Return the map `(N, C, h, w)`, non-negative, un-normalized, at `inputs.cam`'s resolution."""
        raise NotImplementedError

    def __call__(self, inputs: SaliencyInputs) -> Tensor:
        return self.compute(inputs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={list(self.layers())})"


#: Keys the package's outputs hold beside method names: ``GMIC.saliency_maps``' probabilities (a method named
#: ``y_global`` had its maps replaced by them), ``table2_row.csv``'s columns and W&B's Table II column.
RESERVED_NAMES = ("y_global", "y_local", "y_fusion", "train_method", "weights", "thresholds", "train")


def check_method_name(name: str, cls: type) -> None:
    """Refuse a method name that its outputs would mistake for another key: a reserved one, or one holding ``/``
    (W&B nests keys at it: ``val/detection/my/cam/threshold``; files named after it become paths) or ``:`` (``wsod
    report --compare RUN:method`` splits at it)."""
    if name.lower() in RESERVED_NAMES:
        why = f"the package's outputs use it beside method names ({', '.join(RESERVED_NAMES)})"
    elif "/" in name:
        why = "W&B nests its keys at a '/' (val/detection/<name>/threshold), and files named after it become paths"
    elif ":" in name:
        why = "`wsod report --compare RUN:method` splits at a ':'"
    else:
        return
    raise ValueError(
        f"saliency method {cls.__module__}.{cls.__qualname__}: name {name!r} cannot be used: {why}; give it another "
        "(the class's `name`, or register_saliency_method)"
    )


_REGISTRY: dict[str, type[SaliencyMethod]] = {}
M = TypeVar("M", bound=type[SaliencyMethod])


def register_saliency_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a `SaliencyMethod` subclass under `name` in lower case (which becomes its `name`):
    names are looked up case-insensitively, so one registered as ``"GradXAct"`` could never be found (``"gradxact"``
    was looked for), and ``"CAM"`` stood beside the built-in ``"cam"``."""
    key = name.lower()

    def decorator(cls: M) -> M:
        check_method_name(key, cls)
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"saliency method name {name!r} is already registered to {_REGISTRY[key].__name__}")
        cls.name = key
        _REGISTRY[key] = cls
        return cls

    return decorator


def available_saliency_methods() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def get_saliency_method(name_or_instance: str | SaliencyMethod, option: str | None = None) -> SaliencyMethod:
    """An instance from a registered name (default arguments), or the instance itself; an unknown name's error
    starts with ``option``, the config option that gave it, where there is one."""
    if isinstance(name_or_instance, SaliencyMethod):
        check_method_name(name_or_instance.name, type(name_or_instance))  # registered names were at registration
        return name_or_instance
    if isinstance(name_or_instance, str) and name_or_instance.lower() in _REGISTRY:
        return _REGISTRY[name_or_instance.lower()]()
    raise ValueError(
        f"{option + ': ' if option else ''}unknown saliency method {name_or_instance!r}: expected one of "
        f"{available_saliency_methods()} or a SaliencyMethod instance"
    )


def same_settings(one: SaliencyMethod, other: SaliencyMethod) -> bool:
    """Whether two methods make the same maps: one class, the same attributes."""
    return one is other or (type(one) is type(other) and vars(one) == vars(other))


def distinct_methods(methods: list[SaliencyMethod], option: str) -> list[SaliencyMethod]:
    """``methods`` without repeats; two that share a name but not their settings (``LayerCAM()`` and
    ``LayerCAM(layers=["stage5"])``) are an error naming ``option``: their maps, thresholds and Table II cells are
    keyed by name, and one would silently take the other's place."""
    kept: dict[str, SaliencyMethod] = {}
    for method in methods:
        same = kept.setdefault(method.name, method)
        if not same_settings(same, method):
            raise ValueError(
                f"{option}: two saliency methods named {method.name!r} ({same!r} and {method!r}): give them the "
                "same settings, or one of them a name of its own (a subclass, or register_saliency_method)"
            )
    return list(kept.values())


def min_max_normalize(maps: Tensor) -> tuple[Tensor, Tensor]:
    """The one normalization rule of boxes, overlays and patch selection: ``(..., h, w) -> (..., h, w), (...)``.

    Each map is min-max normalized into [0, 1] whatever its scale: GradCAM++ maps of confident positives peak
    near 2e-11 and are as valid as maps near 1. Only a truly constant map (max == min) or one holding a NaN or
    an infinity has no peak to localize: it becomes zeros (never NaN) and its entry in the returned boolean
    mask ``usable`` is False, so it gives no boxes. Computed in float32 (or float64 if given).
    """
    maps = maps if maps.dtype in (torch.float32, torch.float64) else maps.float()
    flat = maps.flatten(-2)  # (..., h*w)
    finite = torch.isfinite(flat).all(dim=-1, keepdim=True)
    flat = torch.where(finite, flat, torch.zeros_like(flat))
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    usable = finite & (span > 0)
    safe = torch.where(usable, span, torch.ones_like(span))
    out = torch.where(usable, (flat - low) / safe, torch.zeros_like(flat))
    return out.view_as(maps), usable[..., 0]


def normalize_saliency(maps: Tensor) -> Tensor:
    """Min-max normalize each image's and class's map into [0, 1]: (N, C, h, w) -> (N, C, h, w).

    The rule of :func:`min_max_normalize`: scale-free; a constant or non-finite map becomes zeros (never NaN).
    """
    if maps.ndim != 4:
        raise ValueError(f"normalize_saliency: expected maps of shape (N, C, h, w), found {tuple(maps.shape)}")
    return min_max_normalize(maps)[0]


def upsample_saliency(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (N, C, h, w) maps to (N, C, H, W) with `size = (H, W)`: bilinear (align_corners=False) where it grows,
    the mean of the cells each output cell covers (area) where it shrinks. Bilinear alone, shrinking a finer layer's
    map 4x (LayerCAM's stage3 onto the saliency map), read 2 of every 4 rows and columns: 3 cells in 4 never reached
    the fused map."""
    if maps.ndim != 4:
        raise ValueError(f"upsample_saliency: expected maps of shape (N, C, h, w), found {tuple(maps.shape)}")
    (h, w), (height, width) = maps.shape[-2:], size
    if (h, w) == (height, width):
        return maps
    if h > height or w > width:
        maps = F.interpolate(maps, size=(min(h, height), min(w, width)), mode="area")
    if maps.shape[-2] < height or maps.shape[-1] < width:
        maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
    return maps
