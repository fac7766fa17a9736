"""Saliency methods as a command's config gives them (a name, or ``class_path`` and ``init_args``), for its lines."""

from __future__ import annotations

import importlib
from typing import Any

from wsod_mammo.saliency import SaliencyMethod, get_saliency_method
from wsod_mammo.training.module import method_record, settings_text


def configured_method(value: Any) -> SaliencyMethod | None:
    """The method ``value`` gives, built; None where it cannot be (the module's own construction then says why)."""
    value = value.as_dict() if hasattr(value, "as_dict") else value  # jsonargparse's Namespace of a class_path
    try:
        if isinstance(value, dict) and isinstance(value.get("class_path"), str):
            module, _, name = value["class_path"].rpartition(".")
            return getattr(importlib.import_module(module), name)(**(value.get("init_args") or {}))
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
    if method is None:
        return str(value)
    settings = method_record(method)["settings"]
    return f"{method.name} ({settings_text(settings)})" if settings else method.name
