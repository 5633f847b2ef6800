"""Recipe validation: every bad recipe is refused before anything runs, naming the field (and line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeslim.distillation import KD
from edgeslim.errors import ConfigError
from edgeslim.pruning import FilterPruning, GradualPruning
from edgeslim.quantization import QAT, StaticQuant
from edgeslim.recipe import (
    QUANTIZE_LAST,
    DistillStep,
    ExportStep,
    MeasureStep,
    PruneStep,
    QuantizeStep,
    load_recipe,
    parse_recipe,
)

HEAD = "name: t\nmodel: {name: resnet20_tiny}\n"


def parse(steps: str, head: str = HEAD, base: Path | None = None) -> object:
    return parse_recipe(head + "steps:\n" + steps, source="r.yaml", base_dir=base)


def test_a_full_chain_parses_into_typed_steps(teacher_ckpt: Path) -> None:
    recipe = parse(
        f"  - {{type: distill, teacher: {{checkpoint: {teacher_ckpt}}}, alpha: 0.3, train: {{epochs: 2}}}}\n"
        "  - {type: prune, method: gradual, sparsity: 0.8, train: {epochs: 3, lr: 0.01}}\n"
        "  - {type: quantize, method: qat, bits: 8, scope: all_layers, train: {epochs: 1}}\n"
        "  - {type: export}\n"
        "  - {type: measure, runtime: ort, batch_sizes: [1, 32]}\n"
    )
    steps = recipe.steps  # type: ignore[attr-defined]
    assert [s.type for s in steps] == ["distill", "prune", "quantize", "export", "measure"]
    assert [s.name for s in steps] == ["01-distill", "02-prune", "03-quantize", "04-export", "05-measure"]
    distill, prune, quant, export, measure = steps
    assert isinstance(distill, DistillStep) and distill.config == KD(alpha=0.3, temperature=4.0)
    assert distill.teacher.checkpoint == teacher_ckpt.resolve() and distill.train.epochs == 2
    assert isinstance(prune, PruneStep) and isinstance(prune.config, GradualPruning)
    assert prune.config.final_sparsity == 0.8 and prune.train is not None and prune.train.lr == 0.01
    assert isinstance(quant, QuantizeStep) and isinstance(quant.config, QAT)
    assert (quant.config.weight_bits, quant.config.act_bits, quant.config.scope) == (8, 8, "all_layers")
    assert quant.keep_sparsity is True  # an unstructured prune came before: QAT keeps its zeros
    assert isinstance(export, ExportStep) and (export.format, export.precision) == ("onnx", None)
    assert (
        isinstance(measure, MeasureStep) and measure.batch_sizes == (1, 32) and measure.runtimes == ("ort",)
    )


def test_filter_pruning_then_static_quantization_keeps_no_sparsity() -> None:
    recipe = parse(
        "  - {type: prune, method: fpgm, ratio: 0.25, layers: {include: ['*.conv1']}}\n"
        "  - {type: quantize, method: static, bits: 8, calibration_batches: 2, scope: all_layers}\n"
    )
    prune, quant = recipe.steps  # type: ignore[attr-defined]
    assert prune.config == FilterPruning(ratio=0.25, criterion="fpgm")
    assert prune.select.patterns == ("*.conv1",) and prune.train is None
    assert quant.config == StaticQuant(bits=8, calibration_batches=2, scope="all_layers")
    assert quant.keep_sparsity is False


@pytest.mark.parametrize(
    ("steps", "field", "words"),
    [
        ("  - {type: quantise, method: static}\n", "steps[0].type", "did you mean 'quantize'"),
        ("  - {method: static}\n", "steps[0]", "missing 'type'"),
        ("  - prune\n", "steps[0]", "expected a mapping"),
        ("  - {type: prune, method: magnitude, sparsity: 1.5}\n", "steps[0].sparsity", "[0, 1)"),
        (
            "  - {type: prune, method: magnitude, sparsity: 0.5, lr: 0.1}\n",
            "steps[0].lr",
            "unknown parameter(s) lr",
        ),
        ("  - {type: prune, method: l1, ratio: 0.5, sparsity: 0.3}\n", "steps[0].sparsity", "it takes"),
        (
            "  - {type: prune, method: magnitude, ratio: 0.5, sparsity: 0.3}\n",
            "steps[0].ratio",
            "both set MagnitudePruning.sparsity",
        ),
        ("  - {type: prune, method: l1}\n", "steps[0]", "missing required parameter(s) ratio"),
        ("  - {type: prune, method: gradual, sparsity: 0.5}\n", "steps[0].train", "this step trains"),
        ("  - {type: prune, method: l3, ratio: 0.5}\n", "steps[0].method", "not one of"),
        ("  - {type: prune, method: l1, ratio: 0.5, format: zip}\n", "steps[0].format", "not one of"),
        (
            "  - {type: prune, method: l1, ratio: 0.5, layers: {types: [convv]}}\n",
            "steps[0].layers.types",
            "convv",
        ),
        ("  - {type: quantize, method: static, bits: 12}\n", "steps[0].bits", "2 to 8 bits"),
        ("  - {type: quantize, method: static, train: {epochs: 1}}\n", "steps[0].train", "does not train"),
        ("  - {type: quantize, method: qat, train: {epochs: 1, lrr: 0.1}}\n", "steps[0].train.lrr", "'lr'"),
        ("  - {type: quantize, method: qat, train: {epochs: 0}}\n", "steps[0].train.epochs", "from 1"),
        ("  - {type: quantize, method: static, keep_sparsity: true}\n", "steps[0].keep_sparsity", "no zeros"),
        ("  - {type: export, format: tflite}\n", "steps[0].format", "not one of"),
        ("  - {type: measure, runtime: onnxruntime}\n", "steps[0].runtime", "now called 'ort'"),
        ("  - {type: measure, batch_sizes: [0]}\n", "steps[0].batch_sizes[0]", "from 1"),
        ("  - {type: train}\n", "steps[0].train", "this step trains"),
        ("  - {type: distill, train: {epochs: 1}}\n", "steps[0]", "missing 'teacher'"),
        (
            "  - {type: distill, teacher: {name: resnet20_tiny}, train: {epochs: 1}}\n",
            "steps[0].teacher",
            "nothing to teach",
        ),
        (
            "  - {type: distill, teacher: {name: resnet20, pretrained: true, train: {epochs: 1}}, "
            "train: {epochs: 1}}\n",
            "steps[0].teacher.train",
            "not both",
        ),
        (
            "  - {type: distill, teacher: {name: resnet20_tiny, train: {epochs: 0}}, train: {epochs: 1}}\n",
            "steps[0].teacher.train.epochs",
            "from 1",
        ),
        (
            "  - {type: distill, teacher: {name: resnet20_tiny, weights: nope.th}, train: {epochs: 1}}\n",
            "steps[0].teacher.weights",
            "no file 'nope.th'",
        ),
        (
            "  - {type: distill, teacher: {name: nosuchnet, weights: x}, train: {epochs: 1}}\n",
            "steps[0].teacher.name",
            "nosuchnet",
        ),
    ],
)
def test_bad_steps_name_the_field(steps: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(steps)
    message = str(info.value)
    assert message.startswith(f"r.yaml:4: {field}: "), message  # the step's line (line 4 of the file)
    assert words in message


def test_method_fields_of_another_distillation_method_are_refused(teacher_ckpt: Path) -> None:
    with pytest.raises(ConfigError, match=r"steps\[0\]\.margin: distill/kd: unknown parameter\(s\) margin"):
        parse(
            f"  - {{type: distill, teacher: {{checkpoint: {teacher_ckpt}}}, margin: 1, train: {{epochs: 1}}}}\n"
        )


@pytest.mark.parametrize(
    ("head", "field", "words"),
    [
        ("model: {name: resnet20_tiny}\n", "name", "may use only"),  # name from nowhere: default_name None
        ("name: a b\nmodel: {name: resnet20_tiny}\n", "name", "may use only"),
        ("name: t\n", "(top level)", "missing required key 'model'"),
        ("name: t\nmodel: {name: resnet20_tiny, checkpoint: x.pt}\n", "model", "either 'name'"),
        ("name: t\nmodel: {name: resnet20_tiny}\nthreads: 0\n", "threads", "from 1"),
        ("name: t\nmodel: {name: resnet20_tiny}\ndata: {path: x, limit: 5}\n", "data.limit", "unknown key"),
        ("name: t\nmodel: {name: resnet20_tiny}\nversion: 2\n", "version", "recipe version 1"),
        ("name: t\nmodel: {name: resnet20_tiny}\nstep: []\n", "step", "did you mean 'steps'"),
    ],
)
def test_bad_top_level_keys_name_the_field(head: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse("  - {type: measure}\n", head=head)
    assert f": {field}: " in str(info.value) and words in str(info.value), str(info.value)


def test_empty_list_of_steps_and_empty_file() -> None:
    with pytest.raises(ConfigError, match=r"steps: expected a non-empty list"):
        parse_recipe(HEAD + "steps: []\n", source="r.yaml")
    with pytest.raises(ConfigError, match="the recipe file is empty"):
        parse_recipe("\n", source="r.yaml")


def test_quantize_before_prune_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as info:
        parse(
            "  - {type: quantize, method: static}\n"  # line 4
            "  - {type: prune, method: magnitude, sparsity: 0.5}\n"  # line 5
        )
    message = str(info.value)
    assert message.startswith(
        "r.yaml:5: steps[1].type: step 2 (prune): cannot prune after step 1 (quantize): "
    )
    assert message.endswith(QUANTIZE_LAST)
    assert "Prune (and distill) first, then quantize" in QUANTIZE_LAST


@pytest.mark.parametrize(
    ("steps", "words", "quantized"),
    [
        # any compression or training after quantization, not only pruning
        (
            "  - {type: quantize, method: static}\n  - {type: train, train: {epochs: 1}}\n",
            "cannot train after",
            True,
        ),
        (
            "  - {type: quantize, method: static}\n  - {type: quantize, method: static}\n",
            "quantize once",
            False,
        ),
        # an int8 export quantizes too (static PTQ inside the export)
        (
            "  - {type: export, precision: int8}\n  - {type: prune, method: l1, ratio: 0.5}\n",
            "cannot prune after step 1 (export) (int8",
            True,
        ),
        (
            "  - {type: export}\n  - {type: prune, method: l1, ratio: 0.5}\n",
            "move this step before the export",
            False,
        ),
        ("  - {type: export}\n  - {type: export}\n", "already exported", False),
        (
            "  - {type: prune, method: magnitude, sparsity: 0.5}\n  - {type: train, train: {epochs: 1}}\n",
            "grow back",
            False,
        ),
        (
            "  - {type: export}\n  - {type: measure, runtimes: [ort, torch]}\n",
            "runtime 'torch' cannot run the exported file",
            False,
        ),
        (
            "  - {type: export, format: openvino}\n  - {type: measure, runtime: ort}\n",
            "runs on openvino",
            False,
        ),
    ],
)
def test_orders_that_cannot_work_are_refused(steps: str, words: str, quantized: bool) -> None:
    with pytest.raises(ConfigError, match="steps\\[1\\]") as info:
        parse(steps)
    assert words in str(info.value), str(info.value)
    assert (QUANTIZE_LAST in str(info.value)) is quantized


def test_training_after_filter_pruning_is_allowed() -> None:
    # training checkpoints carry the pruned channel counts, so a filter-pruned model can be trained on
    recipe = parse("  - {type: prune, method: l1, ratio: 0.5}\n  - {type: train, train: {epochs: 1}}\n")
    assert [s.type for s in recipe.steps] == ["prune", "train"]


def test_files_resolve_beside_the_recipe(tmp_path: Path, teacher_ckpt: Path) -> None:
    (tmp_path / "t.pt").write_bytes(teacher_ckpt.read_bytes())
    path = tmp_path / "chain.yaml"
    path.write_text(
        "model: {checkpoint: t.pt}\n"
        "steps:\n  - {type: distill, teacher: {checkpoint: t.pt}, train: {epochs: 1}}\n  - {type: measure}\n"
    )
    recipe = load_recipe(path)
    assert recipe.name == "chain"  # the file's stem when the recipe gives no name
    assert recipe.start.checkpoint == (tmp_path / "t.pt").resolve()
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_recipe(tmp_path)


def test_duplicate_keys_and_yaml_errors_name_the_line() -> None:
    with pytest.raises(ConfigError, match=r"r\.yaml:3: name: duplicate key"):
        parse_recipe(
            "name: a\nmodel: {name: resnet20_tiny}\nname: b\nsteps: [{type: measure}]\n", source="r.yaml"
        )
    with pytest.raises(ConfigError, match=r"r\.yaml:\d+: invalid YAML"):
        parse_recipe("name: [\n", source="r.yaml")


@pytest.mark.parametrize("name", ["distill_prune_qat.yaml", "tiny.yaml"])
def test_example_recipes_are_valid(name: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESLIM_DATA", str(shared_data))
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "examples" / "recipes" / name)
    assert recipe.start.weights is not None and recipe.start.weights.is_file()
    assert recipe.steps[-1].type == "measure"
    if name == "distill_prune_qat.yaml":
        assert [s.type for s in recipe.steps] == ["distill", "prune", "quantize", "export", "measure"]
        prune, quant = recipe.steps[1], recipe.steps[2]
        assert isinstance(prune, PruneStep) and isinstance(prune.config, GradualPruning)
        assert prune.config.final_sparsity == 0.8
        assert (
            isinstance(quant, QuantizeStep) and isinstance(quant.config, QAT) and quant.keep_sparsity is True
        )
