"""Strict layer selection: by module type, exact name or glob pattern, with exclusions.

Unlike tools that silently select nothing, every rule here must match something: a name, pattern or
exclusion that matches no layer is a :class:`ConfigError` naming the rule. The final classifier is
excluded by default because pruning or quantizing it changes the model's outputs directly.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from torch import nn

from edgeslim.config import Config
from edgeslim.errors import ConfigError

#: Short aliases for common layer types; any ``torch.nn`` class name is accepted too.
TYPE_ALIASES: dict[str, type[nn.Module]] = {
    "conv": nn.Conv2d,
    "conv2d": nn.Conv2d,
    "linear": nn.Linear,
    "conv1d": nn.Conv1d,
}


@dataclasses.dataclass(frozen=True)
class LayerSelection(Config):
    """Which layers a technique applies to.

    A layer is selected when its type is one of ``types`` and, if ``names`` or ``patterns`` are
    given, its qualified name equals one of ``names`` or matches one of ``patterns`` (fnmatch globs
    such as ``"layer1.*"``); then every layer matching ``exclude`` is dropped.
    """

    types: tuple[str, ...] = ("conv", "linear")
    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_classifier: bool = False

    def validate(self) -> None:
        if not self.types:
            raise ConfigError("LayerSelection.types is empty: name at least one layer type, e.g. conv")
        for t in self.types:
            resolve_type(t)


def resolve_type(name: str) -> type[nn.Module]:
    """'conv' -> nn.Conv2d, 'BatchNorm2d' -> nn.BatchNorm2d; unknown names are a ConfigError."""
    if name.lower() in TYPE_ALIASES:
        return TYPE_ALIASES[name.lower()]
    cls = getattr(nn, name, None)
    if isinstance(cls, type) and issubclass(cls, nn.Module):
        return cls
    raise ConfigError(
        f"LayerSelection.types: unknown layer type {name!r}; use {', '.join(sorted(TYPE_ALIASES))} "
        "or a torch.nn class name such as Conv2d"
    )


def classifier_name(model: nn.Module) -> str | None:
    """The final classifier: the last Linear in the model (else the last Conv2d), by module order."""
    last_linear = last_conv = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_linear = name
        elif isinstance(module, nn.Conv2d):
            last_conv = name
    return last_linear if last_linear is not None else last_conv


def select_layers(model: nn.Module, selection: LayerSelection | None = None) -> dict[str, nn.Module]:
    """Return the selected layers as an ordered ``{qualified name: module}`` mapping."""
    selection = selection or LayerSelection()
    types = tuple(resolve_type(t) for t in selection.types)
    typed = {name: m for name, m in model.named_modules() if name and isinstance(m, types)}
    all_names = {name for name, _ in model.named_modules() if name}

    for name in selection.names:
        if name not in all_names:
            raise ConfigError(f"LayerSelection.names: no layer is called {name!r}{_close(name, all_names)}")
        if name not in typed:
            raise ConfigError(
                f"LayerSelection.names: {name!r} is a {type(model.get_submodule(name)).__name__}, "
                f"not one of types={list(selection.types)}"
            )
    for pattern in selection.patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in typed):
            raise ConfigError(
                f"LayerSelection.patterns: {pattern!r} matches no layer of types={list(selection.types)}"
            )

    if selection.names or selection.patterns:
        chosen = {
            n: m
            for n, m in typed.items()
            if n in selection.names or any(fnmatch.fnmatchcase(n, p) for p in selection.patterns)
        }
    else:
        chosen = dict(typed)

    for rule in selection.exclude:
        hits = [n for n in chosen if n == rule or fnmatch.fnmatchcase(n, rule)]
        if not hits:
            raise ConfigError(f"LayerSelection.exclude: {rule!r} matches none of the selected layers")
        for n in hits:
            del chosen[n]

    head = classifier_name(model)
    if not selection.include_classifier and head in chosen:
        if head in selection.names:
            raise ConfigError(
                f"LayerSelection.names: {head!r} is the final classifier; set include_classifier=True to select it"
            )
        del chosen[head]
    if not chosen:
        raise ConfigError(
            "the layer selection is empty: no layer of types="
            f"{list(selection.types)} is left after names/patterns/exclude (and excluding the classifier)"
        )
    return chosen


def _close(name: str, names: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(names), n=3)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
