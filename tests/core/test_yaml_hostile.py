"""Hostile YAML: every document ends quickly in data or a one-line ConfigError naming the file.

Covers issue 17's first group (an alias bomb hung the validator; a list as a key, a self-referencing
alias, 5,000 nested brackets and a NUL byte gave tracebacks), a hypothesis fuzz of the loader, and
the upper bounds of :class:`edgeslim.yaml_schema.Checker`.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hostile_helpers import laughs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeslim.errors import ConfigError
from edgeslim.yaml_schema import (
    MAX_YAML_CHARS,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    Checker,
    LineMap,
    parse_yaml,
)

SOURCE = "hostile.yaml"
LIMIT_S = 5.0
QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


HOSTILE: dict[str, tuple[str, str]] = {
    # name: (document, a fragment the message must hold)
    "billion_laughs": (laughs(), "aliases (*name) are expanded"),
    "alias_bomb_in_mapping": (
        "a: &a {x: 1, y: 1, z: 1, w: 1, v: 1, u: 1, t: 1, s: 1, r: 1, q: 1}\n"
        + "".join(
            f"{c}: &{c} {{{', '.join(f'k{i}: *{p}' for i in range(10))}}}\n"
            for p, c in zip("abcdefg", "bcdefgh", strict=True)
        ),
        "aliases (*name) are expanded",
    ),
    "complex_key_list": ("? [a, b]\n: 1\n", "a key is a list"),
    "complex_key_mapping": ("? {a: 1}\n: 1\n", "a key is a mapping"),
    "complex_key_flow": ("{[a, b]: 1}\n", "a key is a list"),
    "self_referencing_list": ("a: &a [1, *a]\n", "refers to a list or mapping that contains it"),
    "self_referencing_mapping": ("a: &a {b: {c: *a}}\n", "refers to a list or mapping that contains it"),
    "nested_brackets_5000": ("[" * 5000 + "]" * 5000, f"nested more than {MAX_YAML_DEPTH} levels"),
    "nested_braces_5000": ("x: " + "{a: " * 5000 + "1" + "}" * 5000, "nested more than"),
    "nested_brackets_unclosed": ("[" * 100_000, "nested more than"),
    "nested_block": ("".join("  " * i + f"k{i}:\n" for i in range(300)), "nested more than"),
    "nul_byte": ("name: a\nb: \x00\n", "#x0000 is not allowed"),
    "bell": ("name: \x07\n", "#x0007 is not allowed"),
    "escape_char": ("name: \x1b[31m\n", "#x001b is not allowed"),
    "lone_surrogate": ("name: \ud800\n", "#xd800 is not allowed"),
    "huge_document": ("a: " + "x" * (MAX_YAML_CHARS + 1), f"the limit is {MAX_YAML_CHARS:,}"),
    "many_values": ("[" + "1, " * (MAX_YAML_VALUES + 5) + "1]", f"more than {MAX_YAML_VALUES:,} values"),
    "many_lines": ("- 1\n" * (MAX_YAML_VALUES + 5), f"more than {MAX_YAML_VALUES:,} values"),
    "duplicate_key": ("name: a\nseed: 1\nname: b\n", "duplicate key"),
    "duplicate_nested_key": ("data:\n  seed: 1\n  seed: 2\n", "data.seed: duplicate key"),
    "bad_int_tag": ("seed: !!int abc\n", "cannot read 'abc'"),
    "bad_bool_tag": ("bf16: !!bool maybe\n", "cannot read 'maybe'"),
    "bad_timestamp_tag": ("when: !!timestamp nope\n", "cannot read 'nope'"),
    "impossible_date": ("when: 2024-02-30\n", "day is out of range"),
    "int_too_long": ("seed: " + "9" * 5000 + "\n", "cannot read"),
    "python_tag": ("a: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
    "unknown_tag": ("a: !shell rm\n", "could not determine a constructor"),
    "undefined_alias": ("a: *nothing\n", "undefined alias"),
    "two_documents": ("a: 1\n---\nb: 2\n", "another document"),
    "tab_indent": ("a:\n\tb: 1\n", "cannot start any token"),
    "empty": ("", "is empty"),
    "comment_only": ("# nothing\n", "is empty"),
    "bad_merge": ("c:\n  <<: 5\n", "for merging"),
}


def _assert_one_line_error(exc: ConfigError, fragment: str | None = None) -> None:
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(SOURCE), message
    assert len(message) < 400, message
    if fragment is not None:
        assert fragment in message, message


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_document_gives_one_line_config_error_quickly(name: str) -> None:
    text, fragment = HOSTILE[name]
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, SOURCE)
    elapsed = time.perf_counter() - start
    _assert_one_line_error(info.value, fragment)
    assert info.value.__cause__ is None  # no chained YAML traceback behind the line
    assert elapsed < LIMIT_S, f"{name} took {elapsed:.2f} s"


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("nul_byte", 2),
        ("duplicate_key", 3),
        ("complex_key_list", 1),
        ("impossible_date", 1),
        ("nested_block", MAX_YAML_DEPTH),
    ],
)
def test_hostile_errors_name_the_line(name: str, line: int) -> None:
    with pytest.raises(ConfigError, match=rf"^{SOURCE}:{line}: "):
        parse_yaml(HOSTILE[name][0], SOURCE)


THROUGH_SCHEMAS = [
    "billion_laughs",
    "complex_key_list",
    "self_referencing_list",
    "nul_byte",
    "nested_brackets_5000",
]


@pytest.mark.parametrize("name", THROUGH_SCHEMAS)
def test_hostile_documents_through_parse_experiment(name: str, tmp_path: Path) -> None:
    from edgeslim.sweep.experiment import parse_experiment

    text, fragment = HOSTILE[name]
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, source=SOURCE, base_dir=tmp_path, check_models=False)
    assert time.perf_counter() - start < LIMIT_S
    _assert_one_line_error(info.value, fragment)


@pytest.mark.parametrize("name", THROUGH_SCHEMAS)
def test_hostile_documents_through_parse_recipe(name: str, tmp_path: Path) -> None:
    from edgeslim.recipe.schema import parse_recipe

    text, fragment = HOSTILE[name]
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_recipe(text, source=SOURCE, base_dir=tmp_path)
    assert time.perf_counter() - start < LIMIT_S
    _assert_one_line_error(info.value, fragment)


@pytest.mark.parametrize("name", ["huge_document", "duplicate_key", "impossible_date"])
def test_more_hostile_documents_through_experiment(name: str, tmp_path: Path) -> None:
    from edgeslim.sweep.experiment import parse_experiment

    text, fragment = HOSTILE[name]
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, source=SOURCE, base_dir=tmp_path, check_models=False)
    _assert_one_line_error(info.value, fragment)


def test_aliases_within_the_budget_still_work() -> None:
    text = (
        "finetune: &ft {epochs: 2, lr: 0.02}\n"
        "a: *ft\n"
        "b: [*ft, *ft]\n"
        "base: &base {x: 1}\n"
        "merged:\n  <<: *base\n  y: 2\n"
    )
    data, lines = parse_yaml(text, SOURCE)
    assert data["a"] == {"epochs": 2, "lr": 0.02} and data["b"] == [data["a"], data["a"]]
    assert data["merged"] == {"x": 1, "y": 2}
    assert lines.line(("b", 1, "lr")) == 1  # an alias keeps the line where its anchor was written
    # a shared (not recursive) block used twice is not a cycle
    parse_yaml("x: &x [1, 2]\ny: [*x, [*x]]\n", SOURCE)


def test_limits_are_not_hit_by_real_files() -> None:
    for path in [QUICKSTART, *sorted(QUICKSTART.parent.glob("**/*.yaml"))]:
        data, _ = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        assert isinstance(data, dict)
    # the largest document below the limits still reads quickly
    near = "[" * (MAX_YAML_DEPTH - 1) + "1" + "]" * (MAX_YAML_DEPTH - 1)
    parse_yaml(near, SOURCE)
    start = time.perf_counter()
    data, _ = parse_yaml("- 1\n" * (MAX_YAML_VALUES - 1), SOURCE)
    assert len(data) == MAX_YAML_VALUES - 1
    assert time.perf_counter() - start < LIMIT_S
    start = time.perf_counter()
    parse_yaml("# " + "c" * (MAX_YAML_CHARS - 20) + "\na: 1\n", SOURCE)
    assert time.perf_counter() - start < LIMIT_S


def test_plain_scalar_keys_of_other_types_still_work() -> None:
    data, lines = parse_yaml("1: a\nnull: b\n2.5: c\n", SOURCE)
    assert data == {1: "a", None: "b", 2.5: "c"}
    assert lines.line(("1",)) == 1


# -- fuzz -------------------------------------------------------------------------------------------
FUZZ = settings(
    max_examples=120,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=LIMIT_S),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_YAML_CHARS = st.sampled_from([*"[]{}:,-?&*!|>'\"#%@`\n\t \\.0123456789aex<=", "\x00", "\x85", "\ufeff"])
_FRAGMENTS = st.sampled_from(
    [
        "[",
        "]",
        "{",
        "}",
        ": ",
        ", ",
        "- ",
        "? ",
        "\n",
        "\n  ",
        "\n    ",
        "&a ",
        "&b ",
        "*a",
        "*b",
        "<<: ",
        "!!int ",
        "!!float ",
        "!!bool ",
        "!!timestamp ",
        "!!binary ",
        "!!set ",
        "!!omap ",
        "!!python/object:os.system ",
        "!x ",
        "|\n  ",
        ">-\n  ",
        "'",
        '"',
        "---\n",
        "...\n",
        "%YAML 1.1\n",
        "# c\n",
        "1e400",
        ".nan",
        "-.inf",
        "0x1F",
        "0o17",
        "1_000",
        "12:30:45",
        "2024-02-30",
        "2001-12-14t21:59:43.10-05:00",
        "~",
        "null",
        "yes",
        "9" * 60,
        "\x00",
        "\t",
        "\ud800",
    ]
)


def _check(text: str) -> None:
    start = time.perf_counter()
    try:
        parse_yaml(text, SOURCE)
    except ConfigError as exc:
        _assert_one_line_error(exc)
    assert time.perf_counter() - start < LIMIT_S


@FUZZ
@given(st.text(max_size=300) | st.text(_YAML_CHARS, max_size=300))
def test_fuzz_random_text(text: str) -> None:
    _check(text)


@FUZZ
@given(st.lists(_FRAGMENTS | st.text(_YAML_CHARS, max_size=4), max_size=60).map("".join))
def test_fuzz_yaml_fragments(text: str) -> None:
    _check(text)


def _render(value: Any, indent: int, flow: bool) -> str:
    """A YAML-ish rendering: block or flow style, keys of any kind (a list as a key included)."""
    pad = "  " * indent
    if isinstance(value, list):
        if flow or not value:
            return "[" + ", ".join(_render(v, 0, True) for v in value) + "]"
        return "".join(f"\n{pad}- {_render(v, indent + 1, False)}" for v in value)
    if isinstance(value, dict):
        if flow or not value:
            return (
                "{"
                + ", ".join(f"{_render(k, 0, True)}: {_render(v, 0, True)}" for k, v in value.items())
                + "}"
            )
        return "".join(
            f"\n{pad}{_render(k, 0, True)}: {_render(v, indent + 1, False)}" for k, v in value.items()
        )
    return str(value)


_SCALARS = (
    st.integers(-(10**30), 10**30)
    | st.floats()
    | st.booleans()
    | st.none()
    | st.text(st.sampled_from(list("abcxyz_ -:#&*[]{}!'\"")), max_size=8)
    | _FRAGMENTS
)
_TREES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text("abcdef", min_size=1, max_size=3) | inner.map(str), inner, max_size=5)
    ),
    max_leaves=40,
)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@FUZZ
@given(_TREES, st.booleans(), st.integers(0, 3))
def test_fuzz_nested_structures(tree: Any, flow: bool, indent: int) -> None:
    _check(_render(tree, indent, flow).lstrip("\n"))


_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace", "duplicate_line", "swap_lines"]),
        st.floats(0, 1),
        st.integers(0, 40),
        _FRAGMENTS | st.text(_YAML_CHARS, max_size=6),
    ),
    min_size=1,
    max_size=6,
)


def _mutate(text: str, edits: list[tuple[str, float, int, str]]) -> str:
    for kind, where, size, piece in edits:
        pos = int(where * len(text))
        if kind == "insert":
            text = text[:pos] + piece + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + size :]
        elif kind == "replace":
            text = text[:pos] + piece + text[pos + len(piece) :]
        else:
            lines = text.splitlines(keepends=True)
            if not lines:
                continue
            i = min(int(where * len(lines)), len(lines) - 1)
            j = min(i + 1 + size % 5, len(lines) - 1)
            if kind == "duplicate_line":
                lines.insert(i, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


@FUZZ
@given(_EDITS)
def test_fuzz_mutated_experiment_file(edits: list[tuple[str, float, int, str]]) -> None:
    _check(_mutate(QUICKSTART.read_text(encoding="utf-8"), edits))


# -- Checker bounds ---------------------------------------------------------------------------------
def _checker() -> Checker:
    lines = LineMap("exp.yaml")
    lines.add(("execution", "workers"), 7)
    lines.add(("limits", "trial_timeout_s"), 9)
    return Checker(lines)


def test_integer_maximum() -> None:
    c = _checker()
    path = ("execution", "workers")
    assert c.integer(64, path, minimum=1, maximum=64) == 64
    assert c.opt_integer(None, path, minimum=1, maximum=64) is None
    assert c.opt_integer(3, path, minimum=1, maximum=64) == 3
    with pytest.raises(ConfigError) as info:
        c.integer(1_000_000, path, minimum=1, maximum=64)
    assert str(info.value) == "exp.yaml:7: execution.workers: expected an integer from 1 to 64, got 1000000"
    with pytest.raises(ConfigError, match=r"expected an integer from 1 to 1,000,000, got 0$"):
        c.opt_integer(0, path, minimum=1, maximum=1_000_000)
    with pytest.raises(ConfigError, match=r"expected an integer from 1 to 64, got 1e\+40$"):
        c.integer(1e40, path, minimum=1, maximum=64)
    with pytest.raises(ConfigError, match=r"got True"):
        c.integer(True, path, minimum=0, maximum=64)
    with pytest.raises(ConfigError, match=r"got 9999999999\d*\.\.\.$"):  # a long int is shown cut short
        c.integer(10**400 - 1, path, minimum=1, maximum=64)
    with pytest.raises(ConfigError, match=r"got <int too large to show>$"):  # its repr would raise
        c.integer(10**5000, path, minimum=1, maximum=64)


def test_integer_without_maximum_is_unchanged() -> None:
    c = _checker()
    assert c.integer(10**12, ("execution", "workers"), minimum=1) == 10**12
    with pytest.raises(ConfigError) as info:
        c.integer(0, ("execution", "workers"), minimum=1)
    assert str(info.value) == "exp.yaml:7: execution.workers: expected an integer >= 1, got 0"


def test_number_maximum_and_minimum() -> None:
    c = _checker()
    path = ("limits", "trial_timeout_s")
    assert c.number(86_400, path, maximum=86_400) == 86_400.0
    assert c.opt_number(None, path, maximum=86_400) is None
    assert c.opt_number(0.5, path, maximum=86_400) == 0.5
    assert c.number(0, path, positive=False, minimum=0, maximum=1) == 0.0
    with pytest.raises(ConfigError) as info:
        c.opt_number(1e308, path, maximum=86_400)
    assert str(info.value) == (
        "exp.yaml:9: limits.trial_timeout_s: expected a positive number at most 86,400, got 1e+308"
    )
    with pytest.raises(ConfigError, match=r"expected a number from 0 to 0\.5, got 0\.75$"):
        c.number(0.75, path, positive=False, minimum=0, maximum=0.5)
    with pytest.raises(ConfigError, match=r"expected a number from 0 to 1, got -0\.1$"):
        c.number(-0.1, path, positive=False, minimum=0, maximum=1)
    with pytest.raises(ConfigError, match=r"expected a number >= 0\.5, got 0\.25$"):
        c.number(0.25, path, positive=False, minimum=0.5)
    for bad in (math.nan, math.inf, -math.inf, 10**400, "1", None, True):
        with pytest.raises(ConfigError, match=r"limits\.trial_timeout_s: expected a positive number at most"):
            c.number(bad, path, maximum=86_400)


def test_number_without_bounds_is_unchanged_but_never_crashes() -> None:
    c = _checker()
    path = ("limits", "trial_timeout_s")
    assert c.number(1e308, path) == 1e308
    assert c.opt_number(2, path) == 2.0
    with pytest.raises(ConfigError) as info:
        c.number(-1, path)
    assert str(info.value) == "exp.yaml:9: limits.trial_timeout_s: expected a positive number, got -1"
    with pytest.raises(ConfigError, match=r"expected a number, got nan"):
        c.number(math.nan, path, positive=False)
    with pytest.raises(
        ConfigError, match=r"expected a positive number, got 1000"
    ):  # 10**400 was OverflowError
        c.number(10**400, path)
