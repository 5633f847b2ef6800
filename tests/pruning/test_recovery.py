"""Recovery fine-tuning: distillation from the uncompressed model, time budgets, staged pruning,
measured round_to, and the front-ends (CLI, sweep YAML, recipe YAML) that reach them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.checkpoint import save_checkpoint
from edgeslim.cli.app import app
from edgeslim.data import BatchLoader
from edgeslim.engine.keys import step_key
from edgeslim.engine.steps import DataSpec, PruneStep, QuantizeStep, step_from_dict
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.pruning import FilterPruning, GradualPruning, prune
from edgeslim.pruning.structured import group_max_ratio, step_fraction
from edgeslim.quantization import QAT, StaticQuant
from edgeslim.recipe.schema import parse_recipe
from edgeslim.sweep.experiment import parse_experiment
from edgeslim.sweep.grid import recipes
from edgeslim.tasks.prune import gradual_schedule
from edgeslim.tasks.recovery import Recovery, plan_budget, stage_epochs
from edgeslim.tasks.round_to import pick_multiple
from edgeslim.train import TrainConfig

runner = CliRunner()
FT = TrainConfig(epochs=1, batch_size=64, lr=0.01)


def _prune(tiny_cifar: Path, tmp_path: Path, config: object, **kw: object) -> tasks.PruneOutcome:
    return tasks.prune_task(
        tasks.ModelSource(name="resnet20_tiny"),
        config,  # type: ignore[arg-type]
        out=tmp_path / "p.pt",
        data_source=tasks.DataSource(path=str(tiny_cifar.parent)),
        latency_batch_sizes=(2,),
        latency_runs=2,
        progress=False,
        **kw,  # type: ignore[arg-type]
    )


# -- distillation by default -----------------------------------------------------------------------
def test_prune_finetune_distills_from_the_model_before_pruning(tiny_cifar: Path, tmp_path: Path) -> None:
    out = _prune(tiny_cifar, tmp_path, FilterPruning(0.5), finetune=FT)
    rec = out.to_dict()["recovery"]
    assert rec["distill"] and rec["teacher"] == "the model before compression"
    assert not rec["teacher_logits_cached"]  # random augmentation: the teacher runs every step
    assert rec["teacher_seconds"] > 0 and rec["epochs"] == 1
    assert out.finetune_epochs == 1
    assert set(out.to_dict()["realized_speedup"]) == {"2"}


def test_no_augmentation_caches_teacher_logits(tiny_cifar: Path, tmp_path: Path) -> None:
    out = _prune(
        tiny_cifar,
        tmp_path,
        FilterPruning(0.5),
        finetune=FT.replace(epochs=2),
        recovery=Recovery(augment=False),
    )
    rec = out.to_dict()["recovery"]
    assert rec["teacher_logits_cached"]
    assert rec["teacher_cache"]["hits"] > 0  # the second epoch reads every image's logits from the cache


def test_no_distill_trains_on_labels(tiny_cifar: Path, tmp_path: Path) -> None:
    out = _prune(tiny_cifar, tmp_path, FilterPruning(0.5), finetune=FT, recovery=Recovery(distill=False))
    assert out.to_dict()["recovery"]["distill"] is False
    assert out.to_dict()["recovery"]["teacher_seconds"] == 0.0


def test_recovery_without_finetune_is_refused(tiny_cifar: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        _prune(tiny_cifar, tmp_path, FilterPruning(0.5), recovery=Recovery())
    assert exc.value.field == "prune_task.finetune"


def test_teacher_with_other_classes_is_refused(tiny_cifar: Path, tmp_path: Path) -> None:
    teacher = tmp_path / "t5.pt"
    save_checkpoint(
        teacher,
        create_model("resnet20_tiny", num_classes=5),
        model_name="resnet20_tiny",
        model_kwargs={"num_classes": 5},
    )
    with pytest.raises(ConfigError) as exc:
        _prune(tiny_cifar, tmp_path, FilterPruning(0.5), finetune=FT, recovery=Recovery(teacher=str(teacher)))
    assert exc.value.field == "Recovery.teacher" and "5 classes" in str(exc.value)
    assert not (tmp_path / "p.pt").exists()


# -- budget ----------------------------------------------------------------------------------------
def test_budget_sizes_epochs_from_a_warmup(tiny_cifar: Path) -> None:
    data = tasks.DataSource(path=str(tiny_cifar.parent)).load("train")
    model = create_model("resnet20_tiny")
    loader = BatchLoader(data, 64, shuffle=True, drop_last=True)
    plan = plan_budget(model, loader, FT, budget_minutes=0.5, teacher=None, cached=False)
    assert plan.epochs == int(30 // plan.epoch_seconds) and plan.epochs >= 1
    with pytest.raises(ConfigError) as exc:
        plan_budget(model, loader, FT, budget_minutes=1e-5, teacher=None, cached=False)
    assert exc.value.field == "Recovery.budget_minutes" and "too small for one" in str(exc.value)


def test_prune_with_budget_reports_chosen_epochs(tiny_cifar: Path, tmp_path: Path) -> None:
    out = _prune(tiny_cifar, tmp_path, FilterPruning(0.5), finetune=FT, recovery=Recovery(budget_minutes=0.5))
    budget = out.to_dict()["recovery"]["budget"]
    assert budget["epochs"] == out.finetune_epochs >= 1
    assert any("budget 0.5 min" in n for n in out.notes)


# -- staged pruning, limits, schedules -------------------------------------------------------------
def test_iterative_filter_pruning_recovers_between_stages(tiny_cifar: Path, tmp_path: Path) -> None:
    cfg = FilterPruning(0.5, iterative_steps=2)
    out = _prune(tiny_cifar, tmp_path, cfg, finetune=FT.replace(epochs=3), recovery=Recovery(distill=False))
    rec = out.to_dict()["recovery"]
    assert rec["stages"] == 2 and rec["epochs"] == 3
    assert stage_epochs(3, 2) == [1, 2] and stage_epochs(10, 3) == [2, 2, 6]
    with pytest.raises(ConfigError):
        stage_epochs(1, 2)


def test_cubic_stage_fractions_and_layer_limits() -> None:
    cfg = FilterPruning(0.8, iterative_steps=4)
    fractions = [step_fraction(cfg, k) for k in range(1, 5)]
    assert fractions[-1] == pytest.approx(0.8) and fractions[0] > 0.8 / 4  # big cuts first
    assert [step_fraction(cfg.replace(schedule="linear"), k) for k in (1, 4)] == pytest.approx([0.2, 0.8])
    capped = FilterPruning(0.9, max_layer_ratio=0.95, min_channels=3, layer_max_ratios=("layer1.*=0.25",))
    assert group_max_ratio(capped, "layer1.0.conv1") == 0.25 and group_max_ratio(capped, "conv1") == 0.95
    model = create_model("resnet20_tiny")
    prune(model, capped, example_inputs=torch.zeros(1, 3, 32, 32))
    convs = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert all(c >= 3 for c in convs.values())  # no layer below min_channels
    assert convs["layer1.0.conv1"] == 3  # 4 channels, at most 25% cut
    with pytest.raises(ConfigError):
        FilterPruning(0.5, layer_max_ratios=("layer1",))


def test_gradual_schedule_keeps_values_the_user_set() -> None:
    default = gradual_schedule(GradualPruning(0.9), steps_per_epoch=100, epochs=4)
    assert (default.start_step, default.num_steps, default.frequency) == (0, 300, 30)  # the 3/4 ramp
    mine = gradual_schedule(GradualPruning(0.9, start_step=50, num_steps=200, frequency=20), 100, 4)
    assert (mine.start_step, mine.num_steps, mine.frequency) == (50, 200, 20)
    partial = gradual_schedule(GradualPruning(0.9, num_steps=120), 100, 4)
    assert (partial.start_step, partial.num_steps, partial.frequency) == (0, 120, 12)


def test_pick_multiple_prefers_a_multiple_only_when_it_is_faster() -> None:
    flat = {w: w * w * 0.001 for w in range(49, 65)}
    assert pick_multiple(flat)[0] == 1
    blocky = {w: (-(-w // 8) * 8) ** 2 * 0.001 for w in range(49, 65)}  # costs like the next multiple of 8
    assert pick_multiple(blocky)[0] == 8


# -- steps, sweep and recipe front-ends ------------------------------------------------------------
def test_steps_carry_recovery_in_their_key() -> None:
    plain = PruneStep(config=FilterPruning(0.5), train=FT)
    assert plain.recovery == Recovery()  # distill by default when fine-tuning
    assert step_from_dict(plain.to_dict()) == plain
    other = PruneStep(config=FilterPruning(0.5), train=FT, recovery=Recovery(distill=False))
    assert step_key(plain, DataSpec(), "parent") != step_key(other, DataSpec(), "parent")
    assert PruneStep(config=FilterPruning(0.5)).recovery is None
    with pytest.raises(ConfigError):
        PruneStep(config=FilterPruning(0.5), recovery=Recovery())
    with pytest.raises(ConfigError):
        QuantizeStep(config=StaticQuant(), recovery=Recovery())
    assert QuantizeStep(config=QAT(), train=FT).recovery == Recovery()


SWEEP = """
name: rec
models: [{name: resnet20_tiny, init: random}]
data: {path: DATA}
methods:
  - prune: {method: l1, ratio: 0.5}
  - quantize: {method: static}
finetune: FINETUNE
"""


def _sweep(tiny_cifar: Path, finetune: str) -> str:
    return SWEEP.replace("FINETUNE", finetune).replace("DATA", str(tiny_cifar.parent))


def test_sweep_finetune_takes_distill_and_budget(tiny_cifar: Path) -> None:
    exp = parse_experiment(_sweep(tiny_cifar, "{budget_minutes: 2, distill: false, lr: 0.01}"))
    steps = [r.steps[0] for r, _ in recipes(exp) if r.steps and isinstance(r.steps[0], PruneStep)]
    assert steps[0].recovery == Recovery(distill=False, budget_minutes=2.0)
    assert steps[0].train is not None and steps[0].train.lr == 0.01
    with pytest.raises(ConfigError, match="not both"):
        parse_experiment(_sweep(tiny_cifar, "{epochs: 1, budget_minutes: 2}"))


def test_recipe_and_sweep_give_the_same_prune_step(tiny_cifar: Path) -> None:
    exp = parse_experiment(_sweep(tiny_cifar, "{epochs: 2, distill: true}"))
    sweep_step = next(r.steps[0] for r, _ in recipes(exp) if r.steps and isinstance(r.steps[0], PruneStep))
    recipe = parse_recipe(
        f"name: r\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}}}\n"
        "steps:\n  - {type: prune, method: l1, ratio: 0.5, train: {epochs: 2, distill: true}}\n"
    )
    assert recipe.steps[0].params() == sweep_step.params()


def test_distill_where_nothing_is_compressed_is_refused(tiny_cifar: Path) -> None:
    with pytest.raises(ConfigError, match="no uncompressed model"):
        parse_recipe(
            f"name: r\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}}}\n"
            "steps:\n  - {type: train, train: {epochs: 1, distill: true}}\n"
        )


# -- CLI -------------------------------------------------------------------------------------------
def _cli(tiny_cifar: Path, out: Path, *extra: str) -> object:
    return runner.invoke(
        app,
        ["prune", "--model", "resnet20_tiny", "--data", str(tiny_cifar.parent), "--out", str(out), *extra],
    )


def test_cli_bad_recovery_input_is_one_line_exit_2(tiny_cifar: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.pt"
    for extra, flag in (
        (("--distill",), "--finetune-epochs"),  # nothing to distill into
        (("--budget-minutes", "0.00001"), "--budget-minutes"),  # too small for one epoch
        (("--finetune-epochs", "1", "--budget-minutes", "1"), "--budget-minutes"),
    ):
        result = _cli(tiny_cifar, out, *extra)
        assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
        assert flag in result.output  # type: ignore[attr-defined]
        assert not out.exists()


def test_cli_prune_no_distill_json(tiny_cifar: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "p.pt"
    result = _cli(tiny_cifar, out, "--finetune-epochs", "1", "--no-distill", "--batch-size", "64", "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert data["recovery"]["distill"] is False and out.exists()
