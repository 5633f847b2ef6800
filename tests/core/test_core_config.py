"""Config base: validation names the field, dict/YAML round trips, allow-listed rebuild."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from edgeslim.config import Config, config_from_dict
from edgeslim.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Example(Config):
    ratio: float = 0.5
    method: Literal["l1", "l2"] = "l1"
    steps: tuple[int, ...] = (1, 2)
    clip: float | None = None

    def validate(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(f"Example.ratio must be in [0, 1), got {self.ratio}")


def test_round_trip_dict_and_yaml() -> None:
    cfg = Example(ratio=0.25, method="l2", steps=(3,), clip=1.0)
    assert Example.from_dict(cfg.to_dict()) == cfg
    assert Example.from_yaml(cfg.to_yaml()) == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict() == {
        "type": "Example",
        "version": 1,
        "ratio": 0.25,
        "method": "l2",
        "steps": [3],
        "clip": 1.0,
    }


def test_int_coerced_to_float_and_list_to_tuple() -> None:
    cfg = Example.from_dict({"ratio": 0, "steps": [4, 5]})
    assert cfg.ratio == 0.0 and isinstance(cfg.ratio, float)
    assert cfg.steps == (4, 5)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"ratio": 1.5}, "Example.ratio"),
        ({"method": "l3"}, "Example.method"),
        ({"ratio": "half"}, "Example.ratio"),
        ({"steps": [1, "x"]}, "Example.steps"),
        ({"ratioo": 0.1}, "unknown field(s) ratioo"),
        ({"type": "Other"}, "'type'"),
        ({"version": 9}, "'version'"),
    ],
)
def test_errors_name_the_field(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        Example.from_dict(data)
    assert needle in str(info.value)


def test_yaml_is_safe_and_rejects_garbage() -> None:
    with pytest.raises(ConfigError):
        Example.from_yaml("!!python/object/apply:os.system ['echo hi']")
    with pytest.raises(ConfigError):
        Example.from_yaml("[1, 2")


def test_unknown_type_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown config type"):
        config_from_dict({"type": "os.system"})


def test_frozen() -> None:
    cfg = Example()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ratio = 0.1  # type: ignore[misc]
