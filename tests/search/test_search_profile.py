"""Device profile and predictor: layer shapes, width grids, interpolation, calibration, layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.search import (
    LatencyPredictor,
    LatencyTable,
    LayerShape,
    ModelLayout,
    calibrate,
    plan_config,
    width_grid,
)
from edgeslim.search.calibrate import pruned_copy, random_plan
from edgeslim.search.compression import adapt_batchnorm
from edgeslim.search.profile import grid_points


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "cache"))


def test_width_grid_is_eighths_rounded_without_repeats() -> None:
    assert width_grid(16) == [2, 4, 6, 8, 10, 12, 14, 16]
    assert width_grid(64) == [8, 16, 24, 32, 40, 48, 56, 64]
    assert width_grid(4) == [1, 2, 3, 4]
    assert width_grid(1) == [1]


def test_layer_shape_key_macs_and_depthwise_widths() -> None:
    conv = LayerShape("conv", 16, 32, (3, 3), (2, 2), (1, 1), 32, 32)
    assert conv.key() == "conv:16>32:k3x3:s2x2:p1x1:32x32"
    assert conv.template() == "conv:k3x3:s2x2:p1x1:32x32"
    assert conv.macs() == 16 * 16 * 32 * 16 * 9
    dw = LayerShape("depthwise", 24, 24, (3, 3), (1, 1), (1, 1), 8, 8)
    assert dw.with_widths(10, 12).in_channels == 12  # a depthwise conv's in = out
    assert dw.macs() == 8 * 8 * 24 * 9
    assert LayerShape("linear", 64, 10).macs() == 640
    assert len(grid_points(conv)) == 64
    assert len(grid_points(dw)) == 8


@pytest.mark.parametrize(
    "shape",
    [
        LayerShape("conv", 3, 8, (3, 3), (1, 1), (1, 1), 12, 12),
        LayerShape("conv", 8, 16, (3, 3), (2, 2), (1, 1), 12, 12),
        LayerShape("depthwise", 8, 8, (3, 3), (1, 1), (1, 1), 6, 6),
        LayerShape("linear", 16, 10),
    ],
)
def test_layer_graph_runs_on_ort_with_the_shape_torch_gives(shape: LayerShape) -> None:
    ort = pytest.importorskip("onnxruntime")
    proto = shape.onnx_graph(batch=2)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    if shape.kind == "linear":
        x = np.zeros((2, shape.in_channels), np.float32)
        expected: tuple[int, ...] = (2, shape.out_channels)
    else:
        x = np.zeros((2, shape.in_channels, shape.height, shape.width), np.float32)
        groups = shape.out_channels if shape.kind == "depthwise" else 1
        conv = nn.Conv2d(
            shape.in_channels, shape.out_channels, shape.kernel, shape.stride, shape.padding, groups=groups
        )
        expected = tuple(conv(torch.from_numpy(x)).shape)
    (y,) = session.run(None, {"x": x})
    assert y.shape == expected


def test_table_lookup_is_bilinear_between_grid_widths(tmp_path: Path) -> None:
    full = LayerShape("conv", 16, 16, (3, 3), (1, 1), (1, 1), 8, 8)
    table = LatencyTable("ort", 1, 1, path=tmp_path / "t.json")
    for point in grid_points(full):  # latency = in + 10 * out: bilinear reproduces it exactly
        table.entries[point.key()] = point.in_channels + 10.0 * point.out_channels
        table.entries[point.overhead_key()] = 0.5  # the per-call cost, taken off every layer
    assert table.lookup(full.with_widths(5, 7), full) == pytest.approx(5 + 70 - 0.5)
    assert table.lookup(full.with_widths(16, 16), full) == pytest.approx(176 - 0.5)
    assert table.measured == 0  # nothing had to be timed


def test_table_measures_missing_widths_and_round_trips(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    shape = LayerShape("conv", 4, 4, (3, 3), (1, 1), (1, 1), 8, 8)
    table = LatencyTable("ort", 1, 1, path=tmp_path / "t.json", runs=3, min_seconds=0.0)
    assert table.fill([shape]) == 16  # width grid 1..4 x 1..4
    assert table.fill([shape]) == 0
    assert all(v > 0 for v in table.entries.values())
    assert table.measured == 16 + 4  # and the per-call cost at each of the 4 input widths
    assert 0.05 * table.measure(shape) <= table.cost(shape) <= table.measure(shape)
    table.save()
    again = LatencyTable("ort", 1, 1, path=tmp_path / "t.json")
    assert again.entries == table.entries
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["runtime"] == "ort" and saved["batch_size"] == 1 and len(saved["entries"]) == 20


def test_table_id_names_machine_runtime_batch_and_threads() -> None:
    table = LatencyTable("openvino", 32, 2)
    assert table.profile_id.endswith("-openvino-b32-t2")
    assert table.path.parent.name == "profiles"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"runtime": "onnxruntime"}, "profile.runtime"),
        ({"runtime": "ort", "batch_size": 0}, "profile.batch_size"),
        ({"runtime": "ort", "threads": 0}, "profile.threads"),
    ],
)
def test_table_refuses_bad_settings(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        LatencyTable(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_calibration_fits_a_line_and_falls_back_to_a_ratio(tmp_path: Path) -> None:
    table = LatencyTable("ort", 1, 1, path=tmp_path / "t.json")
    predictor = LatencyPredictor(table, {})
    predictor.calibrate([(1.0, 2.5), (2.0, 4.5), (3.0, 6.5)])
    assert (predictor.a, predictor.b) == pytest.approx((2.0, 0.5))
    predictor.calibrate([(2.0, 3.0)])
    assert (predictor.a, predictor.b) == pytest.approx((1.5, 0.0))
    # a negative intercept (small models predicted at ~0 ms) becomes the line through the origin
    predictor.calibrate([(1.0, 1.0), (2.0, 3.0), (3.0, 5.0)])
    assert (predictor.a, predictor.b) == pytest.approx((22.0 / 14.0, 0.0))
    with pytest.raises(ConfigError):
        predictor.calibrate([])


def test_layout_of_resnet20_tiny_groups_knobs_and_widths() -> None:
    model = create_model("resnet20_tiny").eval()
    layout = ModelLayout(model, (3, 32, 32))
    assert len(layout.layers) == 20  # 19 convs and the classifier
    assert layout.sizes["conv1"] == 4  # the stem and stage 1's residual stream are one group
    assert layout.sizes["layer1.0.conv1"] == 4
    # stage 1's inner groups share a knob; stride-2 first blocks get their own
    names = {k.name: k for k in layout.knobs}
    assert names["layer1.0.conv1 (+2 inner)"].groups == ("layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1")
    plan = layout.dense_plan()
    plan["conv1"] = 2
    plan["layer2.1.conv1"] = 3
    widths = layout.widths(plan)
    assert widths["conv1"] == (3, 2)
    assert widths["layer1.0.conv1"] == (2, 4)
    assert widths["layer1.0.conv2"] == (4, 2)
    assert widths["layer2.0.conv1"] == (2, 8)
    assert widths["layer2.1.conv1"] == (8, 3)
    assert widths["layer2.1.conv2"] == (3, 8)
    assert "layer3.0.conv1" not in widths


@pytest.mark.parametrize("name", ["resnet20_tiny", "mobilenet_v2_tiny"])
def test_predicted_widths_are_the_widths_pruning_gives(name: str) -> None:
    """The layout's analytic widths for a plan equal the pruned model's real layer shapes."""
    import random

    model = create_model(name).eval()
    layout = ModelLayout(model, (3, 32, 32))
    plan = random_plan(layout, random.Random(3))
    pruned = pruned_copy(model, layout, plan)
    expected = layout.widths(plan)
    modules = dict(pruned.named_modules())
    for layer, shape in layout.layers.items():
        module = modules[layer]
        real = (
            (module.in_features, module.out_features)
            if isinstance(module, nn.Linear)
            else (module.in_channels, module.out_channels)
        )
        assert real == expected.get(layer, (shape.in_channels, shape.out_channels)), layer


def test_plan_config_is_an_ordinary_filter_pruning_config() -> None:
    model = create_model("resnet20_tiny").eval()
    layout = ModelLayout(model, (3, 32, 32))
    plan = layout.dense_plan()
    plan["layer3.0.conv1"] = 12
    config = plan_config(layout, plan)
    assert config.ratio == 0.0 and config.scope == "layer"
    assert config.layer_ratios == ("layer3.0.conv1=0.25",)
    assert type(config).from_dict(config.to_dict()) == config


def test_uniform_and_floor_plans_respect_the_limits() -> None:
    model = create_model("resnet20_tiny").eval()
    layout = ModelLayout(model, (3, 32, 32), round_to=2, max_layer_ratio=0.5)
    assert layout.uniform_plan(0.5)["layer3.0.conv1"] == 8
    assert layout.floor_plan()["layer3.0.conv1"] == 8
    assert layout.floor_plan()["conv1"] == 2
    assert all(k % 2 == 0 for k in layout.uniform_plan(0.3).values())


def test_adapt_batchnorm_recomputes_running_statistics_exactly() -> None:
    conv, norm = nn.Conv2d(3, 2, 1, bias=False), nn.BatchNorm2d(2)
    model = nn.Sequential(conv, norm).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2.0, 0]]).view(2, 3, 1, 1))
    batches = [(torch.full((4, 3, 2, 2), v), torch.zeros(4, dtype=torch.long)) for v in (1.0, 3.0)]
    adapt_batchnorm(model, batches, 2)  # type: ignore[arg-type]
    assert norm.running_mean is not None
    assert norm.running_mean.tolist() == pytest.approx([2.0, 4.0])  # mean of the batch means
    assert norm.momentum == 0.1 and not model.training


def test_paired_timer_times_as_many_passes_as_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pass times the artifact then the reference; ``passes`` overrides the timer's own for a
    measurement that decides more (compress's final verdict), and the ratio is of medians per pass."""
    ms = iter([2.0] * 5 + [1.0, 2.0, 1.2, 2.0, 0.9, 2.0, 1.1, 2.0, 1.0, 2.0])  # anchor, then pairs
    calls: list[str] = []

    def once(self: calibrate.PairedTimer, runner: object) -> float:
        calls.append("reference" if runner is self.__dict__.get("reference") else "artifact")
        return next(ms)

    monkeypatch.setattr(calibrate.PairedTimer, "_once", once)
    model = create_model("resnet20_tiny").eval()
    path = calibrate.export_float(model, tmp_path / "m.onnx", (3, 32, 32))
    timer = calibrate.PairedTimer(path, "ort", (3, 32, 32), 1, 1, passes=3)
    assert timer.anchor_ms == 2.0 and len(calls) == 5
    calls.clear()
    timing = timer.measure(path, passes=5)
    assert calls == ["artifact", "reference"] * 5
    assert timing.ratio == pytest.approx(0.5) and timing.ms == pytest.approx(1.0)
    assert timing.spread == pytest.approx((0.6 - 0.45) / 0.5)
