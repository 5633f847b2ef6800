"""Recipe files: the YAML that chains compression steps, validated with errors that name file, line
and field.

::

    name: distill-prune-qat        # [A-Za-z0-9._-]+: the experiment name in the result store
    description: free text
    model: {name: resnet20, weights: pretrained/resnet20-12fca82f.th}   # or {checkpoint: FILE}
    data: {path: cifar10-jpeg, train_limit: 10000, test_limit: null, seed: 0}
    threads: 1                     # torch/runtime threads of every step (default: all cores)
    steps:                         # run in order; each step starts from the previous step's artifact
      - type: distill              # train | distill | prune | quantize | export | measure
        teacher: {name: resnet56, weights: pretrained/resnet56-4bfd9763.th}
        method: kd                 # kd | ab | hint, with that method's fields (alpha, temperature, ...)
        train: {epochs: 2, lr: 0.01}          # edgeslim.train.TrainConfig fields
      - {type: prune, method: gradual, sparsity: 0.8, train: {epochs: 3, lr: 0.01}}
      - {type: quantize, method: qat, bits: 8, train: {epochs: 1, lr: 0.0005}}
      - {type: export, format: onnx}          # int8 QDQ for a quantized model
      - {type: measure, runtime: ort, batch_sizes: [1, 32]}

The order is checked here, before anything runs: compression after quantization is refused
(quantize last), and so is training after unstructured pruning (the zeros would grow back). File
paths are looked up as given, beside the recipe file, then under ``$EDGESLIM_DATA``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from edgeslim.config import Config
from edgeslim.distillation import METHODS as DISTILL_METHODS
from edgeslim.distillation import DistillConfig
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.pruning.configs import FilterPruning, GradualPruning, MagnitudePruning, PruningConfig
from edgeslim.quantization.configs import QAT, StaticQuant
from edgeslim.select import LayerSelection
from edgeslim.tasks.common import DataSource, ModelSource
from edgeslim.train import TrainConfig
from edgeslim.yaml_schema import Checker, Path_, describe, parse_yaml

RECIPE_VERSION = 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STEP_TYPES = ("train", "distill", "prune", "quantize", "export", "measure")
FILTER_CRITERIA = ("l1", "l2", "fpgm", "random")
PRUNE_METHODS = ("magnitude", "gradual", *FILTER_CRITERIA)
QUANT_METHODS = ("static", "qat")
EXPORT_FORMATS = ("onnx", "openvino")
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
MEASURE_RUNTIMES = ("torch", "ort", "openvino")
LAYOUTS = ("dense", "coo", "csr", "csc")

#: Why compression after quantization is refused (also what the error says).
QUANTIZE_LAST = (
    "the weights are already quantized (on the integer grid); pruning or training them moves values "
    "off that grid, and quantizing again adds a second rounding error to the first, so the result is "
    "neither the pruned nor the quantized model. Prune (and distill) first, then quantize: "
    "distill -> prune -> quantize -> export"
)
REGROW = (
    "training after unstructured pruning ({method}) lets the pruned weights grow back (the trainer "
    "does not keep the zeros); fine-tune inside the prune step instead (its 'train' block), which "
    "keeps them at zero"
)


# -- the parts of a recipe ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A model given in the recipe: a zoo name (optionally with weights) or an edgeslim checkpoint."""

    name: str | None = None
    weights: Path | None = None
    checkpoint: Path | None = None
    num_classes: int | None = None

    def source(self) -> ModelSource:
        return ModelSource(
            name=self.name, weights=self.weights, checkpoint=self.checkpoint, num_classes=self.num_classes
        )

    @property
    def file(self) -> Path | None:
        return self.checkpoint or self.weights

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weights": None if self.weights is None else str(self.weights),
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "num_classes": self.num_classes,
        }


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The dataset every step reads: train split for training/calibration, test split for accuracy."""

    path: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    seed: int = 0

    def source(self) -> DataSource:
        return DataSource(
            path=self.path,
            split="test",
            limit=self.test_limit,
            val_fraction=0.0,
            seed=self.seed,
            train_limit=self.train_limit,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _config_dict(config: Config | None) -> dict[str, Any] | None:
    return None if config is None else config.to_dict()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a recipe; ``index`` is its 1-based position, ``name`` its label in the store."""

    TYPE: ClassVar[str] = ""
    index: int
    name: str

    @property
    def type(self) -> str:
        return self.TYPE

    def params(self) -> dict[str, Any]:
        """What decides the step's result (plain data): hashed into its key, stored in its record."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "name": self.name, **self.params()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainStep(Step):
    """Train (or fine-tune) the current model with cross-entropy."""

    TYPE: ClassVar[str] = "train"
    train: TrainConfig
    augment: bool = True

    def params(self) -> dict[str, Any]:
        return {"train": self.train.to_dict(), "augment": self.augment}


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillStep(Step):
    """Train the current model (the student) from a frozen teacher."""

    TYPE: ClassVar[str] = "distill"
    teacher: ModelRef
    config: DistillConfig
    train: TrainConfig
    augment: bool = True

    def params(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher.to_dict(),
            "config": self.config.to_dict(),
            "train": self.train.to_dict(),
            "augment": self.augment,
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruneStep(Step):
    """Prune the current model (unstructured, gradual while fine-tuning, or whole filters)."""

    TYPE: ClassVar[str] = "prune"
    config: PruningConfig
    select: LayerSelection
    train: TrainConfig | None = None
    layout: str = "dense"

    @property
    def unstructured(self) -> bool:
        return isinstance(self.config, MagnitudePruning | GradualPruning)

    def params(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "select": self.select.to_dict(),
            "train": _config_dict(self.train),
            "layout": self.layout,
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizeStep(Step):
    """Quantize the current model: static PTQ or QAT; writes the packed file and a QDQ ONNX file."""

    TYPE: ClassVar[str] = "quantize"
    config: StaticQuant | QAT
    train: TrainConfig | None = None
    keep_sparsity: bool | None = None  # None (parsing only): on when an unstructured prune came before

    def params(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "train": _config_dict(self.train),
            "keep_sparsity": self.keep_sparsity,
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportStep(Step):
    """Export the current PyTorch artifact to a runtime format, parity-checked on test images."""

    TYPE: ClassVar[str] = "export"
    format: str = "onnx"
    precision: str | None = None  # None: int8 for a quantized model, else fp32
    parity_images: int = 256
    opset: int = 18

    def params(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "parity_images": self.parity_images,
            "opset": self.opset,
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeasureStep(Step):
    """Measure the current artifact: accuracy on the test split, latency, memory and file size."""

    TYPE: ClassVar[str] = "measure"
    runtime: str | None = None  # None: the runtime edgeslim picks for the artifact
    batch_sizes: tuple[int, ...] = (1, 32)
    runs: int = 30
    warmup: int = 5
    accuracy: bool = True
    memory: Literal["process", "inline"] = "process"

    def params(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "batch_sizes": list(self.batch_sizes),
            "runs": self.runs,
            "warmup": self.warmup,
            "accuracy": self.accuracy,
            "memory": self.memory,
        }


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A validated recipe: where the model and data come from, and the steps in order."""

    name: str
    model: ModelRef
    data: DataSpec
    steps: tuple[Step, ...]
    threads: int | None = None
    description: str = ""
    source: str = "<recipe>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECIPE_VERSION,
            "name": self.name,
            "description": self.description,
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "threads": self.threads,
            "steps": [s.to_dict() for s in self.steps],
            "source": self.source,
        }


# -- parsing --------------------------------------------------------------------------------------
TOP_LEVEL = ("version", "name", "description", "model", "data", "threads", "steps")
COMMON = ("type", "name")
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe file; every error names the file, line and field."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe file {str(source)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"recipe {str(source)!r} is a directory; give a .yaml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read recipe file {str(source)!r}: {exc}") from None
    return parse_recipe(text, source=str(source), base_dir=source.resolve().parent, default_name=source.stem)


def parse_recipe(
    text: str,
    *,
    source: str = "<recipe>",
    base_dir: Path | None = None,
    default_name: str | None = None,
) -> Recipe:
    """Validate recipe YAML text (schema in the module docstring).

    ``base_dir`` resolves relative file paths (the recipe file's folder); ``default_name`` is the
    experiment name when the file gives none (the file's stem).
    """
    if not text.strip():
        raise ConfigError(f"{source}: the recipe file is empty")
    data, lines = parse_yaml(text, source)
    c = Checker(lines)
    top = c.mapping(data, (), TOP_LEVEL)
    if "version" in top and top["version"] != RECIPE_VERSION:
        raise c.fail(
            ("version",), f"this edgeslim reads recipe version {RECIPE_VERSION}, not {top['version']!r}"
        )
    name = c.string(top["name"], ("name",)) if "name" in top else (default_name or "")
    if not NAME_RE.match(name):
        where: Path_ = ("name",)
        raise c.fail(
            where, f"{name!r} may use only letters, digits, '.', '_', '-' (it names the store experiment)"
        )
    description = str(top.get("description") or "")
    base = base_dir or Path.cwd()
    if "model" not in top:
        raise c.fail((), "missing required key 'model' (the starting model: {name: ZOO_NAME, weights: FILE})")
    model = _model_ref(c, top["model"], ("model",), base)
    data = _data(c, top.get("data"), base)
    threads = c.opt_integer(top.get("threads"), ("threads",), minimum=1)
    if not isinstance(top.get("steps"), list) or not top["steps"]:
        raise c.fail(("steps",), "expected a non-empty list of steps, e.g. [{type: prune, ...}]")
    steps = _check_order(c, tuple(_step(c, item, i, base) for i, item in enumerate(top["steps"])))
    return Recipe(
        name=name,
        model=model,
        data=data,
        steps=steps,
        threads=threads,
        description=description,
        source=source,
    )


def resolve_file(raw: str, base: Path) -> Path | None:
    """``raw`` as given, beside the recipe, or under ``$EDGESLIM_DATA``; None if none is a file."""
    candidate = Path(raw).expanduser()
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    options = [Path.cwd() / candidate, base / candidate]
    env = os.environ.get("EDGESLIM_DATA", "").strip()
    if env:
        options.append(Path(env).expanduser() / candidate)
    return next((p.resolve() for p in options if p.is_file()), None)


def _file(c: Checker, value: Any, path: Path_, base: Path) -> Path:
    raw = c.string(value, path)
    found = resolve_file(raw, base)
    if found is None:
        raise c.fail(
            path,
            f"no file {raw!r} (looked in the working directory, beside the recipe and under $EDGESLIM_DATA)",
        )
    return found


def _model_ref(c: Checker, value: Any, path: Path_, base: Path, *, needs_weights: bool = False) -> ModelRef:
    if isinstance(value, str):
        value = {"name": value}
    m = c.mapping(value, path, ("name", "weights", "checkpoint", "num_classes"))
    if ("name" in m) == ("checkpoint" in m):
        raise c.fail(
            path, "give either 'name' (a zoo model, optionally with 'weights') or 'checkpoint' (a file)"
        )
    num_classes = c.opt_integer(m.get("num_classes"), (*path, "num_classes"), minimum=1)
    if "checkpoint" in m:
        if "weights" in m:
            raise c.fail((*path, "weights"), "'weights' goes with 'name'; a checkpoint holds its own weights")
        return ModelRef(
            checkpoint=_file(c, m["checkpoint"], (*path, "checkpoint"), base), num_classes=num_classes
        )
    name = c.string(m["name"], (*path, "name"))
    try:
        from edgeslim.models import model_info

        model_info(name)
    except EdgeslimError as exc:
        raise c.fail((*path, "name"), str(exc)) from None
    if needs_weights and m.get("weights") is None:
        raise c.fail(path, "the teacher needs trained 'weights' (an untrained teacher has nothing to teach)")
    weights = _file(c, m["weights"], (*path, "weights"), base) if m.get("weights") is not None else None
    return ModelRef(name=name, weights=weights, num_classes=num_classes)


def _data(c: Checker, value: Any, base: Path) -> DataSpec:
    path: Path_ = ("data",)
    if value is None:
        return DataSpec()
    if isinstance(value, str):
        value = {"path": value}
    m = c.mapping(value, path, ("path", "train_limit", "test_limit", "seed"))
    data_path: str | None = None
    if m.get("path") is not None:
        data_path = c.string(m["path"], (*path, "path"))
        beside = base / data_path
        if (
            not Path(data_path).expanduser().is_absolute()
            and not Path(data_path).exists()
            and beside.exists()
        ):
            data_path = str(beside.resolve())
    return DataSpec(
        path=data_path,
        train_limit=c.opt_integer(m.get("train_limit"), (*path, "train_limit"), minimum=1),
        test_limit=c.opt_integer(m.get("test_limit"), (*path, "test_limit"), minimum=1),
        seed=c.integer(m.get("seed", 0), (*path, "seed"), minimum=0),
    )


def _required_train(c: Checker, value: Any, path: Path_) -> TrainConfig:
    config = _train(c, value, path, required=True)
    if config is None:  # _train refuses epochs 0 when required; kept for the type checker
        raise c.fail(path, "this step trains: give epochs >= 1")
    return config


def _train(c: Checker, value: Any, path: Path_, *, required: bool) -> TrainConfig | None:
    """A ``train`` block (TrainConfig fields); None when absent or ``epochs: 0`` and not required."""
    if value is None:
        if required:
            raise c.fail(path, "missing: this step trains; give at least {epochs: N}")
        return None
    m = c.mapping(value, path, TRAIN_FIELDS)
    if "epochs" not in m:
        raise c.fail(path, "missing 'epochs' (the training budget of this step)")
    epochs = c.integer(m["epochs"], (*path, "epochs"), minimum=0 if not required else 1)
    if epochs == 0:
        return None
    config: TrainConfig = c.config(TrainConfig, dict(m), path)
    return config


def _method_fields(
    c: Checker, m: dict[str, Any], path: Path_, cls: type[Config], method: str, exclude: tuple[str, ...]
) -> dict[str, Any]:
    """The step keys that are fields of ``cls``; any other left-over key is an error naming it."""
    fields = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in m.items():
        if key in exclude:
            continue
        if key not in fields:
            valid = ", ".join(sorted(fields | set(exclude)))
            raise c.fail((*path, key), f"not a field of method {method!r}; valid keys: {valid}")
        out[key] = value
    return out


def _step(c: Checker, value: Any, i: int, base: Path) -> Step:
    path: Path_ = ("steps", i)
    if not isinstance(value, dict):
        raise c.fail(path, f"expected a mapping with 'type' ({', '.join(STEP_TYPES)}), got {describe(value)}")
    if "type" not in value:
        raise c.fail(path, f"missing 'type' (one of {', '.join(STEP_TYPES)})")
    kind = c.string(value["type"], (*path, "type"))
    if kind not in STEP_TYPES:
        close = difflib.get_close_matches(kind, STEP_TYPES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise c.fail((*path, "type"), f"unknown step type {kind!r}; {hint}steps are {', '.join(STEP_TYPES)}")
    name = c.string(value["name"], (*path, "name")) if "name" in value else f"{i + 1:02d}-{kind}"
    head = {"index": i + 1, "name": name}
    parse = {
        "train": _train_step,
        "distill": _distill_step,
        "prune": _prune_step,
        "quantize": _quantize_step,
        "export": _export_step,
        "measure": _measure_step,
    }[kind]
    return parse(c, value, path, base, head)


def _train_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, head: dict[str, Any]) -> Step:
    c.mapping(m, path, (*COMMON, "train", "augment"))
    train = _required_train(c, m.get("train"), (*path, "train"))
    return TrainStep(**head, train=train, augment=c.boolean(m.get("augment", True), (*path, "augment")))


def _distill_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, head: dict[str, Any]) -> Step:
    own = (*COMMON, "teacher", "method", "train", "augment")
    method = c.choice(m.get("method", "kd"), (*path, "method"), tuple(DISTILL_METHODS))
    cls = DISTILL_METHODS[method]
    fields = _method_fields(c, m, path, cls, method, own)
    if "teacher" not in m:
        raise c.fail(path, "missing 'teacher' ({name: ZOO_NAME, weights: FILE} or {checkpoint: FILE})")
    teacher = _model_ref(c, m["teacher"], (*path, "teacher"), base, needs_weights=True)
    config = c.config(cls, fields, path)
    train = _required_train(c, m.get("train"), (*path, "train"))
    augment = c.boolean(m.get("augment", True), (*path, "augment"))
    return DistillStep(**head, teacher=teacher, config=config, train=train, augment=augment)


def _layers(c: Checker, value: Any, path: Path_) -> LayerSelection:
    if value is None:
        return LayerSelection()
    m = c.mapping(value, path, ("types", "names", "include", "exclude", "include_classifier"))
    fields: dict[str, Any] = {}
    for key, target in (
        ("types", "types"),
        ("names", "names"),
        ("include", "patterns"),
        ("exclude", "exclude"),
    ):
        if m.get(key) is not None:
            items = m[key] if isinstance(m[key], list) else [m[key]]
            fields[target] = tuple(c.string(v, (*path, key)) for v in items)
    if "include_classifier" in m:
        fields["include_classifier"] = c.boolean(m["include_classifier"], (*path, "include_classifier"))
    selection: LayerSelection = c.config(LayerSelection, fields, path)
    return selection


def _prune_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, head: dict[str, Any]) -> Step:
    if "method" not in m:
        raise c.fail(path, f"missing 'method' (one of {', '.join(PRUNE_METHODS)})")
    method = c.choice(m["method"], (*path, "method"), PRUNE_METHODS)
    own = (*COMMON, "method", "layers", "train", "format")
    fields: dict[str, Any]
    config: PruningConfig
    if method in FILTER_CRITERIA:
        if "sparsity" in m:
            raise c.fail(
                (*path, "sparsity"), f"filter pruning ({method}) takes 'ratio' (share of filters removed)"
            )
        fields = _method_fields(c, m, path, FilterPruning, method, own)
        if "ratio" not in fields:
            raise c.fail(path, "missing 'ratio' (the share of filters to remove, e.g. 0.5)")
        config = c.config(FilterPruning, {**fields, "criterion": method}, path)
    else:
        if "ratio" in m:
            raise c.fail((*path, "ratio"), f"{method} pruning takes 'sparsity' (share of weights zeroed)")
        cls: type[Config] = MagnitudePruning if method == "magnitude" else GradualPruning
        renamed = {
            ("final_sparsity" if k == "sparsity" and method == "gradual" else k): v for k, v in m.items()
        }
        if method == "gradual" and "final_sparsity" in m:
            raise c.fail((*path, "final_sparsity"), "write the target as 'sparsity'")
        fields = _method_fields(c, renamed, path, cls, method, own)
        target = "final_sparsity" if method == "gradual" else "sparsity"
        if target not in fields:
            raise c.fail(path, "missing 'sparsity' (share of weights to zero, e.g. 0.8)")
        try:
            config = cls.from_dict(fields)  # type: ignore[assignment]
        except ConfigError as exc:
            key = next((k for k in m if re.search(rf"\b{k}\b", str(exc))), "sparsity")
            raise c.fail((*path, key), str(exc)) from None
    train = _train(c, m.get("train"), (*path, "train"), required=method == "gradual")
    layout = c.choice(m.get("format", "dense"), (*path, "format"), LAYOUTS)
    select = _layers(c, m.get("layers"), (*path, "layers"))
    return PruneStep(**head, config=config, select=select, train=train, layout=layout)


def _quantize_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, head: dict[str, Any]) -> Step:
    if "method" not in m:
        raise c.fail(path, f"missing 'method' (one of {', '.join(QUANT_METHODS)})")
    if m["method"] == "dynamic":
        raise c.fail(
            (*path, "method"),
            "dynamic quantization has no int8 ONNX artifact to chain into export; use static or qat",
        )
    method = c.choice(m["method"], (*path, "method"), QUANT_METHODS)
    own = (*COMMON, "method", "bits", "train", "keep_sparsity")
    cls: type[Config] = StaticQuant if method == "static" else QAT
    fields = _method_fields(c, m, path, cls, method, own)
    bits = c.integer(m.get("bits", 8), (*path, "bits"), minimum=1)
    if method == "static":
        fields["bits"] = bits
    else:
        fields["weight_bits"] = bits
        fields.setdefault("act_bits", bits)
    fields.setdefault("scope", "all_layers")  # residual adds quantized too: what int8 runtimes run fastest
    config = c.config(cls, fields, path)
    train = _train(c, m.get("train"), (*path, "train"), required=method == "qat")
    if method == "static" and train is not None:
        raise c.fail(
            (*path, "train"), "static PTQ does not train; use method: qat to train with quantization"
        )
    keep = m.get("keep_sparsity")
    return QuantizeStep(
        **head,
        config=config,
        train=train,
        keep_sparsity=c.boolean(keep, (*path, "keep_sparsity")) if keep is not None else None,
    )


def _export_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, head: dict[str, Any]) -> Step:
    c.mapping(m, path, (*COMMON, "format", "precision", "parity_images", "opset"))
    precision = m.get("precision")
    return ExportStep(
        **head,
        format=c.choice(m.get("format", "onnx"), (*path, "format"), EXPORT_FORMATS),
        precision=None if precision is None else c.choice(precision, (*path, "precision"), EXPORT_PRECISIONS),
        parity_images=c.integer(m.get("parity_images", 256), (*path, "parity_images"), minimum=1),
        opset=c.integer(m.get("opset", 18), (*path, "opset"), minimum=17),
    )


def _measure_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, head: dict[str, Any]) -> Step:
    c.mapping(m, path, (*COMMON, "runtime", "batch_sizes", "runs", "warmup", "accuracy", "memory"))
    runtime = m.get("runtime")
    sizes = m.get("batch_sizes", [1, 32])
    if not isinstance(sizes, list) or not sizes:
        raise c.fail(
            (*path, "batch_sizes"), f"expected a non-empty list of batch sizes, got {describe(sizes)}"
        )
    batch_sizes = tuple(c.integer(b, (*path, "batch_sizes", j), minimum=1) for j, b in enumerate(sizes))
    memory = c.choice(m.get("memory", "process"), (*path, "memory"), ("process", "inline"))
    return MeasureStep(
        **head,
        runtime=None if runtime is None else c.choice(runtime, (*path, "runtime"), MEASURE_RUNTIMES),
        batch_sizes=batch_sizes,
        runs=c.integer(m.get("runs", 30), (*path, "runs"), minimum=1),
        warmup=c.integer(m.get("warmup", 5), (*path, "warmup"), minimum=0),
        accuracy=c.boolean(m.get("accuracy", True), (*path, "accuracy")),
        memory="inline" if memory == "inline" else "process",
    )


# -- order ----------------------------------------------------------------------------------------
def _check_order(c: Checker, steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """Refuse orders that cannot give a meaningful model (see QUANTIZE_LAST and REGROW); fill in
    ``keep_sparsity`` of quantize steps that did not set it (on after unstructured pruning)."""
    sparse_by = ""  # the unstructured prune step the weights' zeros come from
    quantized_by = ""  # the step that quantized the model (quantize, or an int8 export)
    exported: ExportStep | None = None
    out: list[Step] = []
    for i, step in enumerate(steps):
        path: Path_ = ("steps", i, "type")
        label = f"step {step.index} ({step.type})"
        if step.type in ("train", "distill", "prune", "quantize"):
            if quantized_by and step.type == "quantize":
                raise c.fail(
                    path, f"{label}: the model was already quantized by {quantized_by}; quantize once"
                )
            if quantized_by:
                raise c.fail(path, f"{label}: cannot {step.type} after {quantized_by}: {QUANTIZE_LAST}")
            if exported is not None:
                raise c.fail(
                    path,
                    f"{label}: step {exported.index} exported the model to a runtime file, which edgeslim "
                    f"cannot {step.type}; move this step before the export",
                )
        if step.type in ("train", "distill") and sparse_by:
            raise c.fail(path, f"{label}: " + REGROW.format(method=sparse_by))
        if isinstance(step, ExportStep) and exported is not None:
            raise c.fail(
                path, f"{label}: step {exported.index} already exported the model; add a measure step"
            )
        if isinstance(step, MeasureStep) and step.runtime is not None:
            runnable: tuple[str, ...] = ("torch",)
            if exported is not None:
                runnable = ("openvino",) if exported.format == "openvino" else ("ort", "openvino")
            if step.runtime not in runnable:
                hint = (
                    "add an export step before it (format: onnx)"
                    if exported is None
                    else f"the exported file runs on {' or '.join(runnable)}"
                )
                raise c.fail(
                    ("steps", i, "runtime"), f"{label}: runtime {step.runtime!r} cannot run it; {hint}"
                )
        if isinstance(step, PruneStep):
            if step.unstructured:
                sparse_by = f"step {step.index}, {type(step.config).__name__}"
        elif isinstance(step, QuantizeStep):
            quantized_by = label
            if step.keep_sparsity is None:
                step = dataclasses.replace(step, keep_sparsity=bool(sparse_by))
            elif step.keep_sparsity and not sparse_by:
                raise c.fail(
                    ("steps", i, "keep_sparsity"),
                    f"{label}: no magnitude or gradual prune step comes before it, so there are no zeros to keep",
                )
        elif isinstance(step, ExportStep):
            exported = step
            if step.precision == "int8" and not quantized_by:
                quantized_by = f"{label} (int8, calibrated static PTQ)"
        out.append(step)
    return tuple(out)
