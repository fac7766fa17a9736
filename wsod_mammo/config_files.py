"""A ``--config`` YAML file read as users' commands read it, with an error naming the file and what is wrong."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

#: The most values (mappings, lists, scalars) a config may hold with its aliases expanded: the package's largest
#: (configs/gmic_vindr.yaml) holds a few hundred. jsonargparse copies the expanded tree, so a few lines of nested
#: aliases ("billion laughs") made `wsod` hang at 100% CPU, its memory growing, before any message.
MAX_EXPANDED_VALUES = 100_000


def read_config_file(path: str | Path, option: str = "--config") -> dict[str, Any]:
    """The mapping a config file holds. ValueError naming ``<option> <path>`` for a file it cannot read, YAML it
    cannot parse (the parser's words, on one line), a file with no options (empty, or comments only: fit said
    "Unexpected config:" naming no file, while study took it as nothing) or a top level that is not a mapping:
    jsonargparse's own message for a syntax error names no file, which matters when a command stacks four; also for
    aliases that expand to over :data:`MAX_EXPANDED_VALUES` values.
    ``option``: the command-line option the file was given to (``--config``, or a group's: ``--trainer``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        loader = yaml.SafeLoader(text)  # parsed once: its node tree is sized, then constructed
        try:
            root = loader.get_single_node()
            _check_expanded_size(root, option, path)
            loaded = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{option} {path}: cannot read it as YAML ({' '.join(str(error).split())})") from None
    if loaded is None:
        raise ValueError(f"{option} {path}: the file holds no options (it is empty, or comments only)")
    if not isinstance(loaded, dict):
        raise ValueError(f"{option} {path}: expected a mapping at the top, found {type(loaded).__name__}")
    return loaded


def _check_expanded_size(root: yaml.Node | None, option: str, path: str | Path) -> None:
    """ValueError naming ``<option> <path>`` where the aliases of the file's node tree expand to over
    :data:`MAX_EXPANDED_VALUES` values, or a value holds itself."""
    if root is not None and (size := _expanded_size(root, {})) > MAX_EXPANDED_VALUES:
        if math.isinf(size):
            raise ValueError(f"{option} {path}: an alias (*name) inside its own anchor: a value that holds itself")
        raise ValueError(
            f"{option} {path}: its aliases (*name) expand to {size:,.0f} values, over the {MAX_EXPANDED_VALUES:,} "
            "any config needs (nested aliases: a YAML 'billion laughs' file?)"
        )


def _expanded_size(node: yaml.Node, sizes: dict[int, float]) -> float:
    """How many values ``node`` holds with every alias expanded, each node counted once (``sizes``, by id): linear
    in the file's length however far its aliases multiply. Infinite for an alias inside its own anchor (a value
    that holds itself: jsonargparse recursed until Python's limit and printed its traceback)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = math.inf  # until its children are counted: meeting it among them is a loop
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [item for pair in node.value for item in pair]
    else:
        children = []
    sizes[id(node)] = size = 1 + sum(_expanded_size(child, sizes) for child in children)
    return size


def named_import_paths(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """``(entry, import path)`` for each ``class_path`` in a config or recorded hyperparameters, and each
    ``optimizer`` or ``scheduler`` given as a string: the modules jsonargparse imports (running their code)."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from named_import_paths(item, f"{key}[{index}]")
    elif isinstance(value, dict):
        for name, item in value.items():
            entry = f"{key}.{name}" if key else str(name)
            if name == "class_path" and isinstance(item, str):
                yield key or entry, item
            elif name in ("optimizer", "scheduler") and isinstance(item, str):
                yield entry, item
            else:
                yield from named_import_paths(item, entry)
