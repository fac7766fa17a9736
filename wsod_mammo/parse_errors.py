"""jsonargparse's reports of an option it cannot parse, as one line: the option and why.

jsonargparse prints the subcommand's usage (a hundred lines for ``wsod fit``) and, for an option of a class
(``--data.batch_size``, ``--model.model.init_args.crop_shape``), a nested report of every type it tried; the reason
is a few lines from the bottom. ``one_line`` keeps the option's dotted name and the deepest reason.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Iterable, Sequence

#: Lines of the nested report that say where the parser looked, not what is wrong.
_FRAMING = ("Does not validate", "Subtypes:", "Errors:", "Given value", "Problem with given class_path")
_KEY = re.compile(r'Parser key "([^"]+)"')
_NONE = "Expected a <class 'NoneType'>"  # the alternative every optional class has; never the reason
#: a string option given what YAML reads as a number or a boolean (a folder named 0755, 1e3, yes)
_NOT_A_STRING = re.compile(r"Expected a <class 'str'>\. Got value: ([-+]?[\d.]+(e[-+]?\d+)?|True|False|[-+]?inf|nan)$")


def one_line(report: str) -> str:
    """``report`` (an ``ArgumentError``'s text) -> ``"<option>: <reason>"`` where it has that shape, else its first
    line. The option is the chain of parser keys down to the deepest reason; where several types were tried there,
    each is named, and the value given."""
    lines = [line for line in report.splitlines() if line.strip()]
    if not lines or not _KEY.match(lines[0].strip()):
        return lines[0].strip() if lines else report
    reasons: list[tuple[int, str, str]] = []  # (indent, text, option)
    keys: list[tuple[int, str]] = []
    for line in lines:
        text = line.strip().removeprefix("- ").strip()
        indent = len(line) - len(line.lstrip())
        for key in _KEY.findall(line):
            keys = [*[(level, k) for level, k in keys if level < indent], (indent, key)]
        if _KEY.fullmatch(text.rstrip(":")) or text.startswith(_FRAMING) or text == _NONE or text.endswith(":"):
            continue
        reasons.append((indent, text, ".".join(k for level, k in keys if level < indent)))
    if not reasons:
        return lines[0].strip()
    if misplaced := _beside_init_args(lines):
        option = ".".join(k for _, k in keys) or "the command line"
        return f"{option}: {misplaced} beside class_path: a class's options go under init_args"
    depth = max(indent for indent, _, _ in reasons)
    deepest = [(text, option) for indent, text, option in reasons if indent == depth]
    reason, option = deepest[0]
    tried = [text.removeprefix("Expected a ") for text, where in deepest if where == option]
    if len(tried) > 1 and all(text.startswith("Expected a ") for text, where in deepest if where == option):
        reason = "expected " + " or ".join(tried)
    given = [line.strip().removeprefix("Given value: ") for line in lines if line.strip().startswith("Given value: ")]
    # the innermost value (listed first): the outer ones wrap it (NestedArg(...), Namespace(...))
    given = [v for v in given if not v.startswith(("NestedArg(", "Namespace("))]
    value = given[0].split(". Got value: ")[0] if given else ""
    if value and "Got value" not in reason and "'class_path'" not in value:  # a class's error names its class
        reason += f" (given: {value})"
        if value.startswith("{") and "<class 'str'>" in reason:  # `a: b/x` as a path: YAML read a mapping
            reason += "; YAML reads 'a: b' as a mapping: quote such a path inside a list, e.g. \"['a: b/x']\""
    if _NOT_A_STRING.search(reason):  # `data_root: 0755` in a config: "Got value: 493", the folder's name gone
        reason += "; YAML reads an unquoted 0755, 1e3, 12:30, yes or true as a number or true/false: quote the name"
    class_path = _deepest_class_path(report) if "No module named" in reason else None
    if class_path:
        reason = f"{class_path}: {reason}; the module that defines it must be importable (on PYTHONPATH)"
    return f"{option or 'the command line'}: {reason}"


def _beside_init_args(lines: list[str]) -> str:
    """The keys a class's mapping holds beside ``class_path`` and ``init_args`` (``data: {class_path: ...,
    init_args: {...}, batch_size: 4}``: an option indented one level too little), quoted; "" where there are none.
    jsonargparse lists the four shapes a class may be given in, and the deepest of them read as the reason: "data: a
    class path (str)" named neither the key nor where it belongs."""
    given = [line.strip().removeprefix("Given value: ") for line in lines if line.strip().startswith("Given value: {")]
    try:
        value = ast.literal_eval(given[0]) if given else None  # a literal's repr: no code runs
    except (ValueError, SyntaxError):
        return ""
    if not isinstance(value, dict) or "class_path" not in value:
        return ""
    extra = [key for key in value if key not in ("class_path", "init_args", "dict_kwargs", "__path__")]
    return ", ".join(repr(key) for key in extra)


def _deepest_class_path(report: str) -> str | None:
    found = re.findall(r"Problem with given class_path '([^']+)'", report)
    return found[-1] if found else None


def closest_options(line: str, known: Iterable[str]) -> str:
    """`` (did you mean --trainer.max_epochs?)`` for each ``--option`` of an "unrecognized arguments" ``line`` that
    is near one of ``known`` (the parsers' option strings): with abbreviations off, a misspelt option is refused
    rather than taken as the option it begins; "" where none is near."""
    given = re.findall(r"(--[\w.-]+)", line.partition("unrecognized arguments:")[2])
    options = sorted(set(known))
    near = [match[0] for option in given if (match := difflib.get_close_matches(option, options, n=1, cutoff=0.8))]
    return f" (did you mean {', '.join(near)}?)" if near else ""


_NO_VALUE = re.compile(r"argument (?:-\w/)?(--[\w.-]+): expected one argument")


def option_without_value(line: str, command_line: Sequence[str]) -> str:
    """argparse's "argument --data: expected one argument" as the option typed and the word it took for the next
    option: ``--data.predict_paths -scans`` (a folder named ``-scans``) was refused naming ``--data``, the group, with
    nothing of the value or how to give one beginning with '-'. ``line`` unchanged where it is not that error."""
    match = _NO_VALUE.fullmatch(line.strip())
    if not match:
        return line
    group = match[1]
    for option, value in zip(command_line, [*command_line[1:], None], strict=True):
        if option == group or option.startswith(group + "."):
            if value is None:
                return f"{option}: expected a value after it, found none"
            if value.startswith("-"):
                return (
                    f"{option}: expected a value, found {value}, read as an option: give a value that begins with "
                    f"'-' after '=' ({option}={value}), or a path as ./{value}"
                )
    return line
