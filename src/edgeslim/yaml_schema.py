"""Validated YAML documents: safe loading with the line of every key, and checks whose errors name
the file, line and dotted field (``exp.yaml:6: methods[0].prune.ratio: ...``).

Experiment files (:mod:`edgeslim.sweep.experiment`) and recipes (:mod:`edgeslim.recipe.schema`) are
both read through here, so their errors look the same.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

import yaml

from edgeslim.config import Config
from edgeslim.errors import ConfigError

Path_ = tuple[str | int, ...]


# -- YAML with line numbers ---------------------------------------------------------------------
class LineMap:
    """Line numbers (1-based) of every key and item in a YAML document, by path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._lines: dict[Path_, int] = {}

    def add(self, path: Path_, line: int) -> None:
        self._lines[path] = line

    def line(self, path: Path_) -> int | None:
        """The line of ``path``, else of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return None

    def where(self, path: Path_) -> str:
        line = self.line(path)
        return f"{self.source}:{line}" if line is not None else self.source


def field_name(path: Path_) -> str:
    """('methods', 0, 'prune', 'ratio') -> 'methods[0].prune.ratio'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _walk(node: yaml.Node, path: Path_, lines: LineMap) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ConfigError(
                    f"{lines.source}:{key_node.start_mark.line + 1}: {field_name((*path, key))}: "
                    "duplicate key (the later one would silently win); keep one"
                )
            seen.add(key)
            lines.add((*path, key), key_node.start_mark.line + 1)
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.add((*path, i), item.start_mark.line + 1)
            _walk(item, (*path, i), lines)


def parse_yaml(text: str, source: str, *, document: str = "YAML file") -> tuple[Any, LineMap]:
    """Safe-load ``text`` and record the line of every key and list item."""
    lines = LineMap(source)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the {document} is empty")
        _walk(node, (), lines)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    return data, lines


# -- checks ----------------------------------------------------------------------------------------
class Checker:
    """Validation helpers that raise ConfigError with the file, line and dotted field name."""

    def __init__(self, lines: LineMap) -> None:
        self.lines = lines

    def fail(self, path: Path_, message: str) -> ConfigError:
        return ConfigError(f"{self.lines.where(path)}: {field_name(path)}: {message}")

    def mapping(
        self, value: Any, path: Path_, allowed: tuple[str, ...], *, optional: bool = False
    ) -> dict[str, Any]:
        """``value`` as a mapping whose keys are all in ``allowed`` (``optional``: None gives {})."""
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.fail(
                path, f"expected a mapping with keys from {', '.join(allowed)}, got {describe(value)}"
            )
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(allowed)}"
                raise self.fail((*path, key), f"unknown key{hint}")
        return value

    def integer(self, value: Any, path: Path_, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(path, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def opt_integer(self, value: Any, path: Path_, *, minimum: int) -> int | None:
        return None if value is None else self.integer(value, path, minimum=minimum)

    def number(self, value: Any, path: Path_, *, positive: bool = True) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (positive and value <= 0):
            raise self.fail(path, f"expected a {'positive ' if positive else ''}number, got {value!r}")
        return float(value)

    def opt_number(self, value: Any, path: Path_) -> float | None:
        return None if value is None else self.number(value, path)

    def boolean(self, value: Any, path: Path_) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {value!r}")
        return value

    def string(self, value: Any, path: Path_) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {value!r}")
        return value

    def choice(self, value: Any, path: Path_, choices: tuple[str, ...]) -> str:
        text = self.string(value, path)
        if text not in choices:
            raise self.fail(path, f"{text!r} is not one of {', '.join(choices)}")
        return text

    def string_list(self, value: Any, path: Path_, choices: tuple[str, ...] | None = None) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            where = (*path, i) if isinstance(value, list) else path
            text = self.string(item, where)
            if choices is not None and text not in choices:
                raise self.fail(where, f"{text!r} is not one of {', '.join(choices)}")
            out.append(text)
        return tuple(out)

    def config(self, cls: type[Config], data: dict[str, Any], path: Path_) -> Any:
        """``cls.from_dict(data)``; its error is reported at the field it names, if any."""
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            message = str(exc)
            bad = next((k for k in data if re.search(rf"\b{re.escape(str(k))}\b", message)), None)
            raise self.fail((*path, bad) if bad is not None else path, message) from None


def describe(value: Any) -> str:
    """How a wrong value is described in an error."""
    return "a list" if isinstance(value, list) else f"{type(value).__name__} {value!r}"
