"""Search spaces: what a subnet of a weight-sharing supernet may choose.

Every space is a :class:`SearchSpace`: a registered name, its largest and smallest subnet, and the
subnet as a flat list of **genes** (one choice each, :meth:`SearchSpace.gene_choices`), which is all
that evolution (mutation, crossover) and the differentiable search (one distribution per gene)
touch. Two families:

* :class:`ResNetSpace` is the CIFAR ResNet family made elastic (Once-for-All style): per stage, the
  number of blocks (``depths``), the residual stream's width (``widths``) and the blocks' inner width
  (``mids``). Width choices are channel counts in multiples the CPU runtimes like (4 for the full
  space: 8..64), not fractions, so a subnet's layers are exactly what the latency table timed. A
  :class:`Subnet` is one choice per stage for each of the three; the largest subnet of
  ``resnet_cifar`` is ResNet-56, and ResNet-20/32/44 are subnets too (the hand-designed references).
* :class:`MBV2Space` is the CIFAR MobileNetV2 made elastic, for users who train from scratch: per
  stage the number of inverted residual blocks, and per block its expand ratio and depthwise kernel
  size (an elastic kernel: smaller kernels are the centre of the largest one, OFA style). An
  :class:`MBV2Subnet` lists the choices of the blocks it keeps; the hand-designed MobileNetV2 (expand
  6, kernel 3, 2/3/4/3/3/1 blocks) is a subnet of ``mbv2_cifar``.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import random
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from edgeslim.errors import ConfigError
from edgeslim.registry import Registry

__all__ = [
    "SPACES",
    "MBV2Space",
    "MBV2Subnet",
    "ResNetSpace",
    "SearchSpace",
    "Subnet",
    "SubnetChoice",
    "get_space",
]

STAGES = 3  # stages of a ResNetSpace


class SubnetChoice(Protocol):
    """What every subnet type offers: plain-data form, a short label, hashing (a frozen dataclass)."""

    def to_dict(self) -> dict[str, Any]: ...
    def label(self) -> str: ...
    def __hash__(self) -> int: ...


S = TypeVar("S", bound=SubnetChoice)


def _int_list(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"subnet.{key} must be a list of integers, got {value!r}", field="nas.subnet")
    return tuple(value)


def _dict_of(data: Any, keys: tuple[str, ...], shape: str) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) != set(keys):
        raise ConfigError(f"a subnet is {shape}, got {data!r}", field="nas.subnet")
    return data


def _not_a_choice(key: str, value: int, space: str, choices: Sequence[int]) -> ConfigError:
    return ConfigError(
        f"subnet.{key} {value} is not a choice of space {space!r} ({list(choices)})", field="nas.subnet"
    )


class SearchSpace(abc.ABC, Generic[S]):
    """A registered space of subnets of type ``S``, encoded as genes for the search strategies.

    ``init_model`` is the zoo model whose pretrained weights may initialise the supernet (None: the
    space trains from scratch); :meth:`reference_subnets` are hand-designed zoo models that are
    subnets of the space, reported beside searched subnets.
    """

    name: str
    init_model: str | None
    description: str

    @abc.abstractmethod
    def largest(self) -> S: ...

    @abc.abstractmethod
    def smallest(self) -> S: ...

    @abc.abstractmethod
    def genes(self, subnet: S) -> list[int]:
        """The subnet as one choice per gene (the order of :meth:`gene_choices`)."""

    @abc.abstractmethod
    def from_genes(self, genes: Sequence[int]) -> S: ...

    @abc.abstractmethod
    def gene_choices(self) -> list[tuple[int, ...]]: ...

    @abc.abstractmethod
    def check(self, subnet: S) -> S:
        """``subnet`` if every choice is one this space offers, else a one-line ConfigError."""

    @abc.abstractmethod
    def subnet_from_dict(self, data: Any) -> S:
        """A subnet of this space's type from its ``to_dict`` form (checked against the space)."""

    @abc.abstractmethod
    def reference_subnets(self) -> list[tuple[str, S]]:
        """(zoo name, subnet) of the hand-designed nets that are subnets of the space."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The definition, stored in supernet files (a file of another definition is refused)."""

    def sample(self, rng: random.Random) -> S:
        """A random subnet: each gene uniformly."""
        return self.from_genes([rng.choice(c) for c in self.gene_choices()])

    def size(self) -> int:
        """How many subnets the space holds."""
        return math.prod(len(c) for c in self.gene_choices())


# -- CIFAR ResNet ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Subnet:
    """A subnet of a :class:`ResNetSpace`: blocks, stream width and inner width of each stage."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    mids: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"depths": list(self.depths), "widths": list(self.widths), "mids": list(self.mids)}

    @classmethod
    def from_dict(cls, data: Any) -> Subnet:
        keys = ("depths", "widths", "mids")
        data = _dict_of(data, keys, "{depths: [...], widths: [...], mids: [...]}")
        return cls(*(_int_list(data[key], key) for key in keys))

    def label(self) -> str:
        """Short text: ``d3-5-9 w16-32-64 m8-16-32``."""
        return "d{} w{} m{}".format(*("-".join(map(str, v)) for v in (self.depths, self.widths, self.mids)))


@dataclasses.dataclass(frozen=True)
class ResNetSpace(SearchSpace[Subnet]):
    """Elastic CIFAR ResNet: ``max_depth`` blocks per stage at most, channel choices per stage.

    The largest subnet of the space has exactly ``init_model``'s shape; ``references`` are
    (zoo name, blocks per stage) of hand-designed nets at full widths.
    """

    name: str
    max_depth: int
    min_depth: int
    width_choices: tuple[tuple[int, ...], ...]  # per stage: stream channel counts, ascending
    mid_choices: tuple[tuple[int, ...], ...]  # per stage: inner channel counts, ascending
    init_model: str | None
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

    def reference_subnets(self) -> list[tuple[str, Subnet]]:
        return [(name, self.reference(blocks)) for name, blocks in self.references]

    def genes(self, subnet: Subnet) -> list[int]:
        """The subnet as 9 choices (depth, width, mid per stage) for mutation and crossover."""
        return [*subnet.depths, *subnet.widths, *subnet.mids]

    def from_genes(self, genes: Sequence[int]) -> Subnet:
        return Subnet(tuple(genes[0:3]), tuple(genes[3:6]), tuple(genes[6:9]))

    def gene_choices(self) -> list[tuple[int, ...]]:
        return [self.depth_choices()] * STAGES + list(self.width_choices) + list(self.mid_choices)

    def check(self, subnet: Subnet) -> Subnet:
        if not len(subnet.depths) == len(subnet.widths) == len(subnet.mids) == STAGES:
            raise ConfigError(
                f"a subnet of {self.name!r} has {STAGES} stages, got {subnet.to_dict()}", field="nas.subnet"
            )
        keys = ["depths"] * STAGES + ["widths"] * STAGES + ["mids"] * STAGES
        for key, value, choices in zip(keys, self.genes(subnet), self.gene_choices(), strict=True):
            if value not in choices:
                raise _not_a_choice(key, value, self.name, choices)
        return subnet

    def subnet_from_dict(self, data: Any) -> Subnet:
        return self.check(Subnet.from_dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_depth": self.max_depth,
            "min_depth": self.min_depth,
            "width_choices": [list(c) for c in self.width_choices],
            "mid_choices": [list(c) for c in self.mid_choices],
            "init_model": self.init_model,
        }


# -- MobileNetV2 -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MBV2Subnet:
    """A subnet of an :class:`MBV2Space`: blocks per stage, and per block kept its expand ratio and
    depthwise kernel size (``expands[s]`` and ``kernels[s]`` have ``depths[s]`` entries)."""

    depths: tuple[int, ...]
    expands: tuple[tuple[int, ...], ...]
    kernels: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "depths": list(self.depths),
            "expands": [list(e) for e in self.expands],
            "kernels": [list(k) for k in self.kernels],
        }

    @classmethod
    def from_dict(cls, data: Any) -> MBV2Subnet:
        keys = ("depths", "expands", "kernels")
        data = _dict_of(data, keys, "{depths: [...], expands: [[...], ...], kernels: [[...], ...]}")
        depths = _int_list(data["depths"], "depths")
        nested = []
        for key in keys[1:]:
            value = data[key]
            if not isinstance(value, list | tuple):
                raise ConfigError(
                    f"subnet.{key} must be one list per stage, got {value!r}", field="nas.subnet"
                )
            nested.append(tuple(_int_list(v, key) for v in value))
        return cls(depths, nested[0], nested[1])

    def label(self) -> str:
        """Short text: ``d2-3 e6.6-4.3.6 k3.5-3.5.7`` (stages by ``-``, blocks by ``.``)."""
        expands, kernels = ("-".join(".".join(map(str, b)) for b in v) for v in (self.expands, self.kernels))
        return f"d{'-'.join(map(str, self.depths))} e{expands} k{kernels}"


@dataclasses.dataclass(frozen=True)
class MBV2Space(SearchSpace[MBV2Subnet]):
    """Elastic CIFAR MobileNetV2: a fixed stem and first block (expand 1, kernel 3), elastic stages
    of inverted residual blocks, a fixed 1x1 last conv and the classifier.

    ``stages``: (output channels, stride of the first block) per elastic stage; ``depth_choices``:
    blocks per stage. Every block chooses an expand ratio and a kernel size. Genes: the depths, then
    every block slot's expand ratio, then every slot's kernel (slots of blocks a subnet does not keep
    are ignored: :meth:`from_genes` drops them, :meth:`genes` fills them with the first choice).
    ``kernel_transform``: smaller kernels pass the centre of the next larger one through a learned
    ``k^2 x k^2`` matrix per block (OFA's kernel transformation; identity at initialisation).
    """

    name: str
    stem: int
    first: int
    stages: tuple[tuple[int, int], ...]  # (channels, stride) per elastic stage
    depth_choices: tuple[tuple[int, ...], ...]  # per stage, ascending
    expand_choices: tuple[int, ...]  # ascending
    kernel_choices: tuple[int, ...]  # ascending, odd
    last_channel: int
    kernel_transform: bool = True
    init_model: str | None = None
    references: tuple[tuple[str, MBV2Subnet], ...] = ()
    description: str = ""

    @property
    def max_depths(self) -> tuple[int, ...]:
        return tuple(c[-1] for c in self.depth_choices)

    def slot(self, stage: int, block: int) -> int:
        """The index of block ``block`` of ``stage`` among all block slots (0-based)."""
        return sum(self.max_depths[:stage]) + block

    def uniform(self, depths: Sequence[int], expand: int, kernel: int) -> MBV2Subnet:
        """``depths`` blocks per stage, every block with ``expand`` and ``kernel``."""
        return MBV2Subnet(
            tuple(depths), tuple((expand,) * d for d in depths), tuple((kernel,) * d for d in depths)
        )

    def largest(self) -> MBV2Subnet:
        return self.uniform(self.max_depths, self.expand_choices[-1], self.kernel_choices[-1])

    def smallest(self) -> MBV2Subnet:
        depths = [c[0] for c in self.depth_choices]
        return self.uniform(depths, self.expand_choices[0], self.kernel_choices[0])

    def reference_subnets(self) -> list[tuple[str, MBV2Subnet]]:
        return list(self.references)

    def genes(self, subnet: MBV2Subnet) -> list[int]:
        expands, kernels = [], []
        for s, top in enumerate(self.max_depths):
            fill = top - subnet.depths[s]
            expands += [*subnet.expands[s], *(self.expand_choices[0],) * fill]
            kernels += [*subnet.kernels[s], *(self.kernel_choices[0],) * fill]
        return [*subnet.depths, *expands, *kernels]

    def from_genes(self, genes: Sequence[int]) -> MBV2Subnet:
        n, slots = len(self.stages), sum(self.max_depths)
        depths = tuple(genes[:n])
        expands = tuple(tuple(genes[n + self.slot(s, 0) :][:d]) for s, d in enumerate(depths))
        kernels = tuple(tuple(genes[n + slots + self.slot(s, 0) :][:d]) for s, d in enumerate(depths))
        return MBV2Subnet(depths, expands, kernels)

    def gene_choices(self) -> list[tuple[int, ...]]:
        slots = sum(self.max_depths)
        return [*self.depth_choices, *[self.expand_choices] * slots, *[self.kernel_choices] * slots]

    def check(self, subnet: MBV2Subnet) -> MBV2Subnet:
        n = len(self.stages)
        if not len(subnet.depths) == len(subnet.expands) == len(subnet.kernels) == n:
            raise ConfigError(
                f"a subnet of {self.name!r} has {n} stages, got {subnet.to_dict()}", field="nas.subnet"
            )
        for s, depth in enumerate(subnet.depths):
            if depth not in self.depth_choices[s]:
                raise _not_a_choice("depths", depth, self.name, self.depth_choices[s])
            for key, blocks, choices in (
                ("expands", subnet.expands[s], self.expand_choices),
                ("kernels", subnet.kernels[s], self.kernel_choices),
            ):
                if len(blocks) != depth:
                    raise ConfigError(
                        f"subnet.{key}[{s}] has {len(blocks)} blocks but subnet.depths[{s}] is {depth}",
                        field="nas.subnet",
                    )
                for value in blocks:
                    if value not in choices:
                        raise _not_a_choice(key, value, self.name, choices)
        return subnet

    def subnet_from_dict(self, data: Any) -> MBV2Subnet:
        return self.check(MBV2Subnet.from_dict(data))

    def size(self) -> int:
        per_block = len(self.expand_choices) * len(self.kernel_choices)
        return math.prod(sum(per_block**d for d in depths) for depths in self.depth_choices)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stem": self.stem,
            "first": self.first,
            "stages": [list(s) for s in self.stages],
            "depth_choices": [list(c) for c in self.depth_choices],
            "expand_choices": list(self.expand_choices),
            "kernel_choices": list(self.kernel_choices),
            "last_channel": self.last_channel,
            "kernel_transform": self.kernel_transform,
            "init_model": self.init_model,
        }


# -- the registry ------------------------------------------------------------------------------------

SPACES: Registry[SearchSpace[Any]] = Registry("search space", ConfigError)


def _register(space: SearchSpace[Any]) -> SearchSpace[Any]:
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

_MBV2_DEPTHS = (2, 3, 4, 3, 3, 1)  # the hand-designed MobileNetV2's blocks per stage (CIFAR strides)
_MBV2_EXPANDS, _MBV2_KERNELS = (3, 4, 6), (3, 5, 7)
_register(
    MBV2Space(
        name="mbv2_cifar",
        stem=32,
        first=16,
        stages=((24, 1), (32, 2), (64, 2), (96, 1), (160, 2), (320, 1)),
        depth_choices=((2, 3, 4),) * 5 + ((1,),),
        expand_choices=_MBV2_EXPANDS,
        kernel_choices=_MBV2_KERNELS,
        last_channel=1280,
        references=(
            (
                "mobilenet_v2",
                MBV2Subnet(
                    _MBV2_DEPTHS,
                    tuple((6,) * d for d in _MBV2_DEPTHS),
                    tuple((3,) * d for d in _MBV2_DEPTHS),
                ),
            ),
        ),
        description="CIFAR MobileNetV2 from scratch: 2-4 inverted residual blocks per stage, expand 3/4/6 "
        "and kernel 3/5/7 per block (elastic kernel); MobileNetV2 is a subnet",
    )
)
_register(
    MBV2Space(
        name="mbv2_cifar_tiny",
        stem=8,
        first=8,
        stages=((8, 1), (16, 2), (16, 1)),
        depth_choices=((1, 2),) * 3,
        expand_choices=(3, 6),
        kernel_choices=_MBV2_KERNELS,
        last_channel=32,
        description="test space: MobileNetV2 blocks at 8-16 channels, 1-2 blocks per stage, expand "
        "3/6, kernel 3/5/7; trains in seconds",
    )
)


def get_space(name: str) -> SearchSpace[Any]:
    """The registered space ``name`` (a one-line error naming the choices otherwise)."""
    if not isinstance(name, str):
        raise ConfigError(f"space must be a name, got {name!r}", field="nas.space")
    if name not in SPACES:
        raise ConfigError(
            f"unknown search space {name!r}; choose one of {', '.join(SPACES.names())}", field="nas.space"
        )
    return SPACES.get(name)
