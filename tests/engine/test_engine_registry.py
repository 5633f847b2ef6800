"""One method registry and one step model: every config and step round-trips, and a new method added
through the registry works from the CLI, a recipe and a sweep alike, with the same keys."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.config import Config, config_from_dict
from edgeslim.engine.plan import plan_recipe
from edgeslim.engine.steps import (
    STEP_TYPES,
    DataSpec,
    MeasureStep,
    PruneStep,
    Recipe,
    StartStep,
    step_from_dict,
)
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError
from edgeslim.methods import (
    HandlerTable,
    method_config,
    method_names,
    method_of,
    method_params,
    methods,
    register_method,
    unregister_method,
)
from edgeslim.models import load_model_from_checkpoint
from edgeslim.pruning.api import PRUNE_HANDLERS
from edgeslim.recipe import load_recipe, run_recipe
from edgeslim.sweep import expand, load_experiment, run_sweep
from edgeslim.sweep.api import results_task
from edgeslim.train import TrainConfig

# -- round trips ----------------------------------------------------------------------------------
REQUIRED = {"ratio": 0.5}  # the one required parameter of the registered prune methods


@pytest.mark.parametrize("spec", list(methods()), ids=lambda s: s.id)
def test_every_registered_method_round_trips(spec: Any) -> None:
    params = {k: v for k, v in REQUIRED.items() if k in spec.fields()}
    config = method_config(spec.family, spec.name, params)
    assert type(config) is spec.config_cls and method_of(config) is spec
    assert config_from_dict(config.to_dict()) == config  # dict (YAML/JSON/store) round trip
    assert type(config).from_yaml(config.to_yaml()) == config
    assert method_config(spec.family, spec.name, method_params(config)) == config  # as a user writes it
    assert spec.name in method_names(spec.family)


def test_the_registry_names_every_family_and_refuses_unknown_names() -> None:
    assert {"l1", "l2", "fpgm", "random", "magnitude", "gradual"} <= set(method_names("prune"))
    assert {"static", "qat", "dynamic"} <= set(method_names("quantize"))
    assert {"kd", "ab", "hint"} <= set(method_names("distill"))
    with pytest.raises(ConfigError, match=r"'magnitud' is not one of .*did you mean 'magnitude'") as info:
        method_config("prune", "magnitud", {"ratio": 0.5})
    assert info.value.field == "prune.method"
    with pytest.raises(ConfigError, match=r"prune/l1: 'criterion' is fixed to 'l1' by the method name"):
        method_config("prune", "l1", {"ratio": 0.5, "criterion": "l2"})
    with pytest.raises(ConfigError, match=r"both set MagnitudePruning.sparsity"):
        method_config("prune", "magnitude", {"ratio": 0.5, "sparsity": 0.4})
    with pytest.raises(ConfigError, match=r"missing required parameter\(s\) ratio"):
        method_config("prune", "gradual", {})


def _steps() -> Iterator[Any]:
    train = TrainConfig(epochs=1)
    yield StartStep(name="s", model="resnet20_tiny", weights=Path("/w.th"), train=train, init=None)
    yield StartStep(name="c", checkpoint=Path("/c.pt"), num_classes=10)
    for spec in methods():
        params = {k: v for k, v in REQUIRED.items() if k in spec.fields()}
        config = method_config(spec.family, spec.name, params)
        step_cls = STEP_TYPES.get(spec.family)
        if spec.family not in ("prune", "quantize") or step_cls is None:
            continue  # distill steps need a teacher: below
        fields = {"name": spec.id, "config": config}
        if spec.needs_training:
            fields["train"] = train
        if step_cls is PruneStep:
            fields["layout"] = "csr" if spec.name == "magnitude" else "dense"
        yield step_cls(**fields)
    yield STEP_TYPES["distill"](  # type: ignore[call-arg]
        name="d",
        teacher=StartStep(name="teacher", checkpoint=Path("/t.pt")),
        config=method_config("distill", "kd"),
        train=train,
    )
    yield STEP_TYPES["train"](name="t", train=train)  # type: ignore[call-arg]
    yield STEP_TYPES["export"](name="e", format="openvino", precision="int8")  # type: ignore[call-arg]
    yield MeasureStep(name="m", runtimes=("ort", "openvino"), batch_sizes=(1, 32), memory="none")


@pytest.mark.parametrize("step", list(_steps()), ids=lambda s: f"{s.type}:{s.name}")
def test_every_step_round_trips(step: Any) -> None:
    assert step_from_dict(step.to_dict()) == step
    assert step_from_dict(step.to_dict()).params() == step.params()


def test_measure_steps_speak_one_runtime_vocabulary() -> None:
    with pytest.raises(ConfigError, match=r"'onnxruntime' is now called 'ort'; rename it"):
        MeasureStep(runtimes=("onnxruntime",))
    with pytest.raises(ConfigError, match=r"'tflite' is not one of torch, ort, openvino, tensorrt, litert"):
        MeasureStep(runtimes=("tflite",))


def test_a_store_of_the_old_format_is_refused_not_misread(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    Store.open(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    with pytest.raises(ConfigError, match=r"store version 1: it was written before the one-engine change"):
        Store.open(db)


# -- a toy method, added through the registry only --------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ToyPruning(Config):
    """Zero every weight below ``ratio`` x the largest |w| of its layer (in place, no masks)."""

    ratio: float

    def validate(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(
                f"ToyPruning.ratio must be in [0, 1), got {self.ratio}", field="ToyPruning.ratio"
            )


def _prune_toy(
    model: nn.Module,
    config: ToyPruning,
    example_inputs: torch.Tensor,
    layers: dict[str, nn.Module],
    finetune: Any,
) -> tuple[None, tuple[()]]:
    with torch.no_grad():
        for layer in layers.values():
            weight = layer.weight  # type: ignore[union-attr]
            weight[weight.abs() < config.ratio * weight.abs().max()] = 0.0
    return None, ()


@pytest.fixture
def toy() -> Iterator[None]:
    PRUNE_HANDLERS.register(ToyPruning)(_prune_toy)
    register_method("prune", "toy")(ToyPruning)
    yield
    PRUNE_HANDLERS.unregister(ToyPruning)
    unregister_method("prune", "toy")


def _sparsity(path: Path) -> float:
    model, _ = load_model_from_checkpoint(path)
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    return float(sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights))


TOY_MEASURE = {"runtimes": ["torch"], "batch_sizes": [1], "warmup": 0}


def test_a_toy_method_runs_from_cli_recipe_and_sweep_with_the_same_keys(
    toy: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    assert "toy" in method_names("prune")
    # CLI
    out = tmp_path / "cli.pt"
    result = CliRunner().invoke(
        app,
        [
            "prune",
            "--model",
            "resnet20_tiny",
            "--method",
            "toy",
            "--ratio",
            "0.5",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    cli_sparsity = _sparsity(out)
    assert cli_sparsity > 0.2
    bad = CliRunner().invoke(
        app,
        [
            "prune",
            "--model",
            "resnet20_tiny",
            "--method",
            "toy",
            "--ratio",
            "1.5",
            "--out",
            str(tmp_path / "bad.pt"),
        ],
    )
    assert bad.exit_code == 2 and "--ratio (ToyPruning.ratio) must be in [0, 1)" in bad.output

    # recipe
    recipe_file = tmp_path / "toy.yaml"
    recipe_file.write_text(
        f"name: toy\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar}, test_limit: 40}}\nsteps:\n"
        "  - {type: prune, method: toy, ratio: 0.5, layers: {types: [conv]}}\n"
        "  - {type: measure, runtimes: [torch], batch_sizes: [1], runs: 2, warmup: 0}\n"
    )
    db = tmp_path / "s.db"
    recipe = load_recipe(recipe_file)
    ran = run_recipe(recipe, db=db, out_dir=tmp_path / "recipe", progress=False)
    pruned, measured = ran.steps
    assert pruned.metrics["method"] == "prune/toy" and 0.2 < pruned.metrics["sparsity"] < 1.0
    assert measured.metrics["runtime"] == "torch" and measured.metrics["top1"] is not None

    # sweep: the same settings, the same keys (so the recipe's results are reused by key in one store)
    exp_file = tmp_path / "toy-sweep.yaml"
    exp_file.write_text(
        f"name: toy-sweep\nmodels: [{{name: resnet20_tiny, init: random}}]\n"
        f"data: {{path: {tiny_cifar}, test_limit: 40}}\nlayers: {{types: [conv]}}\n"
        "methods:\n  - prune: {method: toy, ratio: [0.5, 0.7]}\n"
        "measure: {runtimes: [torch], batch_sizes: [1], latency_runs: 2, warmup: 0, "
        "metrics: [top1, params, macs, size, latency]}\n"
    )
    experiment = load_experiment(exp_file)
    nodes = {n.name: n for n in expand(experiment)}
    summary = run_sweep(experiment, db=db, executor="inline", progress=False)
    assert (summary.failed, summary.done) == (0, summary.total)
    trials = {t["name"]: t for t in results_task("toy-sweep", db=db)["trials"]}
    assert trials["resnet20_tiny/toy ratio=0.5"]["method"] == "toy"
    assert trials["resnet20_tiny/toy ratio=0.5"]["rate"] == 0.5
    assert (
        trials["resnet20_tiny/toy ratio=0.7"]["param_reduction_ratio"]
        > trials["resnet20_tiny/toy ratio=0.5"]["param_reduction_ratio"]
        > 0.2
    )
    # the recipe's prune step is the sweep's prune node, except for the start (random init vs none)
    same = Recipe(
        name="x",
        start=StartStep(name="s", model="resnet20_tiny", init="random"),
        data=DataSpec(**{**experiment.data.to_dict()}),
        steps=(
            PruneStep(
                name="p", config=method_config("prune", "toy", {"ratio": 0.5}), select=experiment.layers
            ),
            experiment.measure,
        ),
    )
    assert [n.key for n in plan_recipe(same)] == [
        nodes["resnet20_tiny/start"].key,
        nodes["resnet20_tiny/toy ratio=0.5 [prune]"].key,
        nodes["resnet20_tiny/toy ratio=0.5"].key,
    ]


def test_handler_tables_are_looked_up_by_config_type() -> None:
    table: HandlerTable[Any] = HandlerTable("demo")

    @table.register(ToyPruning)
    def handle(config: ToyPruning) -> float:
        return config.ratio

    assert table.get(ToyPruning(0.25))(ToyPruning(0.25)) == 0.25
    with pytest.raises(ConfigError, match=r"demo: MeasureStep is not supported \(supported: ToyPruning\)"):
        table.get(MeasureStep())
    with pytest.raises(ValueError, match="already has a handler"):
        table.register(ToyPruning)(handle)
