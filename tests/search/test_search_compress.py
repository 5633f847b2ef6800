"""``edgeslim compress``: the search, the budget, resume, JSON and errors.

Latency here comes from a deterministic stand-in runtime (MACs of the ONNX graph x 1e-5 ms), so
the predictor must reproduce it exactly and every assertion is about numbers, not timing noise.
The real runtimes are exercised by ``tests/search/test_search_profile.py`` and
``benchmarks/compress.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from search_helpers import MS_PER_MAC
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.engine.searches import load_search
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.search import (
    Budget,
    CompressOptions,
    ModelLayout,
    NoPlanFits,
    compress,
)
from edgeslim.search import compression as compress_module
from edgeslim.tasks import DataSource, ModelSource

runner = CliRunner()


def _dense_ms() -> float:
    layout = ModelLayout(create_model("resnet20_tiny").eval(), (3, 32, 32))
    return sum(s.macs() for s in layout.layers.values()) * MS_PER_MAC


def _plan_ms(layout: ModelLayout, knobs: dict[str, int]) -> float:
    """The stand-in runtime's latency of a plan: its layers' MACs x MS_PER_MAC."""
    widths = layout.widths(layout.knob_plan(knobs))
    return MS_PER_MAC * sum(
        (shape.with_widths(*widths[name]) if name in widths else shape).macs()
        for name, shape in layout.layers.items()
    )


def _options(**kw: Any) -> CompressOptions:
    base: dict[str, Any] = {
        "budget_minutes": 3.0,
        "val_images": 32,
        "bn_batches": 2,
        "proxy_steps": 0,  # the distilled proxy: test_greedy_gives_back... and ..._trains_every_candidate_alike
        "passes": 1,
        "round_to": 1,
        "iterations": 3,
        "finetune": False,
    }
    return CompressOptions(**{**base, **kw})


def _run(tiny_cifar: Path, out: Path, target: float, **kw: Any) -> Any:
    return compress(
        ModelSource(name="resnet20_tiny"),
        DataSource(path=str(tiny_cifar.parent)),
        Budget(max_latency_ms=target, runtime="ort", batch_size=1, threads=1),
        out=out,
        options=_options(**kw),
    )


@pytest.mark.parametrize("strategy", ["greedy", "evolution", "optuna"])
def test_compress_meets_the_budget_and_the_prediction_is_the_measurement(
    strategy: str, fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    if strategy == "optuna":
        pytest.importorskip("optuna")
    target = 0.6 * _dense_ms()
    out = tmp_path / "out"
    # only greedy fine-tunes (the slow part); all strategies prune, export and measure the winner
    result = _run(
        tiny_cifar,
        out,
        target,
        strategy=strategy,
        budget_minutes=0.4 if strategy == "greedy" else 0.25,
        finetune=strategy == "greedy",
    )
    assert any("not fine-tuned" in n for n in result.notes) == (strategy != "greedy"), result.notes
    assert result.fits == {"latency": True}
    assert result.latency_ms <= target
    assert result.latency_ms == pytest.approx(result.latency_ms_predicted, rel=1e-6)
    assert result.latency_ms_dense == pytest.approx(_dense_ms(), rel=1e-6)
    assert result.macs < result.macs_dense and result.params < result.params_dense
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.pt", "result.json", "trials.jsonl"]
    assert not (tmp_path / "out.partial").exists()
    assert len((out / "trials.jsonl").read_text().splitlines()) == result.trials >= 1
    saved = json.loads((out / "result.json").read_text())
    for key in (
        "artifact",
        "runtime",
        "batch_size",
        "latency_ms",
        "latency_ms_predicted",
        "top1",
        "top1_baseline",
        "size_bytes",
        "macs",
        "params",
        "plan",
        "trials",
        "budget_minutes_used",
        "fits",
    ):
        assert key in saved
    # the plan is what the saved model has
    model, _ = ModelSource(checkpoint=out / "model.pt").build()
    modules = dict(model.named_modules())
    for group, kept in result.plan["widths"].items():
        assert modules[group].out_channels == kept


def test_a_budget_below_the_floor_is_refused_up_front(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    with pytest.raises(NoPlanFits) as err:
        _run(tiny_cifar, tmp_path / "out", 1e-6)
    assert "floor" in str(err.value) and err.value.exit_code == 1
    assert err.value.closest["latency_ms_predicted"] > 1e-6
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_floor_the_predictor_puts_above_the_budget_is_measured_before_refusing(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A predictor calibrated on a noisy machine over-predicts: the floor is measured, and the
    search goes on (anchored at that measurement) when the measurement fits."""
    real = compress_module._Search._model
    monkeypatch.setattr(compress_module._Search, "_model", lambda self, knobs: 2.0 * real(self, knobs))
    target = 0.6 * _dense_ms()
    result = _run(tiny_cifar, tmp_path / "out", target)
    assert result.fits == {"latency": True} and result.latency_ms <= target


def test_a_killed_search_resumes_from_its_trials(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(compress_module, "prune_task", killed)
        with pytest.raises(KeyboardInterrupt):
            _run(tiny_cifar, out, 0.6 * _dense_ms())
    logged = (tmp_path / "out.partial" / "trials.jsonl").read_text().splitlines()
    assert logged and not out.exists()
    calls: list[dict[str, int]] = []
    real = compress_module.PlanScorer.__call__

    def counted(self: Any, knobs: dict[str, int]) -> Any:
        calls.append(knobs)
        return real(self, knobs)

    monkeypatch.setattr(compress_module.PlanScorer, "__call__", counted)
    result = _run(tiny_cifar, out, 0.6 * _dense_ms())
    assert calls == []  # every candidate came from the log
    assert result.trials == len(logged)


def test_the_search_is_recorded_in_the_store_beside_the_uniform_plans(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    result = _run(tiny_cifar, tmp_path / "c1", 0.6 * _dense_ms(), db=str(db), budget_minutes=0.25)
    assert result.experiment == "c1"
    assert [r["label"] for r in result.references] == [f"uniform {p}%" for p in (0, 10, 20, 30, 40, 50)]
    # the uniform plans' predictions are this stand-in runtime's (MACs x 1e-5 ms) exactly
    for ref in result.references:
        assert ref["latency_ms_predicted"] == pytest.approx(ref["macs"] * MS_PER_MAC, rel=1e-6)
    with Store.open(db) as store:
        exp = store.get_experiment("c1")
        assert exp is not None and exp.kind == "compress"
        search = load_search(store, exp)
    assert len(search.candidates) == result.trials
    assert search.summary["max_latency_ms"] == pytest.approx(0.6 * _dense_ms())
    assert search.summary["model"] == "resnet20_tiny" and search.summary["experiment"] == "c1"
    chosen = search.chosen
    assert chosen is not None and [c.role for c in search.candidates].count("chosen") == 1
    assert chosen.plan["knobs"] == result.plan["knobs"] and chosen.latency_ms == result.latency_ms
    references = {c.label for c in search.candidates if c.role == "reference"}
    assert references <= {r["label"] for r in result.references}
    assert len(references) >= 5  # one may be the chosen plan or equal another ratio's plan
    assert json.loads((tmp_path / "c1" / "result.json").read_text())["experiment"] == "c1"
    # a second search to a new folder of the same name is recorded beside it
    again = _run(tiny_cifar, tmp_path / "more" / "c1", 0.6 * _dense_ms(), db=str(db), budget_minutes=0.25)
    assert again.experiment == "c1-2"


def test_a_store_that_cannot_record_is_refused_before_any_work(tiny_cifar: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _run(tiny_cifar, tmp_path / "out", 1.0, db=str(tmp_path))
    assert err.value.field == "CompressOptions.db"
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_an_out_folder_with_files_is_refused(tmp_path: Path, tiny_cifar: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("keep me")
    with pytest.raises(ConfigError) as err:
        _run(tiny_cifar, out, 1.0)
    assert err.value.field == "compress.out"
    assert (out / "x").read_text() == "keep me"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_latency_ms": 0.0}, "Budget.max_latency_ms"),
        ({}, "Budget.max_latency_ms"),
        ({"min_speedup": 0.5}, "Budget.min_speedup"),
        ({"max_latency_ms": 1.0, "runtime": "tensorrt"}, "Budget.runtime"),
        ({"max_latency_ms": 1.0, "max_size_mb": -1.0}, "Budget.max_size_mb"),
        ({"max_latency_ms": 1.0, "max_accuracy_drop": float("nan")}, "Budget.max_accuracy_drop"),
    ],
)
def test_budget_fields_are_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        Budget(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"strategy": "annealing"}, "CompressOptions.strategy"),
        ({"budget_minutes": 0.0}, "CompressOptions.budget_minutes"),
        ({"search_share": 1.0}, "CompressOptions.search_share"),
        ({"val_images": 0}, "CompressOptions.val_images"),
        ({"proxy_steps": -1}, "CompressOptions.proxy_steps"),
        ({"executor": "slurm"}, "CompressOptions.executor"),
        ({"workers": 0}, "CompressOptions.workers"),
        ({"executor": "inline", "workers": 2}, "CompressOptions.workers"),
        ({"address": "ray://x:10001"}, "CompressOptions.address"),
    ],
)
def test_options_are_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        CompressOptions(**kwargs)
    assert err.value.field == field


def test_cli_unknown_runtime_is_a_one_line_usage_error(tmp_path: Path, tiny_cifar: Path) -> None:
    result = runner.invoke(
        app,
        [
            "compress",
            "--db",
            str(tmp_path / "s.db"),
            "--model",
            "resnet20_tiny",
            "--data",
            str(tiny_cifar.parent),
            "--runtime",
            "onnxruntime",
            "--max-latency-ms",
            "1",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    assert "--runtime" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cli_json_no_plan_fits_prints_the_closest_plan_and_exits_1(
    fake_runtime: None, tmp_path: Path, tiny_cifar: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "compress",
            "--db",
            str(tmp_path / "s.db"),
            "--model",
            "resnet20_tiny",
            "--data",
            str(tiny_cifar.parent),
            "--max-latency-ms",
            "0.000001",
            "--round-to",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
    )
    assert result.exit_code == 1
    first = json.loads(result.stdout.splitlines()[0])
    assert "floor" in first["error"]
    assert set(first["closest"]) == {"plan", "latency_ms_predicted", "max_latency_ms"}


def test_cli_json_prints_one_object_with_the_issue_fields(
    fake_runtime: None, tmp_path: Path, tiny_cifar: Path
) -> None:
    target = 0.7 * _dense_ms()
    result = runner.invoke(
        app,
        [
            "compress",
            "--db",
            str(tmp_path / "s.db"),
            "--model",
            "resnet20_tiny",
            "--data",
            str(tiny_cifar.parent),
            "--max-latency-ms",
            f"{target}",
            "--round-to",
            "1",
            "--val-images",
            "32",
            "--budget-minutes",
            "0.3",
            "--no-finetune",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["fits"] == {"latency": True}
    assert data["latency_ms"] <= target
    assert data["latency_noisy"] == (data["latency_spread"] > 0.10)
    assert data["plan"]["bits"] == 32 and data["plan"]["layer_ratios"]


def test_cli_profile_validates_its_predictor(fake_runtime: None) -> None:
    result = runner.invoke(
        app,
        [
            "profile",
            "--model",
            "resnet20_tiny",
            "--round-to",
            "1",
            "--threads",
            "1",
            "--validate",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["runtime"] == "ort" and data["batch_size"] == 1 and data["threads"] == 1
    assert data["entries"] == data["measured_now"] == 304
    assert (data["a"], data["b"]) == pytest.approx((1.0, 0.0), abs=1e-6)
    assert data["validation"]["variants"] == 3
    assert data["validation"]["median_error"] == pytest.approx(0.0, abs=1e-9)  # the stand-in is exact
    assert len(data["knobs"]) == 8


def test_cli_profile_refuses_an_unknown_runtime() -> None:
    result = runner.invoke(app, ["profile", "--model", "resnet20_tiny", "--runtime", "tflite"])
    assert result.exit_code == 2
    assert "--runtime" in result.output and "Traceback" not in result.output


def test_a_speedup_budget_is_met_side_by_side_with_the_dense_model(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    result = compress(
        ModelSource(name="resnet20_tiny"),
        DataSource(path=str(tiny_cifar.parent)),
        Budget(min_speedup=1.5, runtime="ort", batch_size=1, threads=1),
        out=tmp_path / "out",
        options=_options(budget_minutes=0.3),
    )
    assert result.fits == {"speedup": True}
    assert result.speedup >= 1.5
    assert result.latency_ms_dense == pytest.approx(_dense_ms(), rel=1e-6)
    assert result.latency_ms == pytest.approx(result.latency_ms_dense / result.speedup, rel=1e-6)
    assert Budget(max_latency_ms=3.0, min_speedup=2.0).target_ms(10.0) == 3.0
    assert Budget(max_latency_ms=8.0, min_speedup=2.0).target_ms(10.0) == 5.0


@pytest.mark.parametrize("too_long", [1, 3])
def test_a_budget_shorter_than_an_epoch_fine_tunes_on_a_share_of_the_images(
    too_long: int, fake_runtime: None, tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When one epoch does not fit, the fine-tune halves the images (1/2, 1/4, 1/8) until it does;
    a share smaller than one batch ends the fallback with a note (it used to crash the warm-up)."""
    real_prune_task = compress_module.prune_task
    limits: list[int | None] = []

    def first_tries_do_not_fit(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("recovery") is not None:
            limits.append(kwargs["data_source"].train_limit)
            if len(limits) <= too_long:
                raise ConfigError("one epoch does not fit", field="Recovery.budget_minutes")
        return real_prune_task(*args, **kwargs)

    monkeypatch.setattr(compress_module, "prune_task", first_tries_do_not_fit)
    # a clock that always has 0.3 min left: on a busy machine the real one ran out before the
    # fine-tune ("no time was left"), and the fallback under test never ran
    monkeypatch.setattr(compress_module._Clock, "left", lambda self: 0.3)
    result = _run(tiny_cifar, tmp_path / "out", 0.6 * _dense_ms(), budget_minutes=0.4, finetune=True)
    images = 320 - 30  # the train split less the held-out val images (val_fraction 0.1)
    if too_long == 1:  # half the images: 145, one batch of 128
        assert limits == [None, images // 2]
        assert f"fine-tuned on {images // 2} of {images} training images (one epoch fits)" in result.notes
    else:  # 1/8 is 36 images, less than one batch of 128
        assert limits == [None, images // 2, images // 4, images // 8]
        assert any(
            "not fine-tuned: " in n and "fewer training images than one batch" in n for n in result.notes
        )


@pytest.mark.parametrize("bf16", [True, False])
def test_the_fine_tune_trains_in_the_precision_asked_for(
    bf16: bool, fake_runtime: None, tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 (the default) gives the fine-tune ~1.6x the epochs on CPUs with BF16; --fp32 turns it off."""
    real_prune_task = compress_module.prune_task
    finetunes: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("recovery") is not None:
            finetunes.append(kwargs["finetune"])
        return real_prune_task(*args, **kwargs)

    monkeypatch.setattr(compress_module, "prune_task", spy)
    monkeypatch.setattr(compress_module._Clock, "left", lambda self: 0.3)
    _run(tiny_cifar, tmp_path / "out", 0.6 * _dense_ms(), budget_minutes=0.4, finetune=True, bf16=bf16)
    assert [(f.bf16, f.channels_last) for f in finetunes] == [(bf16, bf16)]
    assert CompressOptions().bf16 is True


def _scores(result_dir: Path) -> dict[str, float | None]:
    lines = (result_dir / "trials.jsonl").read_text().splitlines()
    return {json.dumps(t["knobs"], sort_keys=True): t["proxy_top1"] for t in map(json.loads, lines)}


@pytest.mark.parametrize("strategy", ["greedy", "evolution"])
def test_a_pool_of_workers_scores_exactly_what_one_process_does(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path, strategy: str
) -> None:
    """Issue 18: the search's candidates go through the sweep's executors; every candidate
    re-estimates BN on the same batches, so two worker processes give one process's scores."""
    target = 0.6 * _dense_ms()
    torch.manual_seed(0)  # the same randomly initialized dense model for both runs
    minutes = 3.0 if strategy == "greedy" else 1.0  # evolution searches until its clock runs out
    one = _run(
        tiny_cifar, tmp_path / "one", target, strategy=strategy, executor="inline", budget_minutes=minutes
    )
    torch.manual_seed(0)
    two = _run(
        tiny_cifar,
        tmp_path / "two",
        target,
        strategy=strategy,
        executor="local",
        workers=2,
        budget_minutes=minutes,
    )
    a, b = _scores(tmp_path / "one"), _scores(tmp_path / "two")
    common = set(a) & set(b)
    assert len(common) >= 3 and {k: a[k] for k in common} == {k: b[k] for k in common}
    if strategy == "greedy":  # not bound by the clock: the same steps, the same winner
        assert a == b and one.plan == two.plan


def test_layout_with_residual_keep_searches_only_inner_widths() -> None:
    model = create_model("resnet20_tiny").eval()
    everything = ModelLayout(model, (3, 32, 32))
    inner = ModelLayout(model, (3, 32, 32), residual="keep")
    blocks = {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)}
    assert set(inner.sizes) == blocks < set(everything.sizes)  # the streams (rooted at conv1...) left out
    assert {g for k in inner.knobs for g in k.groups} == blocks
    widths = inner.widths(inner.uniform_plan(0.5))
    assert {n for n, (_, out) in widths.items() if out != inner.layers[n].out_channels} == blocks


def test_compress_with_residual_keep_leaves_streams_whole(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    target = 0.7 * _dense_ms()
    result = _run(tiny_cifar, tmp_path / "out", target, residual="keep", budget_minutes=0.25)
    assert result.fits == {"latency": True} and result.latency_ms <= target
    model, _ = ModelSource(checkpoint=result.checkpoint).build()
    widths = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    dense = {
        n: m.out_channels
        for n, m in create_model("resnet20_tiny").named_modules()
        if isinstance(m, torch.nn.Conv2d)
    }
    streams = ["conv1"] + [f"layer{s}.{b}.conv2" for s in (1, 2, 3) for b in range(3)]
    assert all(widths[n] == dense[n] for n in streams)
    assert any(widths[n] < dense[n] for n in widths if n not in streams)


def test_greedy_gives_back_what_its_last_cut_overshot(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    """The winner spends the budget: within it, and no single knob can grow one step and stay within it."""
    target = 0.6 * _dense_ms()
    result = _run(tiny_cifar, tmp_path / "out", target, round_to=4, budget_minutes=1.0, proxy_steps=2)
    layout = ModelLayout(create_model("resnet20_tiny").eval(), (3, 32, 32), round_to=4)
    knobs = result.plan["knobs"]
    assert _plan_ms(layout, knobs) == pytest.approx(result.latency_ms, rel=1e-6)
    assert result.latency_ms <= target
    for knob in layout.knobs:
        larger = [k for k in layout.knob_choices(knob) if k > knobs[knob.name]]
        if larger:
            assert _plan_ms(layout, {**knobs, knob.name: larger[-1]}) > target, knob.name


def test_the_distilled_proxy_trains_every_candidate_alike(tiny_cifar: Path) -> None:
    """Each candidate trains from the same pruned weights on the same batches: the same plan scores
    the same twice, the dense model is left untouched, and the training changes the score."""
    data = DataSource(path=str(tiny_cifar.parent))
    train, val = data.load("train"), DataSource(path=str(tiny_cifar.parent), limit=64).load("val")
    torch.manual_seed(0)
    dense = create_model("resnet20_tiny").eval()
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    layout = ModelLayout(dense, (3, 32, 32))
    batches = compress_module.bn_batches(train, 4, seed=0)
    knobs = {k.name: max(1, k.size // 2) for k in layout.knobs}
    trained = compress_module.PlanScorer(
        dense, layout, batches, val, compress_module.ProxyTraining(8, lr=0.1, bf16=False), bn_count=2
    )
    plain = compress_module.PlanScorer(dense, layout, batches[:2], val)
    first, again = trained(knobs), trained(knobs)
    assert first[:3] == again[:3]
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())
    model = compress_module.pruned_copy(dense, layout, layout.knob_plan(knobs))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    compress_module.distill_briefly(model, batches, trained.teacher, trained.training)  # type: ignore[arg-type]
    moved = [
        k for k, v in model.state_dict().items() if k.endswith("weight") and not torch.equal(start[k], v)
    ]
    assert moved  # the steps did train
    assert plain(knobs)[1:3] == first[1:3]  # same params and MACs: the same plan


def test_compress_int8_deploys_the_static_int8_model(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    target = 0.6 * _dense_ms()
    fp32 = _run(tiny_cifar, tmp_path / "fp32", target)
    int8 = _run(tiny_cifar, tmp_path / "int8", target, int8=True)
    assert int8.plan["bits"] == 8 and fp32.plan["bits"] == 32
    assert int8.artifact.name == "model-int8.onnx" and int8.artifact.exists()
    # the stand-in runtime prices an int8 conv like a float one (the measured int8 scale is 1)
    assert int8.fits == {"latency": True} and int8.latency_ms <= target
    assert int8.latency_ms == pytest.approx(int8.latency_ms_predicted, rel=1e-6)
    # every conv's weights are stored as int8 (a tiny model's file is mostly graph and scales)
    graph = onnx.load(str(int8.artifact)).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= sum(n.op_type == "Conv" for n in graph.node) > 0
    assert int8.size_bytes < fp32.size_bytes
    assert int8.top1 is not None and abs(int8.top1 - fp32.top1) <= 10.0  # the deployed QDQ model
