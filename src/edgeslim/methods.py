"""One method registry and handler tables looked up by config type (torchao style).

Every compression config class registers the ``family/name`` pairs it serves
(``prune/l1``, ``prune/magnitude``, ``quantize/static`` ...) with :func:`register_method`. One function,
:func:`method_config`, turns ``(family, name, params)`` into a validated config for the CLI, recipes and
sweeps alike, so a method works the same way everywhere. Common parameter names users write in grids
(``ratio``, ``bits``) are mapped to each config's own field by the registration's ``aliases``; the
fields a name fixes (``criterion: l1``) come from ``fixed``.

Code that *does* something with a config (prune a model, quantize it, rebuild a packed file, run a
recipe step) keeps a :class:`HandlerTable` keyed by config type instead of an ``isinstance`` chain:
adding a method is one config class, one ``@register_method`` and one ``@table.register(Config)``.

This module sits in the bottom layer: it imports no technique. The technique packages register
themselves when imported (``edgeslim.pruning``, ``edgeslim.quantization``, ``edgeslim.distillation``);
:mod:`edgeslim.engine` imports them all, so everything above it sees the full registry.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from edgeslim.config import Config
from edgeslim.errors import ConfigError

C = TypeVar("C", bound=type[Config])
F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """How one ``family/name`` maps onto its config class.

    ``fixed``: fields the name decides (``criterion="l1"`` for ``prune/l1``), not settable by the user.
    ``aliases``: common parameter names -> this config's field (``ratio`` -> ``sparsity``).
    ``trains``: the method fine-tunes or trains (a training budget applies to it);
    ``needs_training``: it cannot run without one (gradual pruning, QAT).
    """

    family: str
    name: str
    config_cls: type[Config]
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    trains: bool = False
    needs_training: bool = False
    summary: str = ""

    @property
    def id(self) -> str:
        return f"{self.family}/{self.name}"

    def fields(self) -> tuple[str, ...]:
        """The parameter names a user may give (config fields and aliases, minus fixed fields)."""
        own = [f.name for f in dataclasses.fields(self.config_cls) if f.name not in self.fixed]
        hidden = set(self.aliases.values())
        return tuple(sorted({*(n for n in own if n not in hidden), *self.aliases}))


_METHODS: dict[str, MethodSpec] = {}


def register_method(
    family: str,
    name: str,
    *,
    fixed: Mapping[str, Any] | None = None,
    aliases: Mapping[str, str] | None = None,
    trains: bool = False,
    needs_training: bool = False,
    summary: str = "",
) -> Callable[[C], C]:
    """Class decorator: ``config_cls`` serves ``family/name`` (stack it for several names)."""

    def decorator(config_cls: C) -> C:
        spec = MethodSpec(
            family=family,
            name=name,
            config_cls=config_cls,
            fixed=dict(fixed or {}),
            aliases=dict(aliases or {}),
            trains=trains or needs_training,
            needs_training=needs_training,
            summary=summary or (config_cls.__doc__ or "").strip().splitlines()[0],
        )
        if spec.id in _METHODS and _METHODS[spec.id].config_cls is not config_cls:
            raise ValueError(f"method {spec.id!r} is already registered")
        _METHODS[spec.id] = spec
        return config_cls

    return decorator


def unregister_method(family: str, name: str) -> None:
    """Remove ``family/name`` (tests that add a toy method clean up with this)."""
    _METHODS.pop(f"{family}/{name}", None)


def families() -> tuple[str, ...]:
    return tuple(sorted({s.family for s in _METHODS.values()}))


def method_names(family: str) -> tuple[str, ...]:
    """The registered names of ``family`` in registration order (the CLI's help and choices)."""
    return tuple(s.name for s in _METHODS.values() if s.family == family)


def methods() -> Iterator[MethodSpec]:
    return iter(list(_METHODS.values()))


def method_spec(family: str, name: str) -> MethodSpec:
    """The registration of ``family/name``; an unknown one names the valid choices."""
    spec = _METHODS.get(f"{family}/{name}")
    if spec is not None:
        return spec
    if family not in families():
        raise ConfigError(f"unknown method family {family!r}; use one of {', '.join(families())}")
    choices = method_names(family)
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{name!r} is not one of {', '.join(choices)}{hint}", field=f"{family}.method")


def first_alias(spec: MethodSpec) -> dict[str, str]:
    """Config field -> the first alias registered for it (``ratio`` before ``sparsity``)."""
    back: dict[str, str] = {}
    for alias, field in spec.aliases.items():
        back.setdefault(field, alias)
    return back


def method_config(family: str, name: str, params: Mapping[str, Any] | None = None) -> Config:
    """The validated config of ``family/name`` with ``params`` (aliases translated, fixed fields set).

    Errors name the config field (``FilterPruning.ratio must be in [0, 1)``) or, for an unknown
    parameter, the parameters this method takes.
    """
    spec = method_spec(family, name)
    fields: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in dict(params or {}).items():
        if key in spec.fixed:
            raise ConfigError(
                f"{spec.id}: {key!r} is fixed to {spec.fixed[key]!r} by the method name; "
                f"use another method name instead of setting it"
            )
        target = spec.aliases.get(key, key)
        if target in fields:
            raise ConfigError(
                f"{spec.id}: {given_as[target]!r} and {key!r} both set {spec.config_cls.__name__}.{target}; give one"
            )
        fields[target] = value
        given_as[target] = key
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ConfigError(
            f"{spec.id}: unknown parameter(s) {', '.join(unknown)}; it takes {', '.join(spec.fields())}"
        )
    back = first_alias(spec)
    missing = [
        back.get(f.name, f.name)
        for f in dataclasses.fields(spec.config_cls)
        if f.name not in fields
        and f.name not in spec.fixed
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{spec.id}: missing required parameter(s) {', '.join(missing)}")
    return spec.config_cls.from_dict({**fields, **spec.fixed})


def param_in_error(family: str, name: str, params: Mapping[str, Any], message: str) -> str | None:
    """The parameter (as the user wrote it) that an error from :func:`method_config` is about, so
    front ends can point at its line: named directly, or through the config field it sets."""
    head = message.split(";")[0]
    spec = _METHODS.get(f"{family}/{name}")
    found = []
    for key in params:
        field = spec.aliases.get(key, key) if spec is not None else key
        for word in (key, field):
            hit = re.search(rf"\b{re.escape(word)}\b", head)
            if hit:
                found.append((hit.start(), key))
    return min(found)[1] if found else None


def method_of(config: Config) -> MethodSpec:
    """The registration a config belongs to (the one whose fixed fields it matches)."""
    candidates = [s for s in _METHODS.values() if type(config) is s.config_cls]
    for spec in candidates:
        if all(getattr(config, k) == v for k, v in spec.fixed.items()):
            return spec
    raise ConfigError(f"{type(config).__name__} is not a registered compression method")


def method_params(config: Config) -> dict[str, Any]:
    """``config`` as the parameters :func:`method_config` takes (aliases used, fixed fields left out)."""
    spec = method_of(config)
    back = first_alias(spec)
    data = config.to_dict()
    data.pop("type", None)
    data.pop("version", None)
    return {back.get(k, k): v for k, v in data.items() if k not in spec.fixed}


class HandlerTable(Generic[F]):
    """Functions keyed by config type: ``table.register(StaticQuant)(fn)``; ``table.get(config)``.

    Lookup follows the config's class hierarchy, so a subclass inherits its parent's handler unless it
    registers its own.
    """

    def __init__(self, purpose: str) -> None:
        self.purpose = purpose
        self._handlers: dict[type[Any], F] = {}

    def register(self, *config_types: type[Any]) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            for config_type in config_types:
                if config_type in self._handlers:
                    raise ValueError(f"{self.purpose}: {config_type.__name__} already has a handler")
                self._handlers[config_type] = fn
            return fn

        return decorator

    def unregister(self, config_type: type[Any]) -> None:
        self._handlers.pop(config_type, None)

    def get(self, config: Any) -> F:
        for cls in type(config).__mro__:
            if cls in self._handlers:
                return self._handlers[cls]
        known = ", ".join(sorted(t.__name__ for t in self._handlers))
        raise ConfigError(f"{self.purpose}: {type(config).__name__} is not supported (supported: {known})")

    def types(self) -> tuple[type[Any], ...]:
        return tuple(self._handlers)

    def __contains__(self, config_type: object) -> bool:
        return config_type in self._handlers


__all__ = [
    "HandlerTable",
    "MethodSpec",
    "families",
    "method_config",
    "method_names",
    "method_of",
    "method_params",
    "method_spec",
    "methods",
    "param_in_error",
    "register_method",
    "unregister_method",
]
