"""Studies: claims checked exactly on given rows, study files validated, and every study of the
checkout run at CI scale through ``edgeslim study run`` (slow: real data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeslim.cli.app import app
from edgeslim.engine.store import Store
from edgeslim.errors import ConfigError
from edgeslim.recipe import DistillStep, load_recipe, parse_recipe
from edgeslim.studies import (
    SCALES,
    Claim,
    StudyReport,
    find_studies,
    judge,
    judge_study,
    load_study,
    parse_check,
    run_study,
    seeded_yaml,
)
from edgeslim.studies.claims import Verdict, evaluate_over_seeds, mean_rows
from edgeslim.sweep.api import trial_rows
from edgeslim.sweep.experiment import load_experiment, parse_experiment

ROOT = Path(__file__).parents[2] / "studies"
runner = CliRunner()


def _row(name: str, model: str = "m", **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "model": model, "status": "done", "rate": None, "error": None}
    row.update(values)
    return row


ROWS = [
    _row("m/baseline", top1=80.0, size_bytes=9_000_000, latency_ms=2.0),
    _row(
        "m/q8",
        top1=79.7,
        baseline_top1=80.0,
        size_bytes=2_400_000,
        baseline_size_bytes=9_000_000,
        latency_ms=1.9,
        baseline_latency_ms=2.0,
    ),
    _row("m/q2", top1=31.0, baseline_top1=80.0),
    _row("m/bad", status="failed", error="TrainingError: nan"),
]


def _verdict(check: dict[str, Any], rows: list[dict[str, Any]] = ROWS) -> Verdict:
    return parse_check(check).evaluate(rows)


@pytest.mark.parametrize(
    ("check", "status", "measured"),
    [
        (
            {"type": "drop_at_most", "trial": "m/q8", "points": 0.5},
            "reproduced",
            "80.00% -> 79.70% (-0.30 points",
        ),
        ({"type": "drop_at_most", "trial": "m/q8", "points": 0.2}, "not reproduced", "-0.30 points"),
        ({"type": "drop_at_least", "trial": "m/q2", "points": 40}, "reproduced", "-49.00 points"),
        ({"type": "drop_at_least", "trial": "m/q8", "points": 10}, "not reproduced", "-0.30 points"),
        (
            {"type": "ratio_at_most", "trial": "m/q8", "metric": "size_bytes", "ratio": 0.3},
            "reproduced",
            "9,000 kB -> 2,400 kB (x0.267",
        ),
        (
            {"type": "ratio_at_most", "trial": "m/q8", "metric": "latency_ms", "ratio": 0.9},
            "not reproduced",
            "(x0.950",
        ),
        ({"type": "better", "trial": "m/q8", "than": "m/q2"}, "reproduced", "top1 79.70% vs 31.00%"),
        (
            {"type": "better", "trial": "m/q8", "than": "m/baseline", "metric": "latency_ms"},
            "reproduced",
            "latency_ms 1.900 ms vs 2.000 ms",
        ),
        (
            {"type": "better", "trial": "m/q8", "than": "m/baseline", "metric": "latency_ms", "margin": 0.5},
            "not reproduced",
            "1.900 ms",
        ),
        (
            {"type": "drop_at_most", "trial": "m/bad", "points": 1},
            "not measured",
            "failed: TrainingError: nan",
        ),
        ({"type": "drop_at_most", "trial": "m/none", "points": 1}, "not measured", "no trial 'm/none'"),
        ({"type": "not_measurable", "reason": "needs a GPU"}, "not measured", "needs a GPU"),
    ],
)
def test_checks_give_exact_verdicts(check: dict[str, Any], status: str, measured: str) -> None:
    verdict = _verdict(check)
    assert verdict.status == status
    assert measured in verdict.measured


def _rated(model: str, tops: list[float], reductions: list[float]) -> list[dict[str, Any]]:
    rates = [0.2, 0.4, 0.6, 0.8][: len(tops)]
    return [
        _row(f"{model}/l1 ratio={r}", model, rate=r, top1=t, top1_drop=90.0 - t, param_reduction_ratio=p)
        for r, t, p in zip(rates, tops, reductions, strict=True)
    ]


RATED = (
    _rated("resnet", [89.0, 88.0, 86.0, 80.0], [0.2, 0.4, 0.6, 0.8])
    + _rated("vgg", [88.0, 85.0, 40.0, 12.0], [0.35, 0.62, 0.84, 0.96])
    + _rated("mobile", [80.0, 83.0, 70.0, 50.0], [0.1, 0.15, 0.17, 0.18])
)


def test_trial_patterns_match_one_trial_or_say_why() -> None:
    rows = [
        _row("d/gradual ratio=0.9 ramp=4", top1=79.0, baseline_top1=80.0),
        _row("d/gradual ratio=0.95 ramp=4"),
    ]
    assert (
        _verdict({"type": "drop_at_most", "trial": "d/gradual ratio=0.9 *", "points": 1}, rows).status
        == "reproduced"
    )
    many = _verdict({"type": "drop_at_most", "trial": "d/gradual *", "points": 1}, rows)
    assert many.status == "not measured" and "matches 2 trials" in many.measured


def test_rate_checks_fit_lines_and_rank_drops() -> None:
    falls = _verdict({"type": "falls_with_rate", "tolerance": 1.0}, RATED)
    assert (
        falls.status == "not reproduced"
        and "2 of 3 models" in falls.measured
        and "mobile (rises 3.0" in falls.measured
    )
    assert _verdict({"type": "falls_with_rate", "models": ["resnet", "vgg"]}, RATED).status == "reproduced"
    least = _verdict({"type": "least_drop", "model": "resnet", "rate": 0.8}, RATED)
    assert least.status == "reproduced" and least.measured.startswith(
        "drop at rate 0.8 (points): resnet +10.0"
    )
    assert _verdict({"type": "least_drop", "model": "vgg", "rate": 0.8}, RATED).status == "not reproduced"
    linear = _verdict({"type": "linear_in_rate", "models": ["resnet"]}, RATED)
    assert linear.status == "reproduced" and "resnet R2 1.000" in linear.measured
    flat = _verdict({"type": "linear_in_rate", "models": ["mobile"], "expect": False}, RATED)
    assert flat.status == "reproduced"
    missing = _verdict({"type": "falls_with_rate", "models": ["alexnet"]}, RATED)
    assert missing.status == "not measured" and "alexnet" in missing.measured


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"type": "drop_at_most", "trial": "x", "points": -1}, "DropAtMost.points"),
        ({"type": "better", "trial": "x", "than": "y", "metric": "speed"}, "Better.metric"),
        ({"type": "ratio_at_most", "trial": "x", "metric": "top1", "ratio": 1}, "RatioAtMost.metric"),
        ({"type": "linear_in_rate", "models": []}, "LinearInRate.models"),
        ({"type": "guess"}, "type"),
    ],
)
def test_bad_checks_name_the_field(check: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_check(check)
    assert err.value.field == field or field in str(err.value)


def test_study_verdict_summarises_its_claims() -> None:
    claims = [
        Claim(str(i), "c", "p", parse_check({"type": "not_measurable", "reason": "r"})) for i in range(3)
    ]
    results = judge(claims, [])
    assert StudyReport("s", "ci", "", results).verdict == "not measured"
    mixed = [
        *results[:1],
        *judge(
            [Claim("a", "c", "p", parse_check({"type": "drop_at_most", "trial": "m/q8", "points": 1}))], ROWS
        ),
        *judge(
            [Claim("b", "c", "p", parse_check({"type": "drop_at_least", "trial": "m/q8", "points": 5}))], ROWS
        ),
    ]
    report = StudyReport("s", "ci", "", tuple(mixed))
    assert report.verdict == "partly"
    assert report.markdown().splitlines()[2] == "| c | p | r | **not measured** |"


def test_every_study_in_the_checkout_validates(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESLIM_DATA", str(shared_data))
    studies = find_studies(ROOT)
    assert {s.name for s in studies} == {
        "qat-vgg16",
        "dynamic-int8-small-cnn",
        "densenet-chain",
        "pruning-seven-models",
    }
    for study in studies:
        assert {"ci", "full"} <= set(study.scales)
        for scale in (study.scales[name] for name in SCALES):  # extra scales may need other data
            for file in scale.files:  # every file is a valid experiment or recipe
                if "steps:" in file.read_text():
                    load_recipe(file)
                else:
                    load_experiment(file, check_models=False)


def test_study_file_errors_name_the_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "ci.yaml").write_text("name: x\n")
    (tmp_path / "study.yaml").write_text(
        "name: s\ntitle: t\nscales:\n  ci: {files: [ci.yaml]}\n  full: {files: [ci.yaml]}\nclaims:\n"
        "  - {id: a, claim: c, check: {type: drop_at_most, trial: t, points: -2}}\n"
    )
    with pytest.raises(ConfigError, match=r"study.yaml:7: claims\[0\].check.points"):
        load_study(tmp_path)
    (tmp_path / "study.yaml").write_text(
        "name: s\ntitle: t\nscales:\n  huge: {files: [ci.yaml]}\nclaims: []\n"
    )
    result = runner.invoke(app, ["study", "run", str(tmp_path)])
    assert (
        result.exit_code == 2 and "scales.ci: required" in result.stderr and "Traceback" not in result.output
    )
    result = runner.invoke(app, ["study", "run", str(ROOT / "qat-vgg16"), "--scale", "huge"])
    assert result.exit_code == 2 and "'huge' is not one of" in result.stderr and "ci, full" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("study", sorted(p.parent.name for p in ROOT.glob("*/study.yaml")))
def test_study_runs_at_ci_scale_and_reports_every_claim(
    study: str, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGESLIM_DATA", str(shared_data))
    db = tmp_path / "s.db"
    result = runner.invoke(
        app, ["study", "run", str(ROOT / study), "--scale", "ci", "--db", str(db), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    claims = load_study(ROOT / study).claims
    assert [c["id"] for c in report["claims"]] == [c.id for c in claims]
    # every claim this machine can test was measured (a verdict, not a missing trial)
    measurable = [c for c in report["claims"] if c["check"]["type"] != "NotMeasurable"]
    assert measurable and all(c["status"] != "not measured" for c in measurable), report
    out = tmp_path / "report"
    result = runner.invoke(app, ["study", "report", str(ROOT / study), "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "claims.md").read_text().count("\n| ") == len(claims) + 1
    assert json.loads((out / "claims.json").read_text())["verdict"] == report["verdict"]
    assert list(out.glob("*.html")) and list(out.glob("*.png"))


def test_a_study_stopped_part_way_is_judged_with_what_it_has(tmp_path: Path) -> None:
    """A full-scale study runs for hours over several sessions: its report before every file has run
    says which are missing and leaves their claims unmeasured, instead of failing."""
    db = tmp_path / "s.db"
    Store.open(db).close()  # a store that holds none of the study's experiments yet
    study = load_study(ROOT / "densenet-chain")
    report = judge_study(study, "ci", db=db, out=tmp_path / "out")
    assert {c.verdict.status for c in report.claims} == {"not measured"}
    assert "Not run yet: study-densenet-ci-pruning" in report.note
    assert (tmp_path / "out" / "claims.md").is_file() and not list((tmp_path / "out").glob("*.html"))


def _seed_rows(top1: float, baseline: float) -> list[dict[str, Any]]:
    return [
        _row("m/q8", top1=top1, baseline_top1=baseline, size_bytes=100_000, rate=None),
        _row("m/q2", top1=20.0),
    ]


def test_claims_over_seeds_judge_the_mean_and_count_the_seeds_that_held() -> None:
    seeds = [_seed_rows(79.0, 80.0), _seed_rows(80.0, 80.0), _seed_rows(78.0, 80.0)]
    mean = {r["name"]: r for r in mean_rows(seeds)}
    assert mean["m/q8"]["top1"] == pytest.approx(79.0) and mean["m/q8"]["size_bytes"] == 100_000
    check = parse_check({"type": "drop_at_most", "trial": "m/q8", "points": 1.5})
    verdict = evaluate_over_seeds(check, seeds)
    assert verdict.status == "reproduced"  # the mean drop (1.0) holds, though seed 2 (-2.0) does not
    assert verdict.measured == (
        "80.00% -> 79.00% (-1.00 points; claim holds within 1.5); mean of 3 seeds, top-1 sd 1.00, held in 2 of 3"
    )
    size = parse_check({"type": "ratio_at_most", "trial": "m/q8", "metric": "size_bytes", "ratio": 0.5})
    seeds[0][0]["baseline_size_bytes"] = 400_000
    assert evaluate_over_seeds(size, seeds).status == "not measured"  # seeds 1, 2 have no baseline size
    for rows in seeds:
        rows[0]["baseline_size_bytes"] = 400_000
    seeds[2][0]["size_bytes"] = 160_000
    assert evaluate_over_seeds(size, seeds).measured == (
        "400 kB -> 120 kB (x0.300; claim: <= x0.5); mean of 3 seeds, size_bytes sd 35 kB, held in 3 of 3"
    )
    # a trial one seed did not finish is not measured, never judged on the others
    seeds[1] = [_row("m/q8", status="failed", error="TrainingError: nan")]
    assert evaluate_over_seeds(check, seeds).measured == "trial 'm/q8' failed: TrainingError: nan"
    seeds[1] = [_row("m/q2", top1=20.0)]
    assert evaluate_over_seeds(check, seeds) == Verdict(
        "not measured", "trial 'm/q8' incomplete: missing in seed run(s) 1 of 3"
    )


def test_rows_over_seeds_average_measurements_only_and_pair_trials_as_checks_find_them() -> None:
    seeds = [
        [_row("m/q8", top1=70.0, rate=0.5, bits=8, latency_noisy=False, key="a"), _row("m/q8", top1=10.0)],
        [_row("m/q8", top1=72.0, rate=0.5, bits=8, latency_noisy=True, key="b")],
    ]
    (mean,) = mean_rows(seeds)
    # the first row of a name in each seed (as a check's trial finds it), settings kept as they are
    assert mean["top1"] == 71.0 and mean["latency_noisy"] is True
    assert (mean["rate"], mean["bits"], mean["key"]) == (0.5, 8, "a")
    assert isinstance(mean["bits"], int) and mean["size_bytes"] is None


def test_a_seeded_copy_sets_every_seed_and_renames_the_experiment() -> None:
    experiment = parse_experiment(seeded_yaml(ROOT / "qat-vgg16" / "ci.yaml", 4), check_models=False)
    assert experiment.name == "study-qat-vgg16-ci-seed4" and experiment.data.seed == 4
    assert [m.train["seed"] for m in experiment.models if m.train] == [4]
    assert (
        experiment.finetune and experiment.finetune["seed"] == 4 and experiment.finetune["distill"] is False
    )
    recipe = parse_recipe(seeded_yaml(ROOT / "densenet-chain" / "ci-chain.yaml", 2))
    assert recipe.name == "study-densenet-ci-chain-seed2" and recipe.data.seed == 2
    trains = [getattr(step, "train", None) for step in recipe.steps]
    assert {t.seed for t in trains if t is not None} == {2} and len([t for t in trains if t]) == 3
    distill = next(step for step in recipe.steps if isinstance(step, DistillStep))
    assert distill.teacher.train is not None and distill.teacher.train.seed == 2


def test_study_seeds_are_validated(tmp_path: Path) -> None:
    (tmp_path / "ci.yaml").write_text("name: x\n")
    for seeds, problem in (
        ("[3]", "list two or more seeds"),
        ("[1, 1]", "the seeds must differ"),
        ("[0, -1]", ">= 0"),
    ):
        (tmp_path / "study.yaml").write_text(
            f"name: s\ntitle: t\nscales:\n  ci: {{files: [ci.yaml], seeds: {seeds}}}\n  full: {{files: [ci.yaml]}}\n"
            "claims:\n  - {id: a, claim: c, check: {type: not_measurable, reason: r}}\n"
        )
        with pytest.raises(ConfigError, match=rf"study.yaml:4: scales.ci.seeds.*{problem}"):
            load_study(tmp_path)
    folder = tmp_path / "root" / "s"
    folder.mkdir(parents=True)
    (folder / "ci.yaml").write_text("name: x\n")
    (folder / "study.yaml").write_text(
        (tmp_path / "study.yaml").read_text().replace("seeds: [0, -1]", "seeds: [0, 2]")
    )
    result = runner.invoke(app, ["study", "list", str(tmp_path / "root"), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["studies"][0]["seeds"] == {"ci": [0, 2]}


def test_a_study_with_seeds_runs_each_file_per_seed_and_judges_the_mean(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGESLIM_DATA", str(shared_data))
    (tmp_path / "ci.yaml").write_text(
        "name: seeded\nmodels:\n  - {name: small_cnn, label: cnn, train: {epochs: 1, lr: 0.01, batch_size: 64}}\n"
        "data: {path: cifar10-exact-subset, train_limit: 256, test_limit: 128, seed: 0}\n"
        "methods:\n  - quantize: {method: dynamic, bits: 8}\n"
        "measure: {metrics: [top1, size], runtimes: [torch], batch_sizes: [1], latency_runs: 2, passes: 1}\n"
        "execution: {workers: 1, threads: 1}\n"
    )
    (tmp_path / "study.yaml").write_text(
        "name: s\ntitle: t\nscales:\n  ci: {files: [ci.yaml], seeds: [0, 1]}\n  full: {files: [ci.yaml]}\n"
        "claims:\n  - {id: a, claim: c, check: {type: ratio_at_most, trial: cnn/dynamic bits=8,"
        " metric: size_bytes, ratio: 0.5}}\n"
    )
    study = load_study(tmp_path)
    db = tmp_path / "s.db"
    run_study(study, "ci", db=db, progress=False)
    with Store.open(db) as store:
        assert sorted(e.name for e in store.experiments()) == ["seeded-seed0", "seeded-seed1"]
    keys = [{r["name"]: r["key"] for r in trial_rows(f"seeded-seed{seed}", db=db)} for seed in (0, 1)]
    assert keys[0].keys() == keys[1].keys() == {"cnn/baseline", "cnn/dynamic bits=8"}
    assert keys[0]["cnn/baseline"] != keys[1]["cnn/baseline"]  # each seed is its own run
    report = judge_study(study, "ci", db=db, out=tmp_path / "out")
    claim = report.claims[0].verdict
    assert claim.status == "reproduced", claim
    # sizes do not depend on the weights: the same in both seeds, so no spread
    assert claim.measured == (
        "8,492 kB -> 2,187 kB (x0.257; claim: <= x0.5); mean of 2 seeds, size_bytes sd 0 kB, held in 2 of 2"
    )
    assert "the mean of seeds 0, 1" in report.note
    assert sorted(p.name for p in (tmp_path / "out").glob("*.html")) == ["seeded-seed0.html"]
    result = runner.invoke(app, ["study", "run", str(tmp_path), "--dry-run", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    plans, at = [], 0
    while at < len(result.stdout.strip()):  # one plan per file per seed, each done already
        plan, at = json.JSONDecoder().raw_decode(result.stdout, at)
        plans.append(plan)
        at += len(result.stdout[at:]) - len(result.stdout[at:].lstrip())
    assert len(plans) == 2
