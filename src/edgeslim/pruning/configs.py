"""One typed, validated config per pruning method (frozen; round-trips to dict/YAML)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from edgeslim.config import Config
from edgeslim.errors import ConfigError
from edgeslim.methods import register_method

Scope = Literal["layer", "global"]
Criterion = Literal["l1", "l2", "fpgm", "random"]


def _fraction(owner: str, field: str, value: float, *, allow_one: bool = False) -> None:
    upper_ok = value <= 1.0 if allow_one else value < 1.0
    if not (value >= 0.0 and upper_ok):
        bound = "[0, 1]" if allow_one else "[0, 1)"
        raise ConfigError(f"{owner}.{field} must be in {bound}, got {value}", field=f"{owner}.{field}")


@register_method("prune", "magnitude", aliases={"ratio": "sparsity"}, trains=True)
@dataclasses.dataclass(frozen=True)
class MagnitudePruning(Config):
    """Unstructured: zero the ``sparsity`` share of weights with the smallest magnitude.

    ``scope="layer"`` gives every selected layer exactly that sparsity; ``"global"`` ranks all
    selected weights together (layers end up with different sparsities, the total is exact).
    Masks are kept and re-applied after every optimizer step while fine-tuning.
    """

    sparsity: float
    scope: Scope = "layer"

    def validate(self) -> None:
        _fraction("MagnitudePruning", "sparsity", self.sparsity)


@register_method(
    "prune", "gradual", aliases={"ratio": "final_sparsity", "sparsity": "final_sparsity"}, needs_training=True
)
@dataclasses.dataclass(frozen=True)
class GradualPruning(Config):
    """Zhu & Gupta (2017) gradual magnitude pruning on the cubic schedule

        s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3,   t0 <= t <= t0 + n * dt

    with t0 = ``start_step``, n * dt = ``num_steps`` (the ramp length in optimizer steps) and
    dt = ``frequency`` (steps between mask updates). Applied during training by a callback.

    The ramp can be given in epochs of the fine-tune instead (floats; what a study reports, and the
    same whatever the batch size): ``start_epoch`` (where the ramp starts), ``ramp_epochs`` (how long
    it is: "the first 80% of 30 epochs" is ``ramp_epochs=24``) and ``frequency_epochs`` (epochs
    between mask updates, e.g. 0.5). They are converted to steps when the training run is known
    (:func:`edgeslim.pruning.schedule.schedule_in_steps`); the ramp must end by the end of the run
    (:meth:`check_fits`). Give the ramp in steps or in epochs, not a mix. An epoch field left unset
    is sized from the run like an unset step field (start 0, ramp over 3/4 of the rest, about 10
    updates, at most one per epoch), and is left out of :meth:`to_dict`, so stored keys of runs
    that did not set it stay valid.
    """

    final_sparsity: float
    initial_sparsity: float = 0.0
    start_step: int = 0
    num_steps: int = 1000
    frequency: int = 100
    scope: Scope = "layer"
    start_epoch: float | None = None
    ramp_epochs: float | None = None
    frequency_epochs: float | None = None

    def validate(self) -> None:
        _fraction("GradualPruning", "final_sparsity", self.final_sparsity)
        _fraction("GradualPruning", "initial_sparsity", self.initial_sparsity)
        if self.initial_sparsity > self.final_sparsity:
            raise ConfigError(
                f"GradualPruning.initial_sparsity ({self.initial_sparsity}) exceeds final_sparsity "
                f"({self.final_sparsity})"
            )
        in_steps = [n for n in ("start_step", "num_steps", "frequency") if getattr(self, n) != _DEFAULTS[n]]
        in_epochs = [n for n in EPOCH_FIELDS if getattr(self, n) is not None]
        if in_steps and in_epochs:
            raise ConfigError(
                f"GradualPruning.{in_epochs[0]}: give the ramp in epochs (start_epoch, ramp_epochs, "
                f"frequency_epochs) or in steps (start_step, num_steps, frequency), not both "
                f"({in_steps[0]} is set too)",
                field=f"GradualPruning.{in_epochs[0]}",
            )
        if self.start_step < 0:
            raise ConfigError(f"GradualPruning.start_step must be >= 0, got {self.start_step}")
        if self.frequency < 1:
            raise ConfigError(f"GradualPruning.frequency must be >= 1 step, got {self.frequency}")
        if self.num_steps < self.frequency:
            raise ConfigError(
                f"GradualPruning.num_steps ({self.num_steps}) must be at least frequency ({self.frequency})"
            )
        for name in EPOCH_FIELDS:
            value = getattr(self, name)
            zero_ok = name == "start_epoch"
            if value is not None and not (
                math.isfinite(value) and (value > 0.0 or (zero_ok and value == 0.0))
            ):
                bound = "a number of epochs >= 0" if zero_ok else "a positive number of epochs"
                raise ConfigError(
                    f"GradualPruning.{name} must be {bound}, got {value}", field=f"GradualPruning.{name}"
                )
        if (
            self.ramp_epochs is not None
            and self.frequency_epochs is not None
            and self.frequency_epochs > self.ramp_epochs
        ):
            raise ConfigError(
                f"GradualPruning.frequency_epochs must be at most ramp_epochs ({self.ramp_epochs:g}; the "
                f"masks are updated on the ramp), got {self.frequency_epochs:g}",
                field="GradualPruning.frequency_epochs",
            )

    @property
    def in_epochs(self) -> bool:
        """Whether the ramp is given in epochs (converted to steps once the run is known)."""
        return any(getattr(self, n) is not None for n in EPOCH_FIELDS)

    def check_fits(self, epochs: int) -> None:
        """Refuse a ramp given in epochs that a fine-tune of ``epochs`` epochs cannot hold: the ramp
        must start before the run ends and reach the final sparsity by its end, with mask updates no
        further apart than the ramp is long (an unset ramp is 3/4 of the epochs after its start)."""
        if not self.in_epochs:
            return
        start = self.start_epoch if self.start_epoch is not None else 0.0
        if start >= epochs:
            raise ConfigError(
                f"GradualPruning.start_epoch must be before the end of the {epochs}-epoch fine-tune, "
                f"got {start:g}",
                field="GradualPruning.start_epoch",
            )
        ramp = self.ramp_epochs if self.ramp_epochs is not None else 0.75 * (epochs - start)
        if self.ramp_epochs is not None and start + ramp > epochs + 1e-9:  # 0.1 + 2.9 fits 3 epochs
            raise ConfigError(
                f"GradualPruning.ramp_epochs: the ramp ends at epoch {start + ramp:g}, after the "
                f"{epochs}-epoch fine-tune ends; shorten ramp_epochs (or start_epoch) or fine-tune longer",
                field="GradualPruning.ramp_epochs",
            )
        if self.frequency_epochs is not None and self.frequency_epochs > ramp:
            raise ConfigError(
                f"GradualPruning.frequency_epochs must be at most the ramp's {ramp:g} epoch(s) (3/4 of "
                f"the {epochs}-epoch fine-tune after its start; the masks are updated on the ramp), "
                f"got {self.frequency_epochs:g}",
                field="GradualPruning.frequency_epochs",
            )

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for name in EPOCH_FIELDS:  # absent unless set: keys of stored runs stay valid
            if data[name] is None:
                del data[name]
            else:
                data[name] = float(data[name])  # 24 and 24.0 (YAML's coercion) give one key
        return data


#: GradualPruning's ramp fields in epochs of the fine-tune (None: not given).
EPOCH_FIELDS = ("start_epoch", "ramp_epochs", "frequency_epochs")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GradualPruning)}


@register_method("prune", "random", fixed={"criterion": "random"}, trains=True)
@register_method("prune", "fpgm", fixed={"criterion": "fpgm"}, trains=True)
@register_method("prune", "l2", fixed={"criterion": "l2"}, trains=True)
@register_method("prune", "l1", fixed={"criterion": "l1"}, trains=True)
@dataclasses.dataclass(frozen=True)
class FilterPruning(Config):
    """Structured: remove the ``ratio`` share of output channels (filters) and every coupled input
    channel, BN entry, residual partner and concatenation slice, so the model gets physically smaller.

    ``criterion``: "l1"/"l2" norm of each filter (lowest removed), "fpgm" (filters nearest the
    geometric median, He et al. 2019), "random" (the control baseline). ``scope="global"`` ranks
    channels across layers. Channel counts are kept multiples of ``round_to`` (``"auto"``: the
    multiple the deployment runtime runs fastest, timed on this machine, see
    :func:`edgeslim.tasks.choose_round_to`). ``iterative_steps`` > 1 prunes in steps with a fine-tune
    between them; step ``k`` of ``n`` reaches ``ratio * (1 - (1 - k/n)**3)`` of the original counts
    with ``schedule="cubic"`` (big cuts first while the net has slack, small ones last, like gradual
    pruning) or ``ratio * k/n`` with ``"linear"``.

    Limits so no layer is cut to near zero: a group loses at most ``max_layer_ratio`` of its
    channels and always keeps ``min_channels`` (or all it has, if fewer); ``layer_max_ratios``
    entries ``"glob=ratio"`` (e.g. ``"layer1.*=0.3"``, matched against the group's first layer) cap
    chosen stages or layers lower (the smallest matching cap wins).

    Per-layer widths: ``layer_ratios`` entries ``"glob=ratio"`` (same matching, e.g.
    ``"layer1.*.conv1=0.4"``) replace ``ratio`` for the groups they match, the last matching entry
    winning (write a general glob first, then specific overrides); other groups use ``ratio``. Only
    with ``scope="layer"``; the limits above still apply and iterative steps reach
    ``group_ratio * (1 - (1 - k/n)**3)`` (or ``* k/n``) of each group's original count.

    ``residual="keep"`` leaves every residual stream whole: channel groups that several layers
    produce and an addition sums (a ResNet stage, MobileNetV2's projections), so only the
    channels inside blocks shrink. Those carry the net's features from block to block, and cutting
    them costs most of the accuracy: resnet56 at 2x fewer MACs read 62% after pruning everything
    and 84% keeping the streams, after the same 2 short epochs (docs/pruning.md). Default "prune"
    cuts them too (more MACs removed per ``ratio``).
    """

    ratio: float
    criterion: Criterion = "l1"
    scope: Scope = "layer"
    round_to: int | Literal["auto"] = 1
    iterative_steps: int = 1
    max_layer_ratio: float = 0.9
    schedule: Literal["cubic", "linear"] = "cubic"
    min_channels: int = 1
    layer_max_ratios: tuple[str, ...] = ()
    layer_ratios: tuple[str, ...] = ()
    residual: Literal["prune", "keep"] = "prune"

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if data["residual"] == "prune":  # absent unless kept: keys of runs stored before it stay valid
            del data["residual"]
        return data

    def validate(self) -> None:
        _fraction("FilterPruning", "ratio", self.ratio)
        _fraction("FilterPruning", "max_layer_ratio", self.max_layer_ratio)
        if self.round_to != "auto" and self.round_to < 1:
            raise ConfigError(
                f"FilterPruning.round_to must be >= 1 or 'auto', got {self.round_to}",
                field="FilterPruning.round_to",
            )
        if self.min_channels < 1:
            raise ConfigError(
                f"FilterPruning.min_channels must be >= 1, got {self.min_channels}",
                field="FilterPruning.min_channels",
            )
        _glob_ratios("layer_max_ratios", self.layer_max_ratios, "'layer1.*=0.3'")
        _glob_ratios("layer_ratios", self.layer_ratios, "'layer1.*.conv1=0.4'")
        if self.layer_ratios and self.scope == "global":
            raise ConfigError(
                "FilterPruning.layer_ratios sets each group's own ratio, which scope='global' (one ranking "
                "across layers) cannot honour: use scope='layer' or drop layer_ratios",
                field="FilterPruning.layer_ratios",
            )
        if self.iterative_steps < 1:
            raise ConfigError(
                f"FilterPruning.iterative_steps must be >= 1, got {self.iterative_steps}",
                field="FilterPruning.iterative_steps",
            )


def _glob_ratios(field: str, entries: tuple[str, ...], example: str) -> None:
    """Every entry is ``"glob=ratio"`` with a non-empty glob and a ratio in [0, 1)."""
    for entry in entries:
        pattern, sep, value = entry.partition("=")
        try:
            ratio = float(value)
        except ValueError:
            ratio = -1.0
        if not sep or not pattern.strip() or not 0.0 <= ratio < 1.0:
            raise ConfigError(
                f"FilterPruning.{field}: {entry!r} is not 'glob=ratio' with a ratio in [0, 1), e.g. {example}",
                field=f"FilterPruning.{field}",
            )


PruningConfig = MagnitudePruning | GradualPruning | FilterPruning
