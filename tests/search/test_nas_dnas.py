"""``edgeslim nas search --strategy dnas``: the exact expected latency, the gated forward pass, the
latency penalty, and the strategy end to end through ``search_subnet`` and the CLI.

Latency comes from the MAC-based stand-in runtime (``search_helpers``); the tiny space
(``resnet_cifar_tiny``, 1,728 subnets) is small enough to enumerate.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from search_helpers import MS_PER_MAC
from typer.testing import CliRunner

from edgeslim.bench.latency import threads
from edgeslim.cli.app import app
from edgeslim.errors import ConfigError
from edgeslim.models import create_model
from edgeslim.nas import ResNetSupernet, get_space, save_supernet
from edgeslim.nas.dnas import REFERENCE_STEP, DnasSearch, ExpectedLatency
from edgeslim.nas.search import NasOptions, SubnetPredictor, search_subnet
from edgeslim.search import Budget, LatencyTable, ModelLayout
from edgeslim.search.profile import stage_key
from edgeslim.tasks import DataSource

runner = CliRunner()
TINY = get_space("resnet_cifar_tiny")
INPUT = (3, 32, 32)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The nets are tiny: one thread is as fast, and far faster on a busy machine."""
    with threads(1):
        yield


def _net(seed: int = 0) -> ResNetSupernet:
    """A tiny supernet with non-trivial weights and BN parameters (no training needed here)."""
    torch.manual_seed(seed)
    net = ResNetSupernet(TINY)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 1.5)
            m.bias.data.normal_(0, 0.1)
    return net.eval()


def _predictor(net: ResNetSupernet, calibrated: bool = True) -> SubnetPredictor:
    """The search's predictor on the stand-in table, with a non-trivial fit (per-stage weights,
    intercept, anchor) so the expectation must reproduce every term of ``predict``."""
    predictor = SubnetPredictor(net, LatencyTable("ort", 1, 1), INPUT)
    predictor.predictor.table.fill(predictor.layers.values())
    if calibrated:
        lp = predictor.predictor
        keys = sorted({stage_key(s) for s in lp.layers.values()})
        lp.a, lp.b, lp.anchor = 1.3, 0.02, 1.1
        lp.weights = {k: 0.5 + 0.25 * i for i, k in enumerate(keys[:-1])}  # the last key falls back to a
    return predictor


def _dense_ms() -> float:
    layout = ModelLayout(create_model("resnet20_tiny"), INPUT)
    return sum(s.macs() for s in layout.layers.values()) * MS_PER_MAC


def test_expected_latency_is_the_exact_mean_of_the_predictor_over_every_subnet(fake_runtime: None) -> None:
    predictor = _predictor(_net())
    latency = ExpectedLatency(predictor)
    choices = TINY.gene_choices()
    gen = torch.Generator().manual_seed(0)
    raw = [torch.rand(len(c), generator=gen, dtype=torch.float64) + 0.05 for c in choices]
    probs = [p / p.sum() for p in raw]
    exact = math.fsum(
        math.prod(float(probs[g][choices[g].index(v)]) for g, v in enumerate(genes))
        * predictor.predict(TINY.from_genes(list(genes)))
        for genes in itertools.product(*choices)
    )
    assert float(latency(probs)) == pytest.approx(exact, rel=1e-12)
    # a point mass is that subnet's prediction
    rng = random.Random(0)
    for subnet in [TINY.largest(), TINY.smallest()] + [TINY.sample(rng) for _ in range(5)]:
        genes = TINY.genes(subnet)
        one_hot = [
            F.one_hot(torch.tensor(c.index(v)), len(c)).double() for c, v in zip(choices, genes, strict=True)
        ]
        assert float(latency(one_hot)) == pytest.approx(predictor.predict(subnet), rel=1e-12)
    # what each layer depends on (genes: depths 0-2, stream widths 3-5, inner widths 6-8)
    assert latency.dependencies["conv1"] == (3,) and latency.dependencies["linear"] == (5,)
    assert latency.dependencies["layer1.0.conv1"] == (3, 6)  # the first block is always there
    assert latency.dependencies["layer2.0.conv1"] == (3, 7)  # reads stage 1's stream
    assert latency.dependencies["layer3.2.conv2"] == (2, 5, 8)
    # and it is differentiable in the logits
    logits = [torch.zeros(len(c), requires_grad=True) for c in choices]
    latency([lg.softmax(-1) for lg in logits]).backward()
    assert all(lg.grad is not None and float(lg.grad.abs().sum()) > 0 for lg in logits)


# the gated forward pass of every space: test_nas_mbv2.py (parametrized over both tiny spaces)


def test_a_large_lambda_pulls_the_distribution_to_the_budget_and_decodes_within_it(
    fake_runtime: None,
) -> None:
    net = _net()
    predictor = _predictor(net)
    largest, smallest = predictor.predict(TINY.largest()), predictor.predict(TINY.smallest())
    target = smallest + 0.6 * (largest - smallest)
    search = DnasSearch(net, ExpectedLatency(predictor), target, lr=0.1, lam=50.0, seed=0)
    with torch.no_grad():
        for lg in search.logits:
            lg[-1] = 3.0  # start near the largest subnet: far over the budget
    assert search.argmax() == TINY.largest() and search.expected_ms() > 1.4 * target
    start = [lg.detach().clone() for lg in search.logits]
    x, y = torch.randn(16, *INPUT), torch.arange(16) % 10
    steps = [search.step(x, y, tau=1.0) for _ in range(20)]
    assert search.steps == 20 and all(math.isfinite(s.cross_entropy) and math.isfinite(s.loss) for s in steps)
    assert all(not torch.equal(a, b.detach()) for a, b in zip(start, search.logits, strict=True))
    assert abs(search.expected_ms() / target - 1) < 0.1  # the expectation is at the budget
    # the argmax of a broad distribution may still be over: decoded, it is shrunk into the budget
    decoded = search.decoded(predictor.predict)
    assert decoded is not None and smallest < predictor.predict(decoded) <= target
    # and the reference the penalty seeks moves against the argmax until the argmax fits
    references = [search.reference_ms]
    for _ in range(6):
        over = predictor.predict(search.argmax()) > target
        if not over:
            break
        search.adapt(over_budget=True)
        references.append(search.reference_ms)
        for _ in range(10):
            search.step(x, y, tau=1.0)
    assert (
        predictor.predict(search.argmax()) <= target and search.decoded(predictor.predict) == search.argmax()
    )
    assert references == pytest.approx([target * REFERENCE_STEP**k for k in range(len(references))])
    assert len(references) > 1
    search.adapt(over_budget=False)
    assert search.reference_ms == pytest.approx(references[-1] / REFERENCE_STEP)


def _dnas_options(**kw: Any) -> NasOptions:
    base: dict[str, Any] = {
        "strategy": "dnas",
        "max_evals": 8,
        "val_images": 32,
        "bn_batches": 1,
        "passes": 1,
        "budget_minutes": 1.0,
        "calibration_subnets": 2,
        "executor": "inline",
        "dnas_steps": 12,
        "dnas_decode_every": 4,
        "dnas_batch_size": 32,
        "dnas_samples": 1,
    }
    return NasOptions(**{**base, **kw})


def test_search_subnet_with_dnas_finds_a_subnet_within_the_budget(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    supernet = save_supernet(tmp_path / "super.pt", _net())
    target = 0.5 * _dense_ms()
    said: list[str] = []
    result = search_subnet(
        supernet,
        DataSource(path=str(tiny_cifar.parent)),
        Budget(max_latency_ms=target, runtime="ort", threads=1),
        out=tmp_path / "sub.pt",
        options=_dnas_options(),
        progress=said.append,
    )
    assert result.strategy == "dnas" and result.fits and result.latency_ms <= target
    assert result.latency_ms == pytest.approx(result.latency_ms_predicted, rel=1e-6)
    assert TINY.check(result.subnet) == result.subnet and result.path.exists()
    # decoded every 4 steps (3 times) and at the end; at most max_evals scored, the reference included
    decodes = [m for m in said if m.startswith("dnas step")]
    assert [m.split(":")[0] for m in decodes] == [
        "dnas step 4",
        "dnas step 8",
        "dnas step 12",
        "dnas step 12",
    ]
    assert 2 <= result.candidates_evaluated <= 8
    searched = [c for c in result.candidates if c["reference"] is None]
    assert searched and all(c["latency_ms_predicted"] <= target for c in searched)
    assert result.to_dict()["candidates_evaluated"] == result.candidates_evaluated


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"dnas_lr": 0.0}, "NasOptions.dnas_lr must be a positive number"),
        ({"dnas_lambda": float("nan")}, "NasOptions.dnas_lambda must be a positive number"),
        ({"dnas_steps": 0}, "NasOptions.dnas_steps must be an integer >= 1"),
        ({"dnas_batch_size": 0}, "NasOptions.dnas_batch_size must be an integer >= 1"),
        ({"dnas_decode_every": 0}, "NasOptions.dnas_decode_every must be an integer >= 1"),
        ({"dnas_samples": -1}, "NasOptions.dnas_samples must be an integer >= 0"),
    ],
)
def test_bad_dnas_options_name_the_field(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        NasOptions(strategy="dnas", **kw)
    assert str(info.value).startswith(message)
    assert info.value.field == f"NasOptions.{next(iter(kw))}"


def test_cli_nas_search_with_strategy_dnas(fake_runtime: None, tiny_cifar: Path, tmp_path: Path) -> None:
    supernet = save_supernet(tmp_path / "super.pt", _net())
    search = ["nas", "search", str(supernet), "--data", str(tiny_cifar.parent), "--runtime", "ort"]
    search += ["--threads", "1", "--min-speedup", "1.5", "--strategy", "dnas", "--max-evals", "6"]
    search += ["--budget-minutes", "0.02", "--val-images", "32", "--passes", "1", "--executor", "inline"]
    search += ["--db", str(tmp_path / "s.db")]
    result = runner.invoke(app, [*search, "--out", str(tmp_path / "sub.pt"), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["strategy"] == "dnas" and 2 <= found["candidates_evaluated"] <= 6
    assert found["latency_ms"] <= found["latency_ms_largest"] / 1.5
    assert set(found["subnet"]) == {"depths", "widths", "mids"}
