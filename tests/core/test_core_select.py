"""Layer selection is strict: every rule must match, the classifier is excluded by default."""

from __future__ import annotations

import pytest
from torch import nn

from edgeslim.errors import ConfigError
from edgeslim.select import LayerSelection, classifier_name, select_layers


def _model() -> nn.Module:
    model = nn.Sequential()
    model.add_module("stem", nn.Conv2d(3, 8, 3))
    model.add_module("bn", nn.BatchNorm2d(8))
    block = nn.Sequential()
    block.add_module("conv1", nn.Conv2d(8, 8, 3))
    block.add_module("conv2", nn.Conv2d(8, 8, 3))
    model.add_module("block", block)
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc1", nn.Linear(8, 8))
    model.add_module("fc", nn.Linear(8, 3))
    return model


def test_default_selects_convs_and_linears_but_not_classifier() -> None:
    model = _model()
    assert classifier_name(model) == "fc"
    assert list(select_layers(model)) == ["stem", "block.conv1", "block.conv2", "fc1"]
    with_head = select_layers(model, LayerSelection(include_classifier=True))
    assert list(with_head)[-1] == "fc"


def test_types_names_patterns_and_exclusions() -> None:
    model = _model()
    assert list(select_layers(model, LayerSelection(types=("conv",)))) == [
        "stem",
        "block.conv1",
        "block.conv2",
    ]
    assert list(select_layers(model, LayerSelection(patterns=("block.*",)))) == ["block.conv1", "block.conv2"]
    assert list(select_layers(model, LayerSelection(names=("stem",), patterns=("*.conv2",)))) == [
        "stem",
        "block.conv2",
    ]
    assert list(select_layers(model, LayerSelection(types=("Conv2d",), exclude=("stem",)))) == [
        "block.conv1",
        "block.conv2",
    ]
    assert list(select_layers(model, LayerSelection(types=("BatchNorm2d",)))) == ["bn"]


@pytest.mark.parametrize(
    ("selection", "needle"),
    [
        (LayerSelection(names=("blok.conv1",)), "did you mean 'block.conv1'"),
        (LayerSelection(names=("bn",)), "is a BatchNorm2d"),
        (LayerSelection(patterns=("layer9.*",)), "'layer9.*' matches no layer"),
        (LayerSelection(exclude=("nothing*",)), "'nothing*' matches none"),
        (LayerSelection(names=("fc",)), "final classifier"),
        (LayerSelection(types=("linear",), exclude=("fc1",)), "selection is empty"),
    ],
)
def test_rules_that_match_nothing_are_errors(selection: LayerSelection, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        select_layers(_model(), selection)
    assert needle in str(info.value)


def test_unknown_type_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown layer type 'Conv9d'"):
        LayerSelection(types=("Conv9d",))
    with pytest.raises(ConfigError, match="types is empty"):
        LayerSelection(types=())


def test_round_trip() -> None:
    sel = LayerSelection(types=("conv",), patterns=("layer1.*",), exclude=("layer1.0.conv1",))
    assert LayerSelection.from_dict(sel.to_dict()) == sel
