"""Base for typed, validated, versioned configs (torchao style).

A config is a frozen dataclass. ``to_dict`` gives plain data (safe for YAML/JSON, with the class
name and a version); ``from_dict`` rebuilds it, rejecting unknown fields and wrong types with a
:class:`ConfigError` that names the field. Subclasses validate in ``validate()``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, Self, TypeVar, get_args, get_origin

import yaml

from edgeslim.errors import ConfigError

C = TypeVar("C", bound="Config")

_CONFIG_CLASSES: dict[str, type[Config]] = {}


@dataclasses.dataclass(frozen=True)
class Config:
    """Frozen dataclass with validation and a dict/YAML round trip."""

    VERSION: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CONFIG_CLASSES[cls.__name__] = cls

    def __post_init__(self) -> None:
        self._check_types()
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field for any invalid value."""

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": type(self).__name__, "version": self.VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        data = dict(data)
        kind = data.pop("type", cls.__name__)
        if kind != cls.__name__:
            raise ConfigError(f"{cls.__name__}: 'type' is {kind!r}, expected {cls.__name__!r}")
        version = data.pop("version", cls.VERSION)
        if version != cls.VERSION:
            raise ConfigError(
                f"{cls.__name__}: 'version' is {version!r}; this edgeslim reads version {cls.VERSION}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; "
                f"valid fields: {', '.join(sorted(names))}"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {k: _coerce(v, hints[k]) for k, v in data.items()}
        return cls(**kwargs)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Self:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cls.__name__}: invalid YAML: {exc}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    # -- type checking -------------------------------------------------------------------------
    def _check_types(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise ConfigError(
                    f"{type(self).__name__}.{f.name}: expected {_type_name(hints[f.name])}, "
                    f"got {short_repr(value)} ({type(value).__name__})",
                    field=f"{type(self).__name__}.{f.name}",
                )


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages: a hostile value (a mapping of
    10^400 and control characters, a 5,000-digit int whose repr itself fails) stays short."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild any registered config from ``to_dict`` output, by its ``type`` (an allow-list)."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in _CONFIG_CLASSES:
        raise ConfigError(f"unknown config type {kind!r}; known: {', '.join(sorted(_CONFIG_CLASSES))}")
    return _CONFIG_CLASSES[kind].from_dict(data)


def _coerce(value: Any, hint: Any) -> Any:
    """YAML gives lists where configs hold tuples, and ints where floats are meant."""
    origin = get_origin(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # 10**400: left as it is, so the type check names the field
            return value
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(hint):
            coerced = _coerce(value, arg)
            if _matches(coerced, arg):
                return coerced
    return value


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in get_args(hint))
    if origin is typing.Literal:
        return value in get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        try:  # an int beyond a float (10**400) is no float: validate() would raise OverflowError
            float(value)
        except OverflowError:
            return False
        return True
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in get_args(hint))
    return getattr(hint, "__name__", str(hint))
