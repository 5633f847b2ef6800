"""Search spaces: what a subnet of a weight-sharing supernet may choose.

A :class:`ResNetSpace` is the CIFAR ResNet family made elastic (Once-for-All style): per stage, the
number of blocks (``depths``), the residual stream's width (``widths``) and the blocks' inner width
(``mids``). Width choices are channel counts in multiples the CPU runtimes like (4 for the full
space: 8..64), not fractions, so a subnet's layers are exactly what the latency table timed. A
:class:`Subnet` is one choice per stage for each of the three; the largest subnet of ``resnet_cifar``
is ResNet-56, and ResNet-20/32/44 are subnets too (the hand-designed references).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from edgeslim.errors import ConfigError
from edgeslim.registry import Registry

__all__ = ["SPACES", "ResNetSpace", "Subnet", "get_space"]

STAGES = 3


@dataclasses.dataclass(frozen=True)
class Subnet:
    """Blocks, stream width and inner width of each of the three stages."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    mids: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"depths": list(self.depths), "widths": list(self.widths), "mids": list(self.mids)}

    @classmethod
    def from_dict(cls, data: Any) -> Subnet:
        if not isinstance(data, dict) or set(data) != {"depths", "widths", "mids"}:
            raise ConfigError(
                f"a subnet is {{depths: [...], widths: [...], mids: [...]}}, got {data!r}", field="nas.subnet"
            )
        parts = {}
        for key in ("depths", "widths", "mids"):
            value = data[key]
            if not isinstance(value, list | tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(
                    f"subnet.{key} must be a list of integers, got {value!r}", field="nas.subnet"
                )
            parts[key] = tuple(value)
        return cls(**parts)

    def label(self) -> str:
        """Short text: ``d3-5-9 w16-32-64 m8-16-32``."""
        return "d{} w{} m{}".format(*("-".join(map(str, v)) for v in (self.depths, self.widths, self.mids)))


@dataclasses.dataclass(frozen=True)
class ResNetSpace:
    """Elastic CIFAR ResNet: ``max_depth`` blocks per stage at most, channel choices per stage.

    ``init_model`` is the zoo model whose pretrained weights initialise the supernet (its largest
    subnet has exactly that model's shape); ``references`` are hand-designed zoo models that are
    subnets of the space (blocks per stage, full widths), reported beside searched subnets.
    """

    name: str
    max_depth: int
    min_depth: int
    width_choices: tuple[tuple[int, ...], ...]  # per stage: stream channel counts, ascending
    mid_choices: tuple[tuple[int, ...], ...]  # per stage: inner channel counts, ascending
    init_model: str
    references: tuple[tuple[str, int], ...] = ()  # (zoo name, blocks per stage)
    description: str = ""

    @property
    def max_widths(self) -> tuple[int, ...]:
        return tuple(c[-1] for c in self.width_choices)

    @property
    def max_mids(self) -> tuple[int, ...]:
        return tuple(c[-1] for c in self.mid_choices)

    def largest(self) -> Subnet:
        return Subnet((self.max_depth,) * STAGES, self.max_widths, self.max_mids)

    def smallest(self) -> Subnet:
        return Subnet(
            (self.min_depth,) * STAGES,
            tuple(c[0] for c in self.width_choices),
            tuple(c[0] for c in self.mid_choices),
        )

    def depth_choices(self) -> tuple[int, ...]:
        return tuple(range(self.min_depth, self.max_depth + 1))

    def reference(self, blocks: int) -> Subnet:
        """The hand-designed net with ``blocks`` per stage and full widths."""
        return Subnet((blocks,) * STAGES, self.max_widths, self.max_mids)

    def sample(self, rng: random.Random) -> Subnet:
        """A uniformly random subnet."""
        return Subnet(
            tuple(rng.choice(self.depth_choices()) for _ in range(STAGES)),
            tuple(rng.choice(c) for c in self.width_choices),
            tuple(rng.choice(c) for c in self.mid_choices),
        )

    def genes(self, subnet: Subnet) -> list[int]:
        """The subnet as 9 choices (depth, width, mid per stage) for mutation and crossover."""
        return [*subnet.depths, *subnet.widths, *subnet.mids]

    def from_genes(self, genes: list[int]) -> Subnet:
        return Subnet(tuple(genes[0:3]), tuple(genes[3:6]), tuple(genes[6:9]))

    def gene_choices(self) -> list[tuple[int, ...]]:
        return [self.depth_choices()] * STAGES + list(self.width_choices) + list(self.mid_choices)

    def check(self, subnet: Subnet) -> Subnet:
        """``subnet`` if every choice is one this space offers, else a one-line ConfigError."""
        if not len(subnet.depths) == len(subnet.widths) == len(subnet.mids) == STAGES:
            raise ConfigError(
                f"a subnet of {self.name!r} has {STAGES} stages, got {subnet.to_dict()}", field="nas.subnet"
            )
        keys = ["depths"] * STAGES + ["widths"] * STAGES + ["mids"] * STAGES
        for key, value, choices in zip(keys, self.genes(subnet), self.gene_choices(), strict=True):
            if value not in choices:
                raise ConfigError(
                    f"subnet.{key} {value} is not a choice of space {self.name!r} ({list(choices)})",
                    field="nas.subnet",
                )
        return subnet

    def size(self) -> int:
        """How many subnets the space holds."""
        total = 1
        for choices in self.gene_choices():
            total *= len(choices)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_depth": self.max_depth,
            "min_depth": self.min_depth,
            "width_choices": [list(c) for c in self.width_choices],
            "mid_choices": [list(c) for c in self.mid_choices],
            "init_model": self.init_model,
        }


SPACES: Registry[ResNetSpace] = Registry("search space", ConfigError)


def _register(space: ResNetSpace) -> ResNetSpace:
    return SPACES.add(space.name, space)


_register(
    ResNetSpace(
        name="resnet_cifar",
        max_depth=9,
        min_depth=1,
        width_choices=((8, 12, 16), (16, 24, 32), (32, 48, 64)),
        mid_choices=((4, 8, 12, 16), (8, 16, 24, 32), (16, 32, 48, 64)),
        init_model="resnet56",
        references=(("resnet20", 3), ("resnet32", 5), ("resnet44", 7), ("resnet56", 9)),
        description="CIFAR ResNet, 1-9 blocks per stage, streams 8-64 and inner widths 4-64 channels "
        "(multiples of 4); largest = ResNet-56",
    )
)
_register(
    ResNetSpace(
        name="resnet_cifar_tiny",
        max_depth=3,
        min_depth=1,
        width_choices=((2, 4), (4, 8), (8, 16)),
        mid_choices=((2, 4), (4, 8), (8, 16)),
        init_model="resnet20_tiny",
        references=(("resnet20_tiny", 3),),
        description="test space: resnet20_tiny (4/8/16 channels) made elastic; trains in seconds",
    )
)


def get_space(name: str) -> ResNetSpace:
    """The registered space ``name`` (a one-line error naming the choices otherwise)."""
    if not isinstance(name, str):
        raise ConfigError(f"space must be a name, got {name!r}", field="nas.space")
    if name not in SPACES:
        raise ConfigError(
            f"unknown search space {name!r}; choose one of {', '.join(SPACES.names())}", field="nas.space"
        )
    return SPACES.get(name)
