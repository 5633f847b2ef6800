"""Dry runs (``sweep --dry-run``, ``run --dry-run``): the plan a run would execute, priced exactly
at a given throughput, with nothing run and nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from edgeslim.bench import count_macs
from edgeslim.cli.app import app
from edgeslim.engine.estimate import DataSize, Throughput, estimate_plan, probe_throughput
from edgeslim.engine.plan import plan_recipe
from edgeslim.models import create_model
from edgeslim.recipe import dry_run_recipe, run_recipe
from edgeslim.recipe.schema import load_recipe
from edgeslim.sweep.api import dry_run_sweep

sys.path.insert(0, str(Path(__file__).parents[1] / "sweep"))
from sweep_helpers import experiment_yaml

runner = CliRunner()
RATE = Throughput(train_gmacs_s=0.5, infer_gmacs_s=2.0, step_overhead_s=1.0, source="test")
TRAIN, TEST = 320, 100  # tiny_cifar: every image (val_fraction 0 in recipes), 100 test images


def _macs(name: str = "resnet20_tiny") -> int:
    return count_macs(create_model(name, num_classes=10), (1, 3, 32, 32))


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _recipe(tmp_path: Path, tiny_cifar: Path, steps: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"name: tiny\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}, seed: 0}}\n"
        f"threads: 1\nsteps:\n{steps}"
    )
    return path


def test_recipe_steps_are_priced_from_images_epochs_and_macs(tmp_path: Path, tiny_cifar: Path) -> None:
    path = _recipe(
        tmp_path,
        tiny_cifar,
        "  - {type: prune, method: l1, ratio: 0.5, train: {epochs: 2, lr: 0.01, batch_size: 32}}\n"
        "  - {type: quantize, method: dynamic}\n"
        "  - {type: measure, runtimes: [torch], batch_sizes: [1, 4], runs: 5, warmup: 1, passes: 2, "
        "memory: none}\n",
    )
    before = _files(tmp_path)
    plan = dry_run_recipe(path, db=tmp_path / "store.db", throughput=RATE)
    assert _files(tmp_path) == before  # no store, no recipes/ folder, nothing
    m = _macs() / 1e9
    kinds = [n.kind for n in plan.nodes]
    assert kinds == ["start", "prune", "quantize", "measure"]
    start, prune, quantize, measure = (n.seconds for n in plan.nodes)
    assert start == pytest.approx(1.0)  # built, not trained: the overhead only
    # 2 epochs x 320 images trained, the model before pruning as teacher (distilled recovery),
    # and one evaluation on the 100 test images
    assert prune == pytest.approx(2 * TRAIN * m / 0.5 + 2 * TRAIN * m / 2.0 + TEST * m / 2.0 + 1.0)
    assert quantize == pytest.approx(2 * TEST * m / 2.0 + 1.0)  # dynamic: float and int8 evaluated
    # 256 parity images + accuracy on 100 + 2 passes x (1 + 5) calls x (1 + 4) images
    assert measure == pytest.approx((256 + TEST + 2 * 6 * 5) * m / 2.0 + 1.0)
    assert plan.work_s == pytest.approx(start + prune + quantize + measure)
    # one worker: the wall time is the work; the measure step runs alone
    assert plan.wall_s == pytest.approx(plan.work_s)
    assert [n.exclusive for n in plan.nodes] == [False, False, False, True]
    assert {n.state for n in plan.nodes} == {"to run"}


def test_budgeted_fine_tune_costs_its_budget_and_qat_is_slower(tmp_path: Path, tiny_cifar: Path) -> None:
    path = _recipe(
        tmp_path,
        tiny_cifar,
        "  - {type: prune, method: l1, ratio: 0.5, train: {budget_minutes: 2.5, "
        "distill: false}}\n"
        "  - {type: quantize, method: qat, bits: 8, train: {epochs: 3, lr: 0.001, distill: false}}\n",
    )
    plan = dry_run_recipe(path, db=tmp_path / "store.db", throughput=RATE)
    m = _macs() / 1e9
    prune, qat = plan.nodes[1], plan.nodes[2]
    assert prune.seconds == pytest.approx(150.0 + TEST * m / 2.0 + 1.0)
    assert "budget 2.5 min" in prune.basis
    assert qat.seconds == pytest.approx(3 * TRAIN * m / 0.5 * 1.5 + 2 * TEST * m / 2.0 + 1.0)


def test_finished_steps_are_done_with_their_time_and_cost_nothing(tmp_path: Path, tiny_cifar: Path) -> None:
    path = _recipe(tmp_path, tiny_cifar, "  - {type: prune, method: l1, ratio: 0.5}\n")
    db = tmp_path / "store.db"
    run_recipe(load_recipe(path), db=db, progress=False)
    extended = _recipe(
        tmp_path,
        tiny_cifar,
        "  - {type: prune, method: l1, ratio: 0.5}\n  - {type: quantize, method: dynamic}\n",
    )
    stamp = db.stat().st_mtime_ns
    plan = dry_run_recipe(extended, db=db, throughput=RATE)
    assert db.stat().st_mtime_ns == stamp
    assert [n.state for n in plan.nodes] == ["done", "done", "to run"]
    assert all(n.took_s is not None and n.took_s >= 0 for n in plan.nodes[:2])
    assert plan.work_s == pytest.approx(plan.nodes[2].seconds)
    assert plan.to_dict()["done"] == 2 and plan.to_dict()["to_run"] == 1


def test_sweep_wall_time_shares_training_over_workers(tmp_path: Path, tiny_cifar: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(experiment_yaml(tiny_cifar, finetune={"epochs": 1, "lr": 0.01, "batch_size": 32}))
    plan = dry_run_sweep(path, db=tmp_path / "none.db", workers=2, threads=1, throughput=RATE)
    assert not (tmp_path / "none.db").exists()
    assert plan.trials == 3  # baseline + two rates
    alone = sum(n.seconds for n in plan.nodes if n.exclusive)
    shared = sum(n.seconds for n in plan.nodes if not n.exclusive)
    assert alone > 0 and shared > 0
    assert plan.wall_s == pytest.approx(shared / 2 + alone)
    prunes = [n for n in plan.nodes if n.kind == "prune"]
    m = _macs() / 1e9
    # the experiment keeps 120 of the 320 training images (train_limit), evaluates 60 (test_limit)
    assert [p.seconds for p in prunes] == pytest.approx(
        [120 * m / 0.5 + 120 * m / 2.0 + 60 * m / 2.0 + 1.0] * 2
    )


def test_cli_dry_runs_print_the_plan_and_write_nothing(tmp_path: Path, tiny_cifar: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(experiment_yaml(tiny_cifar))
    before = _files(tmp_path)
    result = runner.invoke(
        app, ["sweep", str(exp), "--dry-run", "--json", "--db", str(tmp_path / "s.db"), "-t", "1"]
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["trials"] == 3 and plan["to_run"] == len(plan["nodes"]) == 6
    assert plan["throughput"]["source"].startswith("probe: resnet20")
    assert _files(tmp_path) == before

    recipe = _recipe(tmp_path, tiny_cifar, "  - {type: prune, method: l1, ratio: 0.5}\n")
    result = runner.invoke(app, ["run", str(recipe), "--dry-run", "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    assert "prune" in result.stdout and "to run" in result.stdout
    assert "Nothing was run or written" in result.stderr
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "recipes").exists()


def test_cli_dry_run_refuses_a_bad_file_with_exit_2(tmp_path: Path, tiny_cifar: Path) -> None:
    exp = tmp_path / "exp.yaml"
    doc = yaml.safe_load(experiment_yaml(tiny_cifar))
    doc["methods"] = [{"prune": {"method": "l1", "ratio": [1.5]}}]
    exp.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["sweep", str(exp), "--dry-run"])
    assert result.exit_code == 2
    assert "ratio" in result.stderr and "Traceback" not in result.output
    missing = _recipe(tmp_path, tmp_path / "no-data" / "cifar", "  - {type: prune, method: l1, ratio: 0.5}\n")
    result = runner.invoke(app, ["run", str(missing), "--dry-run"])
    assert result.exit_code == 2 and "data.path" in result.stderr


def test_probe_measures_positive_rates_and_restores_threads() -> None:
    threads = torch.get_num_threads()
    rate = probe_throughput(1, batch=8, steps=1)
    assert rate.train_gmacs_s > 0 and rate.infer_gmacs_s > rate.train_gmacs_s
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="train_gmacs_s"):
        Throughput(train_gmacs_s=0.0, infer_gmacs_s=1.0)


def test_each_model_is_priced_at_its_own_probed_rate(tmp_path: Path, tiny_cifar: Path) -> None:
    """A deep narrow net runs far fewer MACs per second than ResNet-20: dry runs probe each model
    (student and teacher separately), once, and only models with steps still to run."""
    path = _recipe(
        tmp_path,
        tiny_cifar,
        "  - type: distill\n    teacher: {name: resnet18_tiny, train: {epochs: 1, lr: 0.01}}\n    method: kd\n"
        "    train: {epochs: 2, lr: 0.01, batch_size: 32}\n",
    )
    nodes = plan_recipe(load_recipe(path))
    student, teacher = _macs(), _macs("resnet18_tiny")
    own = {
        student: Throughput(train_gmacs_s=0.25, infer_gmacs_s=1.0, source="student"),
        teacher: Throughput(train_gmacs_s=3.0, infer_gmacs_s=4.0, source="teacher"),
    }
    probed: list[int] = []

    def rate_of(model: torch.nn.Module, shape: tuple[int, int, int]) -> Throughput:
        macs = count_macs(model, (1, *shape))
        probed.append(macs)
        return own[macs]

    sizes = lambda _spec: DataSize(TRAIN, TEST)  # noqa: E731
    plan = estimate_plan(nodes, throughput=RATE, workers=1, threads=1, sizes=sizes, rate_of=rate_of)
    assert sorted(probed) == sorted([student, teacher])  # once each
    s, t = student / 1e9, teacher / 1e9
    distill = plan.nodes[1]
    # the teacher trains 1 epoch at its rate; 2 epochs x 320 images: the student trains at its
    # rate, the teacher infers at its own; then the student twice and the teacher once on 100 images
    expected = (
        TRAIN * t / 3.0 + 2 * TRAIN * s / 0.25 + 2 * TRAIN * t / 4.0 + 2 * TEST * s / 1.0 + TEST * t / 4.0
    )
    assert distill.seconds == pytest.approx(expected + RATE.step_overhead_s)
    assert "at 0.25 GMAC/s" in distill.basis
    assert set(plan.to_dict()["rates"]) == {"resnet20_tiny", "resnet18_tiny"}
    # everything already done: nothing is probed, the machine's rate stands in
    probed.clear()
    done = {n.key: ("done", 1.0) for n in nodes}
    plan = estimate_plan(
        nodes, throughput=RATE, workers=1, threads=1, sizes=sizes, rate_of=rate_of, stored=done
    )
    assert probed == [] and plan.rates == {} and plan.work_s == 0


def test_model_probe_times_the_model_itself() -> None:
    deep = probe_throughput(1, model=create_model("densenet121_tiny", num_classes=10), batch=8, steps=1)
    assert deep.train_gmacs_s > 0 and deep.infer_gmacs_s > 0
    assert deep.source.startswith("probe: DenseNet batch 8")
