"""Validated YAML documents: safe loading with the line of every key, and checks whose errors name
the file, line and dotted field (``exp.yaml:6: methods[0].prune.ratio: ...``).

Experiment files (:mod:`edgeslim.sweep.experiment`) and recipes (:mod:`edgeslim.recipe.schema`) are
both read through here, so their errors look the same.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from edgeslim.config import Config, short_repr
from edgeslim.errors import ConfigError

Path_ = tuple[str | int, ...]

# -- bounds ----------------------------------------------------------------------------------------
# Values above these pass a type check but cannot run: a batch of 10^12 images ends in MemoryError
# after the db and a baseline are written, a million worker processes or a timeout of 1e308 s are
# typos. Experiments, recipes and the CLI check against the same numbers.
MAX_BATCH_SIZE = 4096
MAX_THREADS = 1024
MAX_RUNS = 100_000  # latency runs and warm-up runs
MAX_IMAGES = 10**9  # train/test limits
MAX_EPOCHS = 100_000
MAX_IMAGE_SIZE = 1024  # square input side, pixels (ImageNet models take 224)
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # one week
MAX_MEMORY_MB = 16 * 1024 * 1024.0  # 16 TiB
MAX_NAME_BYTES = 255  # one file or folder name (ext4, APFS, NTFS)
MAX_PATH_BYTES = 4096  # a whole path (Linux PATH_MAX)
MAX_CLASSES = 100_000  # a model's outputs (ImageNet-21k has 21,843); 10^12 would allocate 256 TB


def max_workers() -> int:
    """The most worker processes a sweep may ask for: 64, or 4 per CPU on bigger machines."""
    return max(64, 4 * (os.cpu_count() or 1))


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
    """('methods', 0, 'prune', 'ratio') -> 'methods[0].prune.ratio'.

    A key that is not plain printable text (a quoted ``"a\\nb"``, an empty or padded key) is shown
    quoted with its escapes, and a long one cut, so the error stays one readable line.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        if not text or not text.isprintable() or text.strip() != text:
            text = repr(text)
        text = text if len(text) <= 40 else text[:37] + "..."
        out += f".{text}" if out else text
    return out or "(top level)"


#: Characters ``str.splitlines`` breaks at: a message never holds one raw (a value may).
_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in map(ord, "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")}


def one_line(message: str) -> str:
    """``message`` with every line break written as its escape (``\\n``): one line, always."""
    return message.translate(_LINE_BREAKS)


#: Longest document accepted, in characters: real experiment files and recipes are a few KB. Below
#: it, reading time is bounded by MAX_YAML_VALUES (about 0.5 s for a 1 MB document of any shape).
MAX_YAML_CHARS = 1_000_000
#: Deepest nesting of lists and mappings (real files nest fewer than 10 levels); also keeps the
#: recursive composer, :class:`_Walk` and every later validator far from Python's recursion limit.
MAX_YAML_DEPTH = 100
#: Most values (scalars, lists and mappings) a document may hold, with every alias expanded. Real
#: files hold a few hundred; this also bounds the time to read a document (about 50 us a value in
#: the pure-Python loader). Aliases (``*name``) are allowed, since they are a fair way to share a
#: block, but each use counts in full, so an alias "billion laughs" (a few lines that expand to 10^9
#: values) stops here instead of hanging every reader of the data.
MAX_YAML_VALUES = 10_000

# errors a scalar's constructor raises for text its tag cannot hold: `!!int abc` (ValueError),
# `!!bool maybe` (KeyError), `!!timestamp x` (AttributeError), a date 2024-02-30 (ValueError), an
# integer of more than 4,300 digits (ValueError)
_CONSTRUCT_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, ArithmeticError)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and turns a value's construction error into a YAMLError."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._nodes > MAX_YAML_VALUES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"the document holds more than {MAX_YAML_VALUES:,} values; real files need far fewer",
                    self.peek_event().start_mark,
                )
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"lists and mappings nested more than {MAX_YAML_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except _CONSTRUCT_ERRORS as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {short_repr(node.value)} as {node.tag}: {exc}", node.start_mark
            ) from None


def _one_line(text: object, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters (a problem may quote a long tag or value)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Walk:
    """Records the line of every key and item; refuses odd keys, duplicates, cycles and alias bombs."""

    def __init__(self, lines: LineMap) -> None:
        self.lines = lines
        self.values = 0
        self.open: set[int] = set()  # ids of the collections being walked (an alias to one is a cycle)

    def fail(self, node: yaml.Node, path: Path_, problem: str) -> ConfigError:
        where = f"{self.lines.source}:{node.start_mark.line + 1}"
        return ConfigError(one_line(f"{where}: {field_name(path)}: {problem}"))

    def walk(self, node: yaml.Node, path: Path_) -> None:
        self.values += 1
        if self.values > MAX_YAML_VALUES:
            raise self.fail(
                node,
                path,
                f"the document holds more than {MAX_YAML_VALUES:,} values once its aliases (*name) are "
                "expanded; write the values out or use fewer aliases",
            )
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return
        if id(node) in self.open:
            raise self.fail(node, path, "an alias (*name) refers to a list or mapping that contains it")
        if len(path) > MAX_YAML_DEPTH:
            raise self.fail(node, path, f"nested more than {MAX_YAML_DEPTH} levels deep (through aliases)")
        self.open.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    kind = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
                    raise self.fail(key_node, path, f"a key is {kind}; keys must be plain names or numbers")
                key = key_node.value
                if key in seen:
                    raise self.fail(
                        key_node,
                        (*path, key),
                        "duplicate key (the later one would silently win); keep one",
                    )
                seen.add(key)
                self.lines.add((*path, key), key_node.start_mark.line + 1)
                self.walk(value_node, (*path, key))
        else:
            for i, item in enumerate(node.value):
                self.lines.add((*path, i), item.start_mark.line + 1)
                self.walk(item, (*path, i))
        self.open.discard(id(node))


def parse_yaml(text: str, source: str, *, document: str = "YAML file") -> tuple[Any, LineMap]:
    """Safe-load ``text`` and record the line of every key and list item.

    Every problem, including a hostile document (a NUL byte, 5,000 nested brackets, an alias bomb,
    a self-referencing alias, a list as a key, a document over :data:`MAX_YAML_CHARS`), is a
    one-line :class:`ConfigError` naming ``source`` (and the line where known).
    """
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(
            f"{source}: the {document} is {len(text):,} characters long; the limit is "
            f"{MAX_YAML_CHARS:,} (about 1 MB)"
        )
    lines = LineMap(source)
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # reads the whole text: a non-printable character fails here
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the {document} is empty")
        _Walk(lines).walk(node, ())
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
        line = text.count("\n", 0, bad.start()) + 1 if bad is not None else None
        where = f"{source}:{line}" if line is not None else source
        code = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise ConfigError(
            f"{where}: invalid YAML: character {code} is not allowed (control characters "
            "other than tab and newline, and lone surrogates, cannot appear in YAML)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or exc
        raise ConfigError(f"{where}: invalid YAML: {_one_line(problem)}") from None
    except RecursionError:  # not expected with the depth limits above; kept as a last guard
        raise ConfigError(f"{source}: invalid YAML: nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines


# -- checks ----------------------------------------------------------------------------------------
class Checker:
    """Validation helpers that raise ConfigError with the file, line and dotted field name."""

    def __init__(self, lines: LineMap) -> None:
        self.lines = lines

    def fail(self, path: Path_, message: str) -> ConfigError:
        return ConfigError(one_line(f"{self.lines.where(path)}: {field_name(path)}: {message}"))

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

    def integer(self, value: Any, path: Path_, *, minimum: int, maximum: int | None = None) -> int:
        """An int (not a bool) from ``minimum`` to ``maximum`` (inclusive; no upper bound if None)."""
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(path, f"expected {_int_range(minimum, maximum)}, got {short_repr(value)}")
        if maximum is not None and value > maximum:
            raise self.fail(path, f"expected {_int_range(minimum, maximum)}, got {short_repr(value)}")
        return value

    def opt_integer(self, value: Any, path: Path_, *, minimum: int, maximum: int | None = None) -> int | None:
        return None if value is None else self.integer(value, path, minimum=minimum, maximum=maximum)

    def number(
        self,
        value: Any,
        path: Path_,
        *,
        positive: bool = True,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        """A finite int or float (not a bool, nan or inf) as a float.

        ``positive``: > 0; ``minimum``/``maximum``: inclusive bounds (None: none). A value too large
        for a float (an int of 400 digits) is refused like inf.
        """
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            try:
                ok = math.isfinite(float(value))
            except OverflowError:
                ok = False
        if (
            not ok
            or (positive and value <= 0)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            raise self.fail(
                path, f"expected {_number_range(positive, minimum, maximum)}, got {short_repr(value)}"
            )
        return float(value)

    def opt_number(
        self,
        value: Any,
        path: Path_,
        *,
        positive: bool = True,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        if value is None:
            return None
        return self.number(value, path, positive=positive, minimum=minimum, maximum=maximum)

    def boolean(self, value: Any, path: Path_) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {short_repr(value)}")
        return value

    def string(self, value: Any, path: Path_) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {short_repr(value)}")
        return value

    def file_path(self, value: Any, path: Path_) -> str:
        """A non-empty string the file system can look up: no NUL character, no name over 255
        bytes or path over 4,096 (``stat`` would raise instead of saying "no such file"), no
        ``~user`` of an unknown user (``expanduser`` would raise)."""
        text = self.string(value, path)
        if "\x00" in text:
            raise self.fail(path, f"a path cannot hold a NUL character, got {short_repr(text)}")
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_PATH_BYTES or any(
            len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in re.split(r"[/\\]", text)
        ):
            raise self.fail(
                path,
                f"the path is too long ({size:,} bytes; at most {MAX_NAME_BYTES} bytes a name and "
                f"{MAX_PATH_BYTES:,} in all), got {short_repr(text)}",
            )
        try:
            Path(text).expanduser()
        except RuntimeError as exc:  # ~nobody/file
            raise self.fail(path, f"cannot expand {short_repr(text)}: {exc}") from None
        return text

    def choice(self, value: Any, path: Path_, choices: tuple[str, ...]) -> str:
        text = self.string(value, path)
        if text not in choices:
            raise self.fail(path, f"{short_repr(text)} is not one of {', '.join(choices)}")
        return text

    def string_list(self, value: Any, path: Path_, choices: tuple[str, ...] | None = None) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            where = (*path, i) if isinstance(value, list) else path
            text = self.string(item, where)
            if choices is not None and text not in choices:
                raise self.fail(where, f"{short_repr(text)} is not one of {', '.join(choices)}")
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
    return "a list" if isinstance(value, list) else f"{type(value).__name__} {short_repr(value)}"


def _show_number(x: float) -> str:
    """86400.0 -> '86400', 0.5 -> '0.5', 1e9 -> '1,000,000,000'."""
    if isinstance(x, float) and not x.is_integer():
        return repr(x)
    return f"{int(x):,}" if abs(x) >= 10_000 else str(int(x))


def _int_range(minimum: int, maximum: int | None) -> str:
    if maximum is None:
        return f"an integer >= {minimum}"
    return f"an integer from {_show_number(minimum)} to {_show_number(maximum)}"


def _number_range(positive: bool, minimum: float | None, maximum: float | None) -> str:
    """'a positive number', 'a number from 0 to 1', 'a positive number at most 86,400', ..."""
    kind = "a positive number" if positive else "a number"
    if minimum is not None and maximum is not None:
        return f"{kind} from {_show_number(minimum)} to {_show_number(maximum)}"
    if maximum is not None:
        return f"{kind} at most {_show_number(maximum)}"
    if minimum is not None:
        return f"{kind} >= {_show_number(minimum)}"
    return kind
