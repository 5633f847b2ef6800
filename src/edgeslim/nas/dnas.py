"""Differentiable architecture search (``strategy: dnas``): FBNet-style Gumbel-softmax over a space's genes.

Every gene of the space (``space.gene_choices()``: for a ResNet space the depth, stream width and
inner width of each stage; for a MobileNetV2 space the depth of each stage and the expand ratio and
kernel of each block) gets one categorical distribution, ``p_g = softmax(alpha_g)``. Each step draws a hard
straight-through Gumbel-softmax sample of every gene (Jang et al. 2017; FBNet, Wu et al. 2019), runs
the *concrete* sampled subnet on a training batch through the supernet, and takes one Adam step on
the logits alone for

    loss = cross-entropy(sampled subnet, labels) + lambda * |log(E_p[latency] / reference)|.

**Gradients of the accuracy term** (GDAS-style, Dong & Yang 2019: only the sampled choice is
computed, as FBNetV2's channel masks would be for it). The sample enters the forward pass as gates
whose value is exactly 1 (the subnet computes exactly what ``supernet.run`` computes with batch
statistics, tested) and whose gradient reaches every choice of its gene: a stream or inner width
``w_c`` multiplies its channel ``k`` by ``sum_j y_j [k < w_j]`` (narrower choices would drop the
channels past theirs, wider ones add channels not computed here, taken as zero); block ``i`` of a
stage is ``m * block(x) + (1 - m) * skip(x)`` with ``m = sum_j y_j [d_j > i]`` (blocks past the
sampled depth are not computed: zero gradient); an expand ratio gates the block's hidden channels
like a width, and a kernel choice enters as the depthwise weight ``sum_j y_j pad(W_{k_j})``, each
kernel's weight zero-padded to the largest (the sampled kernel's output in value, every kernel's
weight in the gradient). The gated forward pass of each supernet type is looked up by its type
(:data:`GATED_FORWARDS`).

**Cross-entropy, not distillation from the largest subnet**: the supernet is frozen, so the in-place
distillation that regularises supernet training has nothing to regularise here; the candidates are
ranked by proxy top-1 on labels, which cross-entropy estimates directly; and a teacher pass of the
largest subnet would cost more than the sampled subnet's own step.

**Frozen supernet weights, BatchNorm on batch statistics.** The supernet was trained for every
subnet at once (sandwich rule); fine-tuning it towards the current distribution would cost a full
weight step per step and bias the proxy scores every candidate is ranked by. The supernet's running
BN statistics are shared by all subnets (why the proxy re-estimates them), so the steps normalise
with each batch's own statistics, and nothing in the supernet is written.

**Expected latency, exact.** The predictor is ``anchor * (sum_k w_k S_k + b)``, ``S_k`` the table
costs of the layers of stage key ``k`` (:class:`~edgeslim.search.profile.LatencyPredictor`): a sum
of per-layer terms ``c_l``, each a function of the few genes it depends on (a block conv: its
stage's depth gene, which removes it, and the genes of its input and output widths or, in a
MobileNetV2 block, its expand ratio and kernel). The genes are
independent under ``p``, so

    E_p[predict] = anchor * b + sum_l  sum_{(c_g) for g in G(l)}  prod_{g in G(l)} p_g(c_g) * c_l(c).

:class:`ExpectedLatency` finds each layer's genes ``G(l)`` by varying one gene at a time from the
largest subnet, tabulates ``c_l`` over their joint choices with the same table lookups and
weights ``predict`` uses (at most 9 x 3 x 4 = 108 entries for a layer of ``resnet_cifar``), and
contracts the tables with the probabilities: the exact mean of ``predict`` over the distribution
(tested against enumerating every subnet of the tiny space), and differentiable in ``alpha``.

**The penalty seeks the budget** (TuNAS's absolute-value reward, Bender et al. 2020, on the log
ratio): the most accurate subnets of a trained supernet are the largest that fit, so the latency term
pulls the distribution *to* the budget from both sides, and cross-entropy chooses where on it. A
penalty that only pushes down (``lambda * log(E / target)``, ``lambda`` adapted multiplicatively on
the argmax) was tried first: with a weak accuracy gradient (frozen weights, small batches) Adam
follows the consistent latency gradient and the distribution collapsed to the smallest subnet
(``resnet_cifar`` from the sorted ResNet-56, a 50% budget: the argmax was the smallest subnet from
step 25 on while ``lambda`` fell from 1 to 0.04); a hinge would leave the distribution where it
starts under such a gradient. ``lambda`` (``dnas_lambda``) sets how hard the pull is; *where* it
pulls is adapted: every ``dnas_decode_every`` steps the most probable subnet is decoded and
``reference`` (starting at the budget) is multiplied by ``REFERENCE_STEP`` when that subnet is
predicted over the budget and divided by it when within (kept within ``REFERENCE_RANGE`` times the
budget), which closes the gap between the expected latency and the argmax's.

**Candidates**: at each decoding, the argmax (shrunk into the budget when over it, one gene choice
at a time, the most probable step first) and ``dnas_samples`` subnets drawn from the distribution
that are predicted within the budget, scored like evolution's candidates. The temperature anneals
from ``TAU_START`` to ``TAU_END`` (exponentially) over the run: ``dnas_steps`` or
``budget_minutes``, whichever ends it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeslim.data import BatchLoader, ImageTensors
from edgeslim.methods import HandlerTable
from edgeslim.nas.mbv2 import MBV2Supernet
from edgeslim.nas.space import STAGES, MBV2Subnet, SearchSpace, Subnet
from edgeslim.nas.supernet import ResNetSupernet, Supernet, elastic_bn
from edgeslim.search.profile import LatencyPredictor, LayerShape, stage_key

__all__ = [
    "GATED_FORWARDS",
    "REFERENCE_STEP",
    "TAU_END",
    "TAU_START",
    "DnasSearch",
    "ExpectedLatency",
    "LayerArgs",
    "gated_forward",
    "search_dnas",
]

TAU_START = 5.0  # FBNet's initial temperature
TAU_END = 0.5
REFERENCE_STEP = 0.9  # the penalty's reference x this when the argmax is over the budget, / when within
REFERENCE_RANGE = (0.25, 4.0)  # the reference stays within these multiples of the budget
SAMPLE_TRIES = 50  # draws per wanted sample (only subnets predicted within the budget are kept)

# the gene layout of ResNetSpace.genes: depths, then stream widths, then inner widths, per stage
_DEPTH, _WIDTH, _MID = 0, STAGES, 2 * STAGES

#: (widths, absent layers, replaced full shapes): a subnet as ``LatencyPredictor.predict`` takes it
LayerArgs = tuple[dict[str, tuple[int, int]], list[str], dict[str, LayerShape]]


class SubnetLatency(Protocol):
    """What :class:`ExpectedLatency` reads of ``search.SubnetPredictor`` (calibrated)."""

    @property
    def space(self) -> SearchSpace[Any]: ...
    @property
    def predictor(self) -> LatencyPredictor: ...
    def predict(self, subnet: Any) -> float: ...
    def layer_args(self, subnet: Any) -> LayerArgs: ...


class CandidateScorer(Protocol):
    """What :func:`search_dnas` uses of ``search._Scorer``: subnets scored land in ``seen``."""

    @property
    def net(self) -> Supernet[Any]: ...
    @property
    def predictor(self) -> SubnetLatency: ...
    @property
    def seen(self) -> Mapping[Any, object]: ...
    def score_many(self, subnets: list[Any]) -> Sequence[object]: ...


class DnasOptions(Protocol):
    """The fields of ``search.NasOptions`` that :func:`search_dnas` reads."""

    @property
    def max_evals(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def dnas_steps(self) -> int: ...
    @property
    def dnas_lr(self) -> float: ...
    @property
    def dnas_lambda(self) -> float: ...
    @property
    def dnas_batch_size(self) -> int: ...
    @property
    def dnas_decode_every(self) -> int: ...
    @property
    def dnas_samples(self) -> int: ...


class ExpectedLatency:
    """``E_p[predictor.predict(subnet)]`` for independent per-gene probabilities ``p`` (exact;
    see the module docstring). Build it after the predictor is calibrated."""

    def __init__(self, predictor: SubnetLatency) -> None:
        space, lp = predictor.space, predictor.predictor
        self.choices = space.gene_choices()
        base = space.genes(space.largest())

        def describe(genes: list[int]) -> tuple[dict[str, tuple[int, int]], set[str], dict[str, LayerShape]]:
            widths, absent, shapes = predictor.layer_args(space.from_genes(genes))
            return widths, set(absent), shapes

        def layer_ms(
            name: str, widths: dict[str, tuple[int, int]], absent: set[str], shapes: dict[str, LayerShape]
        ) -> float:
            if name in absent:  # as LatencyPredictor.features: a removed layer costs 0
                return 0.0
            weight = lp.weights.get(stage_key(lp.layers[name]), lp.a)
            return lp.anchor * weight * lp.layer_latency(name, widths, shapes)

        # the genes each layer depends on: those whose choices change its shape or remove it
        looks: dict[str, list[set[object]]] = {n: [] for n in lp.layers}
        for g, options in enumerate(self.choices):
            outcomes = [describe([*base[:g], c, *base[g + 1 :]]) for c in options]
            for name in lp.layers:
                looks[name].append(
                    {None if name in a else (w.get(name), k.get(name)) for w, a, k in outcomes}
                )
        groups: dict[tuple[int, ...], list[str]] = {}
        for name, per_gene in looks.items():
            groups.setdefault(tuple(g for g, seen in enumerate(per_gene) if len(seen) > 1), []).append(name)
        self.dependencies = {name: key for key, names in groups.items() for name in names}
        self.constant = lp.anchor * lp.b
        self.terms: list[tuple[tuple[int, ...], Tensor]] = []
        for key, names in groups.items():
            table = torch.zeros([len(self.choices[g]) for g in key], dtype=torch.float64)
            for index in itertools.product(*(range(len(self.choices[g])) for g in key)):
                genes = list(base)
                for g, i in zip(key, index, strict=True):
                    genes[g] = self.choices[g][i]
                widths, absent, shapes = describe(genes)
                table[index] = math.fsum(layer_ms(n, widths, absent, shapes) for n in names)
            if key:
                self.terms.append((key, table))
            else:
                self.constant += float(table)

    def __call__(self, probs: Sequence[Tensor]) -> Tensor:
        """The expected latency (ms, float64 scalar) for ``probs[g]``, one probability vector per gene."""
        total = torch.tensor(self.constant, dtype=torch.float64)
        for key, table in self.terms:
            term = table
            for g in key:  # contract the leading axis (gene key[0], then key[1], ...)
                term = torch.tensordot(term, probs[g].to(torch.float64), dims=([0], [0]))
            total = total + term
        return total


def _straight_through(logits: Tensor, tau: float, generator: torch.Generator) -> tuple[Tensor, int]:
    """A hard Gumbel-softmax sample: exactly one-hot in value, the soft sample's gradient."""
    gumbels = -torch.empty_like(logits).exponential_(generator=generator).log()
    soft = ((logits + gumbels) / tau).softmax(-1)
    index = int(soft.argmax())
    return F.one_hot(torch.tensor(index), len(logits)).to(soft.dtype) + (soft - soft.detach()), index


def _conv(conv: nn.Conv2d, x: Tensor, out_channels: int) -> Tensor:
    return F.conv2d(x, conv.weight[:out_channels, : x.shape[1]].detach(), None, conv.stride, conv.padding)


def _bn(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """Batch statistics, nothing written to the supernet's running statistics."""
    return elastic_bn(bn, x, frozen=True)


def _channel_gate(sample: Tensor, choices: Sequence[int], width: int) -> Tensor:
    """``[N, width, 1, 1]`` gate: channel ``k`` times ``sum_j y_j [k < choices[j]]`` (1 in value)."""
    keeps = torch.tensor([[float(k < c) for k in range(width)] for c in choices], dtype=sample.dtype)
    return (sample @ keeps).view(1, width, 1, 1)


def _depth_keep(sample: Tensor, depths: Sequence[int], block: int) -> Tensor:
    """``sum_j y_j [d_j > block]``: 1 in value while the sampled depth keeps ``block``."""
    return sample @ torch.tensor([float(d > block) for d in depths], dtype=sample.dtype)


#: the gated forward pass of each supernet type (:func:`gated_forward`)
GATED_FORWARDS: HandlerTable[Callable[[Any, Any, Sequence[Tensor], Tensor], Tensor]] = HandlerTable(
    "dnas gated forward"
)


def gated_forward(net: Supernet[Any], subnet: Any, samples: Sequence[Tensor], x: Tensor) -> Tensor:
    """``net.run(subnet, x)`` with batch-statistics BN and frozen weights, the genes' straight-through
    samples (``samples[g]``, one-hot in value, ``subnet`` their choices) entering as gates."""
    return GATED_FORWARDS.get(net)(net, subnet, samples, x)


@GATED_FORWARDS.register(ResNetSupernet)
def _gated_resnet(net: ResNetSupernet, subnet: Subnet, samples: Sequence[Tensor], x: Tensor) -> Tensor:
    choices = net.space.gene_choices()
    streams = [
        _channel_gate(samples[_WIDTH + s], choices[_WIDTH + s], subnet.widths[s]) for s in range(STAGES)
    ]
    out = F.relu(_bn(net.bn1, _conv(net.conv1, x, subnet.widths[0]))) * streams[0]
    for s, stage in enumerate(net.stages):
        width, mid = subnet.widths[s], subnet.mids[s]
        inner = _channel_gate(samples[_MID + s], choices[_MID + s], mid)
        depth_sample, depths = samples[_DEPTH + s], choices[_DEPTH + s]
        for i, block in enumerate(stage[: subnet.depths[s]]):
            h = F.relu(_bn(block.bn1, _conv(block.conv1, out, mid))) * inner
            h = _bn(block.bn2, _conv(block.conv2, h, width))
            skip = block._shortcut(out, width)
            y = F.relu(h + skip) * streams[s]
            keep = _depth_keep(depth_sample, depths, i)
            out = keep * y + (1 - keep) * skip
    pooled = out.mean((2, 3))
    return F.linear(pooled, net.linear.weight[:, : subnet.widths[-1]].detach(), net.linear.bias.detach())


@GATED_FORWARDS.register(MBV2Supernet)
def _gated_mbv2(net: MBV2Supernet, subnet: MBV2Subnet, samples: Sequence[Tensor], x: Tensor) -> Tensor:
    """Genes (``MBV2Space.genes``): depths, then each block slot's expand ratio, then its kernel."""
    space = net.space
    choices, stages, slots = space.gene_choices(), len(space.stages), sum(space.max_depths)
    top = space.kernel_choices[-1]
    out = net.stem_forward(x, frozen=True)
    for s in range(stages):
        for i, block in enumerate(net.blocks(s)[: subnet.depths[s]]):
            slot = space.slot(s, i)
            expand, kernel = subnet.expands[s][i], subnet.kernels[s][i]
            h = block.hidden(expand)
            gate = _channel_gate(samples[stages + slot], [block.hidden(e) for e in space.expand_choices], h)
            mixed = torch.zeros(h, 1, top, top, dtype=x.dtype)
            for y, k in zip(samples[stages + slots + slot], space.kernel_choices, strict=True):
                pad = (top - k) // 2
                mixed = mixed + y * F.pad(block.kernel_weight(k, h, frozen=True), [pad] * 4)
            y_out = block(out, expand, kernel, frozen=True, hidden_gate=gate, dw_weight=mixed)
            if block.residual:  # a block that may be dropped (every block past the first of its stage)
                keep = _depth_keep(samples[s], choices[s], i)
                y_out = keep * y_out + (1 - keep) * out
            out = y_out
    return net.head_forward(out, frozen=True)


@dataclasses.dataclass(frozen=True)
class DnasStep:
    """One architecture step: the sampled subnet, its loss terms and the distribution's latency."""

    subnet: Any
    cross_entropy: float
    expected_ms: float
    loss: float


class DnasSearch:
    """Architecture logits over ``net.space`` trained against the frozen ``net`` (module docstring)."""

    def __init__(
        self,
        net: Supernet[Any],
        latency: ExpectedLatency,
        target_ms: float,
        *,
        lr: float = 0.05,
        lam: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.net, self.latency, self.target_ms, self.lam = net, latency, target_ms, lam
        self.reference_ms = target_ms
        self.space = net.space
        self.choices = self.space.gene_choices()
        self.logits = [torch.zeros(len(c), requires_grad=True) for c in self.choices]
        self.optimizer = torch.optim.Adam(self.logits, lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps = 0

    def probs(self) -> list[Tensor]:
        return [logits.detach().softmax(-1) for logits in self.logits]

    def expected_ms(self) -> float:
        return float(self.latency(self.probs()))

    def argmax(self) -> Any:
        """The most probable subnet (the first choice on ties)."""
        return self.space.from_genes(
            [c[int(p.argmax())] for c, p in zip(self.choices, self.probs(), strict=True)]
        )

    def sample(self, rng: random.Random) -> Any:
        """A subnet drawn from the distribution."""
        return self.space.from_genes(
            [rng.choices(c, weights=p.tolist())[0] for c, p in zip(self.choices, self.probs(), strict=True)]
        )

    def step(self, x: Tensor, y: Tensor, tau: float) -> DnasStep:
        """One Adam step on the logits: cross-entropy + lambda * |log(expected latency / reference)|."""
        with torch.enable_grad():
            drawn = [_straight_through(logits, tau, self.generator) for logits in self.logits]
            subnet = self.space.from_genes([c[i] for c, (_, i) in zip(self.choices, drawn, strict=True)])
            ce = F.cross_entropy(gated_forward(self.net, subnet, [s for s, _ in drawn], x), y)
            expected = self.latency([logits.softmax(-1) for logits in self.logits])
            loss = ce + self.lam * torch.log(expected / self.reference_ms).abs().to(ce.dtype)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.steps += 1
        return DnasStep(subnet, float(ce.detach()), float(expected.detach()), float(loss.detach()))

    def adapt(self, over_budget: bool) -> None:
        """Move the penalty's reference: down when the argmax is over the budget, up when within
        (within ``REFERENCE_RANGE`` times the budget)."""
        factor = REFERENCE_STEP if over_budget else 1.0 / REFERENCE_STEP
        low, high = REFERENCE_RANGE
        self.reference_ms = min(max(self.reference_ms * factor, low * self.target_ms), high * self.target_ms)

    def decoded(self, predict: Callable[[Any], float]) -> Any | None:
        """The argmax if predicted within the budget, else the argmax shrunk one gene choice at a
        time (the most probable step first) until it is; None when even the smallest is over."""
        space, choices = self.space, self.choices
        genes = space.genes(self.argmax())
        probs = self.probs()
        while predict(space.from_genes(genes)) > self.target_ms:
            positions = [choices[g].index(v) for g, v in enumerate(genes)]
            kept = {g: float(probs[g][i - 1]) for g, i in enumerate(positions) if i > 0}
            if not kept:
                return None
            g = max(kept, key=kept.__getitem__)
            genes[g] = choices[g][positions[g] - 1]
        return space.from_genes(genes)


def _batches(loader: BatchLoader) -> Iterator[tuple[Tensor, Tensor]]:
    while True:
        empty = True
        for x, y in loader:
            empty = False
            yield x, y
        if empty:
            return


def search_dnas(
    scorer: CandidateScorer,
    train: ImageTensors,
    target: float,
    options: DnasOptions,
    deadline: float,
    say: Callable[[str], None],
) -> DnasSearch:
    """Train the architecture distribution, scoring decoded subnets into ``scorer.seen`` until
    ``dnas_steps`` steps, ``max_evals`` scored subnets or ``deadline`` (``time.perf_counter``)."""
    net, predictor = scorer.net, scorer.predictor
    search = DnasSearch(
        net,
        ExpectedLatency(predictor),
        target,
        lr=options.dnas_lr,
        lam=options.dnas_lambda,
        seed=options.seed,
    )
    rng = random.Random(options.seed)
    batches = _batches(BatchLoader(train, options.dnas_batch_size, shuffle=True, seed=options.seed))
    began = time.perf_counter()

    def room() -> int:
        return options.max_evals - len(scorer.seen)

    def decode(final: bool) -> None:
        best = search.argmax()
        best_ms = predictor.predict(best)
        decoded = search.decoded(predictor.predict)
        wanted = [] if decoded is None else [decoded]
        for _ in range(SAMPLE_TRIES * options.dnas_samples):
            if len(wanted) >= options.dnas_samples + 1:
                break
            subnet = search.sample(rng)
            if subnet not in scorer.seen and subnet not in wanted and predictor.predict(subnet) <= target:
                wanted.append(subnet)
        todo = [s for s in dict.fromkeys(wanted) if s not in scorer.seen][: max(room(), 0)]
        if todo:
            scorer.score_many(todo)
        if not final:
            search.adapt(best_ms > target)
        say(
            f"dnas step {search.steps}: argmax {best.label()} {best_ms:.3f} ms predicted (budget "
            f"{target:.3f}), expected {search.expected_ms():.3f} ms, reference {search.reference_ms:.3f} ms; "
            f"{len(scorer.seen)} subnets scored"
        )

    span = max(deadline - began, 1e-9)
    while search.steps < options.dnas_steps and room() > 0 and time.perf_counter() < deadline:
        progress = max(search.steps / options.dnas_steps, (time.perf_counter() - began) / span)
        tau = TAU_START * (TAU_END / TAU_START) ** min(progress, 1.0)
        batch = next(batches, None)
        if batch is None:
            break
        search.step(batch[0], batch[1], tau)
        if search.steps % options.dnas_decode_every == 0:
            decode(final=False)
    if room() > 0:
        decode(final=True)
    return search
