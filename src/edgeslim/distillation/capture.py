"""Capture intermediate activations by layer name, strictly, with forward hooks.

Strict means: every name must be a module of the model (a name that matches nothing is a
:class:`ConfigError` with close matches), and each captured module must run exactly once per forward
pass (a module reused within one pass - a shared ``ReLU`` - would make "its activation" ambiguous).

Two modes:

* ``"output"`` - the module's output (FitNets hints take the post-activation response).
* ``"pre_relu"`` - what activation-boundary transfer needs: the response *before* the ReLU that
  decides whether each neuron is on. How a name is resolved:

  - a ``nn.ReLU``/``nn.ReLU6`` module: its input is captured (a forward pre-hook; cloned first when
    the ReLU is ``inplace``, which would otherwise overwrite it);
  - a module that contains ReLUs (a residual block, a stage such as ``layer1``): the input of its
    *last* ReLU (in registration order) is captured, and on the first pass the capture checks that
    the module's output really is ``ReLU(captured)``; if not (the module ends with something else,
    or uses functional ``F.relu`` that hooks cannot see) it raises a :class:`ConfigError` asking
    for the pre-activation layer by name;
  - any other module (e.g. a BatchNorm in a pre-activation network): its output, taken to be a
    pre-activation already.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from edgeslim.errors import ConfigError

CaptureMode = Literal["output", "pre_relu"]

#: Rectifier modules whose input is the pre-activation, with the function each applies.
RECTIFIERS: dict[type[nn.Module], Callable[[torch.Tensor], torch.Tensor]] = {
    nn.ReLU: F.relu,
    nn.ReLU6: F.relu6,
}


def _rectifier(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    for cls, fn in RECTIFIERS.items():
        if type(module) is cls:
            return fn
    return None


@dataclasses.dataclass(frozen=True)
class CapturePoint:
    """Where the activation of a named layer is taken: the module hooked and what is recorded."""

    name: str  # the name asked for
    hooked: str  # the module whose input/output is recorded
    kind: Literal["output", "rectifier_input"]

    def describe(self) -> str:
        if self.kind == "output":
            return f"output of {self.hooked!r}"
        return f"input of ReLU {self.hooked!r} (pre-activation)"


def resolve_module(model: nn.Module, name: str, *, role: str = "model") -> nn.Module:
    """The submodule called ``name``; a ConfigError with close matches when there is none."""
    modules = dict(model.named_modules())
    if not isinstance(name, str) or not name or name not in modules:
        names = [n for n in modules if n]
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"layer {name!r} matches no module of the {role}{hint}")
    return modules[name]


def capture_point(model: nn.Module, name: str, mode: CaptureMode, *, role: str = "model") -> CapturePoint:
    """Resolve ``name`` to the module to hook, following the rules in the module docstring."""
    if mode not in ("output", "pre_relu"):
        raise ConfigError(f"capture mode must be 'output' or 'pre_relu', got {mode!r}")
    module = resolve_module(model, name, role=role)
    if mode == "output":
        return CapturePoint(name, name, "output")
    if _rectifier(module) is not None:
        return CapturePoint(name, name, "rectifier_input")
    inner = [n for n, m in module.named_modules() if n and _rectifier(m) is not None]
    if inner:
        return CapturePoint(name, f"{name}.{inner[-1]}", "rectifier_input")
    return CapturePoint(name, name, "output")


class FeatureCapture:
    """Record the activations of named layers on every forward pass of ``model``.

    ``capture[name]`` is the tensor of the latest pass (with its autograd graph, so losses on it
    train the model, unless ``detach``). Hooks stay until :meth:`remove` (or the ``with`` block ends).
    """

    def __init__(
        self,
        model: nn.Module,
        names: Sequence[str],
        *,
        mode: CaptureMode = "output",
        role: str = "model",
        detach: bool = False,
    ) -> None:
        if not names:
            raise ConfigError(f"no layers to capture from the {role}")
        duplicates = sorted({n for n in names if list(names).count(n) > 1})
        if duplicates:
            raise ConfigError(f"layers named more than once for the {role}: {', '.join(duplicates)}")
        self.model = model
        self.role = role
        self.mode: CaptureMode = mode
        self.detach = detach
        self.points = {n: capture_point(model, n, mode, role=role) for n in names}
        self._features: dict[str, torch.Tensor] = {}
        self._verified: set[str] = set()
        self._handles: list[RemovableHandle] = []
        modules = dict(model.named_modules())
        self._handles.append(model.register_forward_pre_hook(self._new_pass))
        for point in self.points.values():
            hooked = modules[point.hooked]
            if point.kind == "output":
                self._handles.append(hooked.register_forward_hook(self._output_hook(point)))
            else:
                self._handles.append(hooked.register_forward_pre_hook(self._input_hook(point, hooked)))
                if point.hooked != point.name:
                    named = modules[point.name]
                    self._handles.append(named.register_forward_hook(self._verify_hook(point, hooked)))

    # -- hooks ----------------------------------------------------------------------------------
    def _new_pass(self, module: nn.Module, args: Any) -> None:
        self._features = {}

    def _store(self, point: CapturePoint, value: Any) -> None:
        if not isinstance(value, torch.Tensor):
            raise ConfigError(
                f"layer {point.name!r} of the {self.role}: the {point.describe()} is a "
                f"{type(value).__name__}, not a tensor; name a layer that produces a feature map"
            )
        if point.name in self._features:
            raise ConfigError(
                f"layer {point.name!r} of the {self.role} ran twice in one forward pass (a shared "
                f"module such as a reused ReLU); name a layer that runs once per pass"
            )
        self._features[point.name] = value.detach() if self.detach else value

    def _output_hook(self, point: CapturePoint) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._store(point, output)

        return hook

    def _input_hook(self, point: CapturePoint, relu: nn.Module) -> Callable[[nn.Module, Any], None]:
        inplace = bool(getattr(relu, "inplace", False))

        def hook(module: nn.Module, args: Any) -> None:
            value = args[0] if isinstance(args, tuple) and args else args
            if inplace and isinstance(value, torch.Tensor):
                value = value.clone()  # the in-place ReLU would overwrite the pre-activation
            self._store(point, value)

        return hook

    def _verify_hook(self, point: CapturePoint, relu: nn.Module) -> Callable[[nn.Module, Any, Any], None]:
        fn = _rectifier(relu)

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if point.name in self._verified or fn is None:
                return
            pre = self._features.get(point.name)
            ok = (
                isinstance(output, torch.Tensor)
                and pre is not None
                and pre.shape == output.shape
                and torch.equal(fn(pre.detach()), output.detach())
            )
            if not ok:
                raise ConfigError(
                    f"layer {point.name!r} of the {self.role} does not end with its last ReLU "
                    f"{point.hooked!r} (its output is not ReLU of that ReLU's input), so its "
                    "pre-activation cannot be captured there; name the ReLU module or the layer "
                    "whose output is the pre-activation (e.g. a BatchNorm) instead"
                )
            self._verified.add(point.name)

        return hook

    # -- access ---------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.points:
            raise KeyError(name)
        if name not in self._features:
            raise ConfigError(
                f"layer {name!r} of the {self.role} did not run in the latest forward pass "
                f"(hooked: {self.points[name].describe()})"
            )
        return self._features[name]

    def __contains__(self, name: object) -> bool:
        return name in self._features

    def __iter__(self) -> Iterator[str]:
        return iter(self.points)

    def clear(self) -> None:
        """Drop the stored activations (frees their memory and autograd graphs)."""
        self._features = {}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._features = {}

    def __enter__(self) -> FeatureCapture:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


def rectifier_calls(model: nn.Module, inputs: torch.Tensor) -> list[tuple[str, tuple[int, ...], int]]:
    """Run ``model`` once (eval mode, no grad) and list the ReLU modules as they run.

    Returns ``(name, input shape, calls in this pass)`` in order of first call. The model's
    train/eval mode is restored.
    """
    order: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if name and _rectifier(module) is not None:

            def hook(module: nn.Module, args: Any, name: str = name) -> None:
                if name not in calls:
                    order.append(name)
                    x = args[0] if isinstance(args, tuple) and args else args
                    shapes[name] = tuple(x.shape) if isinstance(x, torch.Tensor) else ()
                calls[name] = calls.get(name, 0) + 1

            handles.append(module.register_forward_pre_hook(hook))
    run_hooked_once(model, inputs, handles)
    return [(n, shapes[n], calls[n]) for n in order]


def run_hooked_once(model: nn.Module, inputs: torch.Tensor, handles: list[Any]) -> None:
    """One eval-mode, no-grad pass of ``model`` so its hooks record, then the hooks removed and the
    train/eval mode restored (also when the pass fails)."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
