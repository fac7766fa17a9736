"""The options the evaluation callbacks, ``wsod predict`` and the Python API share, checked where they are read:
the map's placement on the image, the class evaluated and the saliency methods' names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from lightning.pytorch import LightningModule

from wsod_mammo.saliency import SaliencyMethod, get_saliency_method

if TYPE_CHECKING:
    from wsod_mammo.training.module import GMICLitModule

Alignment = Literal["receptive_field", "resize"]


def map_placement(pl_module: GMICLitModule, alignment: Alignment) -> float | None:
    """``cell0_center`` for :func:`saliency_to_boxes`: the model's receptive fields, or plain resizing (the study's
    pytorch-grad-cam convention, which puts each 64-pixel cell about half a cell right of and below its field)."""
    if alignment not in ("receptive_field", "resize"):
        raise ValueError(f"alignment: expected 'receptive_field' or 'resize', found {alignment!r}")
    return pl_module.model.map_cell0_center if alignment == "receptive_field" else None


def checked_class_index(class_index: int, callback: str) -> int:
    """A callback's ``class_index``, refused when negative (``check_class_of_model`` checks the model has it)."""
    if not int(class_index) >= 0:
        raise ValueError(f"{callback}.class_index: expected 0 or more (0: the first class), found {class_index}")
    return int(class_index)


def check_class_of_model(class_index: int, pl_module: LightningModule | None, callback: str) -> None:
    """Refuse, at setup, a ``class_index`` the model has no output for: it failed at the first validation or test
    batch, after a training epoch, in an IndexError (the CLI refuses it before running: ``check_class_index``)."""
    heads = getattr(getattr(pl_module, "model", None), "num_classes", None)
    if heads is not None and class_index >= heads:
        raise ValueError(
            f"{callback}.class_index: {class_index}, but the model has {heads} output class(es): "
            f"expected 0..{heads - 1}"
        )


def method_names(methods: Sequence[str | SaliencyMethod] | None, option: str) -> list[str] | None:
    """A callback's ``methods`` as registered names, checked when the config is read (a misspelt name used to fail
    after the model and data had loaded, in a traceback not naming the option); None keeps the module's. A method of
    your own is given as the module's ``test_saliency`` gives it (``class_path``): by name it is unknown here."""
    return None if methods is None else [get_saliency_method(name, option).name for name in methods]


def check_methods_of_model(methods: Sequence[str | SaliencyMethod] | None, pl_module: Any, option: str) -> None:
    """Refuse, at setup, a callback's method given with other settings than the module's method of its name: the
    maps are the module's, keyed by name, so the callback's settings would be silently ignored."""
    for given in methods or []:
        if isinstance(given, SaliencyMethod):
            made = pl_module._named(given.name)
            if type(made) is not type(given) or vars(made) != vars(given):
                raise ValueError(
                    f"{option}: {given!r} is not the model's saliency method {given.name!r}, {made!r}: its maps are "
                    f"the model's; give the model's test_saliency that method, or the callback the name {given.name!r}"
                )
