"""``edgeslim distill``: exact arguments to the task, one-line errors, and a real tiny run end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from edgeslim import tasks
from edgeslim.checkpoint import save_checkpoint
from edgeslim.cli.app import app
from edgeslim.data import Augment
from edgeslim.distillation import AB, KD, DistillResult, Hint
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.train import TrainConfig, TrainResult

runner = CliRunner()
HINT_CE = ["--teacher-checkpoint", "t.pt", "--student", "r", "--method", "hint", "--finish", "ce"]


def _outcome(out: Path) -> tasks.DistillOutcome:
    main = TrainResult(
        history=[{"epoch": 1, "train_loss": 1.0, "train_top1": 50.0}],
        final={},
        checkpoint_path=None,
        epochs_completed=1,
        global_step=3,
        seconds=1.5,
    )
    result = DistillResult(
        method="ab", config=AB().to_dict(), main=main, init=main, layer_pairs=(("a", "b"),)
    )
    return tasks.DistillOutcome(
        student="resnet20",
        teacher="resnet56",
        method="ab",
        out=out,
        epochs=2,
        init_epochs=1,
        top1_teacher=83.0,
        top1_student=60.5,
        top1_student_before=None,
        params_student=269_722,
        params_teacher=853_018,
        macs_student=40_000_000,
        macs_teacher=125_000_000,
        size_bytes=1_100_000,
        num_test_images=100,
        num_train_images=320,
        result=result,
        train_config=TrainConfig(epochs=2).to_dict(),
    )


def test_distill_passes_exact_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(student: Any, teacher: Any, config: Any, data: Any, train_config: Any, **kw: Any) -> Any:
        calls.append((student, teacher, config, data, train_config, kw))
        return _outcome(kw["out"])

    monkeypatch.setattr(tasks, "distill_task", fake)
    args = ["distill", "--teacher", "resnet56", "--teacher-weights", "t.th", "--student", "resnet20"]
    args += [
        "--method",
        "ab",
        "--layers",
        "layer1=layer1.8.relu2,layer2",
        "--layers",
        "layer3",
        "--margin",
        "0.5",
    ]
    args += ["--init-epochs", "2", "--finish", "kd", "--alpha", "0.3", "--temperature", "3", "--epochs", "5"]
    args += [
        "--batch-size",
        "64",
        "--lr",
        "0.05",
        "--fp32",
        "--no-augment",
        "--data",
        "somewhere",
        "--limit",
        "400",
    ]
    args += ["--seed", "7", "--out", "s.pt", "--threads", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    student, teacher, config, data, train_config, kw = calls[0]
    assert student == tasks.ModelSource(name="resnet20")
    assert teacher == tasks.ModelSource(name="resnet56", weights=Path("t.th"))
    assert config == AB(
        layers=("layer1=layer1.8.relu2", "layer2", "layer3"),
        margin=0.5,
        init_epochs=2,
        finish="kd",
        alpha=0.3,
        temperature=3.0,
    )
    assert data == tasks.DataSource(path="somewhere", split="test", limit=400, val_fraction=0.0, seed=7)
    assert train_config == TrainConfig(
        epochs=5, batch_size=64, lr=0.05, bf16=False, channels_last=True, seed=7, weight_decay=5e-4
    )
    assert kw == {
        "out": Path("s.pt"),
        "augment": Augment.none(),
        "num_threads": 1,
        "progress": False,
        "device": None,
    }
    payload = json.loads(result.stdout)
    expected = {
        "student",
        "teacher",
        "method",
        "top1_teacher",
        "top1_student",
        "params_student",
        "params_teacher",
    }
    assert expected | {"epochs", "model_out", "layer_pairs", "history"} <= set(payload)
    assert (payload["student"], payload["teacher"], payload["method"], payload["epochs"]) == (
        "resnet20",
        "resnet56",
        "ab",
        2,
    )
    assert payload["top1_gap"] == pytest.approx(22.5)


def test_distill_teacher_checkpoint_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks, "distill_task", lambda *a, **kw: calls.append((a, kw)) or _outcome(kw["out"]))
    result = runner.invoke(app, ["distill", "--teacher-checkpoint", "t.pt", "--student", "resnet20"])
    assert result.exit_code == 0, result.output
    (student, teacher, config, data, train_config), kw = calls[0]
    assert student == tasks.ModelSource(name="resnet20")
    assert data == tasks.DataSource(path=None, split="test", limit=None, val_fraction=0.0, seed=0)
    assert teacher == tasks.ModelSource(checkpoint=Path("t.pt"))
    assert config == KD()
    assert train_config == TrainConfig(
        epochs=30, batch_size=128, lr=0.1, bf16=True, channels_last=True, seed=0
    )
    assert kw == {
        "out": Path("distilled.pt"),
        "augment": Augment(),
        "num_threads": None,
        "progress": True,
        "device": None,
    }
    assert "teacher - student" in result.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--teacher", "resnet56", "--student", "resnet20"], "needs --teacher-weights"),
        (["--teacher-checkpoint", "t.pt", "--teacher", "resnet56", "--student", "resnet20"], "either"),
        (["--student", "resnet20"], "no teacher"),
        (["--teacher-checkpoint", "t.pt"], "no student"),
        (["--teacher-checkpoint", "t.pt", "--student", "r", "--method", "kd", "--margin", "1"], "--margin"),
        (["--teacher-checkpoint", "t.pt", "--student", "r", "--method", "kd", "--layers", "a"], "--layers"),
        (
            ["--teacher-checkpoint", "t.pt", "--student", "r", "--method", "crd"],
            "'crd' is not one of kd, ab, hint",
        ),
        (["--teacher-checkpoint", "t.pt", "--student", "r", "--method", "ab", "--finish", "x"], "--finish"),
        (
            ["--teacher-checkpoint", "t.pt", "--student", "r", "--method", "ab", "--init-epochs", "0"],
            "init_epochs",
        ),
        (["--teacher-checkpoint", "t.pt", "--student", "r", "--alpha", "2"], "KD.alpha"),
        # KD options where the method finishes on cross-entropy would be silently ignored
        (
            ["--teacher-checkpoint", "t.pt", "--student", "r", "--method", "ab", "--alpha", "0.5"],
            "--alpha only apply to KD, and --method ab trains on cross-entropy after its initialization "
            "(its default finish); add --finish kd or drop --alpha",
        ),
        (
            [*HINT_CE, "--temperature", "2", "--alpha", "0.3"],
            "--alpha and --temperature only apply to KD, and --method hint trains on cross-entropy after "
            "its initialization (--finish ce)",
        ),
    ],
)
def test_distill_bad_options_are_one_line_errors(
    monkeypatch: pytest.MonkeyPatch, extra: list[str], message: str
) -> None:
    def never(*a: Any, **kw: Any) -> Any:
        raise AssertionError("the task must not run")

    monkeypatch.setattr(tasks, "distill_task", never)
    result = runner.invoke(app, ["distill", *extra])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_kd_options_are_accepted_where_the_method_finishes_on_kd(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(tasks, "distill_task", lambda *a, **kw: calls.append(a[2]) or _outcome(kw["out"]))
    base = ["distill", "--teacher-checkpoint", "t.pt", "--student", "r", "--json"]
    ab = runner.invoke(app, [*base, "--method", "ab", "--finish", "kd", "--alpha", "0.5", "-T", "2"])
    assert ab.exit_code == 0, ab.output
    hint = runner.invoke(app, [*base, "--method", "hint", "--temperature", "3"])  # hint finishes on kd
    assert hint.exit_code == 0, hint.output
    assert calls == [AB(finish="kd", alpha=0.5, temperature=2.0), Hint(temperature=3.0)]


def test_the_cache_note_appears_only_when_cached_logits_were_reused(tiny_cifar: Path, tmp_path: Path) -> None:
    """Hints alongside KD (init_epochs 0) need the teacher every step: nothing is cached there."""
    teacher_file = tmp_path / "teacher.pt"
    save_checkpoint(teacher_file, create_model("resnet20_tiny"), model_name="resnet20_tiny")
    note = "augmentation off: teacher logits were computed once per image and reused"

    def run(config: KD | Hint, epochs: int) -> tasks.DistillOutcome:
        return tasks.distill_task(
            tasks.ModelSource(name="resnet20_tiny"),
            tasks.ModelSource(checkpoint=teacher_file),
            config,
            tasks.DataSource(path=str(tiny_cifar.parent), val_fraction=0.0, limit=64),
            TrainConfig(epochs=epochs, batch_size=32, bf16=False, channels_last=False),
            out=tmp_path / f"{type(config).__name__}-{epochs}.pt",
            augment=Augment.none(),
            progress=False,
        )

    hint = run(Hint(init_epochs=0, finish="kd"), 2)
    assert (hint.result.teacher_cache, hint.notes) == (None, ())
    one_epoch = run(KD(), 1)  # the cache filled but never hit
    assert one_epoch.result.teacher_cache == {"hits": 0, "misses": 64, "entries": 64, "enabled": 1}
    assert one_epoch.notes == ()
    two = run(KD(), 2)
    assert two.result.teacher_cache is not None and two.result.teacher_cache["hits"] == 64
    assert two.notes == (note,)


def test_distill_end_to_end_on_tiny_models(tiny_cifar: Path, tmp_path: Path) -> None:
    """A real run: the student file is a normal checkpoint that `edgeslim eval --checkpoint` reads."""
    torch.manual_seed(0)
    teacher_file = tmp_path / "teacher.pt"
    torch.save(create_model("resnet20_tiny").state_dict(), teacher_file)
    out = tmp_path / "student.pt"
    common = ["--data", str(tiny_cifar.parent), "--threads", "1", "--json"]
    result = runner.invoke(
        app,
        [
            *("distill", "--teacher", "resnet20_tiny", "--teacher-weights", str(teacher_file)),
            *("--student", "resnet20_tiny", "--method", "kd", "--epochs", "2", "--batch-size", "64"),
            *("--no-augment", "--fp32", "--out", str(out), *common),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["student"], payload["teacher"], payload["method"], payload["epochs"]) == (
        "resnet20_tiny",
        "resnet20_tiny",
        "kd",
        2,
    )
    assert payload["params_student"] == payload["params_teacher"] == 17_326
    assert payload["num_train_images"] == 320 and payload["num_test_images"] == 100
    assert payload["teacher_cache"] == {"hits": 320, "misses": 320, "entries": 320, "enabled": 1}
    assert [h["epoch"] for h in payload["history"]] == [1, 2]

    evaluated = runner.invoke(app, ["eval", "--checkpoint", str(out), *common])
    assert evaluated.exit_code == 0, evaluated.output
    measured = json.loads(evaluated.stdout)
    assert measured["model"] == "resnet20_tiny"
    assert measured["top1"] == pytest.approx(payload["top1_student"])
    assert measured["size_bytes"] == payload["size_bytes"]


def test_distill_task_writes_nothing_when_it_fails(tiny_cifar: Path, tmp_path: Path) -> None:
    teacher_file = tmp_path / "teacher.pt"
    save_checkpoint(teacher_file, create_model("resnet20_tiny"), model_name="resnet20_tiny")
    out = tmp_path / "student.pt"
    with pytest.raises(ConfigError, match=r"'layer3\.9' matches no module of the teacher"):
        tasks.distill_task(
            tasks.ModelSource(name="resnet20_tiny"),
            tasks.ModelSource(checkpoint=teacher_file),
            AB(layers=("layer3=layer3.9",)),
            tasks.DataSource(path=str(tiny_cifar.parent), val_fraction=0.0),
            TrainConfig(epochs=2, batch_size=64, bf16=False),
            out=out,
            progress=False,
        )
    assert not out.exists()
    with pytest.raises(ConfigError, match="would overwrite the teacher"):
        tasks.distill_task(
            tasks.ModelSource(name="resnet20_tiny"),
            tasks.ModelSource(checkpoint=teacher_file),
            KD(),
            tasks.DataSource(path=str(tiny_cifar.parent), val_fraction=0.0),
            TrainConfig(epochs=1, batch_size=64, bf16=False),
            out=teacher_file,
            progress=False,
        )
    with pytest.raises(ConfigError, match="needs trained weights"):
        tasks.distill_task(
            tasks.ModelSource(name="resnet20_tiny"),
            tasks.ModelSource(name="resnet20_tiny"),
            KD(),
            tasks.DataSource(path=str(tiny_cifar.parent)),
            TrainConfig(epochs=1),
            out=out,
        )


def test_ab_between_densenets_pairs_the_dense_blocks_by_itself(tiny_cifar: Path, tmp_path: Path) -> None:
    """The study's setting, tiny: AB from a wider DenseNet checkpoint into a thinner one without
    naming layers; the teacher's family comes back from its checkpoint."""
    torch.manual_seed(0)
    teacher_file = tmp_path / "teacher.pt"
    teacher = create_model("densenet121_tiny", width=0.25)
    save_checkpoint(teacher_file, teacher, model_name="densenet121_tiny", model_kwargs={"width": 0.25})
    outcome = tasks.distill_task(
        tasks.ModelSource(name="densenet121_tiny"),
        tasks.ModelSource(checkpoint=teacher_file),
        AB(init_epochs=1),
        tasks.DataSource(path=str(tiny_cifar.parent), val_fraction=0.0, limit=32),
        TrainConfig(epochs=2, batch_size=16, bf16=False, channels_last=False),
        out=tmp_path / "student.pt",
        progress=False,
    )
    result = outcome.result
    assert result.layer_pairs == tuple((f"dense{i}.0.bn1", f"dense{i}.0.bn1") for i in range(1, 5))
    # one 1x1 conv + BN per block, from the student's block-input width (8: growth 4) to the
    # teacher's (16: growth 8)
    assert result.connector_params == 4 * (8 * 16 + 2 * 16)
    assert [h["phase"] for h in result.history] == ["init", "main"]
    assert 0.0 <= result.history[0]["boundary_agreement"] <= 100.0 and result.history[0]["ab_loss"] > 0.0
    assert (tmp_path / "student.pt").is_file()
