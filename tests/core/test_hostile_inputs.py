"""Issue 17, "Robustness against hostile files", end to end through the CLI.

1. Hostile YAML (an alias bomb, a list as a key, a self-referencing alias, 5,000 nested brackets, a
   NUL byte) given to ``edgeslim sweep`` and ``edgeslim run``: one ``error:`` line, exit 2, within
   5 s, and nothing written; a fuzz of whole experiment and recipe documents through their
   validators (not only the YAML reader, which tests/core/test_yaml_hostile.py fuzzes).
2. Values that pass a type check but cannot run (a batch of 10^12, a million workers, a timeout of
   1e308 s, 1e40 images, a 100,000 px image, 10^12 classes): refused at validation with the field
   and its allowed range, in files, flags and the library; an allocation that still fails is one
   line.
3. Nothing half-written: a recipe or sweep whose model, teacher or checkpoint does not load leaves
   no store and no folder behind.
4. Usage errors (``train --epochs -1``, ``export --opset 5``, ``bench -b 0``) are one line, exit 2.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hostile_helpers import laughs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.cli.app import app
from edgeslim.data import InputSize
from edgeslim.engine.runner import check_execution, make_executor
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.models import create_model
from edgeslim.recipe.schema import parse_recipe
from edgeslim.sweep.experiment import parse_experiment
from edgeslim.yaml_schema import (
    MAX_BATCH_SIZE,
    MAX_CLASSES,
    MAX_IMAGE_SIZE,
    MAX_THREADS,
    MAX_YAML_DEPTH,
    max_workers,
)

runner = CliRunner()
LIMIT_S = 5.0
REPO = Path(__file__).resolve().parents[2]


#: name -> (document, what the one line must say)
HOSTILE = {
    "billion_laughs": (laughs(), "more than 10,000 values once its aliases (*name) are expanded"),
    "complex_key": ("? [a, b]\n: 1\n", "(top level): a key is a list; keys must be plain names or numbers"),
    "self_referencing_alias": ("a: &a [1, *a]\n", "a[1]: an alias (*name) refers to a list or mapping"),
    "nested_brackets_5000": ("[" * 5000 + "]" * 5000, f"nested more than {MAX_YAML_DEPTH} levels deep"),
    "nul_byte": ("name: a\nb: \x00\n", "x.yaml:2: invalid YAML: character #x0000 is not allowed"),
}


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    return lines[0]


# -- 1. hostile YAML through the CLI ----------------------------------------------------------------
@pytest.mark.parametrize("command", ["sweep", "run"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_yaml_is_one_line_exit_2_quickly_and_writes_nothing(
    command: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, fragment = HOSTILE[name]
    (tmp_path / "x.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the default store is runs/sweeps.db here
    start = time.perf_counter()
    result = runner.invoke(app, [command, "x.yaml"])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert line.startswith("error: x.yaml"), line
    assert fragment in line, line
    assert elapsed < LIMIT_S, f"{command} {name}: {elapsed:.1f} s"
    assert _files(tmp_path) == ["x.yaml"]


def test_the_installed_entry_point_refuses_an_alias_bomb_in_one_line(tmp_path: Path) -> None:
    """The real process (not CliRunner): it hung for more than 90 s before."""
    (tmp_path / "x.yaml").write_text(laughs(), encoding="utf-8")
    code = "import sys; from edgeslim.cli.entry import main; sys.argv[0] = 'edgeslim'; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "sweep", "x.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    line = _one_error_line(proc.stderr)
    assert "aliases (*name) are expanded" in line
    assert _files(tmp_path) == ["x.yaml"]


# -- 1b. fuzz: whole documents through the experiment and recipe validators ------------------------
FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=LIMIT_S),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

_HOSTILE_VALUES = st.sampled_from(
    [
        None,
        True,
        0,
        -1,
        10**12,
        10**400,
        1e308,
        float("inf"),
        float("nan"),
        -0.0,
        "",
        " ",
        "x" * 300,
        "\u202e",
        "~no_such_user_edgeslim/x.pt",
        "a\x00b",
        "\u540d" * 100,
        "../" * 2000,
        "abc\n",
        [],
        {},
        [[[]]],
        {"a": {"b": None}},
        [1, "a", None],
        {1: 2},
        {None: 1},
        {2.5: "x"},
        "resnet20_tiny",
        "torch",
        "l1",
        "measure",
    ]
)
_VALUES = st.recursive(
    _HOSTILE_VALUES | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _experiment(data: Path) -> dict[str, Any]:
    return {
        "name": "fuzz",
        "models": [{"name": "resnet20_tiny", "init": "random"}],
        "data": {"path": str(data), "train_limit": 100, "test_limit": 50},
        "methods": [{"prune": {"method": "l1", "ratio": [0.3, 0.5]}}, {"quantize": {"method": "static"}}],
        "finetune": {"epochs": 1, "lr": 0.01},
        "measure": {"runtimes": ["torch"], "batch_sizes": [1, 8]},
        "limits": {"trial_timeout_s": 600},
        "execution": {"workers": 1, "threads": 1},
    }


def _recipe(data: Path) -> dict[str, Any]:
    return {
        "name": "fuzz",
        "model": {"name": "resnet20_tiny"},
        "data": {"path": str(data), "test_limit": 50},
        "threads": 1,
        "steps": [
            {"type": "train", "train": {"epochs": 1, "batch_size": 32}},
            {"type": "prune", "method": "l1", "ratio": 0.5},
            {"type": "measure", "runtimes": ["torch"], "batch_sizes": [1]},
        ],
    }


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path and list index of ``doc`` (where a value can be replaced or a key added)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _edit(doc: Any, path: tuple[Any, ...], value: Any, add_key: str | None) -> Any:
    if not path:
        if add_key is not None and isinstance(doc, dict):
            return {**doc, add_key: value}
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _edit(doc[head], rest, value, add_key)}
    items = list(doc)
    items[head] = _edit(items[head], rest, value, add_key)
    return items


_EDITS = st.lists(
    st.tuples(
        st.floats(0, 1), _VALUES, st.none() | st.sampled_from(["name", "type", "extra", "seed", "ratio"])
    ),
    min_size=1,
    max_size=4,
)


def _mutated(doc: dict[str, Any], edits: list[tuple[float, Any, str | None]]) -> str:
    for where, value, add_key in edits:
        paths = _paths(doc)
        path = paths[min(int(where * len(paths)), len(paths) - 1)]
        edited = _edit(doc, path, value, add_key)
        doc = edited if isinstance(edited, dict) else doc
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def _check_validator(parse: Any, text: str) -> None:
    start = time.perf_counter()
    try:
        parse(text)
    except EdgeslimError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("<"), message  # names the source
        assert len(message) < 600, message
    assert time.perf_counter() - start < LIMIT_S


@FUZZ
@given(edits=_EDITS)
def test_fuzz_experiment_documents(edits: list[tuple[float, Any, str | None]], tiny_cifar: Path) -> None:
    text = _mutated(_experiment(tiny_cifar.parent), edits)
    _check_validator(lambda t: parse_experiment(t, check_models=False), text)


@FUZZ
@given(edits=_EDITS)
def test_fuzz_recipe_documents(edits: list[tuple[float, Any, str | None]], tiny_cifar: Path) -> None:
    text = _mutated(_recipe(tiny_cifar.parent), edits)
    _check_validator(parse_recipe, text)


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        # found by the fuzz above: each was a traceback or a message of many lines or kilobytes
        (
            ("methods", 0, "prune", "ratio"),
            [10**400],
            "<experiment>:NN: methods[0].prune.ratio: FilterPruning.ratio: expected float, got "
            "100000000000000000000000000000000000000000000000000000000... (int)",
        ),
        (
            ("finetune", "lr"),
            10**400,
            "<experiment>:NN: finetune.lr: TrainConfig.lr: expected float, got "
            "100000000000000000000000000000000000000000000000000000000... (int)",
        ),
        (
            ("methods", 0, "prune", "ratio"),
            {"from": -1e308, "to": 1e308, "step": 1},
            "<experiment>:NN: methods[0].prune.ratio.step: the range has more than 10^9 values "
            "(at most 10,000); use a larger step",
        ),
        (
            ("methods", 0, "prune", "ratio"),
            {"from": 0, "to": 1, "step": 1e-5},
            "<experiment>:NN: methods[0].prune.ratio.step: the range has 100,000 values (at most 10,000); "
            "use a larger step",
        ),
        (
            ("measure", "runtimes"),
            [{"x" * 500: 10**400}],
            "<experiment>:NN: measure.runtimes[0]: \"{'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... "
            "is not one of torch, ort, openvino, tensorrt, litert",
        ),
        (
            ("models", 0, "name"),
            {"x" * 500: None},
            "<experiment>:NN: models[0].name: expected a non-empty string, got "
            "{'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...",
        ),
        (("a\nb",), 1, "<experiment>:NN: 'a\\nb': unknown key; valid keys: name, description,"),
        (
            ("\u2028" + "k" * 60,),
            1,
            "<experiment>:NN: '\\u2028kkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...: unknown key;",
        ),
    ],
    ids=[
        "int_10e400_float",
        "int_10e400_lr",
        "range_inf",
        "range_huge",
        "long_runtime",
        "long_name",
        "nl_key",
        "ls_key",
    ],
)
def test_fuzz_findings_are_short_single_lines(
    where: tuple[Any, ...], value: Any, expected: str, tiny_cifar: Path
) -> None:
    doc = _experiment(tiny_cifar.parent)
    doc = _edit(doc, where, value, None) if len(where) > 1 or where[0] in doc else {**doc, where[0]: value}
    with pytest.raises(ConfigError) as info:
        parse_experiment(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), check_models=False)
    message = re.sub(r"^<experiment>:\d+:", "<experiment>:NN:", str(info.value))
    assert message.startswith(expected), message
    assert len(message.splitlines()) == 1 and len(message) < 300, message


PATHS = {
    # value: what the line says (each was an OSError, ValueError or RuntimeError traceback)
    "~no_such_user_edgeslim/w.pt": "cannot expand '~no_such_user_edgeslim/w.pt'",
    "w\x00.pt": "a path cannot hold a NUL character, got 'w\\x00.pt'",
    "x" * 300: "the path is too long (300 bytes; at most 255 bytes a name and 4,096 in all)",
    "\u540d" * 100: "the path is too long (300 bytes; at most 255 bytes a name",
    "a/" * 2100: "the path is too long (4,200 bytes; at most 255 bytes a name and 4,096 in all)",
}


@pytest.mark.parametrize("value", sorted(PATHS), ids=["long_path", "nul", "long_name", "tilde_user", "cjk"])
def test_file_paths_the_file_system_cannot_look_up_are_one_line(value: str, tiny_cifar: Path) -> None:
    expected = PATHS[value]
    exp = _experiment(tiny_cifar.parent)
    rec = _recipe(tiny_cifar.parent)
    cases = [
        (parse_experiment, _edit(exp, ("models", 0), {"name": "resnet20_tiny", "weights": value}, None)),
        (parse_experiment, _edit(exp, ("data", "path"), value, None)),
        (parse_experiment, {**exp, "artifacts": value}),
        (parse_experiment, _edit(exp, ("finetune",), {"epochs": 1, "teacher": value}, None)),
        (parse_recipe, _edit(rec, ("model",), {"name": "resnet20_tiny", "weights": value}, None)),
        (parse_recipe, _edit(rec, ("model",), {"checkpoint": value}, None)),
        (parse_recipe, _edit(rec, ("data", "path"), value, None)),
        (
            parse_recipe,
            _edit(
                rec,
                ("steps", 1),
                {"type": "prune", "method": "l1", "ratio": 0.5, "train": {"epochs": 1, "teacher": value}},
                None,
            ),
        ),
    ]
    for parse, doc in cases:
        with pytest.raises(ConfigError) as info:
            parse(yaml.safe_dump(doc, allow_unicode=True))
        message = str(info.value)
        assert expected in message and len(message.splitlines()) == 1 and len(message) < 300, message


def test_names_that_cannot_name_a_folder_are_refused(tiny_cifar: Path) -> None:
    for name in ("abc\n", "a" * 101):
        with pytest.raises(
            ConfigError, match=r"name: .* may use only letters, digits, .*at most 100 characters"
        ):
            parse_experiment(
                yaml.safe_dump({**_experiment(tiny_cifar.parent), "name": name}), check_models=False
            )
        with pytest.raises(
            ConfigError, match=r"name: .* may use only letters, digits, .*at most 100 characters"
        ):
            parse_recipe(yaml.safe_dump({**_recipe(tiny_cifar.parent), "name": name}))
    parse_recipe(yaml.safe_dump({**_recipe(tiny_cifar.parent), "name": "a" * 100}))


def test_fuzz_base_documents_are_valid(tiny_cifar: Path) -> None:
    """The documents the fuzz mutates are valid, so the fuzz reaches past the first check."""
    parse_experiment(yaml.safe_dump(_experiment(tiny_cifar.parent)), check_models=False)
    parse_recipe(yaml.safe_dump(_recipe(tiny_cifar.parent)))


# -- 2. bounds ----------------------------------------------------------------------------------------
def _experiment_file(root: Path, data: Path, section: str, key: str, value: object) -> Path:
    doc = _experiment(data)
    doc.setdefault(section, {})[key] = value
    path = root / "x.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        (
            "measure",
            "batch_sizes",
            [1_000_000_000_000],
            "measure.batch_sizes[0]: expected an integer from 1 to 4096, got 1000000000000",
        ),
        (
            "execution",
            "workers",
            1_000_000,
            f"execution.workers: expected an integer from 1 to {max_workers()}, got 1000000",
        ),
        (
            "limits",
            "trial_timeout_s",
            1e308,
            "limits.trial_timeout_s: expected a positive number at most 604,800, got 1e+308",
        ),
        (
            "data",
            "train_limit",
            1e40,
            "data.train_limit: expected an integer from 1 to 1,000,000,000, got 1e+40",
        ),
        ("data", "image_size", 100_000, "data.image_size: expected an integer from 8 to 1024, got 100000"),
    ],
)
def test_sweep_refuses_values_that_cannot_run(
    section: str,
    key: str,
    value: object,
    expected: str,
    tmp_path: Path,
    tiny_cifar: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _experiment_file(tmp_path, tiny_cifar.parent, section, key, value)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sweep", "x.yaml"])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert line.startswith("error: x.yaml:") and line.endswith(expected), line
    assert _files(tmp_path) == ["x.yaml"]


def test_sweep_and_recipe_refuse_a_head_of_10_12_classes(tiny_cifar: Path) -> None:
    doc = _experiment(tiny_cifar.parent)
    doc["models"][0]["num_classes"] = 10**12
    with pytest.raises(ConfigError, match=r"models\[0\]\.num_classes: expected an integer from 1 to 100,000"):
        parse_experiment(yaml.safe_dump(doc))
    rec = _recipe(tiny_cifar.parent)
    rec["model"]["num_classes"] = 10**12
    with pytest.raises(ConfigError, match=r"model\.num_classes: expected an integer from 1 to 100,000"):
        parse_recipe(yaml.safe_dump(rec))


@pytest.mark.parametrize(
    ("args", "flag", "bound"),
    [
        (["bench", "--model", "resnet20_tiny", "--image-size", "100000"], "'--image-size'", MAX_IMAGE_SIZE),
        (
            ["bench", "--model", "resnet20_tiny", "-b", "1000000000000"],
            "'--batch-size' / '-b'",
            MAX_BATCH_SIZE,
        ),
        (["bench", "--model", "resnet20_tiny", "--runs", "1000000000"], "'--runs'", 100_000),
        (["train", "--model", "resnet20_tiny", "--image-size", "100000"], "'--image-size'", MAX_IMAGE_SIZE),
        (["train", "--model", "resnet20_tiny", "--batch-size", "100000000"], "'--batch-size' / '-b'", 4096),
        (
            ["eval", "--model", "resnet20_tiny", "--num-classes", "1000000000000"],
            "'--num-classes'",
            MAX_CLASSES,
        ),
        (["eval", "--model", "resnet20_tiny", "--threads", "1000000"], "'--threads' / '-t'", MAX_THREADS),
        (["eval", "--model", "resnet20_tiny", "--limit", "10000000000000"], "'--limit'", 10**9),
        # a file that does not exist: were --workers not checked first, the error would name the file
        (["sweep", "missing.yaml", "--workers", "1000000"], "'--workers' / '-w'", max_workers()),
        (["sweep", "missing.yaml", "--threads", "1000000"], "'--threads' / '-t'", MAX_THREADS),
        (["run", "missing.yaml", "--threads", "1000000"], "'--threads' / '-t'", MAX_THREADS),
    ],
)
def test_flags_that_cannot_run_are_one_line_usage_errors(
    args: list[str], flag: str, bound: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert f"Invalid value for {flag}: Input should be less than or equal to {bound}" in line, line
    assert line.endswith("--help)"), line
    assert _files(tmp_path) == []


def test_library_bounds_name_the_field_and_range() -> None:
    source = tasks.ModelSource(name="resnet20_tiny")
    with pytest.raises(ConfigError) as info:
        tasks.bench_task(source, batch_sizes=(1, 10**12))
    assert (
        str(info.value)
        == "bench_task.batch_sizes must all be integers from 1 to 4096, got [1, 1000000000000]"
    )
    assert info.value.field == "bench_task.batch_sizes"
    with pytest.raises(
        ConfigError, match=r"^bench_task\.image_size must be an integer from 8 to 1024, got 100000$"
    ):
        tasks.bench_task(source, input_size=(3, 100_000, 100_000))
    with pytest.raises(
        ConfigError, match=r"^bench_task\.runs must be an integer from 1 to 100,000, got 10000000000$"
    ):
        tasks.bench_task(source, runs=10**10)
    with pytest.raises(
        ConfigError, match=r"^bench_artifact_task\.warmup must be an integer from 0 to 100,000"
    ):
        tasks.bench_artifact_task(None, model_source=source, warmup=-1)
    with pytest.raises(
        ConfigError, match=r"^InputSize\.image_size must be an integer from 8 to 1024, got 100000$"
    ):
        InputSize(100_000)
    with pytest.raises(ConfigError, match=r"^ModelSource\.num_classes must be an integer from 1 to 100,000"):
        tasks.ModelSource(name="resnet20_tiny", num_classes=10**12)
    with pytest.raises(
        ConfigError, match=rf"^workers must be an integer from 1 to {max_workers()} .*got 1000000$"
    ):
        check_execution(10**6, None)
    with pytest.raises(
        ConfigError, match=r"^executor\.threads \(per worker\) must be an integer from 1 to 1024"
    ):
        check_execution(None, 10**6)
    check_execution(None, None)
    check_execution(max_workers(), MAX_THREADS)


def test_a_million_workers_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^workers must be an integer") as info:
        make_executor("local", 1_000_000, db=tmp_path / "runs" / "sweeps.db")
    assert info.value.field == "workers"
    assert _files(tmp_path) == []


def test_bench_image_size_typo_in_the_library_is_one_line_in_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tasks.bench_task

    def huge(source: tasks.ModelSource, **kw: Any) -> Any:
        return real(source, **{**kw, "input_size": (3, 100_000, 100_000)})

    monkeypatch.setattr(tasks, "bench_task", huge)
    result = runner.invoke(app, ["bench", "--model", "resnet20_tiny"])
    assert result.exit_code == 2
    line = _one_error_line(result.output)
    assert line == "error: --image-size (bench_task.image_size) must be an integer from 8 to 1024, got 100000"


def test_an_allocation_that_fails_anyway_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounds hold each value; a batch of 4,096 at 1,024 px (51 GB of input) can still not fit."""

    def out_of_memory(*_: Any, **__: Any) -> Any:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 51539607552 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(tasks, "bench_task", out_of_memory)
    result = runner.invoke(app, ["bench", "--model", "resnet20_tiny", "-b", "4096", "--image-size", "1024"])
    assert result.exit_code == 1
    assert _one_error_line(result.output) == (
        "error: out of memory: DefaultCPUAllocator: can't allocate memory: you tried to allocate "
        "51539607552 bytes. Error code 12 (Cannot allocate memory); use a smaller --batch-size, "
        "--image-size or model"
    )

    def bare_memory_error(*_: Any, **__: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(tasks, "bench_task", bare_memory_error)
    result = runner.invoke(app, ["bench", "--model", "resnet20_tiny"])
    assert result.exit_code == 1
    assert _one_error_line(result.output) == (
        "error: out of memory; use a smaller --batch-size, --image-size or model"
    )

    def bug(*_: Any, **__: Any) -> Any:
        raise RuntimeError("shape mismatch in a kernel")  # not an allocation: a bug keeps its traceback

    monkeypatch.setattr(tasks, "bench_task", bug)
    result = runner.invoke(app, ["bench", "--model", "resnet20_tiny"])
    assert isinstance(result.exception, RuntimeError)


# -- 3. nothing half-written ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wrong_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wrong")
    other = root / "resnet20.pt"  # weights of another model than resnet20_tiny
    torch.save(create_model("resnet20", num_classes=10).state_dict(), other)
    garbage = root / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    return {"other": other, "garbage": garbage}


MEASURE = "  - {type: measure, batch_sizes: [1], runs: 1, warmup: 0, passes: 1}\n"


@pytest.mark.parametrize(
    ("model", "steps", "expected"),
    [
        ("{checkpoint: GARBAGE}", MEASURE, "r.yaml: model: checkpoint 'GARBAGE' is corrupt"),
        ("{checkpoint: OTHER}", MEASURE, "r.yaml: model: 'OTHER' is not an edgeslim checkpoint"),
        (
            "{name: resnet20_tiny, weights: GARBAGE}",
            MEASURE,
            "r.yaml: model: checkpoint 'GARBAGE' is corrupt",
        ),
        (
            "{name: resnet20_tiny}",
            "  - {type: distill, teacher: {name: resnet20_tiny, weights: OTHER}, method: kd, train: {epochs: 1}}\n",
            "r.yaml: steps[0].teacher: OTHER does not fit the model",
        ),
        (
            "{name: resnet20_tiny}",
            "  - {type: prune, method: l1, ratio: 0.5, train: {epochs: 1, teacher: GARBAGE}}\n" + MEASURE,
            "r.yaml: steps[0].train.teacher: checkpoint 'GARBAGE' is corrupt",
        ),
    ],
    ids=["garbage_checkpoint", "state_dict_as_checkpoint", "garbage_weights", "teacher_misfit", "ft_teacher"],
)
def test_recipe_whose_models_do_not_load_writes_nothing(
    model: str,
    steps: str,
    expected: str,
    wrong_weights: dict[str, Path],
    tmp_path: Path,
    tiny_cifar: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fill(text: str) -> str:
        for name, path in wrong_weights.items():
            text = text.replace(name.upper(), str(path))
        return text

    (tmp_path / "r.yaml").write_text(
        fill(f"name: bad\nmodel: {model}\ndata: {{path: {tiny_cifar.parent}}}\nthreads: 1\nsteps:\n{steps}")
    )
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "r.yaml"])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert fill(expected) in line, line
    assert _files(tmp_path) == ["r.yaml"]


def test_recipe_with_too_many_threads_from_the_library_writes_nothing(
    tmp_path: Path, tiny_cifar: Path
) -> None:
    from edgeslim.recipe.runner import run_recipe

    recipe = parse_recipe(yaml.safe_dump(_recipe(tiny_cifar.parent)), source="r.yaml")
    with pytest.raises(ConfigError, match=r"^executor\.threads"):
        run_recipe(recipe, db=tmp_path / "runs" / "sweeps.db", num_threads=10**6, progress=False)
    assert _files(tmp_path) == []


def test_sweep_whose_finetune_teacher_does_not_load_writes_nothing(
    wrong_weights: dict[str, Path], tmp_path: Path, tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = _experiment(tiny_cifar.parent)
    doc["finetune"] = {"epochs": 1, "teacher": str(wrong_weights["garbage"])}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sweep", "x.yaml"])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert line.startswith("error: x.yaml:") and "finetune.teacher: checkpoint" in line, line
    assert _files(tmp_path) == ["x.yaml"]


# -- 4. usage errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["train", "--epochs", "-1"],
            "error: Invalid value for '--epochs' / '-e': Input should be greater than or equal to 1 "
            "(see edgeslim train --help)",
        ),
        (
            ["export", "--opset", "5"],
            "error: Invalid value for '--opset': Input should be greater than or equal to 17 "
            "(see edgeslim export --help)",
        ),
        (
            ["bench", "-b", "0"],
            "error: Invalid value for '--batch-size' / '-b': Input should be greater than or equal to 1 "
            "(see edgeslim bench --help)",
        ),
    ],
)
def test_usage_errors_are_exactly_one_line(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args, prog_name="edgeslim")
    assert result.exit_code == 2
    assert result.output.strip() == expected


def test_usage_error_of_the_real_process_is_one_line_on_stderr(tmp_path: Path) -> None:
    code = "import sys; from edgeslim.cli.entry import main; sys.argv[0] = 'edgeslim'; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", "--epochs", "-1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "60"},  # a narrow terminal does not wrap the line either
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == (
        "error: Invalid value for '--epochs' / '-e': Input should be greater than or equal to 1 "
        "(see edgeslim train --help)"
    )
