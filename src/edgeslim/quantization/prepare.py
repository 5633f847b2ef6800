"""Insert fake quantization into a float model, calibrate it, and convert it for export.

* :func:`prepare`: (fold BN), swap selected Conv2d/Linear for :class:`QuantConv2d`/:class:`QuantLinear`
  and, for ``scope="all_layers"``, insert :class:`OutputQuant` modules into the torch.fx graph after
  the model input and every layer output (activations, pooling, residual adds, concatenations,
  products, and conv/linear/BN outputs that are not fused into a following BN or activation);
* :func:`calibrate`: run batches with observers on and quantization off, then freeze the qparams;
* :func:`prepare_qat` / :class:`QATCallback` / :func:`convert`: the QAT workflow.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
from collections.abc import Iterable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from edgeslim.errors import ConfigError, DataError
from edgeslim.quantization.configs import QAT, QConfig, QuantScope, QuantSpec
from edgeslim.quantization.fuse import find_conv_bn_pairs, fuse_pairs, set_submodule, trace
from edgeslim.quantization.modules import (
    QUANT_LAYERS,
    OutputQuant,
    QuantConv2d,
    QuantLinear,
    fake_quantizers,
)
from edgeslim.select import LayerSelection, select_layers
from edgeslim.train.callbacks import Callback, TrainState

ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.Mish,
    nn.PReLU,
    nn.Softplus,
)
POOL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_ACT_FUNCTIONS: set[Any] = {
    F.relu,
    F.relu6,
    F.gelu,
    F.silu,
    F.hardswish,
    F.hardsigmoid,
    F.leaky_relu,
    F.elu,
    F.mish,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
}
_POOL_FUNCTIONS: set[Any] = {
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    torch.max_pool2d,
    torch.avg_pool1d,
}
_BINARY_FUNCTIONS: dict[Any, str] = {
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    operator.mul: "mul",
    operator.imul: "mul",
    torch.mul: "mul",
    torch.cat: "cat",
    torch.concat: "cat",
}
_METHODS: dict[str, str] = {
    "add": "add",
    "add_": "add",
    "mul": "mul",
    "mul_": "mul",
    "relu": "act",
    "relu_": "act",
    "sigmoid": "act",
    "tanh": "act",
    "mean": "pool",
}
# outputs of these kinds are not quantized when their only consumer fuses with them (Conv-BN-ReLU)
_FUSABLE_PRODUCERS = ("conv", "linear", "bn")


def default_selection(types: tuple[str, ...] = ("conv", "linear")) -> LayerSelection:
    """Every layer of ``types`` including the classifier: quantizing the classifier to 8 bits costs
    little accuracy and every int8 runtime does it; pass a LayerSelection to keep it in float."""
    return LayerSelection(types=types, include_classifier=True)


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare` did: the model, the folded (conv, bn) pairs and per-layer decisions."""

    model: nn.Module
    fused: list[tuple[str, str]]
    quantized: list[str]
    skipped: dict[str, str]
    output_quant: list[str]
    calibration_batches: int = 0


def prepare(
    model: nn.Module,
    layers: Iterable[str],
    *,
    weight: QuantSpec,
    activation: QuantSpec,
    scope: QuantScope = "weights_and_activations",
    fuse_bn: bool = True,
    example_inputs: Tensor | None = None,
) -> Prepared:
    """Quantize ``model`` in place (for "all_layers" the returned model is a new ``fx.GraphModule``
    that shares the submodules); ``layers`` are the qualified names of the Conv2d/Linear to swap."""
    layer_names = list(layers)
    fused: list[tuple[str, str]] = []
    if fuse_bn:
        fused = fuse_pairs(model, find_conv_bn_pairs(model))
    output_quant: list[str] = []
    if scope == "all_layers":
        model, output_quant = insert_output_quantizers(model, activation, example_inputs)
        qconfig = QConfig(weight=weight, activation=None)
    else:
        qconfig = QConfig(weight=weight, activation=activation)
    quantized, skipped = swap_layers(model, layer_names, qconfig)
    return Prepared(model, fused, quantized, skipped, output_quant)


def swap_layers(model: nn.Module, names: list[str], qconfig: QConfig) -> tuple[list[str], dict[str, str]]:
    """Replace each named nn.Conv2d / nn.Linear by its quantized version, in place."""
    quantized: list[str] = []
    skipped: dict[str, str] = {}
    for name in names:
        module = model.get_submodule(name)
        new: nn.Module
        if type(module) is nn.Conv2d:
            new = QuantConv2d.from_float(module, qconfig)
        elif type(module) is nn.Linear:
            new = QuantLinear.from_float(module, qconfig)
        elif isinstance(module, QUANT_LAYERS):
            skipped[name] = "already quantized"
            continue
        else:
            skipped[name] = (
                f"{type(module).__name__} has no fake-quantized version (nn.Conv2d and nn.Linear do)"
            )
            continue
        set_submodule(model, name, new)
        quantized.append(name)
    return quantized, skipped


# -- "all_layers": output quantizers on the fx graph ---------------------------------------------


def node_kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """The kind of a graph node whose output gets an :class:`OutputQuant`, or None (shape and data
    movement ops, dropout, identity: they pass quantized values through unchanged)."""
    if node.op == "placeholder":
        return "input"
    if node.op == "call_module":
        m = modules[str(node.target)]
        if isinstance(m, nn.Conv2d | nn.Conv1d):
            return "conv"
        if isinstance(m, nn.Linear):
            return "linear"
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            return "bn"
        if isinstance(m, ACTIVATION_MODULES):
            return "act"
        if isinstance(m, POOL_MODULES):
            return "pool"
        return None
    if node.op == "call_function":
        if node.target in _ACT_FUNCTIONS:
            return "act"
        if node.target in _POOL_FUNCTIONS:
            return "pool"
        return _BINARY_FUNCTIONS.get(node.target)
    if node.op == "call_method":
        return _METHODS.get(str(node.target))
    return None


def _is_fused_into(user: fx.Node, modules: dict[str, nn.Module], producer: str) -> bool:
    kind = node_kind(user, modules)
    if kind == "act":
        return True
    return kind == "bn" and producer == "conv"


_NON_TENSOR_METHODS = {"size", "dim", "numel", "item", "tolist", "__len__", "nelement", "ndimension"}


def _tensor_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes whose value is (derived from) a floating tensor, by data flow: sizes, shapes and
    Python numbers computed from them are not, so ``x.size(1) + 1`` gets no quantizer."""
    tensors: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "call_module"):
            tensors.add(node)
        elif node.op == "get_attr":
            value: Any = gm
            for part in str(node.target).split("."):
                value = getattr(value, part, None)
            if isinstance(value, Tensor) and value.is_floating_point():
                tensors.add(node)
        elif node.op == "call_method":
            if str(node.target) not in _NON_TENSOR_METHODS and node.args and node.args[0] in tensors:
                tensors.add(node)
        elif (
            node.op == "call_function"
            and node.target is not getattr
            and any(a in tensors for a in node.all_input_nodes)
        ):
            tensors.add(node)
    return tensors


def _float_tensor(node: fx.Node, tensors: set[fx.Node]) -> bool:
    meta = node.meta.get("tensor_meta")
    if meta is not None:  # exact, from shape propagation on example inputs
        dtype = getattr(meta, "dtype", None)
        return isinstance(dtype, torch.dtype) and dtype.is_floating_point
    return node in tensors


def _source(node: fx.Node, kind: str) -> str:
    if node.op == "placeholder":
        return "input"
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    scope = ""
    if stack:
        last = list(stack.values())[-1]
        scope = str(last[0]) if isinstance(last, tuple) else ""
    return f"{scope}.{kind}" if scope else kind


def insert_output_quantizers(
    model: nn.Module, activation: QuantSpec, example_inputs: Tensor | None = None
) -> tuple[fx.GraphModule, list[str]]:
    """Trace ``model`` and put an :class:`OutputQuant` after every quantizable node's output.

    Only nodes producing floating tensors get one; that is read off the data flow, or, when
    ``example_inputs`` are given, from running them through the graph.

    Returns the new GraphModule (its submodules are ``model``'s, under the same names; the
    quantizers live under ``output_quant.<node name>``) and the quantizers' names.
    """
    gm = trace(model, "scope='all_layers'")
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):  # folded BNs (and other identities) vanish from the graph
        if node.op == "call_module" and isinstance(modules[str(node.target)], nn.Identity) and node.args:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    if example_inputs is not None:
        _propagate_shapes(gm, example_inputs)
    tensors = _tensor_nodes(gm)
    modules = dict(gm.named_modules())
    container = nn.Module()
    gm.add_module("output_quant", container)
    names: list[str] = []
    used_sources: dict[str, int] = {}
    for node in list(gm.graph.nodes):
        kind = node_kind(node, modules)
        if kind is None or not _float_tensor(node, tensors):
            continue
        users = list(node.users)
        if kind in _FUSABLE_PRODUCERS and users and all(_is_fused_into(u, modules, kind) for u in users):
            continue
        source = _source(node, kind)
        count = used_sources.get(source, 0)
        used_sources[source] = count + 1
        if count:
            source = f"{source}_{count}"
        fq = OutputQuant.for_node(activation, source=source, op=kind)
        fq.train(model.training)
        container.add_module(node.name, fq)
        target = f"output_quant.{node.name}"
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(target, (node,))
        node.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
        names.append(target)
    gm.graph.lint()
    gm.recompile()
    spec = getattr(model, "_edgeslim_spec", None)
    if spec is not None:
        gm._edgeslim_spec = spec
    gm.train(model.training)
    return gm, names


def _propagate_shapes(gm: fx.GraphModule, example_inputs: Tensor) -> None:
    """Record each node's exact output type by running ``example_inputs`` through the graph."""
    from torch.fx.passes.shape_prop import ShapeProp

    was_training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example_inputs)
    except Exception as exc:  # shape errors, dtype errors, ...: the inputs do not fit the model
        raise ConfigError(
            f"example_inputs of shape {tuple(example_inputs.shape)} do not run through the model "
            f"({type(exc).__name__}: {str(exc).strip()[:200]})"
        ) from None
    finally:
        gm.train(was_training)


# -- calibration ---------------------------------------------------------------------------------


def batch_inputs(batch: Any) -> Tensor:
    """The inputs of a calibration batch: ``(x, y)`` pairs or bare tensors."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, tuple | list) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise DataError(
        f"a calibration batch must be a tensor or an (inputs, targets) pair, got {type(batch).__name__}"
    )


def calibrate(model: nn.Module, batches: Iterable[Any], num_batches: int, *, freeze: bool = True) -> int:
    """Run up to ``num_batches`` batches in eval mode with observers on and fake quantization off,
    then (``freeze``) compute every quantizer's qparams and enable quantization. Returns the number
    of batches used."""
    quantizers = [fq for fq in fake_quantizers(model).values() if not fq.dynamic]
    for fq in quantizers:
        fq.observe, fq.enabled = True, False
    was_training = model.training
    model.eval()
    used = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if used >= num_batches:
                    break
                model(batch_inputs(batch))
                used += 1
    finally:
        model.train(was_training)
    if used == 0:
        raise DataError("calibration yielded no batches: pass an iterable of (inputs, targets) batches")
    if freeze:
        for fq in quantizers:
            fq.freeze()
    return used


# -- QAT -----------------------------------------------------------------------------------------


def qat_specs(config: QAT) -> tuple[QuantSpec, QuantSpec]:
    """(weight spec, activation spec) of a QAT config. Weights track their current range
    (moving average with constant 1) because they change every step."""
    weight = QuantSpec(
        bits=config.weight_bits,
        symmetric=config.symmetric,
        per_channel=config.per_channel,
        observer="mse" if config.weight_observer == "mse" else "moving_average",
        averaging_constant=1.0,
        learnable=config.learnable_scale,
    )
    activation = QuantSpec(
        bits=config.act_bits,
        symmetric=config.act_symmetric,
        observer=config.observer,
        percentile=config.percentile,
        averaging_constant=config.averaging_constant,
        learnable=config.learnable_scale,
    )
    return weight, activation


def prepare_qat(
    model: nn.Module,
    config: QAT,
    *,
    calibration: Iterable[Any] | None = None,
    example_inputs: Tensor | None = None,
    select: LayerSelection | None = None,
    inplace: bool = False,
) -> nn.Module:
    """A copy of ``model`` (or ``model`` itself with ``inplace``) ready for :func:`edgeslim.train.train`.

    Fake quantization and observers are both on, so every training step sees quantized weights and
    activations while the ranges follow the data. With ``calibration`` batches the ranges are first
    initialized on ``config.calibration_batches`` of them (recommended for ``learnable_scale``).
    After training, call :func:`convert`. The default layer selection includes the classifier.
    """
    if not isinstance(config, QAT):
        raise ConfigError(f"prepare_qat needs a QAT config, got {type(config).__name__}")
    return _prepare_qat(
        model, config, calibration, example_inputs, select or default_selection(), inplace
    ).model


def _prepare_qat(
    model: nn.Module,
    config: QAT,
    calibration: Iterable[Any] | None,
    example_inputs: Tensor | None,
    select: LayerSelection,
    inplace: bool,
) -> Prepared:
    layers = list(select_layers(model, select))
    if not inplace:
        model = copy.deepcopy(model)
    weight, activation = qat_specs(config)
    prepared = prepare(
        model,
        layers,
        weight=weight,
        activation=activation,
        scope=config.scope,
        fuse_bn=config.fuse_bn,
        example_inputs=example_inputs,
    )
    qmodel = prepared.model
    if calibration is not None:
        prepared.calibration_batches = calibrate(qmodel, calibration, config.calibration_batches)
    for fq in fake_quantizers(qmodel).values():
        fq.enabled = True
        fq.observe = not (fq.learnable and fq.initialized)
    qmodel.train()
    return prepared


class QATCallback(Callback):
    """Freezes BatchNorm statistics from epoch ``freeze_bn_epoch`` and observers (qparams) from
    epoch ``freeze_observer_epoch`` (0-based; None: never), re-applied at every epoch start
    because the trainer puts the whole model back in train mode."""

    def __init__(self, freeze_bn_epoch: int | None = None, freeze_observer_epoch: int | None = None) -> None:
        self.freeze_bn_epoch = freeze_bn_epoch
        self.freeze_observer_epoch = freeze_observer_epoch

    @classmethod
    def from_config(cls, config: QAT) -> QATCallback:
        return cls(config.freeze_bn_epoch, config.freeze_observer_epoch)

    def on_epoch_begin(self, state: TrainState) -> None:
        if self.freeze_bn_epoch is not None and state.epoch >= self.freeze_bn_epoch:
            for m in state.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        if self.freeze_observer_epoch is not None and state.epoch >= self.freeze_observer_epoch:
            for fq in fake_quantizers(state.model).values():
                fq.observe = False


def convert(model: nn.Module, *, fold_bn: bool = True) -> nn.Module:
    """Freeze a prepared (QAT or calibrated) model for export, in place; returns it in eval mode.

    Weight qparams are refreshed from the current weights (unless frozen), every quantizer stops
    observing and is enabled, LSQ scales become buffers, remaining Conv -> BN pairs are folded
    (``fold_bn``; exact for per-channel weights, see :func:`fold_bn_into_quant_conv`), and the
    weights are replaced by their fake-quantized values, so they lie exactly on the grid:
    ``round(w / s) + z`` are the integer codes.
    """
    for m in model.modules():
        if isinstance(m, QuantConv2d | QuantLinear):
            fq = m.weight_fake_quant
            if fq.observe and not fq.dynamic:
                fq.observer.reset()
                fq.observer(m.weight.detach())
                fq.update_qparams()
    for fq in fake_quantizers(model).values():
        fq.set_learnable(False)
        fq.freeze()
    if fold_bn:
        fuse_pairs(model, find_conv_bn_pairs(model))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, QuantConv2d | QuantLinear):
                m.weight.copy_(m.fake_quantized_weight())
    model.eval()
    return model
