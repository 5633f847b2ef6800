"""Recovery fine-tuning: distillation from the uncompressed model, time budgets, staged pruning,
measured round_to, and the front-ends (CLI, sweep YAML, recipe YAML) that reach them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import edgeslim.tasks.recovery as recovery_module
from edgeslim import tasks
from edgeslim.checkpoint import save_checkpoint
from edgeslim.cli.app import app
from edgeslim.data import BatchLoader
from edgeslim.engine.keys import step_key
from edgeslim.engine.steps import DataSpec, PruneStep, QuantizeStep, step_from_dict
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.pruning import FilterPruning, GradualPruning, GradualPruningCallback, prune
from edgeslim.pruning.structured import group_max_ratio, group_ratio, step_fraction
from edgeslim.quantization import QAT, StaticQuant
from edgeslim.recipe.schema import parse_recipe
from edgeslim.sweep.experiment import parse_experiment
from edgeslim.sweep.grid import recipes
from edgeslim.tasks.prune import gradual_schedule
from edgeslim.tasks.recovery import (
    BudgetReplan,
    Recoverer,
    Recovery,
    TimedTeacher,
    plan_budget,
    stage_epochs,
    teacher_note,
)
from edgeslim.tasks.round_to import pick_multiple
from edgeslim.train import TrainConfig, TrainState

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


def test_budget_counts_the_wider_earlier_stages(tiny_cifar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an iterative schedule trains its first stages wider: the epochs must fit with their slower steps
    data = tasks.DataSource(path=str(tiny_cifar.parent)).load("train")
    loader = BatchLoader(data, 64, shuffle=True, drop_last=True)
    wide, final = create_model("resnet20_tiny"), create_model("resnet20_tiny")
    seconds = {id(wide): 0.13, id(final): 0.07}
    monkeypatch.setattr(recovery_module, "_time_steps", lambda m, *a: (seconds[id(m)], 0.0))
    steps, budget_s = len(loader), 60.0
    alone = plan_budget(final, loader, FT, budget_minutes=1, teacher=None, cached=False)
    assert alone.epochs == int(budget_s // (0.07 * steps))
    staged = plan_budget(
        final, loader, FT, budget_minutes=1, teacher=None, cached=False, earlier_stages=[wide]
    )
    first, last = stage_epochs(staged.epochs, 2)
    assert first * steps * 0.13 + last * steps * 0.07 <= budget_s  # fits
    first, last = stage_epochs(staged.epochs + 1, 2)
    assert first * steps * 0.13 + last * steps * 0.07 > budget_s  # and is the most that fits
    assert staged.epochs < alone.epochs and staged.stage_seconds_per_step == (0.13, 0.07)
    with pytest.raises(ConfigError) as exc:  # two stages need an epoch each
        plan_budget(
            final,
            loader,
            FT,
            budget_minutes=steps * 0.15 / 60,
            teacher=None,
            cached=False,
            earlier_stages=[wide],
        )
    assert exc.value.field == "Recovery.budget_minutes" and "each of 2 pruning steps" in str(exc.value)


def test_prune_with_budget_reports_chosen_epochs(tiny_cifar: Path, tmp_path: Path) -> None:
    out = _prune(tiny_cifar, tmp_path, FilterPruning(0.5), finetune=FT, recovery=Recovery(budget_minutes=0.5))
    rec = out.to_dict()["recovery"]
    assert rec["budget"]["epochs"] >= 1 and out.finetune_epochs == rec["epochs"] >= 1
    # what ran is the plan, or its last re-plan from the measured epochs
    assert ([rec["budget"]["epochs"]] + [total for _done, total in rec["replans"]])[-1] == rec["epochs"]
    assert any("budget 0.5 min" in n for n in out.notes)


def test_the_budget_is_timed_on_the_pruned_model(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # filter pruning makes every step cheaper: the epochs are sized on the final widths, not the dense ones
    timed: list[dict[str, int]] = []
    real = Recoverer.plan

    def spy(self: Recoverer, model: torch.nn.Module, earlier: Sequence[torch.nn.Module] = ()) -> TrainConfig:
        for m in (*earlier, model):
            timed.append({n: c.out_channels for n, c in m.named_modules() if isinstance(c, torch.nn.Conv2d)})
        return real(self, model, earlier)

    monkeypatch.setattr(Recoverer, "plan", spy)
    cfg = FilterPruning(0.5, iterative_steps=2)
    out = _prune(tiny_cifar, tmp_path, cfg, finetune=FT, recovery=Recovery(distill=False, budget_minutes=0.5))
    final, _ = tasks.ModelSource(checkpoint=out.out).build()
    widths = {n: m.out_channels for n, m in final.named_modules() if isinstance(m, torch.nn.Conv2d)}
    # the first of the two cubic steps trains wider (7/8 of the cut: 16 -> 9) and is timed too
    assert timed[1:] == [widths] and widths["layer3.0.conv1"] == 8  # 16 channels, half pruned
    assert timed[0]["layer3.0.conv1"] == 9
    # unstructured sparsity leaves the dense cost: timed on the dense model
    timed.clear()
    _prune(
        tiny_cifar, tmp_path / "g", GradualPruning(0.5), finetune=FT, recovery=Recovery(budget_minutes=0.5)
    )
    assert timed[0]["layer3.0.conv1"] == 16


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


# -- per-group ratios (layer_ratios) ---------------------------------------------------------------
def _conv_widths(config: FilterPruning) -> dict[str, int]:
    model = create_model("resnet20_tiny")  # widths 4 (conv1, layer1), 8 (layer2), 16 (layer3)
    prune(model, config, example_inputs=torch.zeros(1, 3, 32, 32))
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def _stage(widths: dict[str, int], stage: str, conv: str) -> list[int]:
    return [widths[f"{stage}.{b}.{conv}"] for b in range(3)]


def test_layer_ratios_glob_sets_one_stages_internal_convs() -> None:
    widths = _conv_widths(FilterPruning(0.25, layer_ratios=("layer2.*.conv1=0.5",)))
    assert _stage(widths, "layer2", "conv1") == [4, 4, 4]  # 8 - floor(8 * 0.5)
    assert _stage(widths, "layer2", "conv2") == [6, 6, 6]  # residual group (root layer2.0.conv2): ratio
    assert widths["conv1"] == 3 and _stage(widths, "layer1", "conv1") == [3, 3, 3]  # 4 - floor(4 * 0.25)
    assert _stage(widths, "layer3", "conv1") == [12, 12, 12] and _stage(widths, "layer3", "conv2") == [12] * 3


def test_layer_ratios_last_match_wins_and_run_with_ratio_zero() -> None:
    config = FilterPruning(0.0, layer_ratios=("layer2.*=0.5", "layer2.0.conv1=0.125"))
    assert group_ratio(config, "layer2.0.conv1") == 0.125 and group_ratio(config, "layer2.1.conv1") == 0.5
    assert group_ratio(config, "layer3.0.conv1") == 0.0
    widths = _conv_widths(config)
    assert _stage(widths, "layer2", "conv1") == [7, 4, 4]
    assert _stage(widths, "layer2", "conv2") == [4, 4, 4]  # root layer2.0.conv2 matches layer2.*
    untouched = [n for n in widths if not n.startswith("layer2.")]
    assert [widths[n] for n in untouched] == [4] * 7 + [16] * 6
    assert _conv_widths(FilterPruning(0.0, layer_ratios=("layer2.*=0",))) == _conv_widths(FilterPruning(0.0))


def test_layer_ratios_keep_the_caps_and_the_schedule() -> None:
    steep = ("layer3.*.conv1=0.95",)  # 15 of 16 would go
    assert (
        _stage(_conv_widths(FilterPruning(0.0, layer_ratios=steep)), "layer3", "conv1") == [2] * 3
    )  # max 0.9
    capped = FilterPruning(0.0, layer_ratios=steep, layer_max_ratios=("layer3.1.*=0.5",), min_channels=3)
    assert _stage(_conv_widths(capped), "layer3", "conv1") == [3, 8, 3]
    rounded = FilterPruning(0.0, layer_ratios=("layer3.*.conv1=0.4",), round_to=4)  # keep 10, rounded to 12
    assert _stage(_conv_widths(rounded), "layer3", "conv1") == [12] * 3
    seen: list[int] = []

    def record(model: torch.nn.Module, step: int) -> None:
        seen.append(int(model.get_submodule("layer3.0.conv1").out_channels))  # type: ignore[arg-type]

    staged = FilterPruning(0.0, layer_ratios=("layer3.0.conv1=0.5",), iterative_steps=2)
    model = create_model("resnet20_tiny")
    prune(model, staged, example_inputs=torch.zeros(1, 3, 32, 32), finetune=record)
    record(model, 1)
    assert seen == [9, 8]  # step 1: floor(16 * 0.5 * 0.875) = 7 go; step 2: 8 in all


def test_layer_ratios_are_refused_with_global_scope_or_bad_entries() -> None:
    with pytest.raises(ConfigError, match=r"^FilterPruning\.layer_ratios .*scope='layer'") as exc:
        FilterPruning(0.5, scope="global", layer_ratios=("layer1.*=0.3",))
    assert exc.value.field == "FilterPruning.layer_ratios"
    for bad in ("layer1", "=0.3", "layer1.*=1.0", "layer1.*=-0.1", "layer1.*=half", "layer1.*="):
        with pytest.raises(ConfigError, match=r"^FilterPruning\.layer_ratios: .* is not 'glob=ratio'") as exc:
            FilterPruning(0.5, layer_ratios=(bad,))
        assert exc.value.field == "FilterPruning.layer_ratios" and "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match=r"FilterPruning\.layer_ratios: expected tuple"):
        FilterPruning(0.5, layer_ratios="layer1.*=0.3")  # type: ignore[arg-type]


def test_layer_ratios_round_trip_through_dict_yaml_and_recipes(tiny_cifar: Path) -> None:
    config = FilterPruning(0.3, criterion="fpgm", layer_ratios=("layer1.*.conv1=0.4", "layer2.0.conv1=0.25"))
    data = config.to_dict()
    assert data["layer_ratios"] == ["layer1.*.conv1=0.4", "layer2.0.conv1=0.25"]
    assert FilterPruning.from_dict(data) == config and FilterPruning.from_yaml(config.to_yaml()) == config
    assert FilterPruning.from_dict({"ratio": 0.3}).layer_ratios == ()
    recipe = parse_recipe(
        f"name: r\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}}}\nsteps:\n"
        "  - {type: prune, method: fpgm, ratio: 0.3, layer_ratios: [layer1.*.conv1=0.4, layer2.0.conv1=0.25]}\n"
    )
    step = recipe.steps[0]
    assert isinstance(step, PruneStep) and step.config == config
    assert step_from_dict(step.to_dict()) == step


def test_cli_layer_ratio_flag_builds_the_config(prune_configs: list[object], tmp_path: Path) -> None:
    configs = prune_configs
    argv = ["prune", "--model", "resnet20_tiny", "--out", str(tmp_path / "p.pt"), "--json", "--ratio", "0.3"]
    flags = ["--layer-ratio", "layer1.*.conv1=0.4", "--layer-ratio", "layer2.0.conv1=0.25"]
    result = runner.invoke(app, [*argv, *flags])
    assert result.exit_code == 0, result.output
    assert configs == [FilterPruning(0.3, layer_ratios=("layer1.*.conv1=0.4", "layer2.0.conv1=0.25"))]
    assert runner.invoke(app, argv).exit_code == 0 and configs[-1] == FilterPruning(0.3)
    for extra, needle in (
        (
            ["--layer-ratio", "layer1"],
            "--layer-ratio (FilterPruning.layer_ratios): 'layer1' is not 'glob=ratio'",
        ),
        (
            ["--scope", "global", "--layer-ratio", "layer1.*=0.3"],
            "--layer-ratio (FilterPruning.layer_ratios) sets",
        ),
        (["--method", "magnitude", "--layer-ratio", "layer1.*=0.3"], "method 'magnitude' has none"),
    ):
        result = runner.invoke(app, [*argv, *extra])
        assert result.exit_code == 2 and needle in result.output, result.output
        assert "Traceback" not in result.output
    assert len(configs) == 2


def test_gradual_schedule_keeps_values_the_user_set() -> None:
    default = gradual_schedule(GradualPruning(0.9), steps_per_epoch=100, epochs=4)
    assert (default.start_step, default.num_steps, default.frequency) == (0, 300, 30)  # the 3/4 ramp
    mine = gradual_schedule(GradualPruning(0.9, start_step=50, num_steps=200, frequency=20), 100, 4)
    assert (mine.start_step, mine.num_steps, mine.frequency) == (50, 200, 20)
    partial = gradual_schedule(GradualPruning(0.9, num_steps=120), 100, 4)
    assert (partial.start_step, partial.num_steps, partial.frequency) == (0, 120, 12)


# -- gradual pruning's ramp in epochs through every front-end ------------------------------------
RAMP = GradualPruning(0.9, start_epoch=1.0, ramp_epochs=24.0, frequency_epochs=0.5)


def test_cli_ramp_flags_build_the_config(prune_configs: list[object], tmp_path: Path) -> None:
    configs = prune_configs
    argv = [
        "prune",
        "--model",
        "resnet20_tiny",
        "--out",
        str(tmp_path / "p.pt"),
        "--json",
        "--method",
        "gradual",
    ]
    ramp = ["--start-epoch", "1", "--ramp-epochs", "24", "--frequency-epochs", "0.5"]
    result = runner.invoke(app, [*argv, "--ratio", "0.9", *ramp, "--finetune-epochs", "30"])
    assert result.exit_code == 0, result.output
    assert configs == [RAMP]
    assert runner.invoke(app, [*argv, "--finetune-epochs", "3"]).exit_code == 0
    assert configs[-1] == GradualPruning(0.5)  # no ramp flags: today's config (and store key)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ["--ramp-epochs", "24", "--finetune-epochs", "20"],
            "--ramp-epochs (GradualPruning.ramp_epochs): the ramp ends at epoch 24, after the 20-epoch "
            "fine-tune ends",
        ),
        (
            ["--start-epoch", "20", "--finetune-epochs", "20"],
            "--start-epoch (GradualPruning.start_epoch) must be before the end of the 20-epoch fine-tune",
        ),
        (
            ["--ramp-epochs", "2", "--frequency-epochs", "3", "--finetune-epochs", "20"],
            "--frequency-epochs (GradualPruning.frequency_epochs) must be at most ramp_epochs",
        ),
        (["--ramp-epochs", "0", "--finetune-epochs", "20"], "must be a positive number of epochs, got 0.0"),
        (["--start-epoch", "nan", "--finetune-epochs", "20"], "must be a number of epochs >= 0, got nan"),
        (
            ["--method", "l1", "--ramp-epochs", "2"],
            "--ramp-epochs sets the gradual-pruning ramp; method 'l1'",
        ),
        (["--method", "magnitude", "--frequency-epochs", "1"], "--frequency-epochs sets the gradual-pruning"),
    ],
)
def test_cli_bad_ramps_are_one_line_exit_2_before_anything_runs(
    extra: list[str], needle: str, tmp_path: Path
) -> None:
    out = tmp_path / "p.pt"
    argv = ["prune", "--model", "resnet20_tiny", "--method", "gradual", "--data", str(tmp_path / "none")]
    result = runner.invoke(app, [*argv, "--out", str(out), *extra])
    assert result.exit_code == 2 and needle in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_recipe_and_sweep_take_the_ramp_and_give_the_same_step(tiny_cifar: Path) -> None:
    ramp = "start_epoch: 1, ramp_epochs: 24, frequency_epochs: 0.5"
    recipe = parse_recipe(
        f"name: r\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}}}\nsteps:\n"
        f"  - {{type: prune, method: gradual, ratio: 0.9, {ramp}, train: {{epochs: 30}}}}\n"
    )
    step = recipe.steps[0]
    assert isinstance(step, PruneStep) and step.config == RAMP
    assert step_from_dict(step.to_dict()) == step
    sweep = SWEEP.replace("{method: l1, ratio: 0.5}", f"{{method: gradual, ratio: 0.9, {ramp}}}")
    exp = parse_experiment(sweep.replace("FINETUNE", "{epochs: 30}").replace("DATA", str(tiny_cifar.parent)))
    sweep_step = next(r.steps[0] for r, _ in recipes(exp) if r.steps and isinstance(r.steps[0], PruneStep))
    assert sweep_step.config == RAMP and sweep_step.params() == step.params()
    grid = SWEEP.replace("{method: l1, ratio: 0.5}", "{method: gradual, ratio: 0.9, ramp_epochs: [8, 16]}")
    exp = parse_experiment(grid.replace("FINETUNE", "{epochs: 20}").replace("DATA", str(tiny_cifar.parent)))
    configs = [r.steps[0].config for r, _ in recipes(exp) if r.steps and isinstance(r.steps[0], PruneStep)]
    assert configs == [GradualPruning(0.9, ramp_epochs=8.0), GradualPruning(0.9, ramp_epochs=16.0)]


def test_recipe_and_sweep_refuse_a_ramp_past_the_fine_tune_at_its_line(tiny_cifar: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_recipe(
            f"name: r\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}}}\nsteps:\n"
            "  - type: prune\n    method: gradual\n    ratio: 0.9\n    ramp_epochs: 24\n"
            "    train: {epochs: 20}\n",
            source="r.yaml",
        )
    assert str(exc.value) == (
        "r.yaml:8: steps[0].ramp_epochs: GradualPruning.ramp_epochs: the ramp ends at epoch 24, after the "
        "20-epoch fine-tune ends; shorten ramp_epochs (or start_epoch) or fine-tune longer"
    )
    grid = SWEEP.replace(
        "{method: l1, ratio: 0.5}", "{method: gradual, ratio: 0.9, frequency_epochs: [1, 20]}"
    )
    with pytest.raises(ConfigError, match=r"methods\[0\]\.prune\.frequency_epochs: .*at most the ramp's 15"):
        parse_experiment(grid.replace("FINETUNE", "{epochs: 20}").replace("DATA", str(tiny_cifar.parent)))
    with pytest.raises(ConfigError, match=r"methods\[0\]\.prune\.start_epoch: .*not both"):
        bad = SWEEP.replace(
            "{method: l1, ratio: 0.5}", "{method: gradual, ratio: 0.9, start_epoch: 1, num_steps: 9}"
        )
        parse_experiment(bad.replace("FINETUNE", "{epochs: 20}").replace("DATA", str(tiny_cifar.parent)))
    # with a time budget the epochs are only known once it is sized: the ramp is checked then
    budget = SWEEP.replace("{method: l1, ratio: 0.5}", "{method: gradual, ratio: 0.9, ramp_epochs: 24}")
    parse_experiment(
        budget.replace("FINETUNE", "{budget_minutes: 1}").replace("DATA", str(tiny_cifar.parent))
    )


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


def test_teacher_note_when_the_distilled_model_beats_its_teacher() -> None:
    note = teacher_note(Recovery(), 83.2, 84.07)
    assert note is not None and "beat its teacher" in note and "84.07%" in note and "83.20%" in note
    assert "--no-distill" in note
    assert teacher_note(Recovery(), 89.6, 88.0) is None  # the usual case: the student stays below
    assert teacher_note(Recovery(), 83.2, 83.6) is None  # a few tenths above it: common, and fine
    assert teacher_note(Recovery(distill=False), 83.2, 84.07) is None
    assert teacher_note(Recovery(teacher="t.pt"), 83.2, 84.07) is None  # its accuracy is not measured here
    assert teacher_note(None, 83.2, 84.07) is None and teacher_note(Recovery(), None, 84.07) is None


# -- the budget re-planned from measured epochs ---------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _state(epochs: int, epoch: int) -> TrainState:
    model = torch.nn.Linear(2, 2)
    return TrainState(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        config=FT.replace(epochs=epochs, warmup_epochs=0.5),
        epoch=epoch,
        step=0,
        total_steps=epochs * 10,
        steps_per_epoch=10,
    )


def test_budget_replan_sizes_the_remaining_epochs_from_recent_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(recovery_module.time, "perf_counter", clock)
    replan = BudgetReplan(deadline=clock.now + 100.0)
    state = _state(epochs=4, epoch=0)
    replan.on_epoch_begin(state)
    clock.now += 30.0  # the plan assumed 25 s an epoch: 1 + floor(70 / 30) = 3 epochs fit
    replan.on_epoch_end(state, {"seconds": 30.0})
    assert state.config.epochs == 3 and replan.replans == [(1, 3)]
    state.epoch = 1
    replan.on_epoch_begin(state)
    clock.now += 10.0  # faster now: mean of 30 and 10 s over the 60 s left gives 3 more
    replan.on_epoch_end(state, {"seconds": 10.0})
    assert state.config.epochs == 5 and replan.replans == [(1, 3), (2, 5)]
    state.epoch = 2
    replan.on_epoch_begin(state)
    clock.now += 22.0  # 38 s left, 2 planned epochs of 20.7 s: over by 3 s, so one is dropped
    replan.on_epoch_end(state, {"seconds": 22.0})
    assert state.config.epochs == 4 and replan.replans[-1] == (3, 4)
    state.epoch = 3
    replan.on_epoch_begin(state)
    clock.now += 25.0  # 13 s left, less than an epoch: the run ends with this one
    replan.on_epoch_end(state, {"seconds": 25.0})
    assert state.config.epochs == 4 and len(replan.replans) == 3 and state.config.warmup_epochs == 0.5


def test_budget_replan_does_not_count_the_teacher_pass_a_cache_saves(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(recovery_module.time, "perf_counter", clock)
    teacher = TimedTeacher(torch.nn.Identity())
    replan = BudgetReplan(deadline=clock.now + 100.0, teacher=teacher, cached=True)
    state = _state(epochs=2, epoch=0)
    replan.on_epoch_begin(state)
    clock.now += 30.0
    teacher.seconds += 20.0  # the first epoch filled the logit cache: later epochs take 10 s
    replan.on_epoch_end(state, {"seconds": 30.0})
    assert replan.epoch_seconds == [10.0] and state.config.epochs == 1 + 7


def test_gradual_ramp_sized_from_the_run_follows_a_replan() -> None:
    given = GradualPruning(0.9)
    callback = GradualPruningCallback(gradual_schedule(given, 10, 8))
    callback.config = callback.given
    state = _state(epochs=4, epoch=0)
    callback.on_replan(state)  # not sized from the run (a ramp given in steps): kept
    assert callback.config.num_steps == 60
    callback.follow_run(given)
    callback.on_replan(state)
    assert (callback.config.start_step, callback.config.num_steps) == (0, 30)  # 3/4 of 4 x 10 steps
    ramp = GradualPruningCallback(GradualPruning(0.9, ramp_epochs=6))
    with pytest.warns(UserWarning, match="keeps its schedule"):
        ramp.on_replan(state)  # a 6-epoch ramp cannot end inside 4 epochs


def test_prune_with_budget_stays_inside_it_and_reports_replans(tiny_cifar: Path, tmp_path: Path) -> None:
    out = _prune(
        tiny_cifar,
        tmp_path,
        GradualPruning(0.5),
        finetune=FT,
        recovery=Recovery(distill=False, budget_minutes=0.1),
    )
    rec = out.to_dict()["recovery"]
    assert rec["seconds"] <= 6.0 * 1.5  # the 6 s deadline, plus at most the epoch that was running (<1 s)
    assert rec["epochs"] == out.finetune_epochs >= 1
    totals = [total for _done, total in rec["replans"]]
    assert totals[-1:] in ([], [rec["epochs"]])  # the last re-plan is what ran
    assert out.report.sparsity == pytest.approx(0.5, abs=0.02)  # the re-sized ramp still ends
