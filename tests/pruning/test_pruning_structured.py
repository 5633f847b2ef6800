"""Filter pruning: importance criteria, coupled-channel removal, channel specs, exact channel counts."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch_pruning as tp
from torch import nn

from edgeslim.bench.counting import count_macs
from edgeslim.errors import CheckpointError, ConfigError, ModelError
from edgeslim.models import INPUT_SIZE, PadShortcut, create_model, list_models, model_info
from edgeslim.models.channels import apply_channel_spec, channel_spec
from edgeslim.pruning.configs import FilterPruning
from edgeslim.pruning.dependency import (
    ChannelGroup,
    build_dependency_graph,
    channel_groups,
    is_producer,
)
from edgeslim.pruning.importance import (
    FPGMImportance,
    L1Importance,
    L2Importance,
    RandomImportance,
    make_importance,
)
from edgeslim.pruning.structured import channels_to_keep, prune_filters
from edgeslim.select import LayerSelection, select_layers

TINY = [n for n in list_models(tiny=True) if model_info(n).is_tiny]
X1 = (1, *INPUT_SIZE)


def _inputs(n: int = 4) -> torch.Tensor:
    return torch.randn(n, *INPUT_SIZE, generator=torch.Generator().manual_seed(1))


def _tiny(name: str) -> nn.Module:
    return create_model(name).eval()


def _roundtrip(model: nn.Module, name: str) -> nn.Module:
    """Save spec + state_dict as plain data, rebuild from the registry name, load strictly."""
    buffer = io.BytesIO()
    torch.save({"spec": channel_spec(model), "state_dict": model.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = create_model(name).eval()
    apply_channel_spec(fresh, saved["spec"])
    fresh.load_state_dict(saved["state_dict"], strict=True)
    return fresh


# -- the tiny zoo --------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.3, 0.6])
@pytest.mark.parametrize("name", TINY)
def test_tiny_zoo_gets_physically_smaller(name: str, ratio: float) -> None:
    model = _tiny(name)
    x = _inputs()
    result = prune_filters(model, FilterPruning(ratio), x[:1], select_layers(model))
    y = model(x)
    assert y.shape == (4, 10)
    assert not result.skipped
    # Every conv/linear MAC term is C_in * C_out (C for depthwise) times a constant. Each pruned
    # group keeps between ceil((1-r) n) and max_g keep_g / n_g of its channels, and every MAC term
    # of these models has at least one pruned factor (the input has 3 fixed channels, the logits
    # 10), so (1-r)^2 <= MACs after / before <= the largest kept fraction of a producer layer.
    producers = {n: c for n, c in result.channels.items() if is_producer(model.get_submodule(n))}
    assert producers
    largest_kept = max(c.after / c.before for c in producers.values())
    assert largest_kept < 1
    assert (1 - ratio) ** 2 <= result.macs_ratio <= largest_kept
    assert result.macs_after == count_macs(model, X1)
    # parameters scale the same way, up to the few that no pruning touches (the logits' bias)
    assert (1 - ratio) ** 2 <= result.params_ratio < 1
    for n, c in result.channels.items():
        assert c.before - c.after == len(c.removed) > 0, n
    # the channel spec rebuilds the same network from the registry name
    assert torch.equal(_roundtrip(model, name)(x), y)


@pytest.mark.parametrize("name", TINY)
def test_tiny_zoo_global_fpgm_iterative_rounded(name: str) -> None:
    model = _tiny(name)
    x = _inputs()
    config = FilterPruning(0.5, criterion="fpgm", scope="global", round_to=2, iterative_steps=2)
    steps: list[int] = []
    result = prune_filters(model, config, x[:1], select_layers(model), finetune=lambda m, i: steps.append(i))
    assert steps == [0]
    y = model(x)
    assert y.shape == (4, 10) and torch.isfinite(y).all()
    assert result.macs_ratio < 1 and result.params_ratio < 1
    for n, c in result.channels.items():
        if is_producer(model.get_submodule(n)):
            assert c.after % 2 == 0 or c.after == c.before, n  # round_to, unless the group is left alone
    assert torch.equal(_roundtrip(model, name)(x), y)


@pytest.mark.parametrize("name", TINY)
def test_ratio_zero_is_the_identity(name: str) -> None:
    model = _tiny(name)
    x = _inputs()
    before_out, before_state = model(x), {k: v.clone() for k, v in model.state_dict().items()}
    result = prune_filters(model, FilterPruning(0.0), x[:1], select_layers(model))
    assert result.channels == {} and result.macs_ratio == 1.0 and result.params_ratio == 1.0
    assert torch.equal(model(x), before_out)
    after_state = model.state_dict()
    assert after_state.keys() == before_state.keys()
    assert all(torch.equal(after_state[k], v) for k, v in before_state.items())
    assert not model.training  # the caller's mode is kept


# -- correctness: removing exactly-dead channels must not change the outputs ---------------------


def _kill_channels(model: nn.Module, x: torch.Tensor, ratio: float) -> dict[str, list[int]]:
    """Make the channels a layer-scope prune at ``ratio`` will take exactly dead; return them.

    A channel is dead when every layer producing it outputs exactly zero: its conv/linear filters
    and biases are zero and every BN on it has zero weight and bias (BN then outputs 0 whatever
    the input, which also covers pre-activation BNs in DenseNet). ReLU/ReLU6/SiLU/GELU(0) = 0, so
    its consumers receive zeros. Through an option-A shortcut an output channel is dead only if it
    is padding or carries a dead input channel, so groups are visited in model order and shortcut
    channels that carry live inputs are never chosen. The L1 criterion then picks exactly these
    channels (their filters score 0, every other filter is random and scores > 0).
    """
    _randomize(model)
    selected = select_layers(model)
    graph = build_dependency_graph(model, x)
    groups = [g for g in channel_groups(graph, model, selected.values()) if g.problem is None]
    generator = torch.Generator().manual_seed(7)
    dead_inputs: dict[int, set[int]] = {}
    chosen_by_root: dict[str, list[int]] = {}
    with torch.no_grad():
        for group in groups:
            k = group.size - channels_to_keep(group.size, ratio)
            live = _carries_live_input(group, dead_inputs)
            candidates = [c for c in range(group.size) if c not in live]
            assert len(candidates) >= k, group.root_name
            order = torch.randperm(len(candidates), generator=generator).tolist()
            chosen = sorted(candidates[i] for i in order[:k])
            chosen_by_root[group.root_name] = chosen
            _zero(group, set(chosen), dead_inputs)
    return chosen_by_root


def _randomize(model: nn.Module) -> None:
    """Random filters (no ties, unlike airbench's dirac init) and non-trivial BN statistics."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / fan_in**0.5)
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))


def _carries_live_input(group: ChannelGroup, dead_inputs: dict[int, set[int]]) -> set[int]:
    live: set[int] = set()
    for member in group.members:
        if isinstance(member.module, PadShortcut) and member.kind == "out":
            index_map = member.module.index_map
            dead = dead_inputs.get(id(member.module), set())
            live |= {
                r
                for i, r in zip(member.idxs, member.root_idxs, strict=True)
                if index_map[i] not in dead | {-1}
            }
    return live


def _zero(group: ChannelGroup, chosen: set[int], dead_inputs: dict[int, set[int]]) -> None:
    for member in group.members:
        idxs = [i for i, r in zip(member.idxs, member.root_idxs, strict=True) if r in chosen]
        module: Any = member.module
        if isinstance(module, PadShortcut):
            if member.kind == "in":
                dead_inputs.setdefault(id(module), set()).update(idxs)
            continue
        if member.kind != "out":
            continue
        if isinstance(module, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
            if module.weight is not None:
                module.weight[idxs] = 0.0
            if module.bias is not None:
                module.bias[idxs] = 0.0


DEAD_CASES = [
    ("resnet20_tiny", 0.5),  # option-A shortcuts across all three stages
    ("resnet20_tiny", 0.3),
    ("densenet121_tiny", 0.5),  # nested concatenations, pre-activation BN
    ("googlenet_tiny", 0.5),  # four-way concatenations
    ("mobilenet_v2_tiny", 0.5),  # depthwise convs, residual adds
    ("efficientnet_b0_tiny", 0.5),  # depthwise convs, SE gates
    *[
        (n, 0.5)
        for n in TINY
        if n.split("_tiny")[0] in {"resnet18", "resnet50", "airbench", "small_cnn", "vgg11_bn"}
    ],
]


@pytest.mark.parametrize(("name", "ratio"), DEAD_CASES)
def test_pruning_dead_channels_keeps_outputs(name: str, ratio: float) -> None:
    model = _tiny(name)
    x = _inputs()
    chosen = _kill_channels(model, x[:1], ratio)
    expected = model(x)
    assert expected.abs().max() > 0
    result = prune_filters(model, FilterPruning(ratio), x[:1], select_layers(model))
    for root, channels in chosen.items():  # L1 took exactly the dead channels
        assert list(result.channels[root].removed) if channels else root not in result.channels, root
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)
    assert result.macs_ratio < 1


def test_dead_check_catches_a_wrong_shortcut_map() -> None:
    """The dead-channel check is sensitive: a shortcut map shifted by one breaks it."""
    model = _tiny("resnet20_tiny")
    x = _inputs()
    _kill_channels(model, x[:1], 0.5)
    expected = model(x)
    prune_filters(model, FilterPruning(0.5), x[:1], select_layers(model))
    shortcut = model.get_submodule("layer3.0.shortcut")
    assert isinstance(shortcut, PadShortcut)
    good = shortcut.index_map
    shortcut.set_index_map([good[-1], *good[:-1]])
    assert not torch.allclose(model(x), expected, atol=1e-5)


# -- option-A shortcuts --------------------------------------------------------------------------


def _stream_members(model: nn.Module, root: str) -> tuple[set[str], set[str]]:
    graph = build_dependency_graph(model, torch.zeros(X1))
    groups = {g.root_name: g for g in channel_groups(graph, model, select_layers(model).values())}
    members = groups[root].members
    return {m.name for m in members if m.kind == "out"}, {m.name for m in members if m.kind == "in"}


def test_pad_shortcut_is_a_leaf_with_independent_channels() -> None:
    model = _tiny("resnet20_tiny")
    out1, in1 = _stream_members(model, "conv1")  # stage-1 residual stream
    assert "layer2.0.shortcut" in in1 and "layer2.0.shortcut" not in out1
    assert not any(n.startswith(("layer2.", "layer3.")) for n in out1)
    out2, in2 = _stream_members(model, "layer2.0.conv2")  # stage-2 residual stream
    assert "layer2.0.shortcut" in out2 and "layer3.0.shortcut" in in2
    assert {"layer2.0.conv2", "layer2.1.conv2", "layer2.2.conv2"} <= out2
    assert not any(n.startswith(("layer1.", "layer3.")) or n == "conv1" for n in out2)


def test_torch_pruning_alone_couples_across_option_a_stages() -> None:
    """Why the custom pruner exists: without it TP ties stage-1 channels to stage-2/3 layers."""
    model = _tiny("resnet20_tiny")
    graph = tp.DependencyGraph().build_dependency(model, torch.zeros(X1), verbose=False)
    group = graph.get_pruning_group(model.get_submodule("conv1"), tp.prune_conv_out_channels, [0])
    names = {m: n for n, m in model.named_modules()}
    touched = {names[item.dep.target.module] for item in group if item.dep.target.module in names}
    assert "layer3.2.conv2" in touched


def test_pad_shortcut_unpruned_matches_reference_padding() -> None:
    shortcut = PadShortcut(5, 10)
    x = torch.randn(2, 5, 8, 8)
    reference = torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 3))
    assert torch.equal(shortcut(x), reference)
    assert shortcut.index_map == [-1, -1, 0, 1, 2, 3, 4, -1, -1, -1]
    assert (shortcut.pad_front, shortcut.pad_back) == (2, 3)
    assert shortcut.state_dict() == {}


def test_pad_shortcut_pruned_map() -> None:
    model = _tiny("resnet20_tiny")
    layers = select_layers(model)
    result = prune_filters(model, FilterPruning(0.5), torch.zeros(X1), layers)
    shortcut = model.get_submodule("layer2.0.shortcut")
    assert isinstance(shortcut, PadShortcut)
    removed_in = set(result.channels["conv1"].removed)  # stage-1 stream channels
    removed_out = set(result.channels["layer2.0.shortcut"].removed)
    kept_in = [c for c in range(4) if c not in removed_in]
    original = [-1, -1, 0, 1, 2, 3, -1, -1]
    expected = [
        kept_in.index(src) if src in kept_in else -1 for c, src in enumerate(original) if c not in removed_out
    ]
    assert shortcut.index_map == expected
    assert (shortcut.in_planes, shortcut.planes) == (2, 4)


def test_pad_shortcut_rejects_bad_maps() -> None:
    shortcut = PadShortcut(4, 8)
    with pytest.raises(ModelError, match="index_map"):
        shortcut.set_index_map([0, 4])
    with pytest.raises(ModelError, match="index_map"):
        shortcut.set_index_map([])
    with pytest.raises(ModelError, match="in_planes"):
        shortcut.set_index_map([0], 0)


def test_pruned_resnet_exports_to_onnx(tmp_path: Path) -> None:
    """The index-map shortcut is plain Pad + Gather: a pruned ResNet exports and matches in ORT."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from edgeslim.export import export_onnx

    model = _tiny("resnet20_tiny")
    prune_filters(model, FilterPruning(0.5), torch.zeros(X1), select_layers(model))
    export = export_onnx(model, tmp_path / "pruned.onnx")
    session = onnxruntime.InferenceSession(str(export.path), providers=["CPUExecutionProvider"])
    x = _inputs(3)
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=1e-4, atol=1e-5)


# -- importance criteria on hand-built layers ----------------------------------------------------

# Five 2-d filters (Conv2d(2, 5, 1)): L1 removes f3 first, L2 removes f4, FPGM removes f0 (the
# centre of the f0/f1/f2 cluster, although its norm is the third largest).
FILTERS = [(3.0, 3.0), (3.0, 4.0), (4.0, 3.0), (2.5, 0.0), (1.5, 1.5)]


def _fpgm_by_hand() -> list[float]:
    return [sum(math.dist(f, g) for g in FILTERS) for f in FILTERS]


class _HandNet(nn.Module):
    def __init__(self, in_ch: int = 2, c1: int = 5, c2: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, c1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(c2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.fc(self.flatten(self.pool(self.relu2(self.bn2(self.conv2(out))))))


def _hand_net() -> _HandNet:
    net = _HandNet().eval()
    with torch.no_grad():
        net.conv1.weight.copy_(torch.tensor(FILTERS).view(5, 2, 1, 1))
        # coupled layers that would change the answer if they counted: f3 gets a huge BN scale and
        # huge weights in the next layer
        net.bn1.weight.copy_(torch.tensor([1.0, 1.0, 1.0, 100.0, 1.0]))
        net.conv2.weight[:, 3] = 50.0
    return net


def test_importance_scores_exact() -> None:
    w = torch.tensor(FILTERS, dtype=torch.float64)
    torch.testing.assert_close(
        L1Importance().layer_scores(w), torch.tensor([6, 7, 7, 2.5, 3.0], dtype=torch.float64)
    )
    l2 = torch.tensor([math.hypot(*f) for f in FILTERS], dtype=torch.float64)
    torch.testing.assert_close(L2Importance().layer_scores(w), l2)
    fpgm = torch.tensor(_fpgm_by_hand(), dtype=torch.float64)
    torch.testing.assert_close(FPGMImportance().layer_scores(w), fpgm)


@pytest.mark.parametrize(("criterion", "removed"), [("l1", [3]), ("l2", [4]), ("fpgm", [0])])
def test_criteria_remove_the_expected_filter(criterion: str, removed: list[int]) -> None:
    net = _hand_net()
    layers = select_layers(net, LayerSelection(names=("conv1",)))
    result = prune_filters(net, FilterPruning(0.2, criterion=criterion), torch.randn(1, 2, 6, 6), layers)  # type: ignore[arg-type]
    assert list(result.channels["conv1"].removed) == removed
    assert net.conv1.out_channels == net.bn1.num_features == net.conv2.in_channels == 4
    keep = [i for i in range(5) if i not in removed]
    assert torch.equal(net.conv1.weight.view(4, 2), torch.tensor(FILTERS)[keep])


def test_importance_on_torch_pruning_groups() -> None:
    """Scores follow the group's channel list and ignore BN and the next layer's weights."""
    net = _hand_net()
    graph = build_dependency_graph(net, torch.randn(1, 2, 6, 6))
    group = graph.get_pruning_group(net.conv1, tp.prune_conv_out_channels, [4, 0, 3])
    torch.testing.assert_close(L1Importance()(group), torch.tensor([3.0, 6.0, 2.5], dtype=torch.float64))
    fpgm = _fpgm_by_hand()
    torch.testing.assert_close(
        FPGMImportance()(group), torch.tensor([fpgm[4], fpgm[0], fpgm[3]], dtype=torch.float64)
    )


def test_shared_channels_add_producer_scores() -> None:
    """A residual stream's score is the sum over its producers' filters (stem + block convs)."""
    model = _tiny("resnet20_tiny")
    graph = build_dependency_graph(model, torch.zeros(X1))
    group = next(
        g for g in channel_groups(graph, model, select_layers(model).values()) if g.root_name == "conv1"
    )
    expected = sum(
        model.get_submodule(n).weight.detach().double().abs().flatten(1).sum(1)
        for n in ("conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2")
    )
    assert group.key == ("conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2")
    torch.testing.assert_close(L1Importance()(group.tp_group), expected)


def test_random_importance_is_seeded() -> None:
    def removed(seed: int) -> tuple[int, ...]:
        net = _HandNet(c1=32).eval()
        layers = select_layers(net, LayerSelection(names=("conv1",)))
        result = prune_filters(
            net, FilterPruning(0.5, criterion="random"), torch.randn(1, 2, 6, 6), layers, seed=seed
        )
        return result.channels["conv1"].removed

    assert removed(3) == removed(3)
    assert removed(3) != removed(4)
    assert len(removed(3)) == 16
    a, b = RandomImportance(5), RandomImportance(5)
    assert torch.equal(a.channel_scores([], 8), b.channel_scores([], 8))


def test_make_importance_rejects_unknown() -> None:
    assert isinstance(make_importance("fpgm"), FPGMImportance)
    with pytest.raises(ConfigError, match="criterion"):
        make_importance("taylor")


# -- channel counts: layer scope, global scope, round_to, max_layer_ratio ------------------------


@pytest.mark.parametrize(
    ("size", "ratio", "kwargs", "keep"),
    [
        (16, 0.5, {}, 8),
        (10, 0.3, {}, 7),  # 10 * 0.3 is 3 despite float rounding
        (4, 0.6, {}, 2),  # floor(2.4) = 2 removed
        (3, 0.2, {}, 3),  # nothing to remove
        (10, 0.3, {"round_to": 4}, 8),  # 7 -> nearest multiple of 4
        (24, 0.3, {"round_to": 4}, 16),  # 17 -> 16
        (12, 0.05, {"round_to": 8}, 12),  # a share that rounds to nothing leaves the group alone
        (16, 0.95, {}, 2),  # max_layer_ratio 0.9: at most 14 of 16 go
        (16, 0.8, {"max_layer_ratio": 0.5}, 8),
        (5, 0.8, {"max_layer_ratio": 0.5, "round_to": 2}, 4),  # min keep 3 -> next multiple 4
        (1, 0.9, {}, 1),  # never an empty layer
    ],
)
def test_channels_to_keep(size: int, ratio: float, kwargs: dict[str, Any], keep: int) -> None:
    assert channels_to_keep(size, ratio, **kwargs) == keep


class _TwoConv(nn.Module):
    """conv1 (3 -> c1) and conv2 (c1 -> c2) with per-filter L1 norms set by hand."""

    def __init__(self, l1_conv1: list[float], l1_conv2: list[float]) -> None:
        super().__init__()
        c1, c2 = len(l1_conv1), len(l1_conv2)
        self.conv1 = nn.Conv2d(3, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(c2, 10)
        with torch.no_grad():
            for conv, norms in ((self.conv1, l1_conv1), (self.conv2, l1_conv2)):
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.tensor(norms).view(-1, 1, 1, 1).expand_as(conv.weight) / fan_in)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.fc(self.flatten(self.pool(self.relu2(self.bn2(self.conv2(out))))))


# conv1 L1 norms: mean 2, so seven channels score 0.5 relative to their layer and one 4.5.
# conv2: mean 1.15, relative scores 0.52 (x4), 1.04 (x4), 1.22 (x8).
CONV1_L1 = [1.0] * 7 + [9.0]
CONV2_L1 = [0.6] * 4 + [1.2] * 4 + [1.4] * 8


@pytest.mark.parametrize(
    ("ratio", "kwargs", "conv1", "conv2"),
    [
        (0.25, {}, 2, 16),  # 6 of 24 go: all from conv1 (0.5 < 0.52)
        (0.25, {"round_to": 4}, 4, 16),  # conv1 keeps 2 -> rounded to 4
        (0.5, {}, 1, 11),  # 12 go: conv1 capped at 7 (max_layer_ratio 0.9), then 4 + 1 from conv2
        (0.5, {"max_layer_ratio": 0.5}, 4, 8),  # conv1 capped at 4, conv2 at 8
        (0.5, {"round_to": 4}, 4, 12),  # conv1 1 -> 4 (the smallest legal count), conv2 11 -> 12
    ],
)
def test_global_scope_exact_counts(ratio: float, kwargs: dict[str, Any], conv1: int, conv2: int) -> None:
    net = _TwoConv(CONV1_L1, CONV2_L1)
    config = FilterPruning(ratio, scope="global", **kwargs)
    result = prune_filters(net, config, torch.randn(1, 3, 8, 8), select_layers(net))
    assert (net.conv1.out_channels, net.conv2.out_channels) == (conv1, conv2)
    assert (net.bn1.num_features, net.conv2.in_channels, net.fc.in_features) == (conv1, conv1, conv2)
    assert result.channels["conv1"].after == conv1
    if conv1 < 8:  # ties go to the lower index, the strong channel 7 always stays
        assert 7 not in result.channels["conv1"].removed


@pytest.mark.parametrize(("round_to", "conv1", "conv2"), [(1, 7, 17), (4, 8, 16)])
def test_layer_scope_exact_counts(round_to: int, conv1: int, conv2: int) -> None:
    net = _TwoConv([1.0 + i for i in range(10)], [1.0 + i for i in range(24)])
    result = prune_filters(
        net, FilterPruning(0.3, round_to=round_to), torch.randn(1, 3, 8, 8), select_layers(net)
    )
    assert (net.conv1.out_channels, net.conv2.out_channels) == (conv1, conv2)
    # the weakest filters (lowest L1, here the lowest indices) are the ones removed
    assert result.channels["conv1"].removed == tuple(range(10 - conv1))
    assert result.channels["conv2"].removed == tuple(range(24 - conv2))


def test_iterative_steps_call_finetune_between_steps() -> None:
    model = _tiny("resnet20_tiny")
    calls: list[tuple[int, int]] = []

    def finetune(m: nn.Module, step: int) -> None:
        calls.append((step, m.get_submodule("layer1.0.conv1").out_channels))

    config = FilterPruning(0.5, iterative_steps=2)
    result = prune_filters(model, config, torch.zeros(X1), select_layers(model), finetune=finetune)
    assert calls == [(0, 3)]  # after step 1 of 2: 25% of 4 channels gone; finetune not called after the last
    single = _tiny("resnet20_tiny")
    prune_filters(single, FilterPruning(0.5), torch.zeros(X1), select_layers(single))
    assert [c.out_channels for c in model.modules() if isinstance(c, nn.Conv2d)] == [
        c.out_channels for c in single.modules() if isinstance(c, nn.Conv2d)
    ]
    assert (
        result.channels["layer1.0.conv1"].before == 4 and len(result.channels["layer1.0.conv1"].removed) == 2
    )


# -- selection ------------------------------------------------------------------------------------


def test_internal_channels_only_keeps_the_residual_stream() -> None:
    model = _tiny("resnet20_tiny")
    layers = select_layers(model, LayerSelection(types=("conv",), patterns=("*.conv1",)))
    result = prune_filters(model, FilterPruning(0.5), torch.zeros(X1), layers)
    assert set(result.channels) == {n.replace("conv1", c) for n in layers for c in ("conv1", "bn1")}
    assert model.get_submodule("layer3.2.conv2").out_channels == 16
    assert model.get_submodule("layer3.2.conv2").in_channels == 8


def test_selected_layer_coupled_to_unselected_is_skipped_with_reason() -> None:
    model = _tiny("resnet20_tiny")
    layers = select_layers(model, LayerSelection(names=("layer2.0.conv2",)))
    result = prune_filters(model, FilterPruning(0.5), torch.zeros(X1), layers)
    assert result.channels == {}
    assert "unselected" in result.skipped["layer2.0.conv2"]


def test_classifier_outputs_are_never_pruned() -> None:
    model = _tiny("vgg11_tiny")
    layers = select_layers(model, LayerSelection(include_classifier=True))
    result = prune_filters(model, FilterPruning(0.5), torch.zeros(X1), layers)
    assert "model's outputs" in result.skipped["classifier"]
    assert model(torch.zeros(X1)).shape == (1, 10)


def test_bad_inputs_are_config_errors() -> None:
    model = _tiny("resnet20_tiny")
    with pytest.raises(ConfigError, match="not part of this model"):
        prune_filters(model, FilterPruning(0.5), torch.zeros(X1), {"x": nn.Conv2d(1, 1, 1)})
    with pytest.raises(ConfigError, match="BatchNorm2d"):
        prune_filters(model, FilterPruning(0.5), torch.zeros(X1), {"bn1": model.get_submodule("bn1")})
    with pytest.raises(ConfigError, match="no layers"):
        prune_filters(model, FilterPruning(0.5), torch.zeros(X1), {})


def test_result_to_dict_is_plain_data() -> None:
    model = _tiny("resnet20_tiny")
    result = prune_filters(model, FilterPruning(0.5), torch.zeros(X1), select_layers(model))
    data = result.to_dict()
    assert data["channels"]["layer2.0.shortcut"]["before"] == 8
    assert data["config"]["type"] == "FilterPruning"
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == data


# -- channel spec ---------------------------------------------------------------------------------


def test_channel_spec_is_plain_data() -> None:
    model = _tiny("resnet20_tiny")
    prune_filters(model, FilterPruning(0.5), torch.zeros(X1), select_layers(model))
    spec = channel_spec(model)
    entry = spec["modules"]["layer2.0.shortcut"]
    assert entry["type"] == "PadShortcut" and len(entry["index_map"]) == 4 and entry["in_planes"] == 2
    assert spec["modules"]["layer1.0.conv1"] == {
        "type": "Conv2d",
        "in_channels": 2,
        "out_channels": 2,
        "groups": 1,
    }

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return isinstance(value, int | str)

    assert plain(spec)


def test_apply_channel_spec_errors() -> None:
    model = _tiny("resnet20_tiny")
    spec = channel_spec(model)
    spec["modules"]["layer9.conv1"] = {"type": "Conv2d", "in_channels": 1, "out_channels": 1, "groups": 1}
    with pytest.raises(CheckpointError, match=r"layer9\.conv1"):
        apply_channel_spec(_tiny("resnet20_tiny"), spec)
    spec = channel_spec(model)
    spec["modules"]["bn1"] = {"type": "Conv2d", "in_channels": 1, "out_channels": 1, "groups": 1}
    with pytest.raises(CheckpointError, match="bn1"):
        apply_channel_spec(_tiny("resnet20_tiny"), spec)
    spec = channel_spec(model)
    spec["modules"]["conv1"]["out_channels"] = "four"
    with pytest.raises(CheckpointError, match="conv1"):
        apply_channel_spec(_tiny("resnet20_tiny"), spec)
    with pytest.raises(CheckpointError, match="channel spec"):
        apply_channel_spec(_tiny("resnet20_tiny"), {"modules": {}})


def test_apply_channel_spec_of_unpruned_model_changes_nothing() -> None:
    model = _tiny("resnet20_tiny")
    fresh = _tiny("resnet20_tiny")
    fresh.load_state_dict(model.state_dict())
    apply_channel_spec(fresh, channel_spec(model))
    x = _inputs()
    assert torch.equal(fresh(x), model(x))
