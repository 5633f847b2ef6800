"""The measure step times each latency in repeated passes and records their spread and a noisy flag."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgeslim.engine.keys import step_key
from edgeslim.engine.records import trial_results
from edgeslim.engine.steps import DataSpec, MeasureStep, step_from_dict
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError
from edgeslim.recipe import load_recipe, parse_recipe, run_recipe
from edgeslim.sweep import parse_experiment


def test_passes_and_noise_threshold_are_validated_with_one_line_errors() -> None:
    step = MeasureStep()
    assert (step.passes, step.noise_threshold) == (3, 0.10)
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ConfigError, match=r"^MeasureStep\.passes must be an integer >= 1") as exc:
            MeasureStep(passes=bad)  # type: ignore[arg-type]
        assert exc.value.field == "MeasureStep.passes" and "\n" not in str(exc.value)
    for bad_threshold in (0.0, -0.1, math.inf, math.nan, False):
        with pytest.raises(ConfigError, match=r"^MeasureStep\.noise_threshold must be a finite number > 0"):
            MeasureStep(noise_threshold=bad_threshold)


def test_the_fields_round_trip_enter_the_key_and_old_params_load() -> None:
    step = MeasureStep(name="m", passes=5, noise_threshold=0.25)
    assert step.params()["passes"] == 5 and step.params()["noise_threshold"] == 0.25
    assert step_from_dict(step.to_dict()) == step
    data = DataSpec(path=None)
    keys = {
        step_key(s, data, "in")
        for s in (
            step,
            MeasureStep(name="m"),
            MeasureStep(name="m", passes=1),
            MeasureStep(noise_threshold=0.2),
        )
    }
    assert len(keys) == 4  # each setting changes what is recorded, so each is its own record
    old = {k: v for k, v in MeasureStep(name="m").to_dict().items() if k not in ("passes", "noise_threshold")}
    assert step_from_dict(old) == MeasureStep(name="m")


def test_recipe_and_sweep_yaml_read_and_check_the_fields(tiny_cifar: Path) -> None:
    head = "name: t\nmodel: {name: resnet20_tiny}\nsteps:\n"
    recipe = parse_recipe(head + "  - {type: measure, passes: 5, noise_threshold: 0.2}\n", source="r.yaml")
    (measure,) = recipe.steps
    assert isinstance(measure, MeasureStep) and (measure.passes, measure.noise_threshold) == (5, 0.2)
    default = parse_recipe(head + "  - {type: measure}\n", source="r.yaml").steps[0]
    assert isinstance(default, MeasureStep) and (default.passes, default.noise_threshold) == (3, 0.1)
    for bad, words in (
        ("passes: 0", r"r\.yaml:4: steps\[0\]\.passes: expected an integer from 1 to 100,000, got 0"),
        ("passes: 1.5", r"steps\[0\]\.passes: expected an integer"),
        ("noise_threshold: 0", r"r\.yaml:4: steps\[0\]\.noise_threshold: expected a positive number"),
        ("noise_threshold: .inf", r"steps\[0\]\.noise_threshold: expected a positive number"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_recipe(head + f"  - {{type: measure, {bad}}}\n", source="r.yaml")

    def sweep(measure: str) -> str:
        return (
            f"name: t\nmodels:\n  - {{name: resnet20_tiny, init: random}}\ndata: {{path: {tiny_cifar}}}\n"
            f"methods:\n  - prune: {{method: l1, ratio: 0.5}}\nmeasure: {{{measure}}}\n"
        )

    exp = parse_experiment(sweep("passes: 4, noise_threshold: 0.05"), source="s.yaml", check_models=False)
    assert (exp.measure.passes, exp.measure.noise_threshold) == (4, 0.05)
    exp = parse_experiment(sweep("latency_runs: 2"), source="s.yaml", check_models=False)
    assert (exp.measure.passes, exp.measure.noise_threshold) == (3, 0.1)
    with pytest.raises(
        ConfigError, match=r"s\.yaml:7: measure\.passes: expected an integer from 1 to 100,000, got 0"
    ):
        parse_experiment(sweep("passes: 0"), source="s.yaml", check_models=False)
    with pytest.raises(ConfigError, match=r"measure\.noise_threshold: expected a positive number"):
        parse_experiment(sweep("noise_threshold: -1"), source="s.yaml", check_models=False)


@pytest.mark.parametrize("threshold", [1e-9, 1e9])
def test_a_measure_step_records_passes_spread_and_noisy(
    tiny_cifar: Path, tmp_path: Path, threshold: float
) -> None:
    recipe_file = tmp_path / "m.yaml"
    recipe_file.write_text(
        f"name: m\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar}, test_limit: 20}}\nthreads: 1\n"
        "steps:\n  - {type: measure, runtimes: [torch], batch_sizes: [1, 2], runs: 2, warmup: 0, "
        f"memory: none, passes: 3, noise_threshold: {threshold:.10f}}}\n"
    )
    db = tmp_path / "s.db"
    outcome = run_recipe(load_recipe(recipe_file), db=db, out_dir=tmp_path / "run", progress=False)
    (measured,) = outcome.steps
    assert measured.metrics["latency_passes"] == 3
    spreads = measured.metrics["latency_spread_by_batch"]
    assert set(spreads) == {"1", "2"} and all(s >= 0.0 for s in spreads.values())
    assert measured.metrics["latency_noisy"] == any(s > threshold for s in spreads.values())
    # what the store keeps, read back as typed results
    with Store.open(db) as store:
        experiment = store.get_experiment("m")
        assert experiment is not None
        records = store.trials(experiment.id)
    (result,) = trial_results(records)
    primary = result.primary
    assert primary is not None and primary.extra["latency_passes"] == 3
    assert primary.extra["noise_threshold"] == threshold
    for stats in primary.latency.values():
        assert stats.passes == 3 and stats.runs == 2
        assert stats.noisy == (stats.spread > threshold)
    row = result.row()
    assert row["latency_passes"] == 3 and row["latency_spread"] == primary.latency[1].spread
    assert row["latency_noisy"] == result.latency_noisy == primary.latency[1].noisy
    assert row["noise_threshold"] == threshold
    if threshold > 1:
        assert not row["latency_noisy"]
