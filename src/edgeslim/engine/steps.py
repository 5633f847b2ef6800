"""The step model: a step is (typed config, input artifact) -> (output artifact, [Measurement]).

A **recipe** is a start (where the model comes from) plus an ordered list of steps; a **sweep** is a
grid of recipes that share their common prefix. Both are planned into the same nodes
(:mod:`edgeslim.engine.plan`), keyed the same way (:mod:`edgeslim.engine.keys`) and run by the same
runner (:mod:`edgeslim.engine.runner`), so the YAML front-ends (``edgeslim run`` and ``edgeslim
sweep``) differ only in how they spell a recipe.

Every step class is frozen plain data with ``to_dict``/``step_from_dict`` (the form a worker process
or a Ray node receives and the store keeps). Compression steps hold a method config from the one
registry (:mod:`edgeslim.methods`), so any registered pruning or quantization method works in every
front-end without a name table here.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

from edgeslim.bench.latency import DEFAULT_NOISE_THRESHOLD
from edgeslim.config import Config, config_from_dict
from edgeslim.errors import ConfigError
from edgeslim.methods import method_of
from edgeslim.pruning.saving import LAYOUTS
from edgeslim.runtimes import parse_runtime
from edgeslim.select import LayerSelection
from edgeslim.tasks.common import DataSource, ModelSource
from edgeslim.tasks.prune import check_gradual_ramp
from edgeslim.tasks.recovery import Recovery
from edgeslim.train import TrainConfig

EXPORT_FORMATS = ("onnx", "openvino")
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
MODEL_INITS = ("random",)


def _cfg(config: Config | None) -> dict[str, Any] | None:
    return None if config is None else config.to_dict()


def _train_from(data: Any) -> TrainConfig | None:
    return None if data is None else TrainConfig.from_dict(data)


def _recovery(step: Step, train: TrainConfig | None, recovery: Recovery | None) -> None:
    """A fine-tune recovers by :class:`Recovery` (default: distill from the model before compression);
    a step that does not fine-tune takes none."""
    if train is not None and recovery is None:
        object.__setattr__(step, "recovery", Recovery())
    elif train is None and recovery is not None:
        raise ConfigError(
            f"{step.TYPE} step: distillation and a time budget apply to its fine-tune, and it has none; "
            "give it a training budget (train: {epochs: N} or {budget_minutes: M}) or remove them",
            field="Recovery.distill",
        )


def _recovery_files(recovery: Recovery | None) -> dict[str, Path]:
    if recovery is None or recovery.teacher is None:
        return {}
    return {"recovery.teacher": Path(recovery.teacher)}


def _recovery_from(data: Any) -> Recovery | None:
    return None if data is None else Recovery.from_dict(data)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The dataset every step reads: the train split for training and calibration, ``eval_split`` for
    accuracy. ``path`` is resolved (what workers read); ``source`` is the path as written.
    ``image_size``: every step's batches are resized to that square size (e.g. 224 for
    ImageNet-pretrained models; None keeps the stored size and leaves keys as they were)."""

    path: str | None = None
    source: str = ""
    train_limit: int | None = None
    test_limit: int | None = None
    val_fraction: float = 0.0
    seed: int = 0
    eval_split: Literal["test", "val"] = "test"
    image_size: int | None = None

    def data_source(self) -> DataSource:
        train_limit = self.train_limit
        if train_limit is None and self.test_limit is not None:
            train_limit = sys.maxsize  # DataSource applies `limit` to train too unless train_limit is set
        return DataSource(
            path=self.path,
            split=self.eval_split,
            limit=self.test_limit,
            val_fraction=self.val_fraction,
            seed=self.seed,
            train_limit=train_limit,
            image_size=self.image_size,
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["image_size"] is None:  # absent unless set: keys of stored runs stay valid
            del data["image_size"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        return cls(**data)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Step:
    """One step. ``name`` labels its record; it is not part of the key (renaming reruns nothing)."""

    TYPE: ClassVar[str] = ""
    #: Steps that write no new model file hand their input on (measure).
    WRITES_ARTIFACT: ClassVar[bool] = True
    name: str = ""

    @property
    def type(self) -> str:
        return self.TYPE

    def params(self) -> dict[str, Any]:
        """What decides the step's result (plain data): the key hashes it, the record stores it."""
        raise NotImplementedError

    def files(self) -> dict[str, Path]:
        """Files the step reads besides its input (their contents enter the key)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "name": self.name, **self.params()}

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any]) -> Step:
        raise NotImplementedError


STEP_TYPES: dict[str, type[Step]] = {}


def step_type(cls: type[Step]) -> type[Step]:
    """Class decorator: register a step type under its ``TYPE`` (for :func:`step_from_dict`)."""
    STEP_TYPES[cls.TYPE] = cls
    return cls


def step_from_dict(data: dict[str, Any]) -> Step:
    """Rebuild a step from ``Step.to_dict()`` output (an allow-list of step types)."""
    data = dict(data)
    kind = data.pop("type", None)
    if kind not in STEP_TYPES:
        raise ConfigError(f"unknown step type {kind!r}; known: {', '.join(STEP_TYPES)}")
    name = str(data.pop("name", "") or "")
    return STEP_TYPES[kind].from_params(name, data)


def _path(value: Any) -> Path | None:
    return None if value is None else Path(value)


@step_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class StartStep(Step):
    """Where a recipe starts: a zoo model (with pretrained ``weights``, its published weights
    fetched with ``pretrained``, ``train``-ed from scratch, or explicitly ``init: random``) or an
    edgeslim ``checkpoint``. Writes the starting checkpoint."""

    TYPE: ClassVar[str] = "start"
    model: str | None = None
    weights: Path | None = None
    checkpoint: Path | None = None
    num_classes: int | None = None
    train: TrainConfig | None = None
    init: str | None = None
    pretrained: bool = False

    def __post_init__(self) -> None:
        if (self.model is None) == (self.checkpoint is None):
            raise ConfigError("start: give either 'model' (a zoo name) or 'checkpoint' (a file)")
        if self.pretrained and self.model is None:
            raise ConfigError("start: 'pretrained' fetches a zoo model's published weights; give 'model'")

    def source(self) -> ModelSource:
        return ModelSource(
            name=self.model,
            weights=self.weights,
            checkpoint=self.checkpoint,
            num_classes=self.num_classes,
            pretrained=self.pretrained,
        )

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "weights": None if self.weights is None else str(self.weights),
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "num_classes": self.num_classes,
            "train": _cfg(self.train),
            "init": self.init,
        }
        if self.pretrained:  # absent unless set: keys of stored runs stay valid
            params["pretrained"] = True
        return params

    def files(self) -> dict[str, Path]:
        return {
            k: v for k, v in (("weights", self.weights), ("checkpoint", self.checkpoint)) if v is not None
        }

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any]) -> Step:
        return cls(
            name=name,
            model=params.get("model"),
            weights=_path(params.get("weights")),
            checkpoint=_path(params.get("checkpoint")),
            num_classes=params.get("num_classes"),
            train=_train_from(params.get("train")),
            init=params.get("init"),
            pretrained=bool(params.get("pretrained", False)),
        )


@step_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainStep(Step):
    """Train (or fine-tune) the current model with cross-entropy."""

    TYPE: ClassVar[str] = "train"
    train: TrainConfig
    augment: bool = True

    def params(self) -> dict[str, Any]:
        return {"train": self.train.to_dict(), "augment": self.augment}

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any]) -> Step:
        return cls(name=name, train=TrainConfig.from_dict(params["train"]), augment=bool(params["augment"]))


@step_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillStep(Step):
    """Train the current model (the student) from a frozen teacher (a start step of its own)."""

    TYPE: ClassVar[str] = "distill"
    teacher: StartStep
    config: Config  # a registered distill/* method config
    train: TrainConfig
    augment: bool = True

    def params(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher.params(),
            "config": self.config.to_dict(),
            "train": self.train.to_dict(),
            "augment": self.augment,
        }

    def files(self) -> dict[str, Path]:
        return {f"teacher.{k}": v for k, v in self.teacher.files().items()}

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any]) -> Step:
        teacher = StartStep.from_params("teacher", params["teacher"])
        assert isinstance(teacher, StartStep)
        return cls(
            name=name,
            teacher=teacher,
            config=config_from_dict(params["config"]),
            train=TrainConfig.from_dict(params["train"]),
            augment=bool(params["augment"]),
        )


@step_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class PruneStep(Step):
    """Prune the current model by a registered prune/* method, fine-tuning after it (``train``)."""

    TYPE: ClassVar[str] = "prune"
    config: Config
    select: LayerSelection = dataclasses.field(default_factory=LayerSelection)
    train: TrainConfig | None = None
    layout: str = "dense"
    recovery: Recovery | None = None  # how the fine-tune recovers (default with train: distill)

    def __post_init__(self) -> None:
        spec = method_of(self.config)
        if spec.family != "prune":
            raise ConfigError(f"prune step: {type(self.config).__name__} is a {spec.family} method")
        if spec.needs_training and self.train is None:
            raise ConfigError(f"{spec.id} prunes while training: give it a training budget (epochs >= 1)")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"prune.layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        _recovery(self, self.train, self.recovery)
        check_gradual_ramp(self.config, self.train, self.recovery)  # a ramp in epochs fits the fine-tune

    @property
    def unstructured(self) -> bool:
        """Zeros in place (masks), not removed channels: training afterwards would regrow them."""
        return not hasattr(self.config, "criterion")

    def params(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "select": self.select.to_dict(),
            "train": _cfg(self.train),
            "layout": self.layout,
            "recovery": _cfg(self.recovery),
        }

    def files(self) -> dict[str, Path]:
        return _recovery_files(self.recovery)

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any]) -> Step:
        return cls(
            name=name,
            config=config_from_dict(params["config"]),
            select=LayerSelection.from_dict(params["select"]),
            train=_train_from(params.get("train")),
            layout=str(params.get("layout", "dense")),
            recovery=_recovery_from(params.get("recovery")),
        )


@step_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizeStep(Step):
    """Quantize the current model by a registered quantize/* method (static, qat, dynamic, ...)."""

    TYPE: ClassVar[str] = "quantize"
    config: Config
    train: TrainConfig | None = None
    keep_sparsity: bool = False
    recovery: Recovery | None = None  # how QAT recovers (default with train: distill)

    def __post_init__(self) -> None:
        spec = method_of(self.config)
        if spec.family != "quantize":
            raise ConfigError(f"quantize step: {type(self.config).__name__} is a {spec.family} method")
        if spec.needs_training and self.train is None:
            raise ConfigError(f"{spec.id} trains: give it a training budget (epochs >= 1)")
        if self.train is not None and not spec.trains:
            raise ConfigError(f"{spec.id} does not train; remove its training budget")
        _recovery(self, self.train, self.recovery)

    def params(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "train": _cfg(self.train),
            "keep_sparsity": self.keep_sparsity,
            "recovery": _cfg(self.recovery),
        }

    def files(self) -> dict[str, Path]:
        return _recovery_files(self.recovery)

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any]) -> Step:
        return cls(
            name=name,
            config=config_from_dict(params["config"]),
            train=_train_from(params.get("train")),
            keep_sparsity=bool(params.get("keep_sparsity", False)),
            recovery=_recovery_from(params.get("recovery")),
        )


@step_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportStep(Step):
    """Export the current PyTorch artifact to a runtime format, parity-checked on test images."""

    TYPE: ClassVar[str] = "export"
    format: str = "onnx"
    precision: str | None = None  # None: int8 for a quantized model, else fp32
    parity_images: int = 256
    opset: int = 18

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ConfigError(
                f"export.format must be one of {', '.join(EXPORT_FORMATS)}, not {self.format!r}"
            )
        if self.precision is not None and self.precision not in EXPORT_PRECISIONS:
            raise ConfigError(
                f"export.precision must be one of {', '.join(EXPORT_PRECISIONS)}, not {self.precision!r}"
            )

    def params(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "parity_images": self.parity_images,
            "opset": self.opset,
        }

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any]) -> Step:
        return cls(name=name, **params)


@step_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class MeasureStep(Step):
    """Measure the current artifact on each runtime: accuracy there, latency, memory, size.

    ``runtimes`` empty: the runtime edgeslim deploys the artifact on. A float checkpoint is exported
    (parity-checked on real test images) for runtimes other than torch; a quantized model runs as its
    int8 file. A runtime that cannot run the artifact is recorded as a failed measurement, with why.

    Each latency is timed in ``passes`` passes (each: ``warmup`` + ``runs`` calls); the recorded
    latency is the median of the pass medians, with their spread ((max - min) / median) and
    ``noisy`` = spread > ``noise_threshold`` (:func:`edgeslim.bench.latency.summarise_passes`).
    """

    TYPE: ClassVar[str] = "measure"
    WRITES_ARTIFACT: ClassVar[bool] = False
    runtimes: tuple[str, ...] = ("torch",)
    batch_sizes: tuple[int, ...] = (1, 32)
    runs: int = 20
    warmup: int = 3
    accuracy: bool = True
    latency: bool = True
    memory: Literal["process", "inline", "none"] = "process"
    #: Run alone: the runner starts no other step while this one runs (and waits for running ones to
    #: end first), so latencies are not timed while other trials train on the same cores.
    exclusive: bool = True
    passes: int = 3
    noise_threshold: float = DEFAULT_NOISE_THRESHOLD

    def __post_init__(self) -> None:
        runtimes = tuple(parse_runtime(r, "measure.runtimes").value for r in self.runtimes)
        object.__setattr__(self, "runtimes", runtimes)
        if len(set(runtimes)) != len(runtimes):
            raise ConfigError(f"measure.runtimes lists a runtime twice: {list(runtimes)}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"measure.batch_sizes must be integers >= 1, got {list(self.batch_sizes)}")
        if self.runs < 1:
            raise ConfigError(f"measure.runs must be >= 1, got {self.runs}")
        if self.warmup < 0:
            raise ConfigError(f"measure.warmup must be >= 0, got {self.warmup}")
        if self.memory not in ("process", "inline", "none"):
            raise ConfigError(f"measure.memory must be process, inline or none, not {self.memory!r}")
        if isinstance(self.passes, bool) or not isinstance(self.passes, int) or self.passes < 1:
            raise ConfigError(
                f"MeasureStep.passes must be an integer >= 1, got {self.passes!r}", field="MeasureStep.passes"
            )
        threshold = self.noise_threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold < math.inf
        ):
            raise ConfigError(
                f"MeasureStep.noise_threshold must be a finite number > 0, got {threshold!r}",
                field="MeasureStep.noise_threshold",
            )

    def params(self) -> dict[str, Any]:
        return {
            "runtimes": list(self.runtimes),
            "batch_sizes": list(self.batch_sizes),
            "runs": self.runs,
            "warmup": self.warmup,
            "accuracy": self.accuracy,
            "latency": self.latency,
            "memory": self.memory,
            "exclusive": self.exclusive,
            "passes": self.passes,
            "noise_threshold": self.noise_threshold,
        }

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any]) -> Step:
        return cls(
            name=name,
            runtimes=tuple(params["runtimes"]),
            batch_sizes=tuple(params["batch_sizes"]),
            runs=int(params["runs"]),
            warmup=int(params["warmup"]),
            accuracy=bool(params["accuracy"]),
            latency=bool(params["latency"]),
            memory=params["memory"],
            exclusive=bool(params.get("exclusive", True)),
            passes=int(params.get("passes", 3)),
            noise_threshold=float(params.get("noise_threshold", DEFAULT_NOISE_THRESHOLD)),
        )


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A start, the data and the steps in order (what ``edgeslim run`` runs; a sweep makes many)."""

    name: str
    start: StartStep
    data: DataSpec
    steps: tuple[Step, ...]
    threads: int | None = None
    description: str = ""
    source: str = "<recipe>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "start": self.start.to_dict(),
            "data": self.data.to_dict(),
            "threads": self.threads,
            "steps": [s.to_dict() for s in self.steps],
            "source": self.source,
        }


__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_PRECISIONS",
    "LAYOUTS",
    "STEP_TYPES",
    "DataSpec",
    "DistillStep",
    "ExportStep",
    "MeasureStep",
    "PruneStep",
    "QuantizeStep",
    "Recipe",
    "StartStep",
    "Step",
    "TrainStep",
    "step_from_dict",
    "step_type",
]
