"""Magnitude pruning zeroes exactly the lowest-magnitude weights; masks survive training and resume."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeslim.bench.counting import count_nonzero_params
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.pruning.configs import MagnitudePruning
from edgeslim.pruning.unstructured import MaskCallback, PruningMasks, magnitude_prune, sparsity_report
from edgeslim.select import LayerSelection, select_layers
from edgeslim.train import Callback, TrainConfig, TrainState, train

ALL = LayerSelection(include_classifier=True)


def hand_model() -> nn.Sequential:
    """Two bias-free linears with hand-picked weights (ties: |-0.1| == |0.1|)."""
    model = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.5, -0.1, 0.3], [-0.2, 0.1, 0.9]]))
        model[1].weight.copy_(torch.tensor([[0.05, 2.0], [0.15, -0.4]]))
    return model


def keep(*bits: int) -> list[bool]:
    return [bool(b) for b in bits]


# -- exact selection on hand-built weights ----------------------------------------------------------


def test_layer_scope_zeroes_the_lowest_magnitudes_with_index_tie_break() -> None:
    model = hand_model()
    masks = magnitude_prune(model, MagnitudePruning(0.5, "layer"), ALL)
    # layer 0: |w| = .5 .1 .3 .2 .1 .9 -> 3 zeros: the two 0.1s and 0.2
    assert masks["0"].flatten().tolist() == keep(1, 0, 1, 0, 0, 1)
    # layer 1: |w| = .05 2 .15 .4 -> 2 zeros
    assert masks["1"].flatten().tolist() == keep(0, 1, 0, 1)
    assert model[0].weight.flatten().tolist() == pytest.approx([0.5, 0, 0.3, 0, 0, 0.9])
    assert model[1].weight.flatten().tolist() == pytest.approx([0, 2.0, 0, -0.4])
    assert masks.layer_sparsity() == {"0": 0.5, "1": 0.5}

    # 1/6 of layer 0 -> one zero; the tie between the two 0.1s goes to the lower flat index (1)
    tie = magnitude_prune(hand_model(), MagnitudePruning(1 / 6, "layer"), ["0"])
    assert tie.names() == ["0"]
    assert tie["0"].flatten().tolist() == keep(1, 0, 1, 1, 1, 1)


def test_equal_weights_prune_the_first_flat_indices() -> None:
    model = nn.Sequential(nn.Linear(5, 2, bias=False), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.fill_(-0.25)
    masks = magnitude_prune(model, MagnitudePruning(0.4, "layer"), ["0"])
    assert masks["0"].flatten().tolist() == keep(0, 0, 0, 0, 1, 1, 1, 1, 1, 1)


def test_global_scope_ranks_all_layers_together() -> None:
    model = hand_model()
    masks = magnitude_prune(model, MagnitudePruning(0.3, "global"), ALL)
    # all |w|: .05 (1:0) < .1 (0:1) = .1 (0:4) < .15 < .2 ... -> round(0.3 * 10) = 3 zeros
    assert masks["0"].flatten().tolist() == keep(1, 0, 1, 1, 0, 1)
    assert masks["1"].flatten().tolist() == keep(0, 1, 1, 1)
    assert masks.layer_sparsity() == {"0": 2 / 6, "1": 1 / 4}
    assert masks.num_pruned() == 3 and masks.sparsity() == 0.3


# -- exact counts on a real (tiny) model ----------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.77, 0.9])
def test_layer_scope_gives_every_layer_round_sparsity_numel_zeros(sparsity: float) -> None:
    model = create_model("resnet20_tiny")
    layers = select_layers(model)
    before = {n: m.weight.detach().clone() for n, m in layers.items()}
    masks = magnitude_prune(model, MagnitudePruning(sparsity, "layer"), layers)
    report = sparsity_report(model, layers)
    for row in report.layers:
        n = row["numel"]
        assert row["zeros"] == round(sparsity * n), row["name"]
        assert int((~masks[row["name"]]).sum()) == round(sparsity * n)
        w = before[row["name"]].abs().flatten()
        m = masks[row["name"]].flatten()
        if 0 < m.sum() < n:  # every pruned weight is no larger than every kept one
            assert w[~m].max() <= w[m].min()
    assert report.total["zeros"] == sum(round(sparsity * r["numel"]) for r in report.layers)
    # the classifier is not selected by default and stays dense
    assert int(torch.count_nonzero(model.linear.weight)) == model.linear.weight.numel()


@pytest.mark.parametrize("sparsity", [0.25, 0.6, 0.95])
def test_global_scope_total_is_exact(sparsity: float) -> None:
    model = create_model("resnet20_tiny")
    nonzero_before = count_nonzero_params(model)  # BN biases start at exactly zero
    layers = select_layers(model, ALL)
    originals = torch.cat([m.weight.detach().abs().flatten() for m in layers.values()])
    masks = magnitude_prune(model, MagnitudePruning(sparsity, "global"), layers)
    total = sum(m.weight.numel() for m in layers.values())
    report = sparsity_report(model, layers)
    assert report.total["numel"] == total
    assert report.total["zeros"] == masks.num_pruned() == round(sparsity * total)
    assert nonzero_before - count_nonzero_params(model) == round(sparsity * total)
    kept = torch.cat([masks[n].flatten() for n in layers])
    assert originals[~kept].max() <= originals[kept].min()
    # layers end up with different sparsities
    assert len({round(s, 6) for s in masks.layer_sparsity().values()}) > 1


def test_state_dict_keys_are_unchanged() -> None:
    model = create_model("resnet20_tiny")
    keys = list(model.state_dict())
    magnitude_prune(model, MagnitudePruning(0.5), None)
    assert list(model.state_dict()) == keys
    assert not any(k.endswith(("_orig", "_mask")) for k in keys)


def test_existing_masks_stay_pruned() -> None:
    model = hand_model()
    first = magnitude_prune(model, MagnitudePruning(0.5, "layer"), ["0"])
    with torch.no_grad():  # pruned weights grow large again (e.g. training without masks)
        model[0].weight.copy_(torch.tensor([[0.5, 9.0, 0.3], [9.0, 9.0, 0.9]]))
    grown = magnitude_prune(model, MagnitudePruning(4 / 6, "layer"), ["0"], masks=first)
    assert grown["0"].flatten().tolist() == keep(1, 0, 0, 0, 0, 1)  # + the smallest kept (0.3)
    # a lower target never un-prunes: the layer keeps its 4 zeros
    lower = magnitude_prune(model, MagnitudePruning(0.2, "layer"), ["0"], masks=grown)
    assert torch.equal(lower["0"], grown["0"])

    # global scope: earlier zeros count towards the target; layers outside the call keep their masks
    model = hand_model()
    first = magnitude_prune(model, MagnitudePruning(0.5, "layer"), ["0"])
    both = magnitude_prune(model, MagnitudePruning(0.4, "global"), ALL, masks=first)
    assert both.num_pruned() == 4
    assert both["0"].flatten().tolist() == keep(1, 0, 1, 0, 0, 1)
    assert both["1"].flatten().tolist() == keep(0, 1, 1, 1)
    only_first = magnitude_prune(model, MagnitudePruning(0.5, "layer"), ["1"], masks=first, apply=False)
    assert torch.equal(only_first["0"], first["0"])


def test_apply_false_leaves_weights_alone() -> None:
    model = hand_model()
    before = model[0].weight.detach().clone()
    magnitude_prune(model, MagnitudePruning(0.5), ALL, apply=False)
    assert torch.equal(model[0].weight, before)


# -- PruningMasks ------------------------------------------------------------------------------------


def test_masks_state_dict_round_trip_with_weights_only(tmp_path: Path) -> None:
    model = create_model("resnet20_tiny")
    masks = magnitude_prune(model, MagnitudePruning(0.6), None)
    path = tmp_path / "masks.pt"
    torch.save(masks.state_dict(), path)
    back = PruningMasks.from_state_dict(torch.load(path, weights_only=True))
    assert back.names() == masks.names()
    assert all(torch.equal(back[n], masks[n]) and back[n].dtype == torch.bool for n in masks)

    fresh = create_model("resnet20_tiny")
    back.apply(fresh)
    assert sparsity_report(fresh, list(back)).total["zeros"] == masks.num_pruned()
    from_zeros = PruningMasks.from_model(fresh, list(back))
    assert all(torch.equal(from_zeros[n], masks[n]) for n in masks)


def test_masks_reject_bad_input() -> None:
    with pytest.raises(ConfigError, match="bool tensor"):
        PruningMasks({"0": torch.ones(2, 3)})
    with pytest.raises(ConfigError, match="format"):
        PruningMasks.from_state_dict({"masks": {}})
    with pytest.raises(ConfigError, match="version"):
        PruningMasks.from_state_dict({"format": "edgeslim.masks", "version": 9, "masks": {}})
    masks = PruningMasks({"0": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ConfigError, match=r"mask shape \(3, 3\) does not fit"):
        masks.apply(hand_model())
    with pytest.raises(ConfigError, match="no layer called 'nope'"):
        PruningMasks({"nope": torch.ones(1, dtype=torch.bool)}).apply(hand_model())
    with pytest.raises(ConfigError, match="MagnitudePruning"):
        magnitude_prune(hand_model(), {"sparsity": 0.5}, ALL)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="has no weight"):
        magnitude_prune(nn.Sequential(nn.ReLU(), nn.Linear(2, 2)), MagnitudePruning(0.5), ["0"])
    with pytest.raises(ConfigError, match=r"MagnitudePruning\.sparsity"):
        MagnitudePruning(1.0)


def test_sparsity_report_rows_and_totals() -> None:
    model = hand_model()
    magnitude_prune(model, MagnitudePruning(0.3, "global"), ALL)
    report = sparsity_report(model)  # default: conv/linear layers including the classifier
    assert [r["name"] for r in report.layers] == ["0", "1"]
    assert report.layers[0] == {"name": "0", "shape": [2, 3], "numel": 6, "zeros": 2, "sparsity": 2 / 6}
    assert report.total == {"numel": 10, "zeros": 3, "sparsity": 0.3}
    assert report.rows()[-1]["name"] == "total"
    assert report.to_dict()["total"]["zeros"] == 3


# -- masks during training -------------------------------------------------------------------------------


class Loader:
    def __init__(self, n: int = 32, batch_size: int = 8) -> None:
        g = torch.Generator().manual_seed(3)
        self.x = torch.randn(n, 3, 6, 6, generator=g)
        self.y = torch.randint(0, 4, (n,), generator=g)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.x), self.batch_size):
            yield self.x[i : i + self.batch_size], self.y[i : i + self.batch_size]


def small_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 36, 4),
    )


class Crash(Callback):
    def __init__(self, at: int | None) -> None:
        self.at = at

    def on_epoch_begin(self, state: TrainState) -> None:
        if state.epoch == self.at:
            raise KeyboardInterrupt


CONFIG = TrainConfig(epochs=3, lr=0.05, momentum=0.9, weight_decay=5e-3, schedule="constant")


def assert_masked(model: nn.Module, masks: PruningMasks) -> None:
    for name in masks:
        weight = model.get_submodule(name).weight
        assert torch.all(weight[~masks[name]] == 0), name


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_mask_callback_keeps_pruned_weights_zero_while_training(optimizer: str) -> None:
    model = small_cnn()
    masks = magnitude_prune(model, MagnitudePruning(0.7, "layer"), ALL)
    start = {n: model.get_submodule(n).weight.detach().clone() for n in masks}
    result = train(
        model, Loader(), CONFIG.replace(optimizer=optimizer), callbacks=[MaskCallback(masks)], progress=False
    )
    assert_masked(model, masks)
    for row in sparsity_report(model, ALL).layers:
        assert row["zeros"] == round(0.7 * row["numel"])
    for name in masks:  # the kept weights did train
        assert not torch.equal(model.get_submodule(name).weight[masks[name]], start[name][masks[name]])
    assert result.history[-1]["sparsity"] == masks.sparsity()


class GradOnlyMask(MaskCallback):
    """Control: masks gradients but does not re-apply the masks after the step."""

    def on_after_step(self, state: TrainState) -> None:
        pass


@pytest.mark.parametrize(("callback_cls", "stays_zero"), [(MaskCallback, True), (GradOnlyMask, False)])
def test_stale_momentum_cannot_revive_pruned_weights(
    tmp_path: Path, callback_cls: type[MaskCallback], stays_zero: bool
) -> None:
    path = tmp_path / "dense.pt"
    train(small_cnn(), Loader(), CONFIG.replace(epochs=1), checkpoint_path=path, progress=False)
    model = small_cnn()
    masks = magnitude_prune(model, MagnitudePruning(0.5), ALL)
    # resuming restores the dense weights and the momentum buffers of the dense run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(
            model,
            Loader(),
            CONFIG.replace(epochs=2),
            callbacks=[callback_cls(masks)],
            checkpoint_path=path,
            resume=True,
            progress=False,
        )
    revived = sum(int(torch.count_nonzero(model.get_submodule(n).weight[~masks[n]])) for n in masks)
    assert (revived == 0) is stays_zero


def test_masks_survive_a_resume(tmp_path: Path) -> None:
    def pruned() -> tuple[nn.Module, PruningMasks]:
        model = small_cnn()
        return model, magnitude_prune(model, MagnitudePruning(0.8, "global"), ALL)

    straight, masks = pruned()
    train(straight, Loader(), CONFIG, callbacks=[MaskCallback(masks), Crash(None)], progress=False)

    path = tmp_path / "ckpt.pt"
    interrupted, masks2 = pruned()
    with pytest.raises(KeyboardInterrupt):
        train(
            interrupted,
            Loader(),
            CONFIG,
            callbacks=[MaskCallback(masks2), Crash(1)],
            checkpoint_path=path,
            progress=False,
        )
    resumed = small_cnn(seed=9)  # dense, different init: weights and masks come from the checkpoint
    callback = MaskCallback(PruningMasks.dense(resumed, ALL))
    train(
        resumed,
        Loader(),
        CONFIG,
        callbacks=[callback, Crash(None)],
        checkpoint_path=path,
        resume=True,
        progress=False,
    )
    assert all(torch.equal(callback.masks[n], masks[n]) for n in masks)
    assert_masked(resumed, masks)
    assert sparsity_report(resumed, ALL).total["zeros"] == round(0.8 * masks.numel())
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
