"""Saliency methods as a command's config gives them (a name, or ``class_path`` and ``init_args``), for its lines."""

from __future__ import annotations

import importlib
import json
from typing import Any

from wsod_mammo.saliency import SaliencyMethod, get_saliency_method, same_settings
from wsod_mammo.training.module import method_record, settings_text


def configured_method(value: Any) -> SaliencyMethod | None:
    """The method ``value`` gives, built; None where it cannot be (the module's own construction then says why)."""
    value = value.as_dict() if hasattr(value, "as_dict") else value  # jsonargparse's Namespace of a class_path
    try:
        if isinstance(value, dict) and isinstance(value.get("class_path"), str):
            module, _, name = value["class_path"].rpartition(".")
            found = getattr(importlib.import_module(module), name)
            if not (isinstance(found, type) and issubclass(found, SaliencyMethod)):
                return None  # never called: the option parser refuses another class_path, and says so
            return found(**(value.get("init_args") or {}))
        return get_saliency_method(value)
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


def method_text(value: Any) -> str:
    """A configured method (or a list of them) for a line: a name as given; one given by ``class_path`` by its name
    and settings (as ``method_record`` holds them): ``layercam (_layers=('stage4',))``, not jsonargparse's
    ``Namespace(class_path=..., init_args=...)``."""
    if isinstance(value, list):
        return f"[{', '.join(method_text(item) for item in value)}]"
    method = None if isinstance(value, str) else configured_method(value)
    return str(value) if method is None else described(method)


def described(method: SaliencyMethod) -> str:
    """``layercam (_layers=('stage4',))``: a method's name, and its settings where it has any."""
    settings = method_record(method)["settings"]
    return f"{method.name} ({settings_text(settings)})" if settings else method.name


def check_predict_method(predict_saliency: Any, test_saliency: Any, held_by: str) -> None:
    """A predict's ``--model.predict_saliency`` with the name of another of the test methods ``held_by`` names (maps
    and thresholds go by name) is refused naming that option and the other method, in the form the option takes:
    the module's own refusal named ``model.test_saliency``, an option the predict was not given."""
    predicted = configured_method(predict_saliency)
    if predicted is None or not isinstance(test_saliency, list):
        return
    for value in test_saliency:
        tested = configured_method(value)
        if tested is not None and tested.name == predicted.name and not same_settings(tested, predicted):
            given = value.as_dict() if hasattr(value, "as_dict") else value
            form = json.dumps(given, default=str) if isinstance(given, dict) else str(given)
            raise ValueError(
                f"--model.predict_saliency {described(predicted)}: {held_by} holds another of its name, "
                f"{described(tested)}, and maps and thresholds go by name: give --model.predict_saliency '{form}' "
                "(that one), or a method of another name (a subclass, or register_saliency_method)"
            )
