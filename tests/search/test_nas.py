"""``edgeslim nas``: the space, the supernet's weight sharing, training (resume), search and errors.

Latency comes from the MAC-based stand-in runtime (``search_helpers``), so the subnet predictor must
reproduce measurements exactly; the tiny space (``resnet_cifar_tiny``) trains in seconds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.engine.searches import load_search
from edgeslim.engine.store import Store
from edgeslim.errors import CheckpointError, ConfigError
from edgeslim.models import create_model, load_model_from_checkpoint
from edgeslim.nas import (
    ResNetSupernet,
    Subnet,
    extract_subnet,
    get_space,
    load_supernet,
    save_supernet,
    sort_channels,
)
from edgeslim.nas import train as nas_train
from edgeslim.nas.search import NasOptions, search_subnet
from edgeslim.nas.supernet import subnet_layer_widths
from edgeslim.nas.train import SupernetTraining, train_supernet
from edgeslim.search import Budget, ModelLayout
from edgeslim.tasks import DataSource

runner = CliRunner()
TINY = get_space("resnet_cifar_tiny")
FULL = get_space("resnet_cifar")


def _supernet(seed: int = 0) -> tuple[ResNetSupernet, torch.nn.Module]:
    """A tiny supernet initialised from a random resnet20_tiny with non-trivial BN statistics."""
    torch.manual_seed(seed)
    init = create_model("resnet20_tiny")
    for m in init.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 1.5)
            m.running_mean.data.normal_(0, 0.1)
            m.running_var.data.uniform_(0.5, 2.0)
    init.eval()
    net = ResNetSupernet(TINY)
    net.load_state_dict(init.state_dict(), strict=True)
    return net.eval(), init


def test_spaces_offer_the_hand_designed_nets_and_count_their_subnets() -> None:
    assert FULL.largest() == Subnet((9, 9, 9), (16, 32, 64), (16, 32, 64))
    assert FULL.smallest() == Subnet((1, 1, 1), (8, 16, 32), (4, 8, 16))
    assert FULL.size() == 9**3 * 3**3 * 4**3
    assert TINY.size() == 3**3 * 2**6
    assert [name for name, _ in FULL.references] == ["resnet20", "resnet32", "resnet44", "resnet56"]
    rng = random.Random(0)
    for _ in range(50):
        sub = FULL.sample(rng)
        assert FULL.check(sub) == sub == Subnet.from_dict(json.loads(json.dumps(sub.to_dict())))
        assert FULL.from_genes(FULL.genes(sub)) == sub


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        (Subnet((10, 1, 1), (8, 16, 32), (4, 8, 16)), "subnet.depths 10 is not a choice"),
        (Subnet((1, 1, 1), (9, 16, 32), (4, 8, 16)), "subnet.widths 9 is not a choice"),
        (Subnet((1, 1), (8, 16), (4, 8)), "has 3 stages"),
    ],
)
def test_a_subnet_outside_the_space_is_one_line(subnet: Subnet, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FULL.check(subnet)


def test_unknown_space_names_the_choices() -> None:
    with pytest.raises(
        ConfigError,
        match="unknown search space 'resnet'; choose one of mbv2_cifar, mbv2_cifar_tiny, resnet_cifar, ",
    ):
        get_space("resnet")


def test_largest_subnet_is_the_init_model_before_and_after_sorting() -> None:
    net, init = _supernet()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = init(x)
        assert torch.equal(net(x), expected)
        sort_channels(net)
        assert torch.allclose(net(x), expected, atol=1e-5)
    # sorted: every stream's summed |gamma| and every block's inner |gamma| descend
    for s, stage in enumerate(net.stages):
        score = sum(b.bn2.weight.abs() for b in stage) + (net.bn1.weight.abs() if s == 0 else 0)
        assert torch.all(score[:-1] >= score[1:])
        for block in stage:
            assert torch.all(block.bn1.weight.abs()[:-1] >= block.bn1.weight.abs()[1:])


def test_extracted_subnets_compute_what_the_supernet_computes(tmp_path: Path) -> None:
    net, _ = _supernet()
    sort_channels(net)
    rng = random.Random(1)
    x = torch.randn(2, 3, 32, 32)
    subnets = [TINY.largest(), TINY.smallest()] + [TINY.sample(rng) for _ in range(12)]
    for sub in subnets:
        model = extract_subnet(net, sub)
        with torch.no_grad():
            assert torch.allclose(model(x), net.run(sub, x), atol=1e-5), sub.label()
        # the shapes the predictor prices are the extracted model's, and dropped blocks are absent
        widths, absent = subnet_layer_widths(sub, 10, TINY.max_depth)
        layers = ModelLayout(model, (3, 32, 32)).layers
        assert {n: (s.in_channels, s.out_channels) for n, s in layers.items()} == widths
        assert len(absent) == 2 * sum(TINY.max_depth - d for d in sub.depths)
    # an ordinary checkpoint: the zoo's resnet_cifar plus a channel spec
    sub = Subnet((2, 1, 3), (4, 4, 16), (2, 8, 8))
    model = extract_subnet(net, sub)
    from edgeslim.checkpoint import save_checkpoint
    from edgeslim.models.channels import channel_spec

    path = save_checkpoint(
        tmp_path / "sub.pt",
        model,
        model_name="resnet_cifar",
        model_kwargs={"blocks": [2, 1, 3]},
        meta={"channel_spec": channel_spec(model)},
    )
    loaded, _ = load_model_from_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_supernet_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    net, _ = _supernet()
    sort_channels(net)
    path = save_supernet(tmp_path / "s.pt", net, meta={"steps": 3})
    again, info = load_supernet(path)
    x = torch.randn(2, 3, 32, 32)
    sub = Subnet((1, 2, 3), (2, 8, 8), (4, 4, 16))
    with torch.no_grad():
        assert torch.equal(again.eval().run(sub, x), net.run(sub, x))
    assert info.space.name == "resnet_cifar_tiny" and info.meta == {"steps": 3}
    with pytest.raises(ConfigError, match="is a supernet of space 'resnet_cifar_tiny', not 'resnet_cifar'"):
        load_supernet(path, space="resnet_cifar")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="is not an edgeslim supernet"):
        load_supernet(tmp_path / "plain.pt")


def _train(tiny_cifar: Path, out: Path, **kw: Any) -> Any:
    options = SupernetTraining(**{"budget_minutes": 0.05, "batch_size": 32, "warmup_steps": 2, **kw})
    return train_supernet("resnet_cifar_tiny", DataSource(path=str(tiny_cifar.parent)), out, options=options)


def test_train_supernet_fits_its_budget_and_resumes(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "super.pt"
    real_step = nas_train._sandwich_step
    calls = {"n": 0}

    def dies_at_step_5(*args: Any) -> float:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(nas_train, "_sandwich_step", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_cifar, out, checkpoint_minutes=1e-6, budget_minutes=0.5)
    partial = tmp_path / "super.pt.partial"
    assert partial.exists() and not out.exists()
    _, saved = load_supernet(partial)
    assert saved.train_state is not None and saved.train_state["step"] == 4
    # other settings do not resume someone else's run
    with pytest.raises(ConfigError, match="left by a run with other settings"):
        _train(tiny_cifar, out, checkpoint_minutes=1e-6, budget_minutes=0.5, lr=0.5)
    monkeypatch.setattr(nas_train, "_sandwich_step", real_step)
    result = _train(tiny_cifar, out, checkpoint_minutes=1e-6, budget_minutes=0.5)
    assert result.resumed_from_step == 4 and result.steps > 4
    assert out.exists() and not partial.exists()
    trained, info = load_supernet(out)
    assert info.train_state is None and info.meta["steps"] == result.steps
    # trained channels-last (the default), saved in the ordinary layout
    assert all(t.is_contiguous() for t in trained.state_dict().values())
    # the budget holds to within the step that crosses it (plus the final save)
    assert result.minutes * 60 <= 0.5 * 60 * 1.05 + 2 * result.seconds_per_step + 5
    with pytest.raises(ConfigError, match="exists; choose a new --out"):
        _train(tiny_cifar, out)


def test_a_bf16_sandwich_step_gives_the_fp32_gradients_within_bf16_precision() -> None:
    """bf16 autocast (the default: more steps in the budget) changes only the forward's precision:
    the parameters and their gradients stay fp32 and point where the fp32 step's do."""
    grads: dict[bool, torch.Tensor] = {}
    losses: dict[bool, float] = {}
    x, y = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10
    for bf16 in (False, True):
        net, _ = _supernet()
        net.train()
        subnets = [TINY.smallest(), TINY.sample(random.Random(0))]
        losses[bf16] = nas_train._sandwich_step(net, x, y, subnets, 1.0, bf16)
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in net.parameters())
        grads[bf16] = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    cosine = torch.nn.functional.cosine_similarity(grads[False], grads[True], dim=0)
    assert cosine > 0.98
    assert losses[True] == pytest.approx(losses[False], rel=0.02)
    assert SupernetTraining().bf16 is True


def _trained(tiny_cifar: Path, tmp_path: Path) -> Path:
    out = tmp_path / "super.pt"
    _train(tiny_cifar, out, budget_minutes=0.03)
    return out


@pytest.mark.parametrize(("strategy", "finetune_minutes"), [("evolution", 0.0), ("random", 0.01)])
def test_search_finds_a_subnet_within_the_budget_and_saves_a_checkpoint(
    strategy: str, finetune_minutes: float, fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    supernet = _trained(tiny_cifar, tmp_path)
    largest_ms = ModelLayout(create_model("resnet20_tiny"), (3, 32, 32))
    from search_helpers import MS_PER_MAC

    dense = sum(s.macs() for s in largest_ms.layers.values()) * MS_PER_MAC
    target = 0.5 * dense
    options = NasOptions(
        strategy=strategy,  # type: ignore[arg-type]
        max_evals=12,
        population=6,
        parents=3,
        val_images=32,
        bn_batches=1,
        passes=1,
        budget_minutes=1,
        finetune_minutes=finetune_minutes,
    )
    result = search_subnet(
        supernet,
        DataSource(path=str(tiny_cifar.parent)),
        Budget(max_latency_ms=target, runtime="ort", threads=1),
        out=tmp_path / "sub.pt",
        options=options,
    )
    assert result.fits and result.latency_ms <= target
    assert result.latency_ms == pytest.approx(result.latency_ms_predicted, rel=1e-6)
    assert result.latency_ms_largest == pytest.approx(dense, rel=1e-6)
    assert result.calibration["median_fit_error"] < 1e-6
    assert 1 <= result.candidates_evaluated <= 12 + 1  # + the reference (resnet20_tiny itself)
    assert [r["reference"] for r in result.references] == ["resnet20_tiny"]
    assert result.references[0]["latency_ms"] == pytest.approx(dense, rel=1e-6)
    model, meta = load_model_from_checkpoint(result.path)
    assert meta["nas"]["subnet"] == result.subnet.to_dict()
    assert result.params == sum(p.numel() for p in model.parameters())
    for key in ("subnet", "latency_ms", "latency_ms_predicted", "top1", "params", "macs", "size_bytes"):
        assert key in result.to_dict()
    assert result.to_dict()["candidates_evaluated"] == result.candidates_evaluated
    assert result.strategy == strategy and (result.finetune_steps > 0) == (finetune_minutes > 0)


def test_search_budget_below_the_smallest_subnet_is_refused(
    fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    supernet = _trained(tiny_cifar, tmp_path)
    with pytest.raises(ConfigError, match="is below the smallest subnet of 'resnet_cifar_tiny'"):
        search_subnet(
            supernet,
            DataSource(path=str(tiny_cifar.parent)),
            Budget(max_latency_ms=1e-6, runtime="ort", threads=1),
            out=tmp_path / "sub.pt",
            options=NasOptions(passes=1, calibration_subnets=0),
        )
    assert not (tmp_path / "sub.pt").exists()


def test_cli_nas_train_and_search(fake_runtime: None, tiny_cifar: Path, tmp_path: Path) -> None:
    data = str(tiny_cifar.parent)
    out = tmp_path / "super.pt"
    args = ["nas", "train", "--space", "resnet_cifar_tiny", "--data", data, "--budget-minutes", "0.03"]
    result = runner.invoke(app, [*args, "--batch-size", "32", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    assert trained["space"] == "resnet_cifar_tiny" and trained["steps"] >= 1
    search = ["nas", "search", str(out), "--data", data, "--runtime", "ort", "--threads", "1"]
    search += ["--min-speedup", "1.5", "--max-evals", "6", "--val-images", "32", "--passes", "1"]
    search += ["--db", str(tmp_path / "s.db")]
    plot = tmp_path / "plane.svg"
    result = runner.invoke(app, [*search, "--out", str(tmp_path / "sub.pt"), "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["latency_ms"] <= found["latency_ms_largest"] / 1.5 and found["candidates_evaluated"] >= 1
    assert set(found["subnet"]) == {"depths", "widths", "mids"}
    assert plot.read_text().startswith("<?xml") and "resnet20_tiny" in plot.read_text()
    # the search is in the store: every scored subnet, the hand-designed references by name, the choice
    assert found["experiment"] == "sub"
    with Store.open(tmp_path / "s.db") as store:
        exp = store.get_experiment("sub")
        assert exp is not None and exp.kind == "nas"
        recorded = load_search(store, exp)
    assert len(recorded.candidates) == found["candidates_evaluated"]
    assert {c.label for c in recorded.candidates if c.role == "reference"} == {
        r["reference"] for r in found["references"]
    }
    chosen = recorded.chosen
    assert chosen is not None and chosen.plan["subnet"] == found["subnet"]
    assert chosen.latency_ms == found["latency_ms"] and chosen.top1 == found["top1"]
    assert recorded.summary["label"] == found["label"] and "candidates" not in recorded.summary
    page = runner.invoke(
        app, ["report", "sub", "--db", str(tmp_path / "s.db"), "--out", str(tmp_path / "r.html")]
    )
    assert page.exit_code == 0, page.output
    assert "Architecture search <code>sub</code>" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nas", "train", "--space", "nope", "--data", "D", "--out", "X"], "unknown search space 'nope'"),
        (["nas", "search", "missing.pt", "--data", "D", "--max-latency-ms", "1", "--out", "X"], "missing.pt"),
        (["nas", "search", "S", "--data", "D", "--out", "X"], "--max-latency-ms"),
        (
            ["nas", "search", "S", "--data", "D", "--max-latency-ms", "1", "--plot", "p.txt", "--out", "X"],
            "--plot",
        ),
        (
            ["nas", "search", "S", "--data", "D", "--max-latency-ms", "1", "--strategy", "x", "--out", "X"],
            "--strategy",
        ),
    ],
)
def test_cli_nas_bad_input_is_one_line_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    args = [a if a not in ("X", "S", "D") else str(tmp_path / a) for a in args]
    (tmp_path / "S").write_bytes(b"")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "X").exists()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: NasOptions(strategy="x"), "NasOptions.strategy: expected 'evolution' | 'random'"),  # type: ignore[arg-type]
        (lambda: NasOptions(max_evals=0), "NasOptions.max_evals must be an integer >= 1"),
        (lambda: NasOptions(mutation=0.0), "NasOptions.mutation must be in (0, 1]"),
        (lambda: NasOptions(executor="slurm"), "NasOptions.executor must be one of inline, local, ray"),
        (lambda: NasOptions(workers=0), "NasOptions.workers must be an integer of at least 1"),
        (
            lambda: SupernetTraining(budget_minutes=0),
            "SupernetTraining.budget_minutes must be a positive number",
        ),
        (lambda: SupernetTraining(batch_size=1.5), "SupernetTraining.batch_size: expected int"),  # type: ignore[arg-type]
        (lambda: SupernetTraining(warmup_steps=1), "SupernetTraining.warmup_steps must be an integer >= 2"),
    ],
)
def test_nas_configs_name_the_bad_field(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_a_pool_of_workers_scores_exactly_what_one_process_does(
    strategy: str, fake_runtime: None, tiny_cifar: Path, tmp_path: Path
) -> None:
    """Issue 18: subnets are scored on the sweep's executors; every subnet re-estimates BN on the
    same batches, so two worker processes find the same subnets with the same scores."""
    supernet = _trained(tiny_cifar, tmp_path)
    from search_helpers import MS_PER_MAC

    layout = ModelLayout(create_model("resnet20_tiny"), (3, 32, 32))
    target = 0.6 * sum(s.macs() for s in layout.layers.values()) * MS_PER_MAC
    runs = {}
    for executor, workers in (("inline", None), ("local", 2)):
        options = NasOptions(
            strategy=strategy,  # type: ignore[arg-type]
            max_evals=8,
            population=4,
            parents=2,
            val_images=32,
            bn_batches=1,
            passes=1,
            budget_minutes=5,
            executor=executor,
            workers=workers,
        )
        result = search_subnet(
            supernet,
            DataSource(path=str(tiny_cifar.parent)),
            Budget(max_latency_ms=target, runtime="ort", threads=1),
            out=tmp_path / f"sub-{executor}.pt",
            options=options,
        )
        runs[executor] = {json.dumps(c["subnet"], sort_keys=True): c["top1_proxy"] for c in result.candidates}
    assert len(runs["inline"]) >= 4 and runs["inline"] == runs["local"]
