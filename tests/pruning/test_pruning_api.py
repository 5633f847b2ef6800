"""The prune() entry point, saving/reloading pruned files, the prune task and the prune command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.bench import count_macs, count_nonzero_params, count_params
from edgeslim.cli.app import app
from edgeslim.errors import ConfigError
from edgeslim.models import create_model, load_model_from_checkpoint
from edgeslim.pruning import (
    FilterPruning,
    GradualPruning,
    MagnitudePruning,
    prune,
    ratio_for_mac_reduction,
    save_pruned,
)
from edgeslim.select import LayerSelection

X = torch.randn(1, 3, 32, 32)


def test_filter_pruning_report_matches_the_model() -> None:
    model = create_model("resnet20_tiny")
    result = prune(model, FilterPruning(0.5), example_inputs=X)
    r = result.report
    assert r.params_after == count_params(model) < r.params_before
    assert r.macs_after == count_macs(model, (1, 3, 32, 32)) < r.macs_before
    assert r.mac_reduction == pytest.approx(r.macs_before / r.macs_after)
    assert r.param_reduction_ratio == pytest.approx(1 - r.nonzero_after / r.nonzero_before)
    assert any(c.out_channels_after < c.out_channels_before for c in r.layers)
    _, report2 = prune(create_model("resnet20_tiny"), FilterPruning(0.0), example_inputs=X)
    assert report2.params_after == report2.params_before and report2.mac_reduction == 1.0


def test_magnitude_pruning_is_exact_and_does_not_change_macs() -> None:
    model = create_model("resnet20_tiny")
    result = prune(model, MagnitudePruning(0.7), example_inputs=X)
    r = result.report
    for change in r.layers:
        numel = torch.Size(change.shape_after).numel()
        assert change.sparsity_after == pytest.approx(round(0.7 * numel) / numel)
    assert r.macs_after == r.macs_before and r.params_after == r.params_before
    assert r.nonzero_after == count_nonzero_params(model)
    assert len(result.callbacks) == 1 and result.masks is not None


def test_gradual_returns_a_callback_and_remeasures() -> None:
    model = create_model("resnet20_tiny")
    result = prune(model, GradualPruning(0.5, num_steps=10, frequency=5), example_inputs=X)
    assert result.report.sparsity == 0.0 and len(result.callbacks) == 1
    with torch.no_grad():
        model.get_submodule("conv1").weight.zero_()
    assert result.remeasure().nonzero_after < result.report.params_before


@pytest.mark.parametrize(
    ("config", "layout"),
    [
        (FilterPruning(0.4, criterion="fpgm"), "dense"),
        (MagnitudePruning(0.8, scope="global"), "csr"),
        (MagnitudePruning(0.8), "coo"),
    ],
)
def test_saved_file_reloads_to_the_same_model(tmp_path: Path, config: Any, layout: str) -> None:
    model = create_model("resnet20_tiny").eval()
    result = prune(model, config, example_inputs=X)
    spec = {"name": "resnet20_tiny", "kwargs": {"num_classes": 10}}
    saved = save_pruned(tmp_path / "m.pt", model, model_spec=spec, report=result.report, layout=layout)
    assert saved.size_bytes == (tmp_path / "m.pt").stat().st_size
    loaded, meta = load_model_from_checkpoint(tmp_path / "m.pt")
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model.eval()(x))
    assert meta["pruning"]["method"] == type(config).__name__
    assert count_params(loaded) == result.report.params_after


def test_ratio_for_mac_reduction_hits_the_target() -> None:
    model = create_model("resnet20_tiny")
    ratio, achieved = ratio_for_mac_reduction(model, 2.0, example_inputs=X, tolerance=0.03)
    pruned = prune(
        create_model("resnet20_tiny"), FilterPruning(ratio, max_layer_ratio=0.95), example_inputs=X
    )
    assert pruned.report.mac_reduction == pytest.approx(achieved)
    assert achieved >= 2.0 * 0.97
    big_ratio, big = ratio_for_mac_reduction(create_model("resnet20"), 2.0, example_inputs=X)
    assert 2.0 * 0.98 <= big < 2.25 and 0.2 < big_ratio < 0.5  # 16/32/64 channels: coarse steps
    with pytest.raises(ConfigError, match="must be >= 1"):
        ratio_for_mac_reduction(model, 0.5, example_inputs=X)


def test_ratio_for_mac_reduction_uses_the_settings_it_will_be_pruned_with() -> None:
    # channels in multiples of 16 (16/32/64-wide stages) keep more than the ratio says: the ratio found
    # at round_to 1 removes only 1.61x the MACs at 16, the one found with the settings reaches 2x
    settings = FilterPruning(0.0, round_to=16, iterative_steps=2)
    plain, _ = ratio_for_mac_reduction(create_model("resnet20"), 2.0, example_inputs=X)
    short = prune(
        create_model("resnet20"), settings.replace(ratio=plain, iterative_steps=1), example_inputs=X
    )
    ratio, achieved = ratio_for_mac_reduction(
        create_model("resnet20"), 2.0, example_inputs=X, config=settings
    )
    pruned = prune(
        create_model("resnet20"), settings.replace(ratio=ratio, iterative_steps=1), example_inputs=X
    )
    assert short.report.mac_reduction == pytest.approx(1.608, abs=0.005)
    assert pruned.report.mac_reduction == pytest.approx(achieved) and achieved >= 2.0
    assert ratio > plain
    with pytest.raises(ConfigError) as err:
        ratio_for_mac_reduction(
            create_model("resnet20"), 2.0, example_inputs=X, config=FilterPruning(0.0, round_to="auto")
        )
    assert err.value.field == "FilterPruning.round_to"


def test_prune_task_gradual_with_finetune(tiny_cifar: Path, tmp_path: Path) -> None:
    from edgeslim.train import TrainConfig

    outcome = tasks.prune_task(
        tasks.ModelSource(name="resnet20_tiny"),
        GradualPruning(0.6),
        out=tmp_path / "g.pt",
        data_source=tasks.DataSource(path=str(tiny_cifar), split="test", val_fraction=0.0),
        finetune=TrainConfig(epochs=2, batch_size=32, lr=0.05),
        layout="csr",
        latency_batch_sizes=(1,),
        latency_runs=2,
        progress=False,
    )
    d = outcome.to_dict()
    assert d["sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert d["size_bytes"] < d["dense_size_bytes"]
    assert d["top1_before"] is not None and d["top1_after"] is not None
    assert d["finetune_epochs"] == 2
    for key in ("params_before", "params_after", "macs_before", "macs_after", "param_reduction_ratio"):
        assert key in d
    with pytest.raises(ConfigError, match=r"set prune_task\.finetune") as exc:
        tasks.prune_task(tasks.ModelSource(name="resnet20_tiny"), GradualPruning(0.5), out=tmp_path / "x.pt")
    assert exc.value.field == "prune_task.finetune"


def test_prune_cli_passes_exact_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []

    class Outcome:
        def to_dict(self) -> dict[str, Any]:
            return {"params_before": 2, "params_after": 1}

    def fake(model_source: Any, config: Any, **kw: Any) -> Outcome:
        calls.append((model_source, config, kw))
        return Outcome()

    monkeypatch.setattr(tasks, "prune_task", fake)
    out = tmp_path / "p.pt"
    result = CliRunner().invoke(
        app,
        [
            "prune",
            "--model",
            "resnet56",
            "--weights",
            "w.th",
            "--method",
            "fpgm",
            "--ratio",
            "0.4",
            "--scope",
            "global",
            "--include",
            "*.conv1",
            "--exclude",
            "layer1.0.conv1",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    model_source, config, kw = calls[0]
    assert model_source == tasks.ModelSource(name="resnet56", weights=Path("w.th"))
    assert config == FilterPruning(ratio=0.4, criterion="fpgm", scope="global")
    assert kw == {
        "out": out,
        "select": LayerSelection(
            types=("conv", "linear"), patterns=("*.conv1",), exclude=("layer1.0.conv1",)
        ),
        "data_source": None,
        "finetune": None,
        "recovery": None,
        "device": None,
        "layout": "dense",
        "num_threads": None,
        "progress": False,
    }
    assert json.loads(result.stdout) == {"params_before": 2, "params_after": 1}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--method", "l3"], "'l3' is not one of magnitude, gradual, l1"),
        (["--ratio", "1.5"], "--ratio (FilterPruning.ratio) must be in [0, 1), got 1.5"),
        (["--method", "magnitude", "--ratio", "-0.1"], "--ratio (MagnitudePruning.sparsity)"),
        (["--scope", "model"], "--scope (FilterPruning.scope): expected"),
        (["--format", "bsr"], "--format"),
        (["--method", "gradual"], "--finetune-epochs (prune_task.finetune)"),
        (["--include", "nothing.*"], "'nothing.*' matches no layer"),
    ],
)
def test_prune_cli_errors(argv: list[str], needle: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["prune", "--model", "resnet20_tiny", "--out", str(tmp_path / "o.pt"), *argv]
    )
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.pt").exists()


def test_training_a_filter_pruned_checkpoint_keeps_its_shape(tiny_cifar: Path, tmp_path: Path) -> None:
    from edgeslim.train import TrainConfig

    data = tasks.DataSource(path=str(tiny_cifar), split="test", val_fraction=0.0)
    tasks.prune_task(
        tasks.ModelSource(name="resnet20_tiny"),
        FilterPruning(0.5),
        out=tmp_path / "f.pt",
        latency_batch_sizes=(),
        progress=False,
    )
    pruned, _ = tasks.ModelSource(checkpoint=tmp_path / "f.pt").build()
    tasks.train_task(
        tasks.ModelSource(checkpoint=tmp_path / "f.pt"),
        data,
        TrainConfig(epochs=1, batch_size=32, lr=0.01),
        out=tmp_path / "t.pt",
        validate=False,
        progress=False,
    )
    trained, spec = tasks.ModelSource(checkpoint=tmp_path / "t.pt").build()
    assert spec["meta"]["channel_spec"] and count_params(trained) == count_params(pruned)
    assert count_params(trained) < count_params(create_model("resnet20_tiny"))
