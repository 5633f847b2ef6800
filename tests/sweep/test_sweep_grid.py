"""Grid expansion: one shared baseline per model, one trial per grid point, stable keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeslim.sweep import expand, parse_experiment


def _experiment(data: Path, finetune_lr: float = 0.01, extra_block: str = "") -> str:
    return f"""name: g
models: [{{name: resnet20_tiny, init: random}}, {{name: vgg11_tiny, label: vgg, init: random}}]
data: {{path: {data}}}
layers: {{types: [conv]}}
methods:
  - prune: {{method: [l1, fpgm], ratio: [0.2, 0.4, 0.6]}}
  - quantize: {{method: static, bits: 8}}
{extra_block}finetune: {{epochs: 1, lr: {finetune_lr}}}
"""


def test_expansion_counts_dependencies_and_names(tiny_cifar: Path) -> None:
    specs = expand(parse_experiment(_experiment(tiny_cifar), check_models=False))
    assert len(specs) == 2 * (1 + 2 * 3 + 1)
    baselines = [s for s in specs if s.kind == "baseline"]
    assert [b.name for b in baselines] == ["resnet20_tiny/baseline", "vgg/baseline"]
    by_model = {b.model: b.key for b in baselines}
    trials = [s for s in specs if s.kind == "compress"]
    assert all(t.depends_on == by_model[t.model] for t in trials)
    assert len({s.key for s in specs}) == len(specs)
    names = [t.name for t in trials if t.model == "vgg"]
    assert names == [
        "vgg/l1 ratio=0.2",
        "vgg/l1 ratio=0.4",
        "vgg/l1 ratio=0.6",
        "vgg/fpgm ratio=0.2",
        "vgg/fpgm ratio=0.4",
        "vgg/fpgm ratio=0.6",
        "vgg/static bits=8",
    ]
    fpgm = next(t for t in trials if t.name == "vgg/fpgm ratio=0.4")
    assert fpgm.config["compression"]["type"] == "FilterPruning"
    assert fpgm.config["compression"]["criterion"] == "fpgm" and fpgm.config["compression"]["ratio"] == 0.4
    assert fpgm.config["finetune"]["epochs"] == 1
    static = next(t for t in trials if t.name == "vgg/static bits=8")
    assert static.config["finetune"] is None  # post-training quantization does not train


def test_keys_are_stable_and_follow_what_decides_a_result(tiny_cifar: Path) -> None:
    a = expand(parse_experiment(_experiment(tiny_cifar), check_models=False))
    b = expand(parse_experiment(_experiment(tiny_cifar), check_models=False))
    assert [s.key for s in a] == [s.key for s in b]
    c = expand(parse_experiment(_experiment(tiny_cifar, finetune_lr=0.02), check_models=False))
    changed = {s.name for s, t in zip(a, c, strict=True) if s.key != t.key}
    # the fine-tune budget changes every pruning trial but neither baselines nor PTQ trials
    assert changed == {s.name for s in a if s.kind == "compress" and "static" not in s.name}


def test_identical_grid_points_run_once(tiny_cifar: Path) -> None:
    twice = "  - prune: {method: l1, ratio: [0.2, 0.9]}\n"
    specs = expand(parse_experiment(_experiment(tiny_cifar, extra_block=twice), check_models=False))
    names = [s.name for s in specs if s.model == "resnet20_tiny"]
    assert names.count("resnet20_tiny/l1 ratio=0.2") == 1
    assert "resnet20_tiny/l1 ratio=0.9" in names
    assert len(specs) == 2 * (1 + 6 + 1 + 1)


def test_a_grown_grid_is_accepted_but_changed_settings_are_refused(tiny_cifar: Path, tmp_path: Path) -> None:
    from edgeslim.errors import ConfigError
    from edgeslim.sweep.runner import register_trials
    from edgeslim.sweep.store import Store

    first = parse_experiment(_experiment(tiny_cifar), check_models=False)
    grown = parse_experiment(
        _experiment(tiny_cifar, extra_block="  - prune: {method: l2, ratio: 0.5}\n"), check_models=False
    )
    changed = parse_experiment(_experiment(tiny_cifar, finetune_lr=0.05), check_models=False)
    with Store.open(tmp_path / "s.db") as store:
        exp_id = register_trials(store, first, expand(first))
        assert len(store.trials(exp_id)) == 16
        assert register_trials(store, grown, expand(grown)) == exp_id
        assert len(store.trials(exp_id)) == 18
        with pytest.raises(ConfigError, match=r"already has 14 trial\(s\) this file no longer produces"):
            register_trials(store, changed, expand(changed))


def test_keys_follow_file_contents_not_where_the_checkout_lives(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moving the checkout or pointing $EDGESLIM_DATA at a copy keeps the keys; new contents change them."""
    import shutil

    def checkout(where: Path) -> list[str]:
        (where / "data").mkdir(parents=True)
        shutil.copytree(tiny_cifar, where / "data" / "tiny")
        (where / "exp").mkdir()
        (where / "exp" / "w.th").write_bytes(weights)
        text = (
            "name: k\nmodels: [{name: resnet20_tiny, weights: w.th}]\ndata: {path: tiny}\n"
            "layers: {types: [conv]}\nmethods:\n  - prune: {method: l1, ratio: [0.2, 0.4]}\n"
        )
        (where / "exp" / "e.yaml").write_text(text)
        monkeypatch.setenv("EDGESLIM_DATA", str(where / "data"))
        return [s.key for s in expand(load_experiment(where / "exp" / "e.yaml", check_models=False))]

    from edgeslim.sweep import load_experiment

    weights = b"weights v1" * 1000
    first = checkout(tmp_path / "a")
    moved = checkout(tmp_path / "b")
    assert moved == first and len(set(first)) == 3
    weights = b"weights v2" * 1000  # same size, other contents
    retrained = checkout(tmp_path / "c")
    assert all(a != b for a, b in zip(first, retrained, strict=True))
    experiment = load_experiment(tmp_path / "c" / "exp" / "e.yaml", check_models=False)
    spec = expand(experiment)[0]
    assert spec.config["model"]["weights"] == str((tmp_path / "c" / "exp" / "w.th").resolve())
    assert spec.config["data"]["path"] == str((tmp_path / "c" / "data" / "tiny").resolve())
