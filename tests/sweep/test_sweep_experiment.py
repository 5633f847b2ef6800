"""Experiment files: the schema, grid ranges, and errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.engine.steps import QuantizeStep
from edgeslim.errors import ConfigError
from edgeslim.pruning.configs import FilterPruning
from edgeslim.sweep import expand, load_experiment, parse_experiment
from edgeslim.sweep.experiment import method_config
from edgeslim.sweep.grid import trials


def _yaml(data: Path, methods: str = "  - prune: {method: l1, ratio: 0.5}", extra: str = "") -> str:
    return (
        f"name: t\nmodels:\n  - {{name: resnet20_tiny, init: random}}\ndata: {{path: {data}}}\n"
        f"methods:\n{methods}\n{extra}"
    )


def test_full_schema_parses(tiny_cifar: Path, tmp_path: Path) -> None:
    weights = tmp_path / "w.th"
    weights.write_bytes(b"x")
    text = f"""name: study-1
description: a study
models:
  - name: resnet20_tiny
    weights: w.th
  - name: vgg11_tiny
    label: vgg
    train: {{epochs: 2, lr: 0.05}}
data: {{path: {tiny_cifar}, train_limit: 100, test_limit: 50, seed: 3}}
layers: {{types: [conv], include: ["layer*"], exclude: ["layer1.0.conv1"]}}
methods:
  - prune: {{method: [l1, fpgm], ratio: {{from: 0.1, to: 0.8, step: 0.1}}}}
  - quantize: {{method: static, bits: [8, 4]}}
finetune: {{epochs: 1, lr: 0.01, batch_size: 32}}
measure: {{runtimes: [ort, torch], batch_sizes: [1, 16], latency_runs: 5}}
limits: {{trial_timeout_s: 60, trial_memory_mb: 4000}}
execution: {{workers: 3}}
"""
    exp = parse_experiment(text, source="s.yaml", base_dir=tmp_path, check_models=False)
    assert exp.name == "study-1"
    assert exp.models[0].weights == str(weights.resolve())
    assert exp.models[1].label == "vgg" and exp.models[1].train is not None
    assert exp.models[1].train["epochs"] == 2 and exp.models[1].train["lr"] == 0.05
    assert exp.data.train_limit == 100 and exp.data.test_limit == 50 and exp.data.seed == 3
    assert exp.layers.patterns == ("layer*",) and exp.layers.exclude == ("layer1.0.conv1",)
    assert exp.methods[0].grid["ratio"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    assert exp.methods[1].grid == {"method": ["static"], "bits": [8, 4]}
    assert exp.finetune is not None and exp.finetune["batch_size"] == 32
    assert exp.measure.runtimes == ("ort", "torch") and exp.measure.batch_sizes == (1, 16)
    assert exp.limits.trial_timeout_s == 60.0 and exp.limits.trial_memory_mb == 4000.0
    assert exp.workers == 3
    config = method_config(exp.methods[0], {"method": "fpgm", "ratio": 0.3})
    assert config == FilterPruning(ratio=0.3, criterion="fpgm")
    # 2 models x (2 x 8 pruning + 2 quantization) + 2 baselines
    assert len(trials(expand(exp))) == 2 * (16 + 2) + 2  # a baseline and 18 grid points per model


@pytest.mark.parametrize(
    ("methods", "extra", "line", "expected"),
    [
        (
            "  - prune: {method: l1, ratio: 1.5}",
            "",
            6,
            "methods[0].prune.ratio: FilterPruning.ratio must be in [0, 1)",
        ),
        (
            "  - prune: {method: l3, ratio: 0.5}",
            "",
            6,
            "methods[0].prune.method: 'l3' is not one of magnitude, gradual, l1, l2, fpgm",
        ),
        ("  - prune: {method: l1}", "", 6, "missing required parameter(s) ratio"),
        ("  - prune: {method: l1, ratio: 0.5, bogus: 1}", "", 6, "unknown parameter(s) bogus"),
        ("  - squeeze: {method: l1}", "", 6, "unknown method family 'squeeze'"),
        (
            "  - quantize: {method: qat, bits: 4}",
            "",
            6,
            "quantize/qat trains while it compresses: set finetune.epochs >= 1",
        ),
        (
            "  - prune: {method: l1, ratio: 0.5}",
            "finetun: {epochs: 1}\n",
            7,
            "finetun: unknown key; did you mean 'finetune'?",
        ),
        (
            "  - prune: {method: l1, ratio: 0.5}",
            "finetune:\n  epochs: 1\n  lr: -1\n",
            9,
            "finetune.lr: TrainConfig.lr must be",
        ),
        (
            "  - prune: {method: l1, ratio: 0.5}",
            "measure: {runtimes: [tensorflow]}\n",
            7,
            "'tensorflow' is not one of torch",
        ),
        (
            "  - prune: {method: l1, ratio: 0.5}",
            "limits: {trial_timeout_s: -3}\n",
            7,
            "limits.trial_timeout_s",
        ),
        ("  - prune: {method: l1, ratio: 0.5}", "name: again\n", 7, "duplicate key"),
        ("  - prune: {method: l1, ratio: [0.2, [0.3]]}", "", 6, "grid values must be scalars"),
        ("  - prune: {method: l1, ratio: 0.5", "", 7, "invalid YAML"),
    ],
)
def test_errors_name_line_and_field(
    tiny_cifar: Path, methods: str, extra: str, line: int, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_experiment(_yaml(tiny_cifar, methods, extra), source="exp.yaml", check_models=False)
    message = str(info.value)
    assert message.startswith(f"exp.yaml:{line}: "), message
    assert expected in message


def test_model_and_layer_checks_name_their_line(tiny_cifar: Path, tmp_path: Path) -> None:
    bad_model = _yaml(tiny_cifar).replace("resnet20_tiny", "resnet21_tiny")
    with pytest.raises(ConfigError, match=r"^exp.yaml:3: models\[0\]\.name: .*resnet21_tiny"):
        parse_experiment(bad_model, source="exp.yaml")
    bad_layers = _yaml(tiny_cifar, extra="layers: {include: ['nothing.*']}\n")
    with pytest.raises(
        ConfigError, match=r"^exp.yaml:7: layers: for model 'resnet20_tiny': .*'nothing\.\*' matches no layer"
    ):
        parse_experiment(bad_layers, source="exp.yaml")
    missing_weights = _yaml(tiny_cifar).replace("init: random", "weights: nope.th")
    with pytest.raises(ConfigError, match=r"^exp.yaml:3: models\[0\]\.weights: no file 'nope.th'"):
        parse_experiment(missing_weights, source="exp.yaml", base_dir=tmp_path)
    missing_data = _yaml(tmp_path / "no-such-data")
    with pytest.raises(ConfigError, match=r"^exp.yaml:4: data.path: .*does not exist"):
        parse_experiment(missing_data, source="exp.yaml")


def test_cli_rejects_a_bad_file_in_one_line_and_writes_nothing(tiny_cifar: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(_yaml(tiny_cifar, "  - prune: {method: l1, ratio: 2}"))
    db = tmp_path / "store.db"
    result = CliRunner().invoke(app, ["sweep", str(path), "--db", str(db)])
    assert result.exit_code == 2
    assert f"{path}:6: methods[0].prune.ratio" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not db.exists()
    missing = CliRunner().invoke(app, ["sweep", str(tmp_path / "none.yaml"), "--db", str(db)])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_load_experiment_reads_the_file(write_experiment) -> None:  # type: ignore[no-untyped-def]
    exp = load_experiment(write_experiment())
    assert exp.name == "tiny" and exp.workers == 2
    assert [s.name for s in trials(expand(exp))] == [
        "resnet20_tiny/baseline",
        "resnet20_tiny/l1 ratio=0.25",
        "resnet20_tiny/l1 ratio=0.5",
    ]


def test_every_model_needs_weights_training_or_an_explicit_random_init(tiny_cifar: Path) -> None:
    bare = _yaml(tiny_cifar).replace("{name: resnet20_tiny, init: random}", "resnet20_tiny")
    with pytest.raises(ConfigError) as info:
        parse_experiment(bare, source="exp.yaml", check_models=False)
    message = str(info.value)
    assert message.startswith("exp.yaml:3: models[0]: model 'resnet20_tiny' has no weights: give")
    assert "'init: random' (untrained, for tests and demos only)" in message
    both = _yaml(tiny_cifar).replace("init: random", "init: random, train: {epochs: 1}")
    with pytest.raises(ConfigError, match=r"^exp.yaml:3: models\[0\]\.init: give only one of"):
        parse_experiment(both, source="exp.yaml", check_models=False)
    wrong = _yaml(tiny_cifar).replace("init: random", "init: zeros")
    with pytest.raises(ConfigError, match=r"^exp.yaml:3: models\[0\]\.init: 'zeros' is not one of random"):
        parse_experiment(wrong, source="exp.yaml", check_models=False)
    exp = parse_experiment(_yaml(tiny_cifar), source="exp.yaml", check_models=False)
    assert (exp.models[0].init, exp.models[0].weights, exp.models[0].train) == ("random", None, None)


@pytest.mark.parametrize(
    ("methods", "extra", "line", "expected"),
    [
        (  # {lr} alone used to mean "no fine-tuning" silently
            "  - prune: {method: l1, ratio: 0.5}",
            "finetune: {lr: 0.01}\n",
            7,
            "finetune: missing 'epochs' (the training budget; 0 for none)",
        ),
        (
            "  - prune: {method: l1, ratio: 0.5, finetune: {lr: 0.01}}",
            "",
            6,
            "methods[0].prune.finetune: missing 'epochs' (the top-level finetune gives none to inherit)",
        ),
        (  # a block budget on PTQ used to be dropped silently
            "  - quantize: {method: static, bits: 8, finetune: {epochs: 2}}",
            "",
            6,
            "methods[0].quantize.finetune: static quantization does not train",
        ),
        (
            "  - quantize: {method: [static, dynamic], finetune: {epochs: 2}}",
            "",
            6,
            "methods[0].quantize.finetune: static and dynamic quantization does not train",
        ),
    ],
)
def test_finetune_needs_epochs_and_a_method_that_trains(
    tiny_cifar: Path, methods: str, extra: str, line: int, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_experiment(_yaml(tiny_cifar, methods, extra), source="exp.yaml", check_models=False)
    message = str(info.value)
    assert message.startswith(f"exp.yaml:{line}: {expected}"), message


def test_block_finetune_inherits_the_epochs_and_applies_to_the_methods_that_train(tiny_cifar: Path) -> None:
    text = _yaml(
        tiny_cifar,
        "  - quantize: {method: [static, qat], bits: 8, finetune: {lr: 0.0005}}",
        "finetune: {epochs: 2, lr: 0.01}\n",
    )
    exp = parse_experiment(text, check_models=False)
    assert exp.methods[0].finetune is not None
    assert (exp.methods[0].finetune["epochs"], exp.methods[0].finetune["lr"]) == (2, 0.0005)
    static, qat = (n.step for n in expand(exp) if n.kind == "quantize")
    assert isinstance(static, QuantizeStep) and isinstance(qat, QuantizeStep)
    assert static.train is None and qat.train is not None and qat.train.epochs == 2
    none = parse_experiment(_yaml(tiny_cifar, extra="finetune: {epochs: 0}\n"), check_models=False)
    assert none.finetune is None  # explicit: no fine-tuning


def test_artifacts_are_relative_to_the_experiment_file(
    tiny_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "experiments"
    folder.mkdir()
    path = folder / "exp.yaml"
    path.write_text(_yaml(tiny_cifar, extra="artifacts: out/models\n"))
    monkeypatch.chdir(tmp_path)  # like weights, not the working directory
    exp = load_experiment(path)
    assert exp.artifacts == str((folder / "out" / "models").resolve())


def test_prune_blocks_store_sparse_layouts_and_old_runtime_names_are_renamed(tiny_cifar: Path) -> None:
    from edgeslim.engine.steps import PruneStep

    head = f"name: f\nmodels: [{{name: resnet20_tiny, init: random}}]\ndata: {{path: {tiny_cifar}}}\n"
    exp = parse_experiment(
        head + "methods:\n  - prune: {method: magnitude, ratio: 0.9, format: [dense, csr]}\n"
    )
    layouts = [n.step.layout for n in expand(exp) if isinstance(n.step, PruneStep)]
    assert layouts == ["dense", "csr"]
    with pytest.raises(
        ConfigError, match=r"methods\[0\]\.prune\.format: 'zip' is not one of dense, coo, csr, csc"
    ):
        parse_experiment(head + "methods:\n  - prune: {method: magnitude, ratio: 0.9, format: zip}\n")
    with pytest.raises(
        ConfigError, match=r"measure\.runtimes\[0\]: 'onnxruntime' is now called 'ort'; rename it"
    ):
        parse_experiment(
            head + "methods:\n  - prune: {method: l1, ratio: 0.5}\nmeasure: {runtimes: [onnxruntime]}\n"
        )
