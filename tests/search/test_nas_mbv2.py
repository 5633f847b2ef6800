"""``edgeslim nas`` over both space families: the MobileNetV2 space (elastic depth, expand ratio and
kernel, trained from scratch) and what every space shares (genes, extraction, latency plan, the
supernet file, training, both search strategies, the CLI), parametrized over the two tiny spaces.

Latency comes from the MAC-based stand-in runtime (``search_helpers``), so predictions must match
measurements exactly.
"""

from __future__ import annotations

import copy
import dataclasses
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
from edgeslim.checkpoint import save_checkpoint
from edgeslim.cli.app import app
from edgeslim.errors import CheckpointError, ConfigError, ModelError
from edgeslim.models import create_model, load_model_from_checkpoint
from edgeslim.nas import (
    MBV2Subnet,
    MBV2Supernet,
    Supernet,
    build_supernet,
    extract_subnet,
    get_space,
    load_supernet,
    save_supernet,
)
from edgeslim.nas.dnas import DnasSearch, ExpectedLatency, gated_forward
from edgeslim.nas.search import NasOptions, SubnetPredictor, search_subnet
from edgeslim.nas.train import SupernetTraining, train_supernet
from edgeslim.search import Budget, LatencyTable, ModelLayout
from edgeslim.tasks import DataSource

runner = CliRunner()
INPUT = (3, 32, 32)
MBV2 = get_space("mbv2_cifar")
TINY = get_space("mbv2_cifar_tiny")
TINY_SPACES = ["resnet_cifar_tiny", "mbv2_cifar_tiny"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The nets are tiny: one thread is as fast, and far faster on a busy machine."""
    with threads(1):
        yield


def _net(space: Any, seed: int = 0) -> Supernet[Any]:
    """A supernet with non-trivial BN statistics, head and kernel transforms (no training needed)."""
    torch.manual_seed(seed)
    net = build_supernet(space)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.data.normal_(0, 0.1)
            m.running_var.data.uniform_(0.5, 2.0)
        elif isinstance(m, torch.nn.Linear):
            m.weight.data.normal_(0, 0.3)
    for name, p in net.named_parameters():
        if ".transforms." in name:
            p.data += 0.1 * torch.randn_like(p)
    return net.eval()


def _subnets(space: Any, n: int, seed: int = 1) -> list[Any]:
    rng = random.Random(seed)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n)]


def _macs_ms(model: torch.nn.Module) -> float:
    return sum(s.macs() for s in ModelLayout(model, INPUT).layers.values()) * MS_PER_MAC


# -- the MobileNetV2 space ---------------------------------------------------------------------------


def test_mbv2_space_holds_mobilenet_v2_and_counts_its_subnets() -> None:
    assert TINY.largest() == MBV2Subnet((2, 2, 2), ((6, 6),) * 3, ((7, 7),) * 3)
    assert TINY.smallest() == MBV2Subnet((1, 1, 1), ((3,),) * 3, ((3,),) * 3)
    assert TINY.size() == (2 * 3 + (2 * 3) ** 2) ** 3 == 74_088
    assert MBV2.size() == (9**2 + 9**3 + 9**4) ** 5 * 9
    assert len(TINY.gene_choices()) == 3 + 6 + 6
    assert TINY.init_model is None and MBV2.init_model is None
    # the hand-designed MobileNetV2 is a subnet: exported, it is the zoo's mobilenet_v2 block for block
    ((name, reference),) = MBV2.reference_subnets()
    assert name == "mobilenet_v2" and MBV2.check(reference) == reference
    assert reference.depths == (2, 3, 4, 3, 3, 1) and reference.label().startswith("d2-3-4-3-3-1 e6.6-6.6.6")
    exported = build_supernet(MBV2).export(reference)
    zoo = create_model("mobilenet_v2")
    assert exported.model_name == "mobilenet_v2_blocks"
    assert [tuple(p.shape) for p in exported.model.parameters()] == [tuple(p.shape) for p in zoo.parameters()]
    assert sum(p.numel() for p in exported.model.parameters()) == 2_236_682


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        (MBV2Subnet((3, 1, 1), ((3,),) * 3, ((3,),) * 3), r"subnet.depths 3 is not a choice .*\(\[1, 2\]\)"),
        (MBV2Subnet((1, 1, 1), ((4,), (3,), (3,)), ((3,),) * 3), r"subnet.expands 4 is not a choice"),
        (MBV2Subnet((1, 1, 1), ((3,),) * 3, ((3,), (9,), (3,))), r"subnet.kernels 9 is not a choice"),
        (
            MBV2Subnet((2, 1, 1), ((3,),) * 3, ((3,),) * 3),
            r"subnet.expands\[0\] has 1 blocks but subnet.depths",
        ),
        (MBV2Subnet((1, 1), ((3,),) * 2, ((3,),) * 2), "has 3 stages"),
    ],
)
def test_an_mbv2_subnet_outside_the_space_is_one_line(subnet: MBV2Subnet, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        TINY.check(subnet)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"depths": [1, 1, 1]}, "a subnet is {depths"),
        ({"depths": [1, 1, 1], "expands": 3, "kernels": []}, "subnet.expands must be one list per stage"),
        (
            {"depths": [1, 1, 1], "expands": [[3]] * 3, "kernels": [[3.0]] * 3},
            "subnet.kernels must be a list",
        ),
    ],
)
def test_bad_mbv2_subnet_dicts_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TINY.subnet_from_dict(data)


def test_genes_of_blocks_a_subnet_drops_are_ignored() -> None:
    sub = MBV2Subnet((1, 2, 1), ((6,), (3, 6), (3,)), ((5,), (7, 3), (7,)))
    genes = TINY.genes(sub)
    # depths, then the expand ratio of slots 0..5, then the kernel of slots 0..5 (dropped slots: first choice)
    assert genes == [1, 2, 1, 6, 3, 3, 6, 3, 3, 5, 3, 7, 3, 7, 3]
    changed = list(genes)
    changed[3 + 1] = 6  # the expand ratio of stage 0's second block, which sub drops
    changed[3 + 6 + 5] = 7
    assert TINY.from_genes(changed) == sub
    changed[0] = 2  # keep it: it comes back with the gene's choice
    assert TINY.from_genes(changed).expands[0] == (6, 6)


def test_elastic_kernels_are_the_centre_of_the_larger_kernel_through_its_transform() -> None:
    net = _net(TINY)
    assert isinstance(net, MBV2Supernet)
    block = net.blocks(0)[1]
    w7 = block.depthwise.weight[:24]
    m5, m3 = block.transforms["k5"], block.transforms["k3"]
    with torch.no_grad():
        w5 = (w7[:, :, 1:6, 1:6].reshape(24, 25) @ m5.T).reshape(24, 1, 5, 5)
        w3 = (w5[:, :, 1:4, 1:4].reshape(24, 9) @ m3.T).reshape(24, 1, 3, 3)
        assert torch.equal(block.kernel_weight(7, 24), w7)
        assert torch.allclose(block.kernel_weight(5, 24), w5, atol=1e-6)
        assert torch.allclose(block.kernel_weight(3, 24), w3, atol=1e-6)
    # without the transformation (or at its identity start) a smaller kernel is exactly the centre crop
    plain = build_supernet(dataclasses.replace(TINY, name="plain", kernel_transform=False))
    assert isinstance(plain, MBV2Supernet)
    assert not any(".transforms." in n for n, _ in plain.named_parameters())
    for net_ in (plain, build_supernet(TINY)):
        assert isinstance(net_, MBV2Supernet)
        b = net_.blocks(2)[0]
        with torch.no_grad():
            assert torch.equal(b.kernel_weight(3, 48), b.depthwise.weight[:48, :, 2:5, 2:5])
            assert torch.equal(b.kernel_weight(5, 48), b.depthwise.weight[:48, :, 1:6, 1:6])
    # the transforms start as the identity and are trained without weight decay (it would pull them to 0)
    transforms = {id(p) for n, p in net.named_parameters() if ".transforms." in n}
    assert transforms and {id(p) for p in net.undecayed_parameters()} == transforms
    assert plain.undecayed_parameters() == []
    # a subnet's exported depthwise conv carries the derived kernel
    sub = MBV2Subnet((2, 1, 1), ((3, 6), (3,), (6,)), ((7, 3), (5,), (3,)))
    model = extract_subnet(net, sub)
    with torch.no_grad():
        assert torch.equal(model.state_dict()["features.3.conv.1.0.weight"], block.kernel_weight(3, 48))
    assert model.state_dict()["features.4.conv.1.0.weight"].shape == (24, 1, 5, 5)


def test_mbv2_blocks_zoo_model_checks_its_blocks() -> None:
    model = create_model("mobilenet_v2_blocks", blocks=[[1, 8, 3, 1], [3, 16, 5, 2]], stem=8, last_channel=32)
    assert model(torch.randn(2, *INPUT)).shape == (2, 10)
    assert [m.kernel_size for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1] == [
        (3, 3),
        (5, 5),
    ]
    for blocks, message in (
        ([[1, 8, 4, 1]], "kernel must be odd"),
        ([[1, 8, 3]], r"each block must be \[expand, channels, kernel, stride\]"),
        ([[1, 0, 3, 1]], "channels must be an integer >= 1"),
        ("x", "blocks must be a list"),
    ):
        with pytest.raises(ModelError, match=message):
            create_model("mobilenet_v2_blocks", blocks=blocks)


# -- what every space shares -------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY_SPACES)
def test_subnets_round_trip_through_genes_and_json(name: str) -> None:
    space = get_space(name)
    for sub in _subnets(space, 40):
        assert space.check(sub) == sub == space.from_genes(space.genes(sub))
        assert space.subnet_from_dict(json.loads(json.dumps(sub.to_dict()))) == sub
        assert all(g in c for g, c in zip(space.genes(sub), space.gene_choices(), strict=True))
    assert len(set(_subnets(space, 40))) > 30  # sampling covers the space


@pytest.mark.parametrize("name", TINY_SPACES)
def test_extracted_subnets_are_zoo_checkpoints_that_compute_what_the_supernet_computes(
    name: str, fake_runtime: None, tmp_path: Path
) -> None:
    space = get_space(name)
    net = _net(space)
    x = torch.randn(2, *INPUT)
    predictor = SubnetPredictor(net, LatencyTable("ort", 1, 1), INPUT)
    predictor.predictor.table.fill(predictor.shapes())
    for sub in _subnets(space, 10):
        model = extract_subnet(net, sub)
        with torch.no_grad():
            expected = net.run(sub, x)
            assert expected.abs().max() > 0.1
            assert torch.allclose(model(x), expected, atol=1e-5), sub.label()
        # the latency plan prices exactly the extracted model's layers (the stand-in: their MACs)
        assert predictor.predict(sub) == pytest.approx(_macs_ms(model), rel=1e-9), sub.label()
    # an ordinary checkpoint: rebuilt by name and kwargs (JSON-able), loaded strictly
    sub = space.sample(random.Random(7))
    exported = net.export(sub)
    path = save_checkpoint(
        tmp_path / "sub.pt",
        exported.model,
        model_name=exported.model_name,
        model_kwargs=json.loads(json.dumps(exported.model_kwargs)),
        meta=exported.meta,
    )
    loaded, _ = load_model_from_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(loaded(x), exported.model(x))


@pytest.mark.parametrize("name", TINY_SPACES)
def test_supernet_files_round_trip_and_refuse_another_space(name: str, tmp_path: Path) -> None:
    space = get_space(name)
    net = _net(space)
    path = save_supernet(tmp_path / "s.pt", net, meta={"steps": 3})
    again, info = load_supernet(path, space=name)
    assert type(again) is type(net) and info.space == space and info.meta == {"steps": 3}
    x = torch.randn(2, *INPUT)
    sub = space.sample(random.Random(3))
    with torch.no_grad():
        assert torch.equal(again.eval().run(sub, x), net.run(sub, x))
    other = next(n for n in TINY_SPACES if n != name)
    with pytest.raises(ConfigError, match=f"is a supernet of space '{name}', not '{other}'"):
        load_supernet(path, space=other)
    # a file whose weights are another space's (same name, edited) does not load silently
    blob = torch.load(path, weights_only=True)
    blob["state_dict"] = _net(get_space(other)).state_dict()
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=f"does not fit space '{name}'"):
        load_supernet(tmp_path / "bad.pt")


@pytest.mark.parametrize("name", TINY_SPACES)
def test_gated_forward_runs_exactly_the_sampled_subnet_and_reaches_every_gene(name: str) -> None:
    space = get_space(name)
    net = _net(space)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(8, *INPUT), torch.arange(8) % 10

    def straight_through(sub: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits = [torch.zeros(len(c), requires_grad=True) for c in space.gene_choices()]
        samples = []
        for lg, c, v in zip(logits, space.gene_choices(), space.genes(sub), strict=True):
            soft = lg.softmax(-1)
            samples.append(F.one_hot(torch.tensor(c.index(v)), len(c)).float() + (soft - soft.detach()))
        return logits, samples

    for sub in _subnets(space, 4):
        _, samples = straight_through(sub)
        with torch.no_grad():
            reference = copy.deepcopy(net).train().run(sub, x)  # BN on the batch's statistics
        assert torch.allclose(gated_forward(net, sub, samples, x), reference, atol=1e-5), sub.label()
    logits, samples = straight_through(space.largest())
    F.cross_entropy(gated_forward(net, space.largest(), samples, x), y).backward()
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    informed = [lg.grad is not None and float(lg.grad.abs().sum()) > 0 for lg in logits]
    assert all(informed), [i for i, ok in enumerate(informed) if not ok]


def test_expected_latency_of_the_mbv2_space_is_the_exact_mean(fake_runtime: None) -> None:
    net = _net(TINY)
    predictor = SubnetPredictor(net, LatencyTable("ort", 1, 1), INPUT)
    predictor.predictor.table.fill(predictor.shapes())
    lp = predictor.predictor
    lp.a, lp.b, lp.anchor = 1.3, 0.02, 1.1
    lp.weights = {"depthwise@32x32": 0.7, "conv@16x16": 1.6}
    latency = ExpectedLatency(predictor)
    choices = TINY.gene_choices()
    # spread over stage 0 (its depth, both blocks' expand ratio and kernel) and stage 1's depth,
    # a point mass elsewhere: 2 * 2*2 * 3*3 * 2 = 144 gene combinations, enumerated
    spread = {0, 1, 3, 4, 9, 10}
    gen = torch.Generator().manual_seed(0)
    probs = []
    for g, c in enumerate(choices):
        if g in spread:
            p = torch.rand(len(c), generator=gen, dtype=torch.float64) + 0.05
            probs.append(p / p.sum())
        else:
            probs.append(F.one_hot(torch.tensor(len(c) - 1), len(c)).double())
    exact = math.fsum(
        math.prod(float(probs[g][choices[g].index(v)]) for g, v in enumerate(genes))
        * predictor.predict(TINY.from_genes(list(genes)))
        for genes in itertools.product(*[c if g in spread else c[-1:] for g, c in enumerate(choices)])
    )
    assert float(latency(probs)) == pytest.approx(exact, rel=1e-12)
    for sub in _subnets(TINY, 5):
        one_hot = [
            F.one_hot(torch.tensor(c.index(v)), len(c)).double()
            for c, v in zip(choices, TINY.genes(sub), strict=True)
        ]
        assert float(latency(one_hot)) == pytest.approx(predictor.predict(sub), rel=1e-12)
    # a block's depthwise conv depends on its stage's depth, its expand ratio and its kernel
    assert latency.dependencies["features.3.conv.1.0"] == (0, 4, 10)
    assert latency.dependencies["features.2.conv.0.0"] == (3,)  # the first block is always there
    search = DnasSearch(net, latency, 0.5 * predictor.predict(TINY.largest()), seed=0)
    step = search.step(torch.randn(8, *INPUT), torch.arange(8) % 10, tau=1.0)
    assert math.isfinite(step.loss) and TINY.check(step.subnet) == step.subnet


def _train(space: str, tiny_cifar: Path, out: Path, **kw: Any) -> Any:
    options = SupernetTraining(**{"budget_minutes": 0.03, "batch_size": 32, "warmup_steps": 2, **kw})
    return train_supernet(space, DataSource(path=str(tiny_cifar.parent)), out, options=options)


@pytest.mark.parametrize("name", TINY_SPACES)
@pytest.mark.parametrize("strategy", ["evolution", "dnas"])
def test_train_then_search_with_each_strategy(
    name: str, strategy: str, fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    space = get_space(name)
    trained = _train(name, tiny_cifar, tmp_path / "super.pt")
    assert trained.space == name and trained.steps >= 2
    net, _ = load_supernet(tmp_path / "super.pt", space=name)
    dense = _macs_ms(net.export(space.largest()).model)
    target = 0.5 * dense
    options = NasOptions(
        strategy=strategy,  # type: ignore[arg-type]
        max_evals=8,
        population=4,
        parents=2,
        val_images=32,
        bn_batches=1,
        passes=1,
        budget_minutes=1,
        calibration_subnets=2,
        executor="inline",
        dnas_steps=8,
        dnas_decode_every=4,
        dnas_batch_size=32,
        dnas_samples=1,
    )
    result = search_subnet(
        tmp_path / "super.pt",
        DataSource(path=str(tiny_cifar.parent)),
        Budget(max_latency_ms=target, runtime="ort", threads=1),
        out=tmp_path / "sub.pt",
        options=options,
    )
    assert result.fits and result.latency_ms <= target and result.strategy == strategy
    assert result.latency_ms == pytest.approx(result.latency_ms_predicted, rel=1e-6)
    assert result.latency_ms_largest == pytest.approx(dense, rel=1e-6)
    assert result.calibration["median_fit_error"] < 1e-6
    assert space.check(result.subnet) == result.subnet
    assert 1 <= result.candidates_evaluated <= 8 + len(space.reference_subnets())
    model, meta = load_model_from_checkpoint(result.path)
    assert meta["nas"]["space"] == name and meta["nas"]["subnet"] == result.subnet.to_dict()
    assert result.params == sum(p.numel() for p in model.parameters())
    assert _macs_ms(model) == pytest.approx(result.latency_ms, rel=1e-9)


def test_init_weights_for_a_space_without_an_init_model_is_one_line(tiny_cifar: Path, tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save(create_model("mobilenet_v2_tiny").state_dict(), weights)
    with pytest.raises(ConfigError, match="space 'mbv2_cifar_tiny' trains from scratch") as info:
        train_supernet(
            "mbv2_cifar_tiny",
            DataSource(path=str(tiny_cifar.parent)),
            tmp_path / "s.pt",
            init_weights=weights,
        )
    assert info.value.field == "nas.init_weights"
    assert not (tmp_path / "s.pt").exists()


# -- the CLI -----------------------------------------------------------------------------------------


def test_cli_nas_train_and_search_the_mbv2_space(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    listed = runner.invoke(app, ["nas", "spaces", "--json"])
    assert listed.exit_code == 0, listed.output
    spaces = {s["name"]: s for s in json.loads(listed.stdout)["spaces"]}
    assert spaces["mbv2_cifar_tiny"]["subnets"] == 74_088 and spaces["mbv2_cifar"]["init_model"] is None
    data = str(tiny_cifar.parent)
    out = tmp_path / "super.pt"
    args = ["nas", "train", "--space", "mbv2_cifar_tiny", "--data", data, "--budget-minutes", "0.02"]
    result = runner.invoke(app, [*args, "--batch-size", "32", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["space"] == "mbv2_cifar_tiny"
    search = ["nas", "search", str(out), "--data", data, "--runtime", "ort", "--threads", "1"]
    search += ["--min-speedup", "1.5", "--max-evals", "4", "--val-images", "32", "--passes", "1"]
    search += ["--executor", "inline", "--db", str(tmp_path / "s.db")]
    result = runner.invoke(app, [*search, "--out", str(tmp_path / "sub.pt"), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["space"] == "mbv2_cifar_tiny" and set(found["subnet"]) == {"depths", "expands", "kernels"}
    assert found["latency_ms"] <= found["latency_ms_largest"] / 1.5
    assert TINY.subnet_from_dict(found["subnet"]).label() == found["label"]
    for key in ("latency_ms_predicted", "top1", "params", "macs", "size_bytes", "candidates_evaluated"):
        assert key in found


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "nas",
                "train",
                "--space",
                "mbv2_cifar_tiny",
                "--init-weights",
                "W",
                "--data",
                "D",
                "--out",
                "X",
            ],
            "--init-weights: space 'mbv2_cifar_tiny' trains from scratch",
        ),
        (
            ["nas", "train", "--space", "mbv2_cifar_tiny", "--data", "D", "--out", "P"],
            "is a supernet of space 'resnet_cifar_tiny', not 'mbv2_cifar_tiny'",
        ),
    ],
)
def test_cli_nas_bad_input_is_one_line_exit_2(
    args: list[str], message: str, tiny_cifar: Path, tmp_path: Path
) -> None:
    # P.partial: a killed run's progress, of another space
    save_supernet(tmp_path / "P.partial", _net(get_space("resnet_cifar_tiny")), train_state={})
    (tmp_path / "W").write_bytes(b"")
    names = {
        "D": str(tiny_cifar.parent),
        "W": str(tmp_path / "W"),
        "X": str(tmp_path / "X"),
        "P": str(tmp_path / "P"),
    }
    result = runner.invoke(app, [names.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "X").exists() and not (tmp_path / "P").exists()
