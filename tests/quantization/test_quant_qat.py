"""Quantization-aware training through the real trainer, then convert: weights on the grid."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeslim.data import BatchLoader, load_dataset
from edgeslim.models import create_model
from edgeslim.quantization import (
    QAT,
    QATCallback,
    QuantConv2d,
    QuantLinear,
    convert,
    fake_quantizers,
    prepare_qat,
    quantize,
)
from edgeslim.train import TrainConfig, train


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread (no per-op sync), also when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loader(tiny_cifar: Path) -> BatchLoader:
    data = load_dataset(tiny_cifar.parent, "train", val_fraction=0.0, limit=48)
    return BatchLoader(data, 16, shuffle=True)  # 3 small steps per epoch: the cores are shared


def _assert_on_grid(model: nn.Module, max_levels: int) -> None:
    layers = [m for m in model.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    assert layers
    for m in layers:
        fq = m.weight_fake_quant
        shape = (-1,) + (1,) * (m.weight.dim() - 1)
        codes = m.weight.detach() / fq.scale.reshape(shape) + fq.zero_point.reshape(shape)
        assert torch.allclose(codes, codes.round(), atol=1e-3), "weights are not on the grid"
        assert int(codes.round().min()) >= fq.qmin and int(codes.round().max()) <= fq.qmax
        per_channel_levels = max(len(torch.unique(c.round())) for c in codes)
        assert per_channel_levels <= max_levels


def test_4bit_qat_trains_with_the_trainer_and_converts_onto_the_grid(loader: BatchLoader) -> None:
    model = create_model("resnet20_tiny")
    result = quantize(model, QAT(weight_bits=4, act_bits=4))
    qmodel = result.model
    assert qmodel.training and not any(isinstance(m, nn.BatchNorm2d) for m in qmodel.modules())  # folded
    before = qmodel.layer1[0].conv1.weight.detach().clone()
    history = train(
        qmodel,
        loader,
        TrainConfig(epochs=1, lr=0.02, weight_decay=0.0),
        callbacks=result.callbacks,
        progress=False,
    ).history
    assert math.isfinite(history[-1]["train_loss"])
    assert not torch.equal(before, qmodel.layer1[0].conv1.weight)  # training updated the folded conv
    act = qmodel.layer1[0].conv2.input_fake_quant
    assert act is not None and act.bits == 4 and (act.qmin, act.qmax) == (0, 15)

    x = next(iter(loader))[0]
    with torch.no_grad():
        y_prepared = qmodel.eval()(x)
    convert(qmodel)
    assert not qmodel.training
    assert all(not fq.observe and fq.enabled for fq in fake_quantizers(qmodel).values())
    _assert_on_grid(qmodel, 15)  # ranges from the weights: the restricted range [-7, 7]
    with torch.no_grad():
        y = qmodel(x)
    assert bool(torch.isfinite(y).all())
    torch.testing.assert_close(y, y_prepared, atol=1e-4, rtol=1e-4)  # convert does not change the function
    report = result.remeasure()
    assert report.layers[1].weight_bits == 4 and report.layers[1].act_bits == 4


def test_qat_with_lsq_unfused_bn_and_the_callback(loader: BatchLoader) -> None:
    model = create_model("resnet20_tiny")
    config = QAT(weight_bits=4, act_bits=8, fuse_bn=False, learnable_scale=True, freeze_bn_epoch=0)
    qmodel = prepare_qat(model, config, calibration=loader)
    conv = qmodel.layer1[0].conv1
    assert isinstance(conv, QuantConv2d) and isinstance(conv.weight_fake_quant.scale, nn.Parameter)
    assert conv.weight_fake_quant.initialized and not conv.weight_fake_quant.observe  # LSQ: init once
    bn = qmodel.layer1[0].bn1
    assert isinstance(bn, nn.BatchNorm2d)
    scale_before = conv.weight_fake_quant.scale.detach().clone()
    mean_before = bn.running_mean.clone()  # type: ignore[union-attr]
    callback = QATCallback.from_config(config)
    result = train(
        qmodel, loader, TrainConfig(epochs=1, lr=0.02, weight_decay=0.0), callbacks=[callback], progress=False
    )
    assert math.isfinite(result.history[-1]["train_loss"])
    assert not torch.equal(scale_before, conv.weight_fake_quant.scale.detach())  # the scale learned
    assert torch.equal(mean_before, bn.running_mean)  # BN statistics frozen from epoch 0

    x = next(iter(loader))[0]
    with torch.no_grad():
        y_prepared = qmodel.eval()(x)
    convert(qmodel)  # folds the separate BNs into the quantized convs: exact for per-channel weights
    assert not any(isinstance(m, nn.BatchNorm2d) for m in qmodel.modules())
    assert not isinstance(conv.weight_fake_quant.scale, nn.Parameter)
    _assert_on_grid(qmodel, 16)  # a learned scale may also use the code -8
    with torch.no_grad():
        torch.testing.assert_close(qmodel(x), y_prepared, atol=1e-3, rtol=1e-3)


def test_qat_callback_freezes_observers() -> None:
    model = prepare_qat(create_model("small_cnn_tiny"), QAT())
    callback = QATCallback(freeze_observer_epoch=1)

    class _State:
        def __init__(self, epoch: int) -> None:
            self.model, self.epoch = model, epoch

    callback.on_epoch_begin(_State(0))  # type: ignore[arg-type]
    assert all(fq.observe for fq in fake_quantizers(model).values())
    callback.on_epoch_begin(_State(1))  # type: ignore[arg-type]
    assert not any(fq.observe for fq in fake_quantizers(model).values())
