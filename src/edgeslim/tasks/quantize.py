"""The quantization task behind ``edgeslim quantize``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeslim.bench import (
    state_dict_size_bytes,
    threads,
)
from edgeslim.data import BatchLoader, ImageTensors
from edgeslim.errors import ConfigError
from edgeslim.export import deployed_parity, export_qdq_onnx, ort_session, run_deployed
from edgeslim.methods import HandlerTable
from edgeslim.pruning import MaskCallback, PruningMasks
from edgeslim.quantization import QAT, DynamicQuant, StaticQuant, convert, quantize, save_packed
from edgeslim.quantization.configs import QuantizationConfig
from edgeslim.quantization.dynamic import REAL_INT8_NOTE
from edgeslim.runtimes import Runtime
from edgeslim.tasks.common import DataSource, ModelSource, check_classes, fit_input, input_meta
from edgeslim.tasks.recovery import (
    Recoverer,
    Recovery,
    RecoveryRun,
    check_teacher,
    load_teacher,
    teacher_note,
)
from edgeslim.train import Callback, TrainConfig, evaluate


@dataclasses.dataclass(frozen=True)
class QuantizeOutcome:
    """What ``edgeslim quantize`` reports: simulated (fake-quant) and deployed accuracy side by side."""

    method: str
    bits: int
    act_bits: int | None
    packed_path: Path
    size_bytes: int
    size_bytes_fp32: int
    size_bytes_ideal: int  # bits x quantized params / 8 + scales + other tensors as stored
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
    recovery: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["packed_path"] = str(self.packed_path)
        data["onnx_path"] = None if self.onnx_path is None else str(self.onnx_path)
        data["notes"] = list(self.notes)
        return data


def deployed_top1(runner: Any, data: ImageTensors, batch_size: int = 256) -> float:
    """Top-1 (%) of a deployed runner (:func:`edgeslim.export.open_runner`) on ``data``."""
    correct = 0
    for x, y in BatchLoader(data, batch_size):
        correct += int((torch.from_numpy(run_deployed(runner, x.numpy())).argmax(1) == y).sum())
    return 100.0 * correct / len(data)


def _zero_mask_callback(model: nn.Module) -> Callback:
    """Keep every conv/linear weight entry that is exactly zero now at zero while training."""
    names = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear) and bool((m.weight == 0).any())
    ]
    if not names:
        raise ConfigError(
            "keep_sparsity: the model has no zero weights to keep (was it pruned with magnitude or gradual?)"
        )
    return MaskCallback(PruningMasks.from_model(model, names))


@dataclasses.dataclass
class _Deployed:
    """The real int8 artifact of a quantized model and what it measured."""

    runtime: Runtime
    top1: float
    onnx_path: Path | None = None
    onnx_size_bytes: int | None = None
    parity: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()


#: how each kind of quantized model is deployed as real int8 and measured:
#: ``fn(config, float model, fake-quantized model, out, input_size, test data, num_threads) -> _Deployed``
_DEPLOYERS: HandlerTable[Callable[..., _Deployed]] = HandlerTable("quantize deployment")
#: the weight and activation bits a config quantizes to (None: activations are quantized per batch)
_BITS: HandlerTable[Callable[[Any], tuple[int, int | None]]] = HandlerTable("quantize bits")


@_DEPLOYERS.register(StaticQuant, QAT)
def _deploy_qdq(
    config: StaticQuant | QAT,
    model: nn.Module,
    qmodel: nn.Module,
    out: Path,
    input_size: tuple[int, ...],
    test_data: ImageTensors,
    num_threads: int | None,
) -> _Deployed:
    """Static and QAT models: a QDQ ONNX file beside ``out``, evaluated in ONNX Runtime."""
    del config, model
    export = export_qdq_onnx(qmodel, out.with_suffix(".onnx"), input_size=input_size)
    session = ort_session(export.path, threads=num_threads)
    first_batch = next(iter(BatchLoader(test_data, 256)))[0]
    return _Deployed(
        runtime=Runtime.ORT,
        top1=deployed_top1(session, test_data),
        onnx_path=export.path,
        onnx_size_bytes=export.size_bytes,
        parity=deployed_parity(qmodel, session, first_batch).to_dict(),
        notes=export.notes,
    )


@_DEPLOYERS.register(DynamicQuant)
def _deploy_dynamic(
    config: DynamicQuant,
    model: nn.Module,
    qmodel: nn.Module,
    out: Path,
    input_size: tuple[int, ...],
    test_data: ImageTensors,
    num_threads: int | None,
) -> _Deployed:
    """Dynamic quantization: torch's int8 kernels on the float model."""
    del qmodel, out, input_size, num_threads
    real = quantize(model, DynamicQuant(bits=config.bits, per_channel=config.per_channel, engine="torch"))
    top1 = evaluate(real.model, BatchLoader(test_data, 256)).top1
    return _Deployed(runtime=Runtime.TORCH, top1=top1, notes=(REAL_INT8_NOTE,))


@_BITS.register(StaticQuant)
def _static_bits(config: StaticQuant) -> tuple[int, int | None]:
    return config.bits, config.act_bits or config.bits


@_BITS.register(QAT)
def _qat_bits(config: QAT) -> tuple[int, int | None]:
    return config.weight_bits, config.act_bits or config.weight_bits


@_BITS.register(DynamicQuant)
def _dynamic_bits(config: DynamicQuant) -> tuple[int, int | None]:
    return config.bits, None


def quantize_task(
    model_source: ModelSource,
    config: QuantizationConfig,
    *,
    out: Path,
    data_source: DataSource,
    qat_training: TrainConfig | None = None,
    recovery: Recovery | None = None,
    calibration_batch_size: int = 64,
    keep_sparsity: bool = False,
    num_threads: int | None = None,
    progress: bool = True,
    device: str | None = None,
) -> QuantizeOutcome:
    """Quantize (static PTQ, QAT or dynamic), save the packed low-bit file, deploy int8 and measure both.

    Static and QAT models are exported to a QDQ ONNX file beside ``out`` and evaluated in ONNX
    Runtime; dynamic quantization runs torch's int8 kernels. Accuracy of the fake-quantized model
    (``top1_simulated``) and of the deployed artifact (``top1_deployed``) use the same test images.
    ``keep_sparsity`` keeps the weights that are exactly zero (an unstructured-pruned model) at zero
    during QAT, which would otherwise let them grow back. A filter-pruned checkpoint's channel spec
    is carried into the packed file, so it rebuilds with its pruned shape. ``device`` (``auto``,
    ``cpu``, ``cuda``): where QAT and the FP32 evaluation run; calibration, conversion and the
    quantized model's evaluation stay on the CPU. Images are resized as the checkpoint records
    (or to ``data_source.image_size``).
    """
    try:
        deploy = _DEPLOYERS.get(config)
    except ConfigError:
        raise ConfigError(
            f"quantize_task takes StaticQuant, QAT or DynamicQuant, not {type(config).__name__}"
        ) from None
    if recovery is not None and not (isinstance(config, QAT) and qat_training is not None):
        raise ConfigError(
            f"distillation and a time budget apply to quantization-aware training, and "
            f"{type(config).__name__} does not train here: use QAT with quantize_task.qat_training",
            field="quantize_task.qat_training",
        )
    if isinstance(config, QAT) and qat_training is None:
        raise ConfigError(
            "quantization-aware training needs quantize_task.qat_training (a TrainConfig, epochs >= 1)",
            field="quantize_task.qat_training",
        )
    with threads(num_threads):
        test_data = data_source.load("test")
        model, spec = model_source.build(default_num_classes=test_data.num_classes)
        test_data = fit_input(test_data, spec)
        input_size = test_data.input_shape
        check_classes(model, test_data, input_size)
        fp32_bytes = state_dict_size_bytes(model)
        top1_fp32 = evaluate(model, BatchLoader(test_data, 256), device=device or "auto").top1
        train_data = fit_input(data_source.load("train"), spec)
        calibration = BatchLoader(train_data, calibration_batch_size, shuffle=True, seed=data_source.seed)
        example = torch.randn(2, *input_size)
        if isinstance(config, DynamicQuant):
            # the packed file holds the simulated form (integer codes + scales); torch's int8 kernels
            # are what it deploys on either way (``_deploy_dynamic``), so engine="torch" is honoured there
            config = dataclasses.replace(config, engine="simulated")
        result = quantize(model, config, calibration=calibration, example_inputs=example)
        run: RecoveryRun | None = None
        if isinstance(config, QAT) and qat_training is not None:
            recovery = recovery if recovery is not None else Recovery()
            teacher = load_teacher(recovery, model)  # the float model before quantization
            if teacher is not None:
                check_teacher(teacher, model, input_size)
            recoverer = Recoverer(
                recovery, train_data, qat_training, teacher=teacher, progress=progress, device=device
            )
            qat_training = recoverer.plan(result.model)
            callbacks = list(result.callbacks)
            if keep_sparsity:
                callbacks.append(_zero_mask_callback(result.model))
            recoverer.train(result.model, qat_training, callbacks=callbacks)
            run = recoverer.finish()
            convert(result.model)
            result.remeasure()
        qmodel = result.model.eval()
        top1_sim = evaluate(qmodel, BatchLoader(test_data, 256)).top1
        bits, act_bits = _BITS.get(config)(config)
        packed_meta: dict[str, Any] = {"quantization": config.to_dict()}
        channel_spec = (spec.get("meta") or {}).get("channel_spec")
        if channel_spec:
            packed_meta["channel_spec"] = channel_spec  # a filter-pruned model keeps its shape
        packed_meta.update(input_meta(test_data))  # the input size, for eval/export/bench of the file
        packed = save_packed(out, qmodel, model_spec=spec, meta=packed_meta)
        deployed = deploy(config, model, qmodel, out, input_size, test_data, num_threads)
        notes = list(deployed.notes)
        executed_bits = 8
        if bits < 8:
            notes.append(f"{bits}-bit weights are stored packed but the runtime executes them as int8")
        if run is not None and (warning := teacher_note(recovery, top1_fp32, top1_sim)):
            notes.append(warning)
        return QuantizeOutcome(
            method=type(config).__name__,
            bits=bits,
            act_bits=act_bits,
            packed_path=packed.path,
            size_bytes=packed.bytes,
            size_bytes_ideal=packed.ideal_bytes,
            size_bytes_fp32=fp32_bytes,
            onnx_path=deployed.onnx_path,
            onnx_size_bytes=deployed.onnx_size_bytes,
            top1_fp32=top1_fp32,
            top1_simulated=top1_sim,
            top1_deployed=deployed.top1,
            runtime=deployed.runtime.value,
            executed_bits=executed_bits,
            parity=deployed.parity,
            report=result.report.to_dict() if hasattr(result.report, "to_dict") else {},
            notes=tuple(notes),
            recovery=run.to_dict() if run is not None else None,
        )
