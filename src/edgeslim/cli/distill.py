"""CLI commands ``edgeslim distill`` and ``edgeslim run``: thin layers over
:func:`edgeslim.tasks.distill_task` and :func:`edgeslim.recipe.recipe_task`.

Options that belong to another method (``--margin`` with ``--method kd``) are errors, not ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.table import Table

from edgeslim import recipe as recipes
from edgeslim import tasks
from edgeslim.cli.console import (
    err_console,
    fmt_bytes,
    fmt_int,
    fmt_pct,
    key_value_table,
    method_flags,
    out_console,
    print_json,
    user_errors,
)
from edgeslim.cli.options import (
    DataOpt,
    DeviceOpt,
    ImageSizeOpt,
    JsonOpt,
    LimitOpt,
    NumClassesOpt,
    SeedOpt,
    ThreadsOpt,
    parse_device,
)
from edgeslim.cli.sweep import show_plan
from edgeslim.data import Augment
from edgeslim.distillation import KD, DistillConfig
from edgeslim.errors import ConfigError
from edgeslim.methods import method_config, method_names, method_spec
from edgeslim.train import TrainConfig
from edgeslim.yaml_schema import MAX_BATCH_SIZE, MAX_EPOCHS


def split_layers(values: list[str] | None) -> tuple[str, ...]:
    """``--layers a=b --layers c=d`` or ``--layers a=b,c=d`` -> ``("a=b", "c=d")``."""
    return tuple(part.strip() for value in values or () for part in value.split(",") if part.strip())


#: ``distill``'s method options: config field -> flag.
DISTILL_OPTIONS = {
    "alpha": "--alpha",
    "temperature": "--temperature",
    "layers": "--layers",
    "init_epochs": "--init-epochs",
    "margin": "--margin",
    "weight": "--feature-weight",
    "finish": "--finish",
}
DISTILL_FLAGS = {
    **method_flags("distill", DISTILL_OPTIONS),
    "ModelSource.name": "--student",
    "ModelSource.weights": "--student-weights / --teacher-weights",
    "ModelSource.checkpoint": "--teacher-checkpoint",
    "distill_task.out": "--out",
    "distill_task.teacher_source": "--teacher-weights",
}


def distill_config(
    method: str,
    *,
    alpha: float | None = None,
    temperature: float | None = None,
    layers: tuple[str, ...] = (),
    init_epochs: int | None = None,
    margin: float | None = None,
    feature_weight: float | None = None,
    finish: str | None = None,
) -> DistillConfig:
    """Map ``--method`` and its options onto the method's config (built by the method registry);
    options of another method are errors."""
    spec = method_spec("distill", method)
    given: dict[str, Any] = {
        "alpha": alpha,
        "temperature": temperature,
        "layers": layers or None,
        "init_epochs": init_epochs,
        "margin": margin,
        "weight": feature_weight,
        "finish": finish,
    }
    kwargs = {k: v for k, v in given.items() if v is not None}
    unused = [DISTILL_OPTIONS[k] for k in kwargs if k not in spec.fields()]
    if unused:
        raise ConfigError(f"{', '.join(unused)} do(es) not apply to --method {method}")
    if "finish" in kwargs and kwargs["finish"] not in ("ce", "kd"):
        raise ConfigError(f"--finish must be ce or kd, not {kwargs['finish']!r}")
    return cast(DistillConfig, method_config("distill", method, kwargs))


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.3f} MB"


def recipe_table(data: dict[str, Any]) -> Table:
    """One row per step: what it did and what it measured ("-" where it measured nothing)."""
    table = Table(
        title=f"recipe {data['recipe']}: {data['ran']} ran, {data['cached']} cached",
        title_justify="left",
    )
    for column in ("#", "step", "status", "top-1", "size", "latency (median)"):
        table.add_column(column, justify="left" if column in ("step", "status") else "right")
    for step in data["steps"]:
        m = step["metrics"]
        latency = "-"
        if m.get("latency_ms_by_batch"):
            runtime = m.get("runtime") or "torch"
            latency = (
                " ".join(f"b{b}: {ms:.2f}" for b, ms in m["latency_ms_by_batch"].items()) + f" ms {runtime}"
            )
        table.add_row(
            str(step["index"]),
            step["name"],
            step["status"],
            fmt_pct(m.get("top1")),
            _mb(m.get("size_bytes")),
            latency,
        )
    return table


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("run")
    def run_cmd(
        recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see docs/recipes.md).")],
        db: Annotated[
            Path | None,
            typer.Option(
                "--db", help="The SQLite result store (default runs/sweeps.db, shared with sweeps)."
            ),
        ] = None,
        out_dir: Annotated[
            Path | None,
            typer.Option(
                "--out-dir", help="Folder for every step's artifact (default: recipes/NAME beside --db)."
            ),
        ] = None,
        threads: ThreadsOpt = None,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Validate and print the steps with an estimated time; run and write nothing.",
            ),
        ] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Run a recipe (train/distill -> prune -> quantize -> export -> measure); resumes where it stopped."""
        if dry_run:
            with user_errors({"db": "--db", "executor.threads": "--threads"}):
                plan = recipes.dry_run_recipe(recipe, db=db, num_threads=threads)
            show_plan(f"run {recipe} (dry run)", plan.to_dict(), json_out)
            return
        with user_errors({"db": "--db", "run.out_dir": "--out-dir", "executor.threads": "--threads"}):
            outcome = recipes.recipe_task(
                recipe, db=db, out_dir=out_dir, num_threads=threads, progress=not json_out
            )
        data = outcome.to_dict()
        if json_out:
            print_json(data)
            return
        out_console.print(recipe_table(data))
        err_console.print(
            f"store: {data['db']} (experiment {data['recipe']!r}); artifacts: {data['out_dir']}"
        )

    @app.command("distill")
    def distill_cmd(
        teacher: Annotated[
            str | None, typer.Option("--teacher", help="Teacher zoo model name (with --teacher-weights).")
        ] = None,
        teacher_weights: Annotated[
            Path | None, typer.Option("--teacher-weights", help="Trained weights for --teacher.")
        ] = None,
        teacher_pretrained: Annotated[
            bool,
            typer.Option(
                "--teacher-pretrained",
                help="The teacher starts from its published weights (e.g. resnet50.tv_in1k), fetched.",
            ),
        ] = False,
        teacher_checkpoint: Annotated[
            Path | None,
            typer.Option(
                "--teacher-checkpoint", help="An edgeslim checkpoint as the teacher (instead of --teacher)."
            ),
        ] = None,
        student: Annotated[str | None, typer.Option("--student", help="Student zoo model name.")] = None,
        student_weights: Annotated[
            Path | None,
            typer.Option(
                "--student-weights", help="Start the student from these weights (default: from scratch)."
            ),
        ] = None,
        pretrained: Annotated[
            bool,
            typer.Option(
                "--pretrained", help="Start the student from its published weights (fetched; new classifier)."
            ),
        ] = False,
        num_classes: NumClassesOpt = None,
        method: Annotated[str, typer.Option("--method", help=" | ".join(method_names("distill")))] = "kd",
        alpha: Annotated[
            float | None,
            typer.Option("--alpha", help="Weight of the label cross-entropy in KD (default 0.1)."),
        ] = None,
        temperature: Annotated[
            float | None, typer.Option("--temperature", "-T", help="KD temperature (default 4).")
        ] = None,
        layers: Annotated[
            list[str] | None,
            typer.Option(
                "--layers",
                help="Layer pairs STUDENT=TEACHER (or one NAME in both) for ab/hint; repeat or comma-separate. "
                "Default: matched automatically (the last ReLU of each stage; DenseNets: the first BN "
                "of each dense block).",
            ),
        ] = None,
        init_epochs: Annotated[
            int | None,
            typer.Option(
                "--init-epochs",
                min=0,
                help="ab/hint: epochs of feature transfer without labels first (default 1).",
            ),
        ] = None,
        margin: Annotated[
            float | None, typer.Option("--margin", min=0.0, help="ab: boundary margin mu (default 1).")
        ] = None,
        feature_weight: Annotated[
            float | None, typer.Option("--feature-weight", help="ab/hint: scale of the feature loss.")
        ] = None,
        finish: Annotated[
            str | None,
            typer.Option(
                "--finish", help="ab/hint: train on ce or kd after the init phase (ab: ce, hint: kd)."
            ),
        ] = None,
        epochs: Annotated[
            int,
            typer.Option(
                "--epochs", "-e", min=1, max=MAX_EPOCHS, help="Training epochs in all (init phase included)."
            ),
        ] = 30,
        batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH_SIZE)] = 128,
        lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (SGD Nesterov, cosine).")] = 0.1,
        weight_decay: Annotated[float, typer.Option("--weight-decay")] = 5e-4,
        bf16: Annotated[
            bool,
            typer.Option(
                "--bf16/--fp32", help="bfloat16 autocast, student and teacher (fp32 on CPUs without BF16)."
            ),
        ] = True,
        channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last")] = True,
        augment: Annotated[
            bool,
            typer.Option(
                "--augment/--no-augment", help="Random crop and flip (off: teacher logits are cached for KD)."
            ),
        ] = True,
        data: DataOpt = None,
        limit: LimitOpt = None,
        seed: SeedOpt = 0,
        image_size: ImageSizeOpt = None,
        device: DeviceOpt = "auto",
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Where to write the student checkpoint.")
        ] = Path("distilled.pt"),
        threads: ThreadsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Train a student from a frozen teacher (Hinton KD, activation boundaries or FitNets hints)."""
        with user_errors(DISTILL_FLAGS):
            if teacher_checkpoint is not None and (teacher is not None or teacher_weights is not None):
                raise ConfigError(
                    "give either --teacher-checkpoint FILE or --teacher NAME --teacher-weights PATH"
                )
            if teacher_checkpoint is None and teacher is None:
                raise ConfigError(
                    "no teacher: give --teacher NAME --teacher-weights PATH or --teacher-checkpoint FILE"
                )
            if teacher is not None and teacher_weights is None and not teacher_pretrained:
                raise ConfigError(
                    f"--teacher {teacher} needs --teacher-weights PATH or --teacher-pretrained (an untrained "
                    "teacher has nothing to teach)"
                )
            if student is None:
                raise ConfigError("no student: give --student NAME (see `edgeslim models`)")
            config = distill_config(
                method,
                alpha=alpha,
                temperature=temperature,
                layers=split_layers(layers),
                init_epochs=init_epochs,
                margin=margin,
                feature_weight=feature_weight,
                finish=finish,
            )
            kd_flags = [f for f, v in (("--alpha", alpha), ("--temperature", temperature)) if v is not None]
            if kd_flags and not isinstance(config, KD) and config.finish != "kd":
                why = "its default finish" if finish is None else "--finish ce"
                raise ConfigError(
                    f"{' and '.join(kd_flags)} only apply to KD, and --method {method} trains on "
                    f"cross-entropy after its initialization ({why}); add --finish kd or drop "
                    f"{' and '.join(kd_flags)}"
                )
            train_config = TrainConfig(
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                weight_decay=weight_decay,
                bf16=bf16,
                channels_last=channels_last,
                seed=seed,
            )
            outcome = tasks.distill_task(
                tasks.ModelSource(
                    name=student, weights=student_weights, num_classes=num_classes, pretrained=pretrained
                ),
                tasks.ModelSource(
                    name=teacher,
                    weights=teacher_weights,
                    checkpoint=teacher_checkpoint,
                    num_classes=num_classes,
                    pretrained=teacher_pretrained,
                ),
                config,
                tasks.DataSource(
                    path=data, split="test", limit=limit, val_fraction=0.0, seed=seed, image_size=image_size
                ),
                train_config,
                out=out,
                augment=Augment() if augment else Augment.none(),
                num_threads=threads,
                progress=not json_out,
                device=parse_device(device),
            )
        if json_out:
            print_json(outcome.to_dict())
            return
        d = outcome.to_dict()
        before = d["top1_student_before"]
        settings = ", ".join(f"{k}={v}" for k, v in d["config"].items() if k not in ("type", "version"))
        rows = [
            ("method", f"{d['method']} ({settings})"),
            (
                "teacher",
                f"{d['teacher']}: {fmt_int(d['params_teacher'])} params, top-1 {fmt_pct(d['top1_teacher'])}",
            ),
            (
                "student",
                f"{d['student']}: {fmt_int(d['params_student'])} params, top-1 "
                + (f"{fmt_pct(before)} -> " if before is not None else "")
                + fmt_pct(d["top1_student"]),
            ),
            ("teacher - student", f"{d['top1_gap']:.2f} points"),
            ("epochs", f"{d['epochs']}" + (f" ({d['init_epochs']} init)" if d["init_epochs"] else "")),
            ("test images", fmt_int(d["num_test_images"])),
            ("student file", f"{outcome.out} {fmt_bytes(d['size_bytes'])}"),
        ]
        if d["layer_pairs"]:
            rows.append(("layer pairs", ", ".join(f"{s}={t}" for s, t in d["layer_pairs"])))
        out_console.print(key_value_table("distilled", rows))
        for note in outcome.notes:
            err_console.print(f"[yellow]note:[/] {note}")
