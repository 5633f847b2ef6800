"""Recipes run end to end on tiny models, record one store record per step, and resume."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeslim import tasks
from edgeslim.engine.store import Store, TrialRecord, process_owner
from edgeslim.errors import ConfigError, TrainingError
from edgeslim.models import load_model_from_checkpoint
from edgeslim.recipe import RecipeOutcome, load_recipe, run_recipe

MEASURE_ORT = "  - {type: measure, runtime: ort, batch_sizes: [1, 4], runs: 3, warmup: 1, memory: inline}\n"
MEASURE_TORCH = "  - {type: measure, runtime: torch, batch_sizes: [1], runs: 3, warmup: 1, memory: inline}\n"
TRAIN = "{epochs: 1, batch_size: 32, lr: 0.02}"


def records(db: Path, name: str) -> list[TrialRecord]:
    with Store.open(db) as store:
        experiment = store.get_experiment(name)
        assert experiment is not None and experiment.kind == "recipe"
        return store.trials(experiment.id)


def counting(
    monkeypatch: pytest.MonkeyPatch, name: str, fail_first: BaseException | None = None
) -> list[int]:
    """Count calls of ``tasks.<name>``; with ``fail_first`` the first call raises it instead."""
    calls: list[int] = []
    real: Callable[..., Any] = getattr(tasks, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if fail_first is not None and len(calls) == 1:
            raise fail_first
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, name, wrapped)
    return calls


# -- the study's chain on tiny models: distill -> gradual prune -> QAT -> int8 ONNX -> measure ------
@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, tiny_cifar: Path, teacher_ckpt: Path) -> RecipeOutcome:
    root = tmp_path_factory.mktemp("chain")
    path = root / "chain.yaml"
    path.write_text(
        f"name: chain\nmodel: {{name: resnet20_tiny}}\ndata: {{path: {tiny_cifar.parent}}}\nthreads: 1\nsteps:\n"
        f"  - {{type: distill, teacher: {{checkpoint: {teacher_ckpt}}}, method: kd, train: {TRAIN}}}\n"
        "  - {type: prune, method: gradual, sparsity: 0.6, train: {epochs: 1, batch_size: 32, lr: 0.01}}\n"
        "  - {type: quantize, method: qat, bits: 8, train: {epochs: 1, batch_size: 32, lr: 0.001}}\n"
        "  - {type: export, format: onnx, parity_images: 32}\n" + MEASURE_ORT
    )
    return run_recipe(load_recipe(path), db=root / "store.db", out_dir=root / "run", progress=False)


def test_chain_writes_one_record_per_step_each_depending_on_the_previous(chain: RecipeOutcome) -> None:
    assert [s.type for s in chain.steps] == ["distill", "prune", "quantize", "export", "measure"]
    assert [s.status for s in chain.steps] == ["ran"] * 5
    start, *recs = records(chain.db, "chain")  # the starting model is a record too: the start step
    assert start.kind == "start" and start.depends_on is None and start.status == "done"
    assert len(recs) == 5
    assert [r.kind for r in recs] == [s.type for s in chain.steps] and [r.status for r in recs] == [
        "done"
    ] * 5
    assert [r.key for r in recs] == [s.key for s in chain.steps]
    assert [r.depends_on for r in recs] == [start.key, *[s.key for s in chain.steps[:-1]]]
    assert [r.attempts for r in recs] == [1] * 5
    for record in recs:
        assert record.artifact is not None and Path(record.artifact).is_file()
        assert Path(record.artifact).parent == chain.out_dir
        assert 0.0 <= record.metrics["top1"] <= 100.0 if "top1" in record.metrics else True
    summary = json.loads((chain.out_dir / "summary.json").read_text())
    assert [s["key"] for s in summary["steps"]] == [s.key for s in chain.steps]
    with Store.open(chain.db) as store:
        experiment = store.get_experiment("chain")
        assert experiment is not None and experiment.config["chain"] == [
            start.key,
            *[s.key for s in chain.steps],
        ]


def test_each_step_starts_from_the_previous_artifact(chain: RecipeOutcome) -> None:
    distill, prune, quant, export, measure = chain.steps
    recs = {r.key: r for r in records(chain.db, "chain")}
    # every record depends on the step whose artifact it read, and its key hashes that step's key
    for before, after in zip(chain.steps, chain.steps[1:], strict=False):
        assert recs[after.key].depends_on == before.key
        assert Path(before.artifact).is_file() and before.metrics["artifact_sha256"]
    _, meta = load_model_from_checkpoint(prune.artifact)  # the pruned model loads as a checkpoint
    assert meta["pruning"]["method"] == "GradualPruning"
    assert distill.metrics["num_images"] == 100 and distill.metrics["epochs"] == 1
    assert prune.metrics["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert quant.metrics["keep_sparsity"] is True and quant.metrics["bits"] == 8
    assert Path(quant.metrics["onnx_path"]).is_file()
    assert export.artifact.endswith(".onnx") and export.metrics["precision"] == "int8"
    assert measure.artifact == export.artifact and measure.metrics["runtime"] == "ort"
    assert measure.metrics["num_images"] == 100 and set(measure.metrics["latency_ms_by_batch"]) == {"1", "4"}
    assert measure.metrics["size_bytes"] == os.path.getsize(export.artifact)


def test_qat_keeps_the_pruned_zeros_into_the_int8_file(chain: RecipeOutcome) -> None:
    prune, export = chain.steps[1], chain.steps[3]
    pruned_zeros = prune.metrics["params"] - prune.metrics["nonzero_params"]
    assert pruned_zeros > 0
    # BatchNorm folding scales each output channel, so a zero weight stays zero; QAT keeps the mask
    assert export.metrics["onnx_zero_weights"] >= pruned_zeros
    assert export.metrics["onnx_weight_sparsity"] > 0.5


def test_running_again_keeps_every_step(chain: RecipeOutcome, monkeypatch: pytest.MonkeyPatch) -> None:
    before = records(chain.db, "chain")
    for name in ("distill_task", "prune_task", "quantize_task", "export_task", "evaluate_artifact_task"):
        counting(monkeypatch, name, fail_first=AssertionError(f"{name} ran again"))
    again = run_recipe(load_recipe(chain.source), db=chain.db, out_dir=chain.out_dir, progress=False)
    assert [s.status for s in again.steps] == ["cached"] * 5
    assert [s.key for s in again.steps] == [s.key for s in chain.steps]
    after = records(chain.db, "chain")
    assert [(r.finished_at, r.attempts) for r in after] == [(r.finished_at, r.attempts) for r in before]


# -- resume ------------------------------------------------------------------------------------------
CHEAP = (
    MEASURE_TORCH  # the starting model, saved as a checkpoint first
    + f"  - {{type: train, augment: false, train: {TRAIN}}}\n"
    + "  - {type: prune, method: magnitude, sparsity: 0.5}\n"
    + MEASURE_TORCH
)


def test_resume_after_a_failure_redoes_only_unfinished_steps(
    write_recipe: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = load_recipe(write_recipe(CHEAP))
    db, out = tmp_path / "s.db", tmp_path / "run"
    train_calls = counting(monkeypatch, "train_task")
    prune_calls = counting(monkeypatch, "prune_task", fail_first=TrainingError("the loss is nan"))
    with pytest.raises(TrainingError, match=r"recipe step 3 \(03-prune\) failed: the loss is nan"):
        run_recipe(recipe, db=db, out_dir=out, progress=False)
    first = records(db, "tiny")[1:]  # after the start record
    assert [(r.name, r.status) for r in first] == [
        ("01-measure", "done"),
        ("02-train", "done"),
        ("03-prune", "failed"),
        ("04-measure", "failed"),  # its input step failed: recorded without running
    ]
    assert first[2].error == "TrainingError: the loss is nan" and "TrainingError" in str(first[2].traceback)
    assert (len(train_calls), len(prune_calls)) == (1, 1)

    outcome = run_recipe(recipe, db=db, out_dir=out, progress=False)
    assert [s.status for s in outcome.steps] == ["cached", "cached", "ran", "ran"]
    assert (len(train_calls), len(prune_calls)) == (1, 2)  # train was not redone
    second = records(db, "tiny")[1:]
    assert len(second) == 4
    assert [r.status for r in second] == ["done"] * 4
    assert [r.attempts for r in second] == [1, 1, 2, 2]
    assert [r.finished_at for r in second[:2]] == [r.finished_at for r in first[:2]]
    assert second[1].finished_at is not None and second[2].started_at is not None
    assert second[2].started_at > second[1].finished_at
    assert outcome.steps[2].metrics["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert outcome.steps[3].metrics["nonzero_params"] == outcome.steps[2].metrics["nonzero_params"]


def test_a_killed_step_runs_again_and_a_live_one_is_not_taken(
    write_recipe: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = load_recipe(write_recipe(CHEAP))
    db, out = tmp_path / "s.db", tmp_path / "run"
    counting(monkeypatch, "prune_task", fail_first=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, db=db, out_dir=out, progress=False)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with Store.open(db) as store:
        failed = records(db, "tiny")[3]
        assert failed.status == "failed" and failed.error == "KeyboardInterrupt: "
        # what a SIGKILL mid-step leaves behind: "running", owned by a process that is gone ...
        store.requeue(failed.id)
        assert store.claim_trial(failed.id, owner=f"{socket.gethostname()}:{dead.stdout.strip()}")
    outcome = run_recipe(recipe, db=db, out_dir=out, progress=False)
    assert [s.status for s in outcome.steps] == ["cached", "cached", "ran", "ran"]
    # ... while a step held by another live process (our parent) is left alone
    with Store.open(db) as store:
        last = records(db, "tiny")[4]
        store.requeue(last.id)
        assert store.claim_trial(last.id, owner=process_owner(os.getppid()))
    with pytest.raises(ConfigError, match=r"step 4 \(04-measure\) is being run by process"):
        run_recipe(recipe, db=db, out_dir=out, progress=False)


def test_a_changed_step_is_redone_with_everything_after_it(
    write_recipe: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, out = tmp_path / "s.db", tmp_path / "run"
    first = run_recipe(load_recipe(write_recipe(CHEAP)), db=db, out_dir=out, progress=False)
    train_calls = counting(monkeypatch, "train_task")
    changed = load_recipe(write_recipe(CHEAP.replace("sparsity: 0.5", "sparsity: 0.7")))
    second = run_recipe(changed, db=db, out_dir=out, progress=False)
    assert [s.status for s in second.steps] == ["cached", "cached", "ran", "ran"]
    assert len(train_calls) == 0
    assert [s.key for s in second.steps[:2]] == [s.key for s in first.steps[:2]]
    assert all(a.key != b.key for a, b in zip(first.steps[2:], second.steps[2:], strict=True))
    assert second.steps[2].metrics["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert len(records(db, "tiny")) == 7  # the earlier variant's records stay, as history
    assert Path(first.steps[2].artifact).is_file() and Path(second.steps[2].artifact).is_file()

    # a step whose artifact changed on disk is redone, and so is every step after it (its input changed)
    Path(second.steps[1].artifact).write_bytes(Path(first.steps[1].artifact).read_bytes() + b"x")
    third = run_recipe(changed, db=db, out_dir=out, progress=False)
    assert [s.status for s in third.steps] == ["cached", "ran", "ran", "ran"]
    assert len(train_calls) == 1 and [s.key for s in third.steps] == [s.key for s in second.steps]
    assert (
        third.steps[1].metrics["artifact_sha256"]
        != hashlib.sha256(Path(first.steps[1].artifact).read_bytes() + b"x").hexdigest()
    )


def test_filter_pruned_student_goes_through_distill_static_int8_and_export(
    write_recipe: Callable[..., Path], tmp_path: Path, teacher_ckpt: Path
) -> None:
    path = write_recipe(
        "  - {type: prune, method: l1, ratio: 0.25, layers: {include: ['*.conv1']}}\n"
        f"  - {{type: distill, teacher: {{checkpoint: {teacher_ckpt}}}, augment: false, train: {TRAIN}}}\n"
        "  - {type: quantize, method: static, bits: 8, calibration_batches: 2}\n"
        "  - {type: export, parity_images: 32}\n" + MEASURE_ORT
    )
    outcome = run_recipe(load_recipe(path), db=tmp_path / "s.db", out_dir=tmp_path / "run", progress=False)
    prune, distill, quant, export, measure = outcome.steps
    assert prune.metrics["params"] < distill.metrics["params_teacher"]
    assert distill.metrics["params"] == prune.metrics["params"]  # distillation kept the pruned shape
    assert quant.metrics["keep_sparsity"] is False
    assert export.metrics["parity"]["ok"] is True
    assert measure.metrics["num_images"] == 100


def test_a_distill_step_trains_its_teacher_first_once(
    write_recipe: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``teacher: {name, train}``: the step trains the teacher from scratch (kept beside its artifact),
    distils from it, and a second run reuses both (the study's chain needs no teacher file)."""
    teacher = "{name: resnet20_tiny, train: {epochs: 1, batch_size: 32, lr: 0.05}}"
    path = write_recipe(
        f"  - {{type: distill, teacher: {teacher}, method: kd, train: {TRAIN}}}\n" + MEASURE_TORCH
    )
    trained = counting(monkeypatch, "train_task")
    first = run_recipe(load_recipe(path), db=tmp_path / "s.db", out_dir=tmp_path / "run", progress=False)
    distill = first.steps[0]
    assert len(trained) == 1 and distill.metrics["teacher_epochs"] == 1
    teacher_file = Path(distill.artifact).with_suffix(".teacher.pt")
    model, _ = load_model_from_checkpoint(teacher_file)
    assert distill.metrics["params_teacher"] == sum(p.numel() for p in model.parameters())
    assert distill.metrics["top1_teacher"] is not None
    again = run_recipe(load_recipe(path), db=tmp_path / "s.db", out_dir=tmp_path / "run", progress=False)
    assert [s.status for s in again.steps] == ["cached", "cached"] and len(trained) == 1


def test_an_interrupted_train_step_goes_on_from_its_last_epoch(
    write_recipe: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = load_recipe(
        write_recipe("  - {type: train, augment: false, train: {epochs: 2, batch_size: 32}}\n")
    )
    real = tasks.train_task
    seen: list[dict[str, Any]] = []
    first: list[Any] = []

    def interrupted_after_one_epoch(source: Any, data: Any, config: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        if len(seen) == 1:  # the first attempt writes its epoch-1 checkpoint, then dies
            first.append(real(source, data, config.replace(epochs=1), **kwargs))
            raise TrainingError("killed after epoch 1")
        return real(source, data, config, **kwargs)

    monkeypatch.setattr(tasks, "train_task", interrupted_after_one_epoch)
    with pytest.raises(TrainingError, match="killed after epoch 1"):
        run_recipe(recipe, db=tmp_path / "s.db", out_dir=tmp_path / "run", progress=False)
    with pytest.warns(UserWarning, match="epochs 1 -> 2"):  # the simulated first attempt ran 1 of 2 epochs
        outcome = run_recipe(recipe, db=tmp_path / "s.db", out_dir=tmp_path / "run", progress=False)
    assert [kw["resume"] for kw in seen] == [False, True]
    assert seen[0]["out"] == seen[1]["out"] == Path(outcome.steps[0].artifact)
    history = outcome.steps[0].metrics["details"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == first[0].history[0]  # epoch 1 restored from the checkpoint (same timings), not rerun
    assert outcome.steps[0].metrics["epochs"] == 2
