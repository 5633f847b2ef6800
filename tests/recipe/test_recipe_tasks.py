"""The task changes recipes need: QAT that keeps a pruned model's zeros, refused when there are none."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeslim import tasks
from edgeslim.errors import ConfigError
from edgeslim.quantization import QAT
from edgeslim.train import TrainConfig


def test_keep_sparsity_needs_zero_weights(tiny_cifar: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keep_sparsity: the model has no zero weights"):
        tasks.quantize_task(
            tasks.ModelSource(name="small_cnn_tiny"),
            QAT(calibration_batches=1),
            out=tmp_path / "q.pt",
            data_source=tasks.DataSource(path=str(tiny_cifar), split="test", val_fraction=0.0),
            qat_training=TrainConfig(epochs=1, batch_size=32),
            keep_sparsity=True,
            num_threads=1,
            progress=False,
        )
    assert not (tmp_path / "q.pt").exists()
