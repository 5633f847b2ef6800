"""``FilterPruning.residual="keep"``: residual streams stay whole, only channels inside blocks shrink."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.engine.steps import PruneStep
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.pruning import FilterPruning, prune, ratio_for_mac_reduction
from edgeslim.pruning.dependency import build_dependency_graph, channel_groups
from edgeslim.pruning.structured import KEPT_STREAM, prune_filters
from edgeslim.recipe.schema import parse_recipe
from edgeslim.sweep.experiment import parse_experiment
from edgeslim.sweep.grid import recipes

runner = CliRunner()
X = torch.zeros(1, 3, 32, 32)


def _convs(model: torch.nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def _pruned(name: str, config: FilterPruning) -> tuple[torch.nn.Module, float]:
    model = create_model(name)
    result = prune(model, config, example_inputs=X)
    return model, result.report.mac_reduction


def test_resnet_keeps_the_stem_and_every_blocks_output() -> None:
    before = _convs(create_model("resnet20_tiny"))  # widths 4 (conv1, layer1), 8 (layer2), 16 (layer3)
    model, _ = _pruned("resnet20_tiny", FilterPruning(0.5, residual="keep"))
    after = _convs(model)
    for name, width in after.items():
        inside = name.startswith("layer") and name.endswith(".conv1")
        assert width == (before[name] // 2 if inside else before[name]), name
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_residual_flag_marks_summed_groups_only() -> None:
    model = create_model("resnet20_tiny")
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    groups = channel_groups(build_dependency_graph(model, X), model, convs)
    streams = [g.key for g in groups if g.residual]
    assert streams[0][0] == "conv1" and len(streams) == 3  # one stream per stage (option-A pads split them)
    assert all(len(k) > 1 for k in streams)
    assert {g.key for g in groups if not g.residual and len(g.key) == 1} >= {("layer1.0.conv1",)}


def test_an_se_gate_is_not_a_residual_stream() -> None:
    model = create_model("efficientnet_b0_tiny")
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    groups = channel_groups(build_dependency_graph(model, X), model, convs)
    gated = [g for g in groups if any(name.endswith(".expand") for name in g.key)]  # SE excitation convs
    assert gated and all(len(g.key) > 1 and not g.residual for g in gated if len(g.key) == 2)
    assert any(g.residual for g in groups)  # the blocks with a skip still sum


def test_kept_streams_are_reported_as_skipped() -> None:
    model = create_model("resnet20_tiny")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    result = prune_filters(model, FilterPruning(0.5, residual="keep"), X, layers)
    assert result.skipped["layer1.0.conv2"] == KEPT_STREAM and result.skipped["conv1"] == KEPT_STREAM
    assert "layer1.0.conv1" not in result.skipped


@pytest.mark.parametrize(
    ("name", "kept_share"),
    [
        ("resnet20_tiny", 0.53),  # ~2x: both convs of a block scale with its inner width
        ("mobilenet_v2_tiny", 0.6),  # expansions shrink, the projections of summed blocks stay
        ("efficientnet_b0_tiny", 0.6),  # an SE gate multiplies, it does not sum: gated groups shrink
    ],
)
def test_keep_still_removes_most_macs_of_blocks(name: str, kept_share: float) -> None:
    _, everything = _pruned(name, FilterPruning(0.5))
    _, kept = _pruned(name, FilterPruning(0.5, residual="keep"))
    assert 1 / kept <= kept_share + 0.01  # at most this share of the MACs left
    assert kept < everything


@pytest.mark.parametrize("name", ["vgg11_bn_tiny", "densenet121_tiny", "googlenet_tiny"])
def test_nets_without_residual_sums_prune_alike(name: str) -> None:
    everything, _ = _pruned(name, FilterPruning(0.5))
    kept, _ = _pruned(name, FilterPruning(0.5, residual="keep"))
    assert _convs(everything) == _convs(kept)


def test_ratio_for_mac_reduction_honours_keep() -> None:
    model = create_model("resnet56")
    config = FilterPruning(0.0, round_to=8, residual="keep")
    ratio, reduction = ratio_for_mac_reduction(model, 2.0, example_inputs=X, config=config)
    assert reduction == pytest.approx(2.0, rel=0.02) and 0.45 <= ratio <= 0.55
    with pytest.raises(ConfigError, match=re.escape("no ratio up to 0.95")):  # 16-channel blocks stay 16
        ratio_for_mac_reduction(model, 2.0, example_inputs=X, config=config.replace(round_to=16))


def test_config_validates_and_round_trips() -> None:
    with pytest.raises(ConfigError, match=re.escape("FilterPruning.residual: expected 'prune' | 'keep'")):
        FilterPruning(0.5, residual="sometimes")  # type: ignore[arg-type]
    config = FilterPruning(0.5, residual="keep")
    assert FilterPruning.from_dict(config.to_dict()) == config
    assert "residual" not in FilterPruning(0.5).to_dict()  # the store keys of earlier runs stay valid
    assert FilterPruning.from_dict(FilterPruning(0.5).to_dict()) == FilterPruning(0.5)


def test_cli_flag_builds_the_config(prune_configs: list[object], tmp_path: Path) -> None:
    configs = prune_configs
    argv = ["prune", "--model", "resnet20_tiny", "--out", str(tmp_path / "p.pt"), "--json", "--ratio", "0.3"]
    assert runner.invoke(app, [*argv, "--residual", "keep"]).exit_code == 0
    assert configs == [FilterPruning(0.3, residual="keep")]
    for extra, needle in (
        (
            ["--residual", "maybe"],
            "--residual (FilterPruning.residual): expected 'prune' | 'keep', got 'maybe'",
        ),
        (["--method", "magnitude", "--residual", "keep"], "--residual is a filter-pruning option"),
    ):
        result = runner.invoke(app, [*argv, *extra])
        assert result.exit_code == 2 and needle in result.output, result.output
        assert "Traceback" not in result.output
    assert len(configs) == 1


def test_recipe_and_sweep_take_residual_keep(tiny_cifar: Path) -> None:
    recipe = parse_recipe(
        f"name: r\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}}}\nsteps:\n"
        "  - {type: prune, method: l1, ratio: 0.5, residual: keep}\n"
    )
    step = recipe.steps[0]
    assert isinstance(step, PruneStep) and step.config == FilterPruning(0.5, residual="keep")
    sweep = (
        "name: s\nmodels: [{name: resnet20_tiny, init: random}]\n"
        f"data: {{path: {tiny_cifar.parent}}}\n"
        "methods:\n  - prune: {method: l1, ratio: 0.5, residual: [keep, prune]}\n"
    )
    configs = [
        r.steps[0].config
        for r, _ in recipes(parse_experiment(sweep))
        if r.steps and isinstance(r.steps[0], PruneStep)
    ]
    assert configs == [FilterPruning(0.5, residual="keep"), FilterPruning(0.5)]
    with pytest.raises(ConfigError, match=re.escape("residual: expected 'prune' | 'keep', got 'some'")):
        parse_recipe(
            f"name: r\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}}}\nsteps:\n"
            "  - {type: prune, method: l1, ratio: 0.5, residual: some}\n"
        )
