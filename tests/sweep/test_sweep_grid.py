"""Grid expansion: a sweep is a grid of recipes sharing their start; one key scheme for sweeps and recipes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeslim.engine.plan import plan_recipe
from edgeslim.engine.runner import register
from edgeslim.engine.steps import MeasureStep, PruneStep, QuantizeStep, StartStep
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError
from edgeslim.recipe import parse_recipe
from edgeslim.sweep import expand, load_experiment, parse_experiment
from edgeslim.sweep.grid import trials


def _experiment(data: Path, finetune_lr: float = 0.01, extra_block: str = "") -> str:
    return f"""name: g
models: [{{name: resnet20_tiny, init: random}}, {{name: vgg11_tiny, label: vgg, init: random}}]
data: {{path: {data}}}
layers: {{types: [conv]}}
methods:
  - prune: {{method: [l1, fpgm], ratio: [0.2, 0.4, 0.6]}}
  - quantize: {{method: static, bits: 8}}
{extra_block}finetune: {{epochs: 1, lr: {finetune_lr}}}
"""


def test_expansion_shares_the_start_and_names_every_trial(tiny_cifar: Path) -> None:
    nodes = expand(parse_experiment(_experiment(tiny_cifar), check_models=False))
    # per model: one start, one baseline measure, and per grid point a compress step and its measure
    assert len(nodes) == 2 * (1 + 1 + 2 * (2 * 3 + 1))
    starts = [n for n in nodes if n.kind == "start"]
    assert [n.name for n in starts] == ["resnet20_tiny/start", "vgg/start"]
    assert all(isinstance(n.step, StartStep) and n.depends_on is None for n in starts)
    named = trials(nodes)
    assert all(isinstance(n.step, MeasureStep) for n in named)
    names = [n.name for n in named if n.labels["model"] == "vgg"]
    assert names == [
        "vgg/baseline",
        "vgg/l1 ratio=0.2",
        "vgg/l1 ratio=0.4",
        "vgg/l1 ratio=0.6",
        "vgg/fpgm ratio=0.2",
        "vgg/fpgm ratio=0.4",
        "vgg/fpgm ratio=0.6",
        "vgg/static bits=8",
    ]
    by_key = {n.key: n for n in nodes}
    start = {n.labels["recipe"].split("/")[0]: n.key for n in starts}
    baseline = next(n for n in named if n.name == "vgg/baseline")
    assert baseline.depends_on == start["vgg"]  # the baseline measures the start itself
    fpgm = next(n for n in named if n.name == "vgg/fpgm ratio=0.4")
    prune = by_key[str(fpgm.depends_on)]
    assert isinstance(prune.step, PruneStep) and prune.depends_on == start["vgg"]
    assert prune.step.config.to_dict()["criterion"] == "fpgm" and prune.step.config.to_dict()["ratio"] == 0.4
    assert prune.step.train is not None and prune.step.train.epochs == 1
    static = by_key[str(next(n for n in named if n.name == "vgg/static bits=8").depends_on)]
    assert isinstance(static.step, QuantizeStep) and static.step.train is None  # PTQ does not train
    assert len({n.key for n in nodes}) == len(nodes)


def test_keys_are_stable_and_follow_what_decides_a_result(tiny_cifar: Path) -> None:
    a = expand(parse_experiment(_experiment(tiny_cifar), check_models=False))
    b = expand(parse_experiment(_experiment(tiny_cifar), check_models=False))
    assert [n.key for n in a] == [n.key for n in b]
    c = expand(parse_experiment(_experiment(tiny_cifar, finetune_lr=0.02), check_models=False))
    changed = {n.name for n, m in zip(a, c, strict=True) if n.key != m.key}
    # the fine-tune budget changes every pruning step and its measure, not starts, baselines or PTQ
    pruned = {n.name for n in a if n.kind == "prune"}
    assert pruned and pruned <= changed
    assert not any(
        n.kind == "start" or "baseline" in n.name or "static" in n.name for n in a if n.name in changed
    )


def test_identical_grid_points_run_once(tiny_cifar: Path) -> None:
    twice = "  - prune: {method: l1, ratio: [0.2, 0.9]}\n"
    nodes = expand(parse_experiment(_experiment(tiny_cifar, extra_block=twice), check_models=False))
    names = [n.name for n in trials(nodes) if n.labels["model"] == "resnet20_tiny"]
    assert names.count("resnet20_tiny/l1 ratio=0.2") == 1
    assert "resnet20_tiny/l1 ratio=0.9" in names
    assert len(trials(nodes)) == 2 * (1 + 6 + 1 + 1)


def test_a_grown_grid_is_accepted_but_changed_settings_are_refused(tiny_cifar: Path, tmp_path: Path) -> None:
    first = parse_experiment(_experiment(tiny_cifar), check_models=False)
    grown = parse_experiment(
        _experiment(tiny_cifar, extra_block="  - prune: {method: l2, ratio: 0.5}\n"), check_models=False
    )
    changed = parse_experiment(_experiment(tiny_cifar, finetune_lr=0.05), check_models=False)
    with Store.open(tmp_path / "s.db") as store:
        exp_id = register(store, "g", "sweep", {}, expand(first), strict=True)
        assert len(store.trials(exp_id)) == 32
        assert register(store, "g", "sweep", {}, expand(grown), strict=True) == exp_id
        assert len(store.trials(exp_id)) == 36
        with pytest.raises(ConfigError, match=r"already has 28 record\(s\) this file no longer produces"):
            register(store, "g", "sweep", {}, expand(changed), strict=True)


def test_keys_follow_file_contents_not_where_the_checkout_lives(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moving the checkout or pointing $EDGESLIM_DATA at a copy keeps the keys; new contents change them."""

    def checkout(where: Path) -> list[str]:
        (where / "data").mkdir(parents=True)
        shutil.copytree(tiny_cifar, where / "data" / "tiny")
        (where / "exp").mkdir()
        (where / "exp" / "w.th").write_bytes(weights)
        text = (
            "name: k\nmodels: [{name: resnet20_tiny, weights: w.th}]\ndata: {path: tiny}\n"
            "layers: {types: [conv]}\nmethods:\n  - prune: {method: l1, ratio: [0.2, 0.4]}\n"
        )
        (where / "exp" / "e.yaml").write_text(text)
        monkeypatch.setenv("EDGESLIM_DATA", str(where / "data"))
        return [n.key for n in expand(load_experiment(where / "exp" / "e.yaml", check_models=False))]

    weights = b"weights v1" * 1000
    first = checkout(tmp_path / "a")
    moved = checkout(tmp_path / "b")
    assert moved == first and len(set(first)) == 6  # start, baseline measure, 2 x (prune, measure)
    weights = b"weights v2" * 1000  # same size, other contents
    retrained = checkout(tmp_path / "c")
    assert all(a != b for a, b in zip(first, retrained, strict=True))
    experiment = load_experiment(tmp_path / "c" / "exp" / "e.yaml", check_models=False)
    start = expand(experiment)[0]
    assert start.config()["step"]["weights"] == str((tmp_path / "c" / "exp" / "w.th").resolve())
    assert start.config()["data"]["path"] == str((tmp_path / "c" / "data" / "tiny").resolve())


def test_the_same_settings_give_the_same_keys_through_run_and_sweep(tiny_cifar: Path, tmp_path: Path) -> None:
    """One engine: a sweep trial and a recipe with the same settings are the same nodes."""
    weights = tmp_path / "w.th"
    weights.write_bytes(b"weights" * 1000)
    measure = "{runtimes: [ort, torch], batch_sizes: [1, 8], latency_runs: 5, warmup: 1}"
    sweep = parse_experiment(
        f"name: same\nmodels: [{{name: resnet20_tiny, weights: {weights}}}]\n"
        f"data: {{path: {tiny_cifar}, train_limit: 100}}\nlayers: {{types: [conv], include: ['*.conv1']}}\n"
        "methods:\n  - prune: {method: magnitude, ratio: 0.5}\n  - quantize: {method: static, bits: 8}\n"
        f"finetune: {{epochs: 1, lr: 0.01}}\nmeasure: {measure}\n",
        check_models=False,
    )
    swept = {n.name: n for n in expand(sweep)}
    head = (
        f"name: same\nmodel: {{name: resnet20_tiny, weights: {weights}}}\n"
        f"data: {{path: {tiny_cifar}, train_limit: 100}}\n"
    )
    measured = "  - {type: measure, runtimes: [ort, torch], batch_sizes: [1, 8], runs: 5, warmup: 1}\n"
    pruned = parse_recipe(
        head + "steps:\n  - {type: prune, method: magnitude, ratio: 0.5, layers: {types: [conv], "
        "include: ['*.conv1']}, train: {epochs: 1, lr: 0.01}}\n" + measured
    )
    quantized = parse_recipe(head + "steps:\n  - {type: quantize, method: static, bits: 8}\n" + measured)
    baseline = parse_recipe(head + "steps:\n" + measured)
    assert [n.key for n in plan_recipe(pruned)][-1] == swept["resnet20_tiny/magnitude ratio=0.5"].key
    assert [n.key for n in plan_recipe(quantized)][-1] == swept["resnet20_tiny/static bits=8"].key
    assert [n.key for n in plan_recipe(baseline)][-1] == swept["resnet20_tiny/baseline"].key
    assert plan_recipe(pruned)[0].key == swept["resnet20_tiny/start"].key
