"""The distillation task behind ``edgeslim distill``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

import edgeslim
from edgeslim.bench import count_macs, count_params, file_size_bytes, threads
from edgeslim.checkpoint import find_unloadable, save_checkpoint
from edgeslim.data import Augment, BatchLoader
from edgeslim.distillation import AB, KD, DistillConfig, DistillResult, Hint, distill, method_name
from edgeslim.errors import CheckpointError, ConfigError, DataError
from edgeslim.tasks.common import DataSource, ModelSource, check_classes, fit_input, input_meta
from edgeslim.train import TrainConfig, evaluate


@dataclasses.dataclass(frozen=True)
class DistillOutcome:
    """What ``edgeslim distill`` reports: both models' accuracy and size, and the training run."""

    student: str
    teacher: str
    method: str
    out: Path
    epochs: int
    init_epochs: int
    top1_teacher: float
    top1_student: float
    top1_student_before: float | None  # only when the student started from weights
    params_student: int
    params_teacher: int
    macs_student: int
    macs_teacher: int
    size_bytes: int  # the saved student checkpoint
    num_test_images: int
    num_train_images: int
    result: DistillResult
    train_config: dict[str, Any]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        run = self.result.to_dict()
        return {
            "student": self.student,
            "teacher": self.teacher,
            "method": self.method,
            "model_out": str(self.out),
            "epochs": self.epochs,
            "init_epochs": self.init_epochs,
            "top1_teacher": self.top1_teacher,
            "top1_student": self.top1_student,
            "top1_student_before": self.top1_student_before,
            "top1_gap": self.top1_teacher - self.top1_student,
            "params_student": self.params_student,
            "params_teacher": self.params_teacher,
            "macs_student": self.macs_student,
            "macs_teacher": self.macs_teacher,
            "size_bytes": self.size_bytes,
            "num_test_images": self.num_test_images,
            "num_train_images": self.num_train_images,
            "config": run["config"],
            "train_config": dict(self.train_config),
            "layer_pairs": run["layer_pairs"],
            "connector_params": run["connector_params"],
            "teacher_cache": run["teacher_cache"],
            "history": run["history"],
            "seconds": run["seconds"],
            "notes": list(self.notes),
        }


def _check_paths(out: Path, teacher_source: ModelSource, student_source: ModelSource) -> None:
    if out.is_dir():
        raise ConfigError(
            f"distill_task.out {str(out)!r} is a directory; give a file name such as student.pt",
            field="distill_task.out",
        )
    for label, source in (("teacher", teacher_source), ("student", student_source)):
        artifact = source.artifact
        if artifact is not None and Path(artifact).resolve() == out.resolve():
            raise ConfigError(
                f"distill_task.out {str(out)!r} would overwrite the {label}'s file; choose another path",
                field="distill_task.out",
            )


def distill_task(
    student_source: ModelSource,
    teacher_source: ModelSource,
    config: DistillConfig,
    data_source: DataSource,
    train_config: TrainConfig,
    *,
    out: Path,
    augment: Augment | None = None,
    eval_batch_size: int = 256,
    num_threads: int | None = None,
    progress: bool = True,
    device: str | None = None,
) -> DistillOutcome:
    """Distil the teacher into the student on ``data_source``'s train split; save and evaluate it.

    The teacher is a zoo model with weights, or an edgeslim checkpoint; it is evaluated on the test
    split (``data_source.limit`` applies to both splits). The student starts from scratch or from
    its weights; it is saved to ``out`` as a normal edgeslim checkpoint (``edgeslim eval
    --checkpoint`` reads it), written only after training succeeded. Teacher logits are cached
    across epochs when augmentation is off (``augment`` identity) and KD runs on its own (KD, or
    the KD finish after an AB/hint initialization phase; hints added to KD for the whole run need
    the teacher's activations, so its forward pass runs every step); the outcome's notes say so
    only when cached logits were actually reused. ``device`` (``auto``, ``cpu``, ``cuda``): where
    training and evaluation run. Images are resized to ``data_source.image_size``, else to the size
    the teacher's checkpoint records, and the student's checkpoint records it.
    """
    if not isinstance(config, KD | AB | Hint):
        raise ConfigError(f"config must be KD, AB or Hint, got {type(config).__name__}")
    if teacher_source.checkpoint is None and teacher_source.weights is None and not teacher_source.pretrained:
        raise ConfigError(
            "the teacher needs trained weights: set distill_task.teacher_source's weights or checkpoint "
            "(an untrained teacher has nothing to teach)",
            field="distill_task.teacher_source",
        )
    if eval_batch_size < 1:
        raise ConfigError("eval_batch_size must be at least 1")
    _check_paths(out, teacher_source, student_source)
    augment = augment if augment is not None else Augment()
    with threads(num_threads):
        train_data = data_source.load("train")
        test_data = data_source.load("test")
        teacher, t_spec = teacher_source.build(default_num_classes=train_data.num_classes)
        student, s_spec = student_source.build(default_num_classes=train_data.num_classes)
        train_data = fit_input(fit_input(train_data, t_spec), s_spec)
        test_data = test_data.with_input_size(train_data.input_size)
        input_size = train_data.input_shape
        check_classes(teacher, train_data, input_size)
        check_classes(student, train_data, input_size)
        test_loader = BatchLoader(test_data, eval_batch_size)
        eval_device = device or "auto"
        top1_teacher = evaluate(teacher, test_loader, progress=progress, device=eval_device).top1
        top1_before = (
            evaluate(student, test_loader, progress=progress, device=eval_device).top1
            if student_source.artifact is not None
            else None
        )
        loader = BatchLoader(
            train_data,
            train_config.batch_size,
            shuffle=True,
            augment=augment,
            drop_last=True,
            seed=train_config.seed,
            channels_last=train_config.channels_last,
        )
        if len(loader) == 0:
            raise DataError(
                f"{train_data.source!r}: {len(train_data)} training images is fewer than one batch of "
                f"{train_config.batch_size}; lower TrainConfig.batch_size",
                field="TrainConfig.batch_size",
            )
        # KD alone can reuse teacher logits; hints active alongside KD (init_epochs 0) need the
        # teacher's activations every step, so distill() ignores a cache there
        kd_alone = isinstance(config, KD) or (config.finish == "kd" and config.init_epochs > 0)
        cache = kd_alone and augment.is_identity
        student.train()
        result = distill(
            student,
            teacher,
            config,
            loader,
            train_config=train_config,
            input_size=input_size,
            cache_teacher_logits=cache,
            progress=progress,
            device=device,
        )
        for model in (student, teacher):
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        student.eval()
        top1_student = evaluate(student, test_loader, progress=progress, device=eval_device).top1

        notes: list[str] = []
        if result.teacher_cache and result.teacher_cache.get("hits", 0) > 0:
            notes.append("augmentation off: teacher logits were computed once per image and reused")
        meta: dict[str, Any] = {
            "kind": "distill",
            "method": method_name(config),
            "distill_config": config.to_dict(),
            "teacher": t_spec["name"],
            "teacher_artifact": str(teacher_source.artifact),
            "teacher_top1": top1_teacher,
            "top1": top1_student,
            "epochs": result.epochs,
            "edgeslim_version": edgeslim.__version__,
            "torch_version": str(torch.__version__),
        }
        source_meta = s_spec.get("meta") or {}
        if source_meta.get("channel_spec"):
            meta["channel_spec"] = source_meta["channel_spec"]  # a filter-pruned student keeps its shape
        meta.update(input_meta(train_data))  # the input size it trained at
        problem = find_unloadable(meta, "checkpoint meta")
        if problem:
            raise CheckpointError(f"cannot save the student: {problem}")
        save_checkpoint(out, student, model_name=s_spec["name"], model_kwargs=s_spec["kwargs"], meta=meta)
        example = (1, *input_size)
        return DistillOutcome(
            student=s_spec["name"],
            teacher=t_spec["name"],
            method=method_name(config),
            out=out,
            epochs=result.epochs,
            init_epochs=result.init.epochs_completed if result.init else 0,
            top1_teacher=top1_teacher,
            top1_student=top1_student,
            top1_student_before=top1_before,
            params_student=count_params(student),
            params_teacher=count_params(teacher),
            macs_student=count_macs(student, example),
            macs_teacher=count_macs(teacher, example),
            size_bytes=file_size_bytes(out),
            num_test_images=len(test_data),
            num_train_images=len(train_data),
            result=result,
            train_config=train_config.to_dict(),
            notes=tuple(notes),
        )
