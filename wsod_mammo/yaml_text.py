"""YAML that ``wsod`` writes for jsonargparse to read back (a run's ``config.yaml``, a study's ``run.yaml``).

jsonargparse reads YAML 1.2's floats (``1e3``, ``2E5``) where PyYAML's writer, knowing YAML 1.1's only, leaves such
a string unquoted: a folder named ``1e3`` was written ``data_root: 1e3`` and read back as the float 1000.0, so the
run's own config was refused ("Expected a <class 'str'>. Got value: 1000.0"), and jsonargparse's round trip of a
class's ``init_args`` wrote ``data_root: 1000.0`` into ``config.yaml`` and the W&B config.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: jsonargparse's float (its YAML loader's, as of 4.53), which PyYAML's SafeDumper must quote a string matching
JSONARGPARSE_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class QuotingDumper(yaml.SafeDumper):
    """PyYAML's safe writer that also quotes the strings jsonargparse would read as floats."""


QuotingDumper.add_implicit_resolver("tag:yaml.org,2002:float", JSONARGPARSE_FLOAT, list("-+0123456789."))


def dump_yaml(data: Any, **kwargs: Any) -> str:
    """``yaml.safe_dump``'s text, each string read back as a string by PyYAML and by jsonargparse."""
    return yaml.dump(data, Dumper=QuotingDumper, **kwargs)


def use_for_jsonargparse() -> None:
    """jsonargparse's YAML writer (its dumps, and its round trip of each class's ``init_args``) made ``dump_yaml``,
    with jsonargparse's own settings."""
    from jsonargparse import set_dumper

    set_dumper("yaml", lambda data: dump_yaml(data, default_flow_style=False, allow_unicode=True, sort_keys=False))
