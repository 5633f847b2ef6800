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
      - {type: prune, method: gradual, ratio: 0.8, train: {epochs: 3, lr: 0.01}}
      - {type: quantize, method: qat, bits: 8, train: {epochs: 1, lr: 0.0005}}
      - {type: export, format: onnx}          # int8 QDQ for a quantized model
      - {type: measure, runtimes: [ort], batch_sizes: [1, 32]}

Steps are the engine's step types (:mod:`edgeslim.engine.steps`) and methods come from the one
registry (:mod:`edgeslim.methods`): ``method`` and its parameters mean the same as in a sweep's
``methods`` block (``ratio`` is the share of filters removed or the sparsity; ``bits`` the weight
width), so the same settings give the same records through ``edgeslim run`` and ``edgeslim sweep``.
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
from typing import Any

from edgeslim import methods as registry
from edgeslim.bench.latency import DEFAULT_NOISE_THRESHOLD
from edgeslim.config import Config, short_repr
from edgeslim.data import is_url, resolve_data_path
from edgeslim.engine.steps import (
    EXPORT_FORMATS,
    EXPORT_PRECISIONS,
    LAYOUTS,
    STEP_TYPES,
    DataSpec,
    DistillStep,
    ExportStep,
    MeasureStep,
    PruneStep,
    QuantizeStep,
    Recipe,
    StartStep,
    Step,
    TrainStep,
)
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.fetch import SOURCES, fetch_named_weights
from edgeslim.models import model_info
from edgeslim.models.pretrained import has_pretrained
from edgeslim.runtimes import parse_runtime
from edgeslim.select import LayerSelection
from edgeslim.tasks.prune import check_gradual_ramp
from edgeslim.tasks.recovery import RECOVERY_FIELDS, Recovery, no_teacher_error, split_yaml_finetune
from edgeslim.train import TrainConfig
from edgeslim.yaml_schema import (
    MAX_BATCH_SIZE,
    MAX_CLASSES,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_IMAGES,
    MAX_RUNS,
    MAX_THREADS,
    Checker,
    Path_,
    describe,
    parse_yaml,
)

RECIPE_VERSION = 1
#: Names of experiments, recipes and model labels: they name folders and store records.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # fullmatch: "a\n" and 10,000 chars refused
#: The step types a recipe file may list (the start is its ``model``).
RECIPE_STEPS = tuple(t for t in STEP_TYPES if t != "start")

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
    if not NAME_RE.fullmatch(name):
        where: Path_ = ("name",)
        raise c.fail(
            where,
            f"{short_repr(name)} may use only letters, digits, '.', '_', '-', at most 100 characters "
            "(it names the store experiment)",
        )
    description = str(top.get("description") or "")
    base = base_dir or Path.cwd()
    if "model" not in top:
        raise c.fail((), "missing required key 'model' (the starting model: {name: ZOO_NAME, weights: FILE})")
    model = _model_ref(c, top["model"], ("model",), base)
    data = _data(c, top.get("data"), base)
    threads = c.opt_integer(top.get("threads"), ("threads",), minimum=1, maximum=MAX_THREADS)
    if not isinstance(top.get("steps"), list) or not top["steps"]:
        raise c.fail(("steps",), "expected a non-empty list of steps, e.g. [{type: prune, ...}]")
    steps = tuple(_step(c, item, i, base) for i, item in enumerate(top["steps"]))
    steps = _check_order(c, steps, top["steps"])
    return Recipe(
        name=name,
        start=model,
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


def _file(c: Checker, value: Any, path: Path_, base: Path, *, fetchable: bool = False) -> Path:
    raw = c.file_path(value, path)
    found = resolve_file(raw, base)
    if found is None and fetchable:  # a published weights file (resnet20-12fca82f.th): fetched, verified
        try:
            found = fetch_named_weights(raw)
        except EdgeslimError as exc:  # offline: the one-line error names the file to place
            raise c.fail(path, str(exc)) from None
    if found is None:
        raise c.fail(
            path,
            f"no file {raw!r} (looked in the working directory, beside the recipe and under $EDGESLIM_DATA)",
        )
    return found


def _model_ref(c: Checker, value: Any, path: Path_, base: Path, *, needs_weights: bool = False) -> StartStep:
    if isinstance(value, str):
        value = {"name": value}
    keys = ("name", "weights", "checkpoint", "num_classes", "pretrained")
    m = c.mapping(value, path, (*keys, "train") if needs_weights else keys)
    if ("name" in m) == ("checkpoint" in m):
        raise c.fail(
            path, "give either 'name' (a zoo model, optionally with 'weights') or 'checkpoint' (a file)"
        )
    num_classes = c.opt_integer(m.get("num_classes"), (*path, "num_classes"), minimum=1, maximum=MAX_CLASSES)
    label = "/".join(str(p) for p in path)
    pretrained = (
        c.boolean(m["pretrained"], (*path, "pretrained")) if m.get("pretrained") is not None else False
    )
    if "checkpoint" in m:
        if "weights" in m or pretrained:
            key = "weights" if "weights" in m else "pretrained"
            raise c.fail((*path, key), f"'{key}' goes with 'name'; a checkpoint holds its own weights")
        return StartStep(
            name=label,
            checkpoint=_file(c, m["checkpoint"], (*path, "checkpoint"), base),
            num_classes=num_classes,
        )
    name = c.string(m["name"], (*path, "name"))
    try:
        model_info(name)
    except EdgeslimError as exc:
        raise c.fail((*path, "name"), str(exc)) from None
    if pretrained and m.get("weights") is not None:
        raise c.fail((*path, "pretrained"), "give either 'weights: FILE' or 'pretrained: true', not both")
    if pretrained and not has_pretrained(name):
        known = ", ".join(n for n, s in SOURCES.items() if s.kind == "weights")
        raise c.fail(
            (*path, "pretrained"), f"{name!r} has no published weights to fetch; models with them: {known}"
        )
    train = None
    if "train" in m:  # a teacher trained from scratch by the distill step (once; kept beside it)
        if m.get("weights") is not None or pretrained:
            raise c.fail(
                (*path, "train"), "give the teacher 'weights' (or 'pretrained') or 'train', not both"
            )
        train = _required_train(c, m["train"], (*path, "train"))
    if needs_weights and m.get("weights") is None and not pretrained and train is None:
        raise c.fail(
            path,
            "the teacher needs trained 'weights', 'pretrained: true' or a 'train' budget to be trained "
            "first (an untrained teacher has nothing to teach)",
        )
    weights = (
        _file(c, m["weights"], (*path, "weights"), base, fetchable=True)
        if m.get("weights") is not None
        else None
    )
    return StartStep(
        name=label, model=name, weights=weights, num_classes=num_classes, pretrained=pretrained, train=train
    )


def _data(c: Checker, value: Any, base: Path) -> DataSpec:
    path: Path_ = ("data",)
    if value is None:
        value = {}
    if isinstance(value, str):
        value = {"path": value}
    m = c.mapping(value, path, ("path", "train_limit", "test_limit", "seed", "image_size"))
    raw: str | None = None
    if m.get("path") is not None:
        raw = c.file_path(m["path"], (*path, "path"))
    written = raw or ""
    located = raw  # a URL (s3://, http(s)://...) stays one: listed when the recipe runs, then cached
    if raw is None or not is_url(raw):
        if raw is not None and not Path(raw).expanduser().is_absolute() and not Path(raw).exists():
            beside = base / raw
            if beside.exists():
                raw = str(beside.resolve())
        try:  # checked when the recipe runs (before anything is written): parsing needs no data
            resolved: Path | None = resolve_data_path(raw)
        except EdgeslimError:
            resolved = None
        located = str(resolved.resolve()) if resolved is not None else raw
    return DataSpec(
        path=located,
        source=written,
        train_limit=c.opt_integer(
            m.get("train_limit"), (*path, "train_limit"), minimum=1, maximum=MAX_IMAGES
        ),
        test_limit=c.opt_integer(m.get("test_limit"), (*path, "test_limit"), minimum=1, maximum=MAX_IMAGES),
        seed=c.integer(m.get("seed", 0), (*path, "seed"), minimum=0),
        image_size=c.opt_integer(
            m.get("image_size"), (*path, "image_size"), minimum=8, maximum=MAX_IMAGE_SIZE
        ),
    )


def _required_train(c: Checker, value: Any, path: Path_) -> TrainConfig:
    config = _train(c, value, path, required=True)
    if config is None:  # _train refuses epochs 0 when required; kept for the type checker
        raise c.fail(path, "this step trains: give epochs >= 1")
    return config


def _train(c: Checker, value: Any, path: Path_, *, required: bool) -> TrainConfig | None:
    """A ``train`` block (TrainConfig fields) of a step that compresses nothing; None when absent or
    ``epochs: 0`` and not required. Recovery fields (``distill``, ``budget_minutes``) are refused:
    there is no uncompressed model to distill from."""
    if isinstance(value, dict):
        given = [k for k in RECOVERY_FIELDS if k in value]
        if given:
            raise c.fail((*path, given[0]), str(no_teacher_error("this step")))
    config, _ = _finetune(c, value, path, required=required)
    return config


def _finetune(
    c: Checker, value: Any, path: Path_, *, required: bool
) -> tuple[TrainConfig | None, Recovery | None]:
    """A prune/quantize step's ``train`` block: TrainConfig fields plus :class:`Recovery` fields
    (``distill``, ``temperature``, ``alpha``, ``teacher``, ``augment``, ``budget_minutes``)."""
    if value is None:
        if required:
            raise c.fail(path, "missing: this step trains; give at least {epochs: N}")
        return None, None
    m = c.mapping(value, path, TRAIN_FIELDS + RECOVERY_FIELDS)
    m, recovery = split_yaml_finetune(c, m, path)
    epochs = c.integer(m["epochs"], (*path, "epochs"), minimum=0 if not required else 1, maximum=MAX_EPOCHS)
    if "batch_size" in m:
        c.integer(m["batch_size"], (*path, "batch_size"), minimum=1, maximum=MAX_BATCH_SIZE)
    if epochs == 0:
        return None, None
    config: TrainConfig = c.config(TrainConfig, dict(m), path)
    return config, recovery


def _method(c: Checker, m: dict[str, Any], path: Path_, family: str, own: tuple[str, ...]) -> Config:
    """The step's method config from the one registry: ``method`` plus every key that is not the
    step's own (``train``, ``layers`` ...) as a method parameter."""
    if "method" not in m:
        raise c.fail(path, f"missing 'method' (one of {', '.join(registry.method_names(family))})")
    method = c.string(m["method"], (*path, "method"))
    params = {k: v for k, v in m.items() if k not in own}
    try:
        registry.method_spec(family, method)
    except ConfigError as exc:
        raise c.fail((*path, "method"), str(exc)) from None
    try:
        return registry.method_config(family, method, params)
    except ConfigError as exc:
        key = registry.param_in_error(family, method, params, str(exc))
        raise c.fail((*path, key) if key else path, str(exc)) from None


def _build(c: Checker, path: Path_, make: Any, **fields: Any) -> Step:
    try:
        step: Step = make(**fields)
    except ConfigError as exc:
        raise c.fail(path, str(exc)) from None
    return step


def _step(c: Checker, value: Any, i: int, base: Path) -> Step:
    path: Path_ = ("steps", i)
    if not isinstance(value, dict):
        raise c.fail(
            path, f"expected a mapping with 'type' ({', '.join(RECIPE_STEPS)}), got {describe(value)}"
        )
    if "type" not in value:
        raise c.fail(path, f"missing 'type' (one of {', '.join(RECIPE_STEPS)})")
    kind = c.string(value["type"], (*path, "type"))
    if kind not in RECIPE_STEPS:
        close = difflib.get_close_matches(kind, RECIPE_STEPS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise c.fail(
            (*path, "type"), f"unknown step type {kind!r}; {hint}steps are {', '.join(RECIPE_STEPS)}"
        )
    name = c.string(value["name"], (*path, "name")) if "name" in value else f"{i + 1:02d}-{kind}"
    parse = {
        "train": _train_step,
        "distill": _distill_step,
        "prune": _prune_step,
        "quantize": _quantize_step,
        "export": _export_step,
        "measure": _measure_step,
    }[kind]
    return parse(c, value, path, base, name)


def _train_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, name: str) -> Step:
    c.mapping(m, path, (*COMMON, "train", "augment"))
    train = _required_train(c, m.get("train"), (*path, "train"))
    return TrainStep(name=name, train=train, augment=c.boolean(m.get("augment", True), (*path, "augment")))


def _distill_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, name: str) -> Step:
    own = (*COMMON, "teacher", "train", "augment")
    config = _method(c, {"method": "kd", **m}, path, "distill", (*own, "method"))
    if "teacher" not in m:
        raise c.fail(
            path,
            "missing 'teacher' ({name: ZOO_NAME, weights: FILE}, {name: ZOO_NAME, train: {...}} or {checkpoint: FILE})",
        )
    teacher = _model_ref(c, m["teacher"], (*path, "teacher"), base, needs_weights=True)
    train = _required_train(c, m.get("train"), (*path, "train"))
    augment = c.boolean(m.get("augment", True), (*path, "augment"))
    return DistillStep(name=name, teacher=teacher, config=config, train=train, augment=augment)


def _layers(c: Checker, value: Any, path: Path_) -> LayerSelection:
    if value is None:
        return LayerSelection()
    m = c.mapping(value, path, ("types", "names", "include", "patterns", "exclude", "include_classifier"))
    fields: dict[str, Any] = {}
    for key, target in (
        ("types", "types"),
        ("names", "names"),
        ("include", "patterns"),
        ("patterns", "patterns"),
        ("exclude", "exclude"),
    ):
        if m.get(key) is not None:
            items = m[key] if isinstance(m[key], list) else [m[key]]
            fields[target] = fields.get(target, ()) + tuple(c.string(v, (*path, key)) for v in items)
    if "include_classifier" in m:
        fields["include_classifier"] = c.boolean(m["include_classifier"], (*path, "include_classifier"))
    selection: LayerSelection = c.config(LayerSelection, fields, path)
    return selection


def _prune_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, name: str) -> Step:
    own = (*COMMON, "method", "layers", "train", "format")
    config = _method(c, m, path, "prune", own)
    spec = registry.method_of(config)
    train, recovery = _finetune(c, m.get("train"), (*path, "train"), required=spec.needs_training)
    try:  # a gradual ramp in epochs must end by the end of the step's fine-tune
        check_gradual_ramp(config, train, recovery)
    except ConfigError as exc:
        key = (exc.field or "").rpartition(".")[2]
        raise c.fail((*path, key) if key in m else path, str(exc)) from None
    layout = c.choice(m.get("format", "dense"), (*path, "format"), LAYOUTS)
    select = _layers(c, m.get("layers"), (*path, "layers"))
    return _build(
        c,
        path,
        PruneStep,
        name=name,
        config=config,
        select=select,
        train=train,
        layout=layout,
        recovery=recovery,
    )


def _quantize_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, name: str) -> Step:
    own = (*COMMON, "method", "train", "keep_sparsity")
    config = _method(c, m, path, "quantize", own)
    spec = registry.method_of(config)
    train, recovery = _finetune(c, m.get("train"), (*path, "train"), required=spec.needs_training)
    if train is not None and not spec.trains:
        raise c.fail(
            (*path, "train"), f"{spec.id} does not train; use method: qat to train with quantization"
        )
    keep = m.get("keep_sparsity")  # when not given, the order check turns it on after unstructured pruning
    return _build(
        c,
        path,
        QuantizeStep,
        name=name,
        config=config,
        train=train,
        keep_sparsity=c.boolean(keep, (*path, "keep_sparsity")) if keep is not None else False,
        recovery=recovery,
    )


def _export_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, name: str) -> Step:
    c.mapping(m, path, (*COMMON, "format", "precision", "parity_images", "opset"))
    precision = m.get("precision")
    return ExportStep(
        name=name,
        format=c.choice(m.get("format", "onnx"), (*path, "format"), EXPORT_FORMATS),
        precision=None if precision is None else c.choice(precision, (*path, "precision"), EXPORT_PRECISIONS),
        parity_images=c.integer(
            m.get("parity_images", 256), (*path, "parity_images"), minimum=1, maximum=MAX_IMAGES
        ),
        opset=c.integer(m.get("opset", 18), (*path, "opset"), minimum=17),
    )


def _measure_step(c: Checker, m: dict[str, Any], path: Path_, base: Path, name: str) -> Step:
    c.mapping(
        m,
        path,
        (
            *COMMON,
            "runtime",
            "runtimes",
            "batch_sizes",
            "runs",
            "warmup",
            "accuracy",
            "latency",
            "memory",
            "exclusive",
            "passes",
            "noise_threshold",
        ),
    )
    if "runtime" in m and "runtimes" in m:
        raise c.fail((*path, "runtime"), "give 'runtimes' (a list) or 'runtime', not both")
    raw = m.get("runtimes", [] if m.get("runtime") is None else [m["runtime"]])
    items = raw if isinstance(raw, list) else [raw]
    key = "runtimes" if "runtimes" in m else "runtime"
    runtimes = []
    for j, r in enumerate(items):
        try:
            runtimes.append(parse_runtime(r, f"measure.{key}").value)
        except ConfigError as exc:
            raise c.fail(
                (*path, key) if key == "runtime" else (*path, key, j), str(exc).split(": ", 1)[-1]
            ) from None
    sizes = m.get("batch_sizes", [1, 32])
    if not isinstance(sizes, list) or not sizes:
        raise c.fail(
            (*path, "batch_sizes"), f"expected a non-empty list of batch sizes, got {describe(sizes)}"
        )
    batch_sizes = tuple(
        c.integer(b, (*path, "batch_sizes", j), minimum=1, maximum=MAX_BATCH_SIZE)
        for j, b in enumerate(sizes)
    )
    memory = c.choice(m.get("memory", "process"), (*path, "memory"), ("process", "inline", "none"))
    return _build(
        c,
        path,
        MeasureStep,
        name=name,
        runtimes=tuple(runtimes),
        batch_sizes=batch_sizes,
        runs=c.integer(m.get("runs", 20), (*path, "runs"), minimum=1, maximum=MAX_RUNS),
        warmup=c.integer(m.get("warmup", 3), (*path, "warmup"), minimum=0, maximum=MAX_RUNS),
        accuracy=c.boolean(m.get("accuracy", True), (*path, "accuracy")),
        latency=c.boolean(m.get("latency", True), (*path, "latency")),
        memory=memory,
        exclusive=c.boolean(m.get("exclusive", True), (*path, "exclusive")),
        passes=c.integer(m.get("passes", 3), (*path, "passes"), minimum=1, maximum=MAX_RUNS),
        noise_threshold=c.number(
            m.get("noise_threshold", DEFAULT_NOISE_THRESHOLD), (*path, "noise_threshold"), positive=True
        ),
    )


# -- order ----------------------------------------------------------------------------------------
def _check_order(c: Checker, steps: tuple[Step, ...], written: list[dict[str, Any]]) -> tuple[Step, ...]:
    """Refuse orders that cannot give a meaningful model (see QUANTIZE_LAST and REGROW); turn on
    ``keep_sparsity`` of quantize steps that did not set it when an unstructured prune came before."""
    sparse_by = ""  # the unstructured prune step the weights' zeros come from
    quantized_by = ""  # the step that quantized the model (quantize, or an int8 export)
    exported: tuple[int, ExportStep] | None = None
    out: list[Step] = []
    for i, step in enumerate(steps):
        path: Path_ = ("steps", i, "type")
        label = f"step {i + 1} ({step.type})"
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
                    f"{label}: step {exported[0]} exported the model to a runtime file, which edgeslim "
                    f"cannot {step.type}; move this step before the export",
                )
        if step.type in ("train", "distill") and sparse_by:
            raise c.fail(path, f"{label}: " + REGROW.format(method=sparse_by))
        if isinstance(step, ExportStep) and exported is not None:
            raise c.fail(path, f"{label}: step {exported[0]} already exported the model; add a measure step")
        if isinstance(step, MeasureStep) and exported is not None:
            runnable = ("openvino",) if exported[1].format == "openvino" else ("ort", "openvino")
            for runtime in step.runtimes:
                if runtime not in runnable:
                    raise c.fail(
                        ("steps", i, "runtimes" if "runtimes" in written[i] else "runtime"),
                        f"{label}: runtime {runtime!r} cannot run the exported file; it runs on "
                        f"{' or '.join(runnable)}",
                    )
        if isinstance(step, PruneStep):
            if step.unstructured:
                sparse_by = f"step {i + 1}, {type(step.config).__name__}"
        elif isinstance(step, QuantizeStep):
            quantized_by = label
            if "keep_sparsity" not in written[i]:
                step = dataclasses.replace(step, keep_sparsity=bool(sparse_by))
            elif step.keep_sparsity and not sparse_by:
                raise c.fail(
                    ("steps", i, "keep_sparsity"),
                    f"{label}: no magnitude or gradual prune step comes before it, so there are no zeros to keep",
                )
        elif isinstance(step, ExportStep):
            exported = (i + 1, step)
            if step.precision == "int8" and not quantized_by:
                quantized_by = f"{label} (int8, calibrated static PTQ)"
        out.append(step)
    return tuple(out)
