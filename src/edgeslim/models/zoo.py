"""Model registry and factory (timm style): ``create_model``, ``list_models``, ``model_info``.

Each family file registers factories with :func:`register_model`. A factory takes ``num_classes``
plus keyword arguments with defaults; those defaults are what :func:`model_info` reports and what
``create_model`` validates user kwargs against, so an unknown or misspelt argument is an error that
names it rather than a ``TypeError`` from deep inside a constructor.

A name of the form ``package.module:factory`` builds a user model: the module is imported and
``factory(num_classes=..., **kwargs)`` is called, so users can run their own nets through the tools.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from edgeslim.errors import ModelError
from edgeslim.models._common import check_num_classes
from edgeslim.registry import Registry

INPUT_SIZE: tuple[int, int, int] = (3, 32, 32)
SPEC_ATTR = "_edgeslim_spec"

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a registered model is: family, expected input, whether it is a tiny test variant."""

    name: str
    family: str
    input_size: tuple[int, int, int]
    is_tiny: bool
    description: str
    default_kwargs: dict[str, Any] = dataclasses.field(hash=False)


@dataclasses.dataclass(frozen=True)
class _Entry:
    family: str
    description: str
    is_tiny: bool
    factory: Callable[..., nn.Module]
    input_size: tuple[int, int, int] = INPUT_SIZE

    def defaults(self) -> dict[str, Any]:
        return _factory_defaults(self.factory)


MODELS: Registry[_Entry] = Registry("model", ModelError)


def register_model(
    name: str | None = None,
    *,
    family: str,
    description: str,
    is_tiny: bool = False,
    input_size: tuple[int, int, int] = INPUT_SIZE,
) -> Callable[[F], F]:
    """Register a factory ``f(num_classes=10, **kwargs_with_defaults) -> nn.Module`` under ``name``.

    ``input_size`` (C, H, W) is the input the model is meant for (ImageNet models: 3x224x224).
    """

    def decorator(factory: F) -> F:
        params = inspect.signature(factory).parameters
        if "num_classes" not in params:
            raise TypeError(f"model factory {factory.__name__} must take a num_classes argument")
        for p in params.values():
            no_default = p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is inspect.Parameter.empty
            if no_default and p.name != "num_classes":
                raise TypeError(f"model factory {factory.__name__}: argument {p.name!r} needs a default")
        MODELS.add(name or factory.__name__, _Entry(family, description, is_tiny, factory, input_size))
        return factory

    return decorator


def list_models(pattern: str | None = None, *, tiny: bool | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a glob ``pattern`` and by ``tiny``."""
    names = MODELS.names(pattern)
    if tiny is not None:
        names = [n for n in names if MODELS.get(n).is_tiny == tiny]
    return names


def model_info(name: str) -> ModelInfo:
    """Describe a registered (or ``package.module:factory``) model without building it."""
    if _is_user_name(name):
        factory = _import_factory(name)
        doc = (inspect.getdoc(factory) or "user model").strip().splitlines()[0]
        return ModelInfo(name, "user", INPUT_SIZE, False, doc, _factory_defaults(factory))
    entry = MODELS.get(name)
    return ModelInfo(name, entry.family, entry.input_size, entry.is_tiny, entry.description, entry.defaults())


def create_model(
    name: str,
    num_classes: int = 10,
    *,
    weights: str | os.PathLike[str] | None = None,
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name; load ``weights`` (any state_dict file) strictly if given.

    ``pretrained=True`` fetches the model's published weights (``edgeslim.data.fetch``; e.g.
    torchvision's for ``resnet50.tv_in1k``) and loads them; with another ``num_classes`` than the
    weights' the backbone is loaded and the classifier is new. The model remembers how it was built
    (:func:`model_spec`) so a checkpoint can rebuild it (without downloading anything).
    """
    if not isinstance(name, str) or not name:
        raise ModelError(f"model name must be a non-empty string, got {name!r}")
    check_num_classes(num_classes)
    if pretrained:
        if weights is not None:
            raise ModelError("give either weights or pretrained=True, not both")
        from edgeslim.models.pretrained import pretrained_kwargs

        kwargs = {**pretrained_kwargs(name), **kwargs}
    if _is_user_name(name):
        model = _create_user_model(name, num_classes, kwargs)
        spec_kwargs = {"num_classes": num_classes, **kwargs}
    else:
        entry = MODELS.get(name)
        defaults = entry.defaults()
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            accepted = ", ".join(["num_classes", *sorted(defaults)])
            raise ModelError(
                f"model {name!r} got unknown argument(s) {', '.join(repr(u) for u in unknown)}; "
                f"it accepts: {accepted}"
            )
        model = entry.factory(num_classes=num_classes, **kwargs)
        spec_kwargs = {"num_classes": num_classes, **defaults, **kwargs}
    setattr(model, SPEC_ATTR, {"name": name, "kwargs": spec_kwargs})
    if weights is not None:
        from edgeslim.models.load import load_weights

        load_weights(model, weights)
    if pretrained:
        from edgeslim.models.pretrained import load_pretrained

        load_pretrained(model, name)
    return model


def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """``{"name", "kwargs"}`` of a model built by :func:`create_model` (a copy), else None."""
    spec = getattr(model, SPEC_ATTR, None)
    if not isinstance(spec, dict):
        return None
    return copy.deepcopy(spec)


# -- internals ---------------------------------------------------------------------------------


def _factory_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {
        p.name: p.default
        for p in params.values()
        if p.name != "num_classes" and p.default is not inspect.Parameter.empty
    }


def _is_user_name(name: str) -> bool:
    return ":" in name


def _import_factory(name: str) -> Callable[..., Any]:
    module_name, _, attr = name.rpartition(":")
    if not module_name or not attr:
        raise ModelError(f"user model {name!r} must look like 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is a user error
        raise ModelError(
            f"user model {name!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise ModelError(f"user model {name!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise ModelError(f"user model {name!r}: {attr!r} is not callable")
    return factory


def _create_user_model(name: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    factory = _import_factory(name)
    try:
        model = factory(num_classes=num_classes, **kwargs)
    except ModelError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelError(f"user model {name!r}: the factory failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"user model {name!r}: the factory returned {type(model).__name__}, not an nn.Module"
        )
    return model
