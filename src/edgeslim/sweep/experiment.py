"""Experiment files: the YAML that describes a sweep, validated with errors that name field and line.

::

    name: quickstart                      # [A-Za-z0-9._-]+, the name reports and the store use
    models:                               # zoo names (see `edgeslim models`) or package.module:factory
      - name: resnet20
        weights: pretrained/resnet20-12fca82f.th   # absolute, beside this file, cwd or $EDGESLIM_DATA
      - name: vgg11_tiny
        train: {epochs: 5, lr: 0.05}      # no weights: train from scratch for N epochs first
      - name: resnet20_tiny
        init: random                      # untrained random weights: for tests and demos only
    data: {path: cifar10-exact-subset, train_limit: 2000, test_limit: null, seed: 0}
    layers: {types: [conv], include: ["*.conv1"], exclude: []}   # edgeslim.select.LayerSelection
    methods:                              # each block is a grid: lists (or {from, to, step}) expand
      - prune: {method: [l1, fpgm], ratio: [0.2, 0.4, 0.6]}
      - prune: {method: magnitude, ratio: 0.9, format: [dense, csr]}   # format: the pruned file's layout
      - quantize: {method: static, bits: 8}
    finetune: {epochs: 1, lr: 0.01, batch_size: 128}  # edgeslim.train.TrainConfig fields; epochs 0: none
    measure: {runtimes: [ort, openvino, torch], batch_sizes: [1, 32], latency_runs: 20, passes: 3}
    limits: {trial_timeout_s: 1800, trial_memory_mb: 8000}
    execution: {workers: 2, threads: 1}   # default: half the CPUs, threads = CPUs / workers
                                          # ship_files: true|false (Ray; default: on with --address)
    artifacts: runs/sweeps/quickstart    # where trial models go, relative to this file (default: beside the store)

Every model needs exactly one of ``weights`` (pretrained), ``train`` (from scratch) or
``init: random`` (explicitly untrained), so a forgotten ``weights`` line never sweeps a random
network by accident. A ``name`` of the form ``package.module:factory`` imports that module, which
runs its code (from your own files), like any Python configuration; use only files you trust.

A sweep is a grid of recipes run by the one engine (:mod:`edgeslim.engine`): per model a baseline
``[start, measure]`` and per grid point ``[start, prune|quantize, measure]``, sharing the start. Methods
come from the one registry (:mod:`edgeslim.methods`, ``edgeslim methods``-style names as in the CLI and
recipes): prune l1, l2, fpgm, random (:class:`FilterPruning`), magnitude, gradual; quantize static,
qat, dynamic; ``ratio`` is the share of filters removed or the sparsity, ``bits`` the weight width,
and any other field of the method's config may be given, as one value or a list. ``format`` (prune
only) stores the pruned model dense or as COO/CSR/CSC. ``measure`` is the recipes' measure step:
every runtime listed (``torch``, ``ort``, ``openvino``) is measured for real, accuracy included; the
first is what plots and recommendations use. Each latency is timed in ``passes`` passes (default 3)
and recorded as the median of the pass medians, flagged noisy when they differ by more than
``noise_threshold`` (default 0.10) of it.

``finetune`` (top level, or per ``methods`` block to override it) needs ``epochs`` (0: no
fine-tuning); a block's ``finetune`` is refused where none of its methods trains (static and
dynamic quantization). Relative ``weights`` are looked up beside the experiment file, then in the
working directory, then under ``$EDGESLIM_DATA``; ``artifacts`` is relative to the experiment file.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeslim import methods as registry
from edgeslim.bench.latency import DEFAULT_NOISE_THRESHOLD
from edgeslim.config import Config, short_repr
from edgeslim.data import find_or_fetch_data, is_url, url_fingerprint
from edgeslim.engine.runner import Limits
from edgeslim.engine.steps import LAYOUTS, DataSpec, MeasureStep
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.fetch import SOURCES, fetch_named_weights
from edgeslim.models import create_model, load_model_from_checkpoint, load_weights
from edgeslim.models.pretrained import has_pretrained
from edgeslim.runtimes import RUNTIME_NAMES, parse_runtime
from edgeslim.select import LayerSelection, select_layers
from edgeslim.tasks.prune import check_gradual_ramp
from edgeslim.tasks.recovery import RECOVERY_FIELDS, no_teacher_error, split_yaml_finetune
from edgeslim.train import TrainConfig
from edgeslim.yaml_schema import (
    MAX_BATCH_SIZE,
    MAX_CLASSES,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_IMAGES,
    MAX_MEMORY_MB,
    MAX_RUNS,
    MAX_THREADS,
    MAX_TIMEOUT_S,
    Checker,
    LineMap,
    Path_,
    describe,
    field_name,
    max_workers,
    parse_yaml,
)

#: Method families a sweep grid can hold (each has a step type that runs its configs).
FAMILIES = ("prune", "quantize")
NOUNS = {"prune": "pruning", "quantize": "quantization"}
#: Grid keys that set the step rather than the method: a prune step's file layout (dense or sparse).
STEP_KEYS = {"prune": "format"}
METRICS = ("top1", "params", "macs", "size", "latency", "memory")
#: Names of experiments, recipes and model labels: they name folders and store records.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # fullmatch: "a\n" and 10,000 chars refused


# -- the experiment -----------------------------------------------------------------------------
MODEL_INITS = ("random",)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model of the sweep: a zoo name with weights, trained from scratch first, or (``init:
    random``, for tests and demos) explicitly untrained."""

    label: str
    name: str
    weights: str | None = None  # resolved path
    train: dict[str, Any] | None = None  # TrainConfig fields when trained from scratch
    num_classes: int | None = None
    init: str | None = None  # "random": untrained weights, asked for explicitly
    weights_source: str | None = None  # ``weights`` as written in the file (trial keys use it)
    pretrained: bool = False  # the name's published weights, fetched (edgeslim.fetch)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MethodBlock:
    """One ``methods`` entry: a family and its parameter grid (every value a list)."""

    family: str  # "prune" | "quantize"
    grid: dict[str, list[Any]]
    finetune: dict[str, Any] | None
    path: Path_

    def combinations(self) -> Iterator[dict[str, Any]]:
        keys = list(self.grid)
        for values in itertools.product(*(self.grid[k] for k in keys)):
            yield dict(zip(keys, values, strict=True))


#: What ``measure`` in an experiment file becomes (the same step a recipe's measure step is).
MeasureSpec = MeasureStep


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A validated experiment file. :func:`edgeslim.sweep.grid.expand` turns it into trials."""

    name: str
    models: tuple[ModelEntry, ...]
    data: DataSpec
    layers: LayerSelection
    methods: tuple[MethodBlock, ...]
    finetune: dict[str, Any] | None
    measure: MeasureStep
    limits: Limits
    workers: int | None
    threads: int | None
    artifacts: str | None
    description: str
    source: str
    raw: dict[str, Any]
    lines: LineMap = dataclasses.field(compare=False, repr=False)
    #: Ray: trial inputs travel through the object store (None: only with a cluster ``--address``).
    ship_files: bool | None = None

    def where(self, path: Path_) -> str:
        return self.lines.where(path)


TOP_LEVEL = (
    "name",
    "description",
    "models",
    "data",
    "layers",
    "methods",
    "finetune",
    "measure",
    "limits",
    "execution",
    "artifacts",
)


class _Checker(Checker):
    """Experiment sections are all optional: a missing (None) mapping is empty."""

    def mapping(
        self, value: Any, path: Path_, allowed: tuple[str, ...], *, optional: bool = True
    ) -> dict[str, Any]:
        return super().mapping(value, path, allowed, optional=optional)


def load_experiment(path: str | os.PathLike[str], *, check_models: bool = True) -> Experiment:
    """Read and validate an experiment file; every error names the file, line and field."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"experiment file {str(source)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read experiment file {str(source)!r}: {exc}") from None
    return parse_experiment(
        text, source=str(source), base_dir=source.resolve().parent, check_models=check_models
    )


def parse_experiment(
    text: str, *, source: str = "<experiment>", base_dir: Path | None = None, check_models: bool = True
) -> Experiment:
    """Validate experiment YAML text (see the module docstring for the schema).

    ``base_dir`` resolves relative weight paths (the experiment file's folder); ``check_models``
    builds every model once (without weights) to check the names and the layer selection early.
    """
    data, lines = parse_yaml(text, source, document="experiment file")
    c = _Checker(lines)
    top = c.mapping(data, (), TOP_LEVEL)
    for required in ("name", "models", "data", "methods"):
        if required not in top:
            raise c.fail((), f"missing required key {required!r}")
    name = c.string(top["name"], ("name",))
    if not NAME_RE.fullmatch(name):
        raise c.fail(
            ("name",),
            f"{short_repr(name)} may use only letters, digits, '.', '_' and '-', at most 100 characters",
        )
    description = str(top.get("description") or "")
    base = base_dir or Path.cwd()

    data_spec = _data(c, top["data"])
    models = _models(c, top["models"], base)
    layers = _layers(c, top.get("layers"))
    finetune = _finetune(c, top.get("finetune"), ("finetune",))
    methods = _methods(c, top["methods"], finetune)
    measure = _measure(c, top.get("measure"))
    limits_map = c.mapping(top.get("limits"), ("limits",), ("trial_timeout_s", "trial_memory_mb"))
    limits = Limits(
        trial_timeout_s=c.opt_number(
            limits_map.get("trial_timeout_s"), ("limits", "trial_timeout_s"), maximum=MAX_TIMEOUT_S
        ),
        trial_memory_mb=c.opt_number(
            limits_map.get("trial_memory_mb"), ("limits", "trial_memory_mb"), maximum=MAX_MEMORY_MB
        ),
    )
    execution = c.mapping(top.get("execution"), ("execution",), ("workers", "threads", "ship_files"))
    workers = c.opt_integer(
        execution.get("workers"), ("execution", "workers"), minimum=1, maximum=max_workers()
    )
    threads = c.opt_integer(
        execution.get("threads"), ("execution", "threads"), minimum=1, maximum=MAX_THREADS
    )
    ship_files = execution.get("ship_files")
    if ship_files is not None:
        ship_files = c.boolean(ship_files, ("execution", "ship_files"))
    artifacts = top.get("artifacts")
    if artifacts is not None:  # like weights: relative to the experiment file, not the working directory
        artifacts = str((base / Path(c.file_path(artifacts, ("artifacts",))).expanduser()).resolve())
    experiment = Experiment(
        name=name,
        models=models,
        data=data_spec,
        layers=layers,
        methods=methods,
        finetune=finetune,
        measure=measure,
        limits=limits,
        workers=workers,
        threads=threads,
        artifacts=artifacts,
        description=description,
        source=source,
        raw=top,
        lines=lines,
        ship_files=ship_files,
    )
    if check_models:
        _check_models(c, experiment)
    return experiment


def _data(c: _Checker, value: Any) -> DataSpec:
    path: Path_ = ("data",)
    if isinstance(value, str):
        value = {"path": value}
    m = c.mapping(
        value, path, ("path", "train_limit", "test_limit", "val_fraction", "seed", "eval_split", "image_size")
    )
    if "path" not in m:
        raise c.fail(path, "missing 'path' (a CIFAR-10 pickle folder or image-folder tree)")
    raw = c.file_path(m["path"], (*path, "path"))
    try:
        if is_url(raw):  # read by each node into its own cache; here only listed (it must be there)
            url_fingerprint(raw)
            resolved = None
        else:
            resolved = find_or_fetch_data(raw)  # a missing cifar10* folder: CIFAR-10 fetched in its place
    except EdgeslimError as exc:
        raise c.fail((*path, "path"), str(exc)) from None
    if resolved is not None and not resolved.exists():
        raise c.fail(
            (*path, "path"),
            f"{raw!r} does not exist (relative paths are also looked up under $EDGESLIM_DATA)",
        )
    image_size = c.opt_integer(m.get("image_size"), (*path, "image_size"), minimum=8, maximum=MAX_IMAGE_SIZE)
    val_fraction = c.number(m.get("val_fraction", 0.0), (*path, "val_fraction"), positive=False)
    if not 0.0 <= val_fraction < 1.0:
        raise c.fail((*path, "val_fraction"), f"must be in [0, 1), got {val_fraction}")
    eval_split = c.string(m.get("eval_split", "test"), (*path, "eval_split"))
    if eval_split not in ("test", "val"):
        raise c.fail((*path, "eval_split"), f"must be test or val, got {eval_split!r}")
    if eval_split == "val" and val_fraction == 0.0:
        raise c.fail((*path, "eval_split"), "evaluating on 'val' needs data.val_fraction > 0")
    return DataSpec(
        path=raw if resolved is None else str(resolved.resolve()),
        source=raw,
        train_limit=c.opt_integer(
            m.get("train_limit"), (*path, "train_limit"), minimum=1, maximum=MAX_IMAGES
        ),
        test_limit=c.opt_integer(m.get("test_limit"), (*path, "test_limit"), minimum=1, maximum=MAX_IMAGES),
        val_fraction=val_fraction,
        seed=c.integer(m.get("seed", 0), (*path, "seed"), minimum=0),
        eval_split="val" if eval_split == "val" else "test",
        image_size=image_size,
    )


def _resolve_weights(raw: str, base: Path) -> Path | None:
    candidate = Path(raw).expanduser()
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    options = [base / candidate, Path.cwd() / candidate]
    env = os.environ.get("EDGESLIM_DATA", "").strip()
    if env:
        options.append(Path(env).expanduser() / candidate)
    found = next((p.resolve() for p in options if p.is_file()), None)
    # a published file (the quickstart's resnet20-12fca82f.th): fetched, verified, cached
    return found if found is not None else fetch_named_weights(raw)


def _models(c: _Checker, value: Any, base: Path) -> tuple[ModelEntry, ...]:
    path: Path_ = ("models",)
    if not isinstance(value, list) or not value:
        raise c.fail(path, "expected a non-empty list of models, e.g. [{name: resnet20, weights: FILE}]")
    entries: list[ModelEntry] = []
    labels: set[str] = set()
    for i, item in enumerate(value):
        where: Path_ = (*path, i)
        if isinstance(item, str):
            item = {"name": item}
        m = c.mapping(item, where, ("name", "label", "weights", "train", "init", "num_classes", "pretrained"))
        if "name" not in m:
            raise c.fail(where, "missing 'name' (a zoo model, see `edgeslim models`)")
        name = c.string(m["name"], (*where, "name"))
        label = c.string(m.get("label", name), (*where, "label" if "label" in m else "name"))
        if not NAME_RE.fullmatch(label.replace(":", "_")):
            raise c.fail(
                (*where, "label"),
                f"{short_repr(label)} may use only letters, digits, '.', '_', '-', at most 100 characters",
            )
        if label in labels:
            raise c.fail(where, f"two models are labelled {label!r}; give one a different 'label'")
        labels.add(label)
        pretrained = False
        if m.get("pretrained") is not None:
            pretrained = c.boolean(m["pretrained"], (*where, "pretrained"))
            if pretrained and not has_pretrained(name):
                known = ", ".join(n for n, s in SOURCES.items() if s.kind == "weights")
                raise c.fail(
                    (*where, "pretrained"),
                    f"{name!r} has no published weights to fetch; models with them: {known}",
                )
        given = [k for k in ("weights", "pretrained", "train", "init") if m.get(k) not in (None, False)]
        if not given:
            raise c.fail(
                where,
                f"model {name!r} has no weights: give 'weights: FILE' or 'pretrained: true' (published "
                "weights, fetched), 'train: {epochs: N}' (from scratch) or 'init: random' (untrained, "
                "for tests and demos only)",
            )
        if len(given) > 1:
            raise c.fail(
                (*where, given[1]),
                f"give only one of 'weights', 'pretrained', 'train' (from scratch) or 'init: random', "
                f"not both {given[0]!r} and {given[1]!r}",
            )
        weights: str | None = None
        weights_source: str | None = None
        if m.get("weights") is not None:
            weights_source = c.file_path(m["weights"], (*where, "weights"))
            try:
                found = _resolve_weights(weights_source, base)
            except EdgeslimError as exc:  # offline: the one-line error names the file to place
                raise c.fail((*where, "weights"), str(exc)) from None
            if found is None:
                raise c.fail(
                    (*where, "weights"),
                    f"no file {weights_source!r} (looked beside the experiment file, in the working "
                    "directory and under $EDGESLIM_DATA)",
                )
            weights = str(found)
        train = None
        if m.get("train") is not None:
            train = _finetune(c, m["train"], (*where, "train"), compresses=False)
            if train is None:
                raise c.fail((*where, "train", "epochs"), "training from scratch needs epochs >= 1")
        init: str | None = None
        if m.get("init") is not None:
            init = c.string(m["init"], (*where, "init"))
            if init not in MODEL_INITS:
                raise c.fail(
                    (*where, "init"), f"{init!r} is not one of {', '.join(MODEL_INITS)} (untrained weights)"
                )
        num_classes = c.opt_integer(
            m.get("num_classes"), (*where, "num_classes"), minimum=1, maximum=MAX_CLASSES
        )
        entries.append(
            ModelEntry(
                label=label,
                name=name,
                weights=weights,
                train=train,
                num_classes=num_classes,
                init=init,
                weights_source=weights_source,
                pretrained=pretrained,
            )
        )
    return tuple(entries)


def _layers(c: _Checker, value: Any) -> LayerSelection:
    path: Path_ = ("layers",)
    m = c.mapping(value, path, ("types", "names", "include", "patterns", "exclude", "include_classifier"))
    fields: dict[str, Any] = {}
    for key, target in (
        ("types", "types"),
        ("names", "names"),
        ("include", "patterns"),
        ("exclude", "exclude"),
    ):
        if m.get(key) is not None:
            fields[target] = c.string_list(m[key], (*path, key))
    if m.get("patterns") is not None:
        fields["patterns"] = fields.get("patterns", ()) + c.string_list(m["patterns"], (*path, "patterns"))
    if "include_classifier" in m:
        fields["include_classifier"] = m["include_classifier"]
    return c.config(LayerSelection, fields, path)


def _finetune(c: _Checker, value: Any, path: Path_, *, compresses: bool = True) -> dict[str, Any] | None:
    """TrainConfig fields plus :class:`Recovery` fields (distill, budget_minutes, ...), validated;
    None when epochs is 0 (no fine-tuning).

    ``epochs`` (or ``budget_minutes``) is required: ``{lr: 0.01}`` alone would otherwise mean "no
    fine-tuning" silently. Where nothing is compressed (training from scratch) Recovery fields are
    refused: there is no uncompressed model to distill from.
    """
    if value is None:
        return None
    allowed = tuple(f.name for f in dataclasses.fields(TrainConfig)) + RECOVERY_FIELDS
    m = c.mapping(value, path, allowed)
    if not compresses:
        given = [k for k in RECOVERY_FIELDS if k in m]
        if given:
            raise c.fail((*path, given[0]), str(no_teacher_error("training from scratch")))
    m, recovery = split_yaml_finetune(c, m, path)
    epochs = m["epochs"]
    c.integer(epochs, (*path, "epochs"), minimum=0, maximum=MAX_EPOCHS)
    if "batch_size" in m:
        c.integer(m["batch_size"], (*path, "batch_size"), minimum=1, maximum=MAX_BATCH_SIZE)
    if epochs == 0:
        return None
    config = c.config(TrainConfig, dict(m), path)
    out = config.to_dict()
    out.pop("type", None)
    out.pop("version", None)
    if recovery is not None:
        rec = recovery.to_dict()
        out.update({k: v for k, v in rec.items() if k in RECOVERY_FIELDS})
    return out


def _grid_values(c: _Checker, value: Any, path: Path_) -> list[Any]:
    """A scalar, a list, or {from, to, step} (inclusive, rounded to 6 decimals)."""
    if isinstance(value, list):
        if not value:
            raise c.fail(path, "an empty list gives no trials; give at least one value")
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                raise c.fail((*path, i), f"grid values must be scalars, got {describe(item)}")
        return list(value)
    if isinstance(value, dict):
        m = c.mapping(value, path, ("from", "to", "step"))
        if set(m) != {"from", "to", "step"}:
            raise c.fail(path, "a range needs from, to and step, e.g. {from: 0.1, to: 0.8, step: 0.1}")
        start = c.number(m["from"], (*path, "from"), positive=False)
        stop = c.number(m["to"], (*path, "to"), positive=False)
        step = c.number(m["step"], (*path, "step"))
        if stop < start:
            raise c.fail((*path, "to"), f"'to' ({stop}) is below 'from' ({start})")
        span = (stop - start) / step  # inf for from: -1e308, to: 1e308
        if not math.isfinite(span) or span >= 10_000:
            shown = f"{math.floor(span) + 1:,}" if span < 1e9 else "more than 10^9"
            raise c.fail((*path, "step"), f"the range has {shown} values (at most 10,000); use a larger step")
        n = math.floor(span + 1e-9) + 1
        return [round(start + i * step, 6) for i in range(n)]
    return [value]


def _methods(c: _Checker, value: Any, finetune: dict[str, Any] | None) -> tuple[MethodBlock, ...]:
    path: Path_ = ("methods",)
    if not isinstance(value, list) or not value:
        raise c.fail(
            path, "expected a non-empty list, e.g. [{prune: {method: [l1, fpgm], ratio: [0.2, 0.5]}}]"
        )
    blocks: list[MethodBlock] = []
    for i, item in enumerate(value):
        where: Path_ = (*path, i)
        if not isinstance(item, dict) or len(item) != 1:
            raise c.fail(
                where, f"each entry is one mapping: {' or '.join(f'{{{f}: {{...}}}}' for f in FAMILIES)}"
            )
        family, params = next(iter(item.items()))
        if family not in FAMILIES:
            raise c.fail((*where, family), f"unknown method family {family!r}; use {' or '.join(FAMILIES)}")
        where = (*where, family)
        if not isinstance(params, dict) or "method" not in params:
            choices = registry.method_names(family)
            raise c.fail(where, f"needs 'method': one or a list of {', '.join(choices)}")
        params = dict(params)
        block_finetune = finetune
        override = params.pop("finetune", None)
        grid = {k: _grid_values(c, v, (*where, k)) for k, v in params.items()}
        for j, name in enumerate(grid["method"]):
            try:
                registry.method_spec(family, str(name))
            except ConfigError as exc:
                raise c.fail(
                    (*where, "method", j) if len(grid["method"]) > 1 else (*where, "method"), str(exc)
                ) from None
        if override is not None:
            trains = [m for m in grid["method"] if registry.method_spec(family, str(m)).trains]
            if not trains:
                raise c.fail(
                    (*where, "finetune"),
                    f"{' and '.join(str(m) for m in grid['method'])} {NOUNS.get(family, family)} does not train, "
                    "so this fine-tune budget would be ignored; remove it (fine-tuning applies to methods that train)",
                )
            fields = tuple(f.name for f in dataclasses.fields(TrainConfig)) + RECOVERY_FIELDS
            block_map = c.mapping(override, (*where, "finetune"), fields)
            if "epochs" not in block_map and "budget_minutes" not in block_map and finetune is None:
                raise c.fail(
                    (*where, "finetune"),
                    "missing 'epochs' (the top-level finetune gives none to inherit), e.g. {epochs: 1, lr: 0.01}",
                )
            inherited = dict(finetune or {})
            if "budget_minutes" in block_map or inherited.get("budget_minutes") is not None:
                inherited.pop("epochs", None)  # the block's budget or epochs replace the inherited one
            if "epochs" in block_map:
                inherited.pop("budget_minutes", None)
            block_finetune = _finetune(c, {**inherited, **block_map}, (*where, "finetune"))
        for j, layout in enumerate(grid.get(STEP_KEYS.get(family, ""), [])):
            if layout not in LAYOUTS:
                raise c.fail(
                    (*where, "format", j) if len(grid["format"]) > 1 else (*where, "format"),
                    f"{layout!r} is not one of {', '.join(LAYOUTS)} (the file layout of the pruned model)",
                )
        block = MethodBlock(family=family, grid=grid, finetune=block_finetune, path=where)
        for combo in block.combinations():  # build every config now: errors surface before any work
            method_config(block, combo, c)
        blocks.append(block)
    return tuple(blocks)


def method_config(block: MethodBlock, combo: dict[str, Any], checker: _Checker | None = None) -> Config:
    """The typed compression config of one grid point, from the one method registry (validated)."""
    params = dict(combo)
    method = str(params.pop("method"))
    params.pop(STEP_KEYS.get(block.family, ""), None)  # the step's own setting, not the method's
    where = block.path

    def fail(message: str, key: str | None = None) -> ConfigError:
        path = (*where, key) if key else where
        if checker is not None:
            return checker.fail(path, message)
        return ConfigError(f"{field_name(path)}: {message}")

    try:
        spec = registry.method_spec(block.family, method)
    except ConfigError as exc:
        raise fail(str(exc), "method") from None
    try:
        config = registry.method_config(block.family, method, params)
    except ConfigError as exc:
        raise fail(str(exc), registry.param_in_error(block.family, method, params, str(exc))) from None
    if spec.needs_training and block.finetune is None:
        raise fail(f"{spec.id} trains while it compresses: set finetune.epochs >= 1")
    finetune = block.finetune or {}
    if finetune and finetune.get("budget_minutes") is None:  # a budget sizes the epochs later
        try:  # a gradual ramp in epochs must end by the end of the fine-tune
            check_gradual_ramp(config, TrainConfig(epochs=int(finetune["epochs"])), None)
        except ConfigError as exc:
            key = (exc.field or "").rpartition(".")[2]
            raise fail(str(exc), key if key in params else None) from None
    return config


def trains(block: MethodBlock, method: str) -> bool:
    """Whether ``method`` of this block uses the fine-tune budget."""
    return registry.method_spec(block.family, method).trains


def _measure(c: _Checker, value: Any) -> MeasureStep:
    path: Path_ = ("measure",)
    m = c.mapping(
        value,
        path,
        (
            "metrics",
            "runtimes",
            "batch_sizes",
            "latency_runs",
            "warmup",
            "exclusive",
            "passes",
            "noise_threshold",
        ),
    )
    metrics = c.string_list(m["metrics"], (*path, "metrics"), METRICS) if "metrics" in m else METRICS
    runtimes: tuple[str, ...] = ("torch",)
    if "runtimes" in m:
        raw = m["runtimes"] if isinstance(m["runtimes"], list) else [m["runtimes"]]
        names = []
        for i, r in enumerate(raw):
            try:
                names.append(parse_runtime(r, "measure.runtimes").value)
            except ConfigError as exc:
                raise c.fail((*path, "runtimes", i), str(exc).split(": ", 1)[-1]) from None
        if not names:
            raise c.fail((*path, "runtimes"), f"give at least one of {', '.join(RUNTIME_NAMES)}")
        runtimes = tuple(names)
    sizes_raw = m.get("batch_sizes", [1, 32])
    if isinstance(sizes_raw, list):
        sizes = tuple(
            c.integer(b, (*path, "batch_sizes", i), minimum=1, maximum=MAX_BATCH_SIZE)
            for i, b in enumerate(sizes_raw)
        )
    else:
        sizes = (c.integer(sizes_raw, (*path, "batch_sizes"), minimum=1, maximum=MAX_BATCH_SIZE),)
    if not sizes:
        raise c.fail((*path, "batch_sizes"), "give at least one batch size, e.g. [1, 32]")
    try:
        return MeasureStep(
            name="measure",
            runtimes=runtimes,
            batch_sizes=sizes,
            runs=c.integer(m.get("latency_runs", 20), (*path, "latency_runs"), minimum=1, maximum=MAX_RUNS),
            warmup=c.integer(m.get("warmup", 3), (*path, "warmup"), minimum=0, maximum=MAX_RUNS),
            accuracy=True,  # accuracy is what every comparison is about
            latency="latency" in metrics,
            memory="process" if "memory" in metrics else "none",
            exclusive=c.boolean(m.get("exclusive", True), (*path, "exclusive")),
            passes=c.integer(m.get("passes", 3), (*path, "passes"), minimum=1, maximum=MAX_RUNS),
            noise_threshold=c.number(
                m.get("noise_threshold", DEFAULT_NOISE_THRESHOLD), (*path, "noise_threshold"), positive=True
            ),
        )
    except ConfigError as exc:
        raise c.fail(path, str(exc)) from None


def _check_models(c: _Checker, experiment: Experiment) -> None:
    """Build each model once (with its weights) so a wrong name, weights of another model or a layer
    rule that matches nothing fails now."""
    for i, entry in enumerate(experiment.models):
        try:  # a ``package.module:factory`` name imports that module (runs its code) here
            model = create_model(entry.name, num_classes=entry.num_classes or 10)
        except EdgeslimError as exc:
            raise c.fail(("models", i, "name"), str(exc)) from None
        if entry.weights is not None:
            try:  # weights that do not fit fail now, before a store or baseline is written
                load_weights(model, entry.weights)
            except EdgeslimError as exc:
                # without num_classes the head is sized by the data (unknown here): only a model
                # given its classes is sure to be wrong; else the baseline trial reports it
                if entry.num_classes is not None or "num_classes" not in str(exc):
                    raise c.fail(("models", i, "weights"), str(exc)) from None
        try:
            select_layers(model, experiment.layers)
        except ConfigError as exc:
            raise c.fail(("layers",), f"for model {entry.label!r}: {exc}") from None
    # a fine-tune's ``teacher`` checkpoint that does not load would fail every trial after the store
    # and the baselines are written
    blocks: list[tuple[Path_, dict[str, Any] | None]] = [(("finetune",), experiment.finetune)]
    blocks += [((*b.path, "finetune"), b.finetune) for b in experiment.methods]
    checked: set[str] = set()
    for path, finetune in blocks:
        teacher = (finetune or {}).get("teacher")
        if not teacher or str(teacher) in checked or (finetune or {}).get("distill") is False:
            continue
        checked.add(str(teacher))
        try:
            load_model_from_checkpoint(Path(teacher))
        except EdgeslimError as exc:
            where = path if experiment.lines.line((*path, "teacher")) is None else (*path, "teacher")
            raise c.fail(where, str(exc)) from None
