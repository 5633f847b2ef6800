"""High-level tasks behind the CLI commands: each takes typed arguments and returns records.

The CLI only parses options and prints; everything it does is one call here, so the same work is
available from Python and CLI tests can assert the exact arguments passed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from edgeslim.bench import (
    LatencyStats,
    Measurement,
    benchmark_torch,
    count_macs,
    count_nonzero_params,
    count_params,
    env_fingerprint,
    file_size_bytes,
    measure_latency,
    state_dict_size_bytes,
    threads,
)
from edgeslim.data import Augment, BatchLoader, ImageTensors, load_dataset, resolve_data_path
from edgeslim.errors import ConfigError, DataError
from edgeslim.models import (
    create_model,
    list_models,
    load_model_from_checkpoint,
    load_weights,
    model_info,
    model_spec,
)
from edgeslim.pruning import (
    GradualPruning,
    PruneReport,
    PruningConfig,
    SparseLayout,
    gradual_config_for_training,
    prune,
    save_pruned,
)
from edgeslim.quantization.configs import QuantizationConfig
from edgeslim.select import LayerSelection
from edgeslim.train import TrainConfig, TrainResult, evaluate, train

Split = Literal["train", "val", "test"]


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a zoo name (optionally with weights) or an edgeslim checkpoint."""

    name: str | None = None
    weights: Path | None = None
    checkpoint: Path | None = None
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.checkpoint is not None and (self.name is not None or self.weights is not None):
            raise ConfigError("give either --checkpoint FILE or --model NAME [--weights PATH], not both")
        if self.checkpoint is None and self.name is None:
            raise ConfigError(
                "no model given: pass --model NAME (see `edgeslim models`) or --checkpoint FILE"
            )

    @property
    def artifact(self) -> Path | None:
        return self.checkpoint or self.weights

    def build(self, default_num_classes: int = 10) -> tuple[nn.Module, dict[str, Any]]:
        """Return the model (eval mode) and its spec {"name", "kwargs"} for checkpoints."""
        if self.checkpoint is not None:
            model, meta = load_model_from_checkpoint(self.checkpoint)
            spec = model_spec(model) or {"name": "unknown", "kwargs": {}}
            saved_classes = spec["kwargs"].get("num_classes")
            if self.num_classes is not None and saved_classes != self.num_classes:
                raise ConfigError(
                    f"--num-classes {self.num_classes} does not match the checkpoint ({saved_classes})"
                )
            return model, {**spec, "meta": meta}
        name = str(self.name)  # set: __post_init__ requires a name or a checkpoint
        model = create_model(name, num_classes=self.num_classes or default_num_classes)
        if self.weights is not None:
            load_weights(model, self.weights)
        model.eval()
        return model, model_spec(model) or {"name": name, "kwargs": {}}


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A dataset split on disk (CIFAR-10 pickles or an image-folder tree)."""

    path: str | None = None
    split: Split = "test"
    limit: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    train_limit: int | None = None  # when set, the train split uses this instead of ``limit``

    def load(self, split: Split | None = None) -> ImageTensors:
        root = resolve_data_path(self.path)
        split = split or self.split
        limit = self.train_limit if (split == "train" and self.train_limit is not None) else self.limit
        return load_dataset(root, split, limit=limit, val_fraction=self.val_fraction, seed=self.seed)


def _check_classes(model: nn.Module, data: ImageTensors, input_size: tuple[int, ...]) -> None:
    with torch.inference_mode():
        out = model(torch.zeros(1, *input_size))
    if out.shape[-1] != data.num_classes:
        raise DataError(
            f"the model predicts {out.shape[-1]} classes but the data at {data.source!r} has "
            f"{data.num_classes}; pass --num-classes or use matching data"
        )


def evaluate_task(
    model_source: ModelSource,
    data_source: DataSource,
    *,
    batch_size: int = 256,
    num_threads: int | None = None,
    progress: bool = True,
) -> Measurement:
    """Top-1/top-5 of a model on a dataset split, with its size, parameters and MACs."""
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    with threads(num_threads):
        data = data_source.load()
        model, spec = model_source.build(default_num_classes=data.num_classes)
        input_size = tuple(data.images.shape[1:])
        _check_classes(model, data, input_size)
        loader = BatchLoader(data, batch_size)
        result = evaluate(model, loader, progress=progress)
        artifact = model_source.artifact
        notes: list[str] = []
        if artifact is not None:
            size = file_size_bytes(artifact)
        else:
            size = state_dict_size_bytes(model)
            notes.append("size_bytes is the serialized state_dict (no file given)")
        return Measurement(
            model=spec["name"],
            artifact=str(artifact) if artifact else None,
            runtime="torch",
            precision="fp32",
            simulated=False,
            params=count_params(model),
            nonzero_params=count_nonzero_params(model),
            macs=count_macs(model, (1, *input_size)),
            size_bytes=size,
            top1=result.top1,
            top5=result.top5,
            num_images=result.num_images,
            env=env_fingerprint(),
            notes=tuple(notes),
            extra={"split": data_source.split, "data": data.source, "loss": result.loss},
        )


def train_task(
    model_source: ModelSource,
    data_source: DataSource,
    config: TrainConfig,
    *,
    out: Path,
    resume: bool = False,
    validate: bool = True,
    augment: Augment | None = None,
    num_threads: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or fine-tune) a model; checkpoint to ``out`` every epoch; ``resume`` continues from it."""
    if resume and not out.is_file():
        raise ConfigError(f"--resume given but no checkpoint at {str(out)!r}; run without --resume first")
    with threads(num_threads):
        train_data = data_source.load("train")
        model, spec = model_source.build(default_num_classes=train_data.num_classes)
        _check_classes(model, train_data, tuple(train_data.images.shape[1:]))
        val_loader = None
        if validate and data_source.val_fraction > 0:
            val_loader = BatchLoader(data_source.load("val"), 512)
        loader = BatchLoader(
            train_data,
            config.batch_size,
            shuffle=True,
            augment=augment if augment is not None else Augment(),
            drop_last=True,
            seed=config.seed,
            channels_last=config.channels_last,
        )
        if len(loader) == 0:
            raise DataError(
                f"{train_data.source!r}: {len(train_data)} training images is fewer than one batch of "
                f"{config.batch_size}; lower --batch-size"
            )
        model.train()
        return train(
            model,
            loader,
            config,
            val_loader=val_loader,
            checkpoint_path=out,
            resume=resume,
            model_spec={"name": spec["name"], "kwargs": spec["kwargs"]},
            progress=progress,
        )


def bench_task(
    model_source: ModelSource,
    *,
    batch_sizes: tuple[int, ...] = (1, 32),
    input_size: tuple[int, int, int] = (3, 32, 32),
    num_threads: int | None = None,
    warmup: int = 5,
    runs: int = 30,
    channels_last: bool = False,
) -> Measurement:
    """Latency (median, p90) at each batch size, throughput, peak memory, size, params and MACs."""
    if any(b < 1 for b in batch_sizes):
        raise ConfigError("--batch-size values must be at least 1")
    if runs < 1:
        raise ConfigError("--runs must be at least 1")
    model, spec = model_source.build()
    measurement = benchmark_torch(
        model,
        input_size,
        batch_sizes=batch_sizes,
        threads=num_threads or torch.get_num_threads(),
        warmup=warmup,
        runs=runs,
        channels_last=channels_last,
    )
    artifact = model_source.artifact
    size = file_size_bytes(artifact) if artifact else state_dict_size_bytes(model)
    return dataclasses.replace(
        measurement, model=spec["name"], artifact=str(artifact) if artifact else None, size_bytes=size
    )


def list_models_task(
    *, pattern: str | None = None, include_tiny: bool = False, details: bool = False
) -> list[dict[str, Any]]:
    """The zoo as plain rows; with ``details`` each model is built to count parameters and MACs."""
    rows: list[dict[str, Any]] = []
    for name in list_models(pattern):
        info = model_info(name)
        if info.is_tiny and not include_tiny:
            continue
        row: dict[str, Any] = {
            "name": name,
            "family": info.family,
            "input_size": list(info.input_size),
            "tiny": info.is_tiny,
            "description": info.description,
        }
        if details:
            model = create_model(name)
            row["params"] = count_params(model)
            row["macs"] = count_macs(model, (1, *info.input_size))
        rows.append(row)
    if pattern and not rows:
        raise ConfigError(f"no model matches {pattern!r}; run `edgeslim models` for the list")
    return rows


@dataclasses.dataclass(frozen=True)
class PruneOutcome:
    """What ``edgeslim prune`` reports: the pruning report plus measured accuracy, size and latency."""

    report: PruneReport
    out: Path
    layout: str
    size_bytes: int
    dense_size_bytes: int
    top1_before: float | None
    top1_after: float | None
    latency_before: dict[int, LatencyStats]
    latency_after: dict[int, LatencyStats]
    finetune_epochs: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        r = self.report
        return {
            "model_out": str(self.out),
            "method": r.method,
            "config": r.config,
            "params_before": r.params_before,
            "params_after": r.params_after,
            "nonzero_params_before": r.nonzero_before,
            "nonzero_params_after": r.nonzero_after,
            "macs_before": r.macs_before,
            "macs_after": r.macs_after,
            "mac_reduction": r.mac_reduction,
            "sparsity": r.sparsity,
            "param_reduction_ratio": r.param_reduction_ratio,
            "layout": self.layout,
            "size_bytes": self.size_bytes,
            "dense_size_bytes": self.dense_size_bytes,
            "top1_before": self.top1_before,
            "top1_after": self.top1_after,
            "finetune_epochs": self.finetune_epochs,
            "latency_before_ms": {str(b): s.to_dict() for b, s in self.latency_before.items()},
            "latency_after_ms": {str(b): s.to_dict() for b, s in self.latency_after.items()},
            "layers": [c.to_dict() for c in r.layers],
            "notes": list(self.notes),
        }


def prune_task(
    model_source: ModelSource,
    config: PruningConfig,
    *,
    out: Path,
    select: LayerSelection | None = None,
    data_source: DataSource | None = None,
    finetune: TrainConfig | None = None,
    layout: SparseLayout = "dense",
    latency_batch_sizes: tuple[int, ...] = (1, 32),
    latency_runs: int = 20,
    num_threads: int | None = None,
    progress: bool = True,
) -> PruneOutcome:
    """Prune a model, optionally fine-tune it, and measure accuracy, size and latency before and after."""
    if isinstance(config, GradualPruning) and finetune is None:
        raise ConfigError("gradual pruning happens while training: give --finetune-epochs N (N >= 1)")
    if finetune is not None and data_source is None:
        raise ConfigError("fine-tuning needs training data: give --data PATH")
    with threads(num_threads):
        test_data = data_source.load("test") if data_source is not None else None
        train_data = data_source.load("train") if (data_source is not None and finetune is not None) else None
        default_classes = test_data.num_classes if test_data is not None else 10
        model, spec = model_source.build(default_num_classes=default_classes)
        input_size = tuple(test_data.images.shape[1:]) if test_data is not None else (3, 32, 32)
        if test_data is not None:
            _check_classes(model, test_data, input_size)
        example = torch.randn(1, *input_size)

        def accuracy() -> float | None:
            if test_data is None:
                return None
            return evaluate(model, BatchLoader(test_data, 256), progress=False).top1

        def latency() -> dict[int, LatencyStats]:
            model.eval()
            with torch.inference_mode():
                return {
                    b: measure_latency(model, torch.randn(b, *input_size), warmup=3, runs=latency_runs)
                    for b in latency_batch_sizes
                }

        top1_before = accuracy()
        latency_before = latency()
        if isinstance(config, GradualPruning) and finetune is not None and train_data is not None:
            steps_per_epoch = len(train_data) // finetune.batch_size
            config = gradual_config_for_training(
                config.final_sparsity,
                steps_per_epoch=steps_per_epoch,
                epochs=finetune.epochs,
                initial_sparsity=config.initial_sparsity,
                scope=config.scope,
            )
        result = prune(model, config, example_inputs=example, select=select)
        notes: list[str] = []
        if finetune is not None and train_data is not None:
            loader = BatchLoader(
                train_data,
                finetune.batch_size,
                shuffle=True,
                augment=Augment(),
                drop_last=True,
                seed=finetune.seed,
                channels_last=finetune.channels_last,
            )
            model.train()
            train(model, loader, finetune, callbacks=result.callbacks, progress=progress)
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
            result.remeasure()  # the report describes the final, fine-tuned model
        model.eval()
        top1_after = accuracy()
        latency_after = latency()
        if result.report.macs_after == result.report.macs_before and result.report.sparsity > 0:
            notes.append(
                "unstructured sparsity: dense runtimes run the same MACs, so latency does not drop; "
                "the gain is the compressed file (use --format csr) and sparse runtimes"
            )
        info = save_pruned(out, model, model_spec=spec, report=result.report, layout=layout)
        return PruneOutcome(
            report=result.report,
            out=out,
            layout=layout,
            size_bytes=info.size_bytes,
            dense_size_bytes=info.dense_size_bytes,
            top1_before=top1_before,
            top1_after=top1_after,
            latency_before=latency_before,
            latency_after=latency_after,
            finetune_epochs=finetune.epochs if finetune is not None else 0,
            notes=tuple(notes),
        )


@dataclasses.dataclass(frozen=True)
class QuantizeOutcome:
    """What ``edgeslim quantize`` reports: simulated (fake-quant) and deployed accuracy side by side."""

    method: str
    bits: int
    act_bits: int | None
    packed_path: Path
    size_bytes: int
    size_bytes_fp32: int
    onnx_path: Path | None
    onnx_size_bytes: int | None
    top1_fp32: float | None
    top1_simulated: float | None
    top1_deployed: float | None
    runtime: str
    executed_bits: int
    parity: dict[str, Any] | None
    report: dict[str, Any]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["packed_path"] = str(self.packed_path)
        data["onnx_path"] = None if self.onnx_path is None else str(self.onnx_path)
        data["notes"] = list(self.notes)
        return data


def _deployed_top1(runner: Any, data: ImageTensors, batch_size: int = 256) -> float:
    from edgeslim.quantization import run_deployed

    correct = 0
    for x, y in BatchLoader(data, batch_size):
        correct += int((torch.from_numpy(run_deployed(runner, x.numpy())).argmax(1) == y).sum())
    return 100.0 * correct / len(data)


def quantize_task(
    model_source: ModelSource,
    config: QuantizationConfig,
    *,
    out: Path,
    data_source: DataSource,
    qat_training: TrainConfig | None = None,
    calibration_batch_size: int = 64,
    num_threads: int | None = None,
    progress: bool = True,
) -> QuantizeOutcome:
    """Quantize (static PTQ, QAT or dynamic), save the packed low-bit file, deploy int8 and measure both.

    Static and QAT models are exported to a QDQ ONNX file beside ``out`` and evaluated in ONNX
    Runtime; dynamic quantization runs torch's int8 kernels. Accuracy of the fake-quantized model
    (``top1_simulated``) and of the deployed artifact (``top1_deployed``) use the same test images.
    """
    from edgeslim.export import ort_session
    from edgeslim.quantization import (
        QAT,
        DynamicQuant,
        StaticQuant,
        convert,
        deployed_parity,
        export_qdq_onnx,
        quantize,
        save_packed,
    )

    if not isinstance(config, StaticQuant | QAT | DynamicQuant):
        raise ConfigError(
            f"quantize_task takes StaticQuant, QAT or DynamicQuant, not {type(config).__name__}"
        )
    if isinstance(config, QAT) and qat_training is None:
        raise ConfigError("quantization-aware training needs --epochs N (N >= 1)")
    with threads(num_threads):
        test_data = data_source.load("test")
        model, spec = model_source.build(default_num_classes=test_data.num_classes)
        input_size = tuple(test_data.images.shape[1:])
        _check_classes(model, test_data, input_size)
        fp32_bytes = state_dict_size_bytes(model)
        top1_fp32 = evaluate(model, BatchLoader(test_data, 256)).top1
        train_data = data_source.load("train")
        calibration = BatchLoader(train_data, calibration_batch_size, shuffle=True, seed=data_source.seed)
        example = torch.randn(2, *input_size)
        result = quantize(model, config, calibration=calibration, example_inputs=example)
        if isinstance(config, QAT) and qat_training is not None:
            loader = BatchLoader(
                train_data,
                qat_training.batch_size,
                shuffle=True,
                augment=Augment(),
                drop_last=True,
                seed=qat_training.seed,
            )
            result.model.train()
            train(result.model, loader, qat_training, callbacks=result.callbacks, progress=progress)
            convert(result.model)
            result.remeasure()
        qmodel = result.model.eval()
        top1_sim = evaluate(qmodel, BatchLoader(test_data, 256)).top1
        bits = config.weight_bits if isinstance(config, QAT) else config.bits
        act_bits = None if isinstance(config, DynamicQuant) else (config.act_bits or bits)
        packed = save_packed(out, qmodel, model_spec=spec, meta={"quantization": config.to_dict()})
        notes: list[str] = []
        onnx_path = onnx_size = top1_deployed = parity = None
        executed_bits, runtime = 8, "onnxruntime"
        if isinstance(config, StaticQuant | QAT):
            export = export_qdq_onnx(qmodel, out.with_suffix(".onnx"), input_size=input_size)
            onnx_path, onnx_size = export.path, export.size_bytes
            notes.extend(export.notes)
            session = ort_session(export.path, threads=num_threads)
            top1_deployed = _deployed_top1(session, test_data)
            first_batch = next(iter(BatchLoader(test_data, 256)))[0]
            parity = deployed_parity(qmodel, session, first_batch).to_dict()
        else:
            real = quantize(
                model, DynamicQuant(bits=config.bits, per_channel=config.per_channel, engine="torch")
            )
            top1_deployed = evaluate(real.model, BatchLoader(test_data, 256)).top1
            runtime = "torch (dynamic int8 kernels)"
        if bits < 8:
            notes.append(f"{bits}-bit weights are stored packed but the runtime executes them as int8")
        return QuantizeOutcome(
            method=type(config).__name__,
            bits=bits,
            act_bits=act_bits,
            packed_path=packed.path,
            size_bytes=packed.bytes,
            size_bytes_fp32=fp32_bytes,
            onnx_path=onnx_path,
            onnx_size_bytes=onnx_size,
            top1_fp32=top1_fp32,
            top1_simulated=top1_sim,
            top1_deployed=top1_deployed,
            runtime=runtime,
            executed_bits=executed_bits,
            parity=parity,
            report=result.report.to_dict() if hasattr(result.report, "to_dict") else {},
            notes=tuple(notes),
        )
