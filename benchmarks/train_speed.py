"""Training throughput: the edgeslim trainer against a plain PyTorch reference loop.

ResNet-20 on the JPEG CIFAR-10 train set, 2 threads, in one run:
- reference: torch DataLoader over the JPEG files with per-image PIL transforms (pad+crop, flip,
  to-tensor, normalize), fp32 eager training (what a typical CIFAR tutorial does);
- edgeslim: images decoded once into a uint8 cache, augmentation and normalization on batched
  tensors, bf16 autocast and channels_last.
Part 1 trains both for the same epochs from the same initialization and reports throughput and test
top-1; part 2 measures throughput of each option separately on a fixed number of steps.

    python benchmarks/train_speed.py [--epochs 2] [--steps 40] [--threads 2]

Writes its tables into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from _common import data_root, markdown_table, write_section
from edgeslim.bench import env_fingerprint
from edgeslim.data import DEFAULT_MEAN, DEFAULT_STD, Augment, BatchLoader, load_dataset
from edgeslim.models import create_model
from edgeslim.train import TrainConfig, evaluate, train

BATCH = 128


class JpegFolder(Dataset[tuple[torch.Tensor, int]]):
    """The reference input pipeline: decode and augment each image with PIL, one at a time."""

    def __init__(self, root: Path, augment: bool) -> None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.items = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())]
        self.augment = augment
        self.mean = np.array(DEFAULT_MEAN, dtype=np.float32)[:, None, None]
        self.std = np.array(DEFAULT_STD, dtype=np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        with Image.open(path) as img:
            image = img.convert("RGB")
        if self.augment:  # RandomCrop(32, padding=4) + RandomHorizontalFlip, as torchvision does it
            padded = Image.new("RGB", (40, 40))
            padded.paste(image, (4, 4))
            top, left = random.randint(0, 8), random.randint(0, 8)
            image = padded.crop((left, top, left + 32, top + 32))
            if random.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((array - self.mean) / self.std), label


def reference_train(
    model: nn.Module, loader: DataLoader, epochs: int, lr: float, max_steps: int | None
) -> float:
    """Plain fp32 loop: SGD Nesterov, cosine per step; returns images per second over the whole run."""
    total = epochs * len(loader) if max_steps is None else max_steps
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, total) / total))
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    seen, step, start = 0, 0, time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            sched.step()
            seen += x.shape[0]
            step += 1
            if max_steps is not None and step >= max_steps:
                return seen / (time.perf_counter() - start)
    return seen / (time.perf_counter() - start)


def limited(loader: BatchLoader, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for i, batch in enumerate(loader):
        if i >= steps:
            return
        yield batch


class Limited:
    """A loader that stops after ``steps`` batches (for the fixed-step option comparison)."""

    def __init__(self, loader: BatchLoader, steps: int) -> None:
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return min(self.steps, len(self.loader))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return limited(self.loader, self.steps)


def edgeslim_train(model: nn.Module, loader: object, config: TrainConfig) -> float:
    start = time.perf_counter()
    result = train(model, loader, config, progress=False)  # type: ignore[arg-type]
    seen = sum(len(loader) for _ in range(config.epochs)) * BATCH  # type: ignore[arg-type]
    del result
    return seen / (time.perf_counter() - start)


def fresh_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="steps per option in the option table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = data_root() / "cifar10-jpeg"

    # -- the cache: first load decodes every JPEG, the second reads the uint8 cache ------------
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        load_dataset(root, "train", val_fraction=0.0, cache_dir=cache)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_set = load_dataset(root, "train", val_fraction=0.0, cache_dir=cache)
        second = time.perf_counter() - t0
    test_set = load_dataset(root, "test")
    test_loader = BatchLoader(test_set, 512)

    def edgeslim_loader(channels_last: bool) -> BatchLoader:
        return BatchLoader(
            train_set,
            BATCH,
            shuffle=True,
            augment=Augment(),
            drop_last=True,
            seed=0,
            channels_last=channels_last,
        )

    def reference_loader(workers: int) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        return DataLoader(
            JpegFolder(root / "train", augment=True),
            batch_size=BATCH,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            generator=g,
            persistent_workers=workers > 0,
        )

    # -- part 2 first (short): each option on a fixed number of steps ---------------------------
    option_rows: list[list[object]] = []
    for label, workers in (
        ("reference, DataLoader 0 workers, PIL per image, fp32", 0),
        ("reference, DataLoader 2 workers, PIL per image, fp32", 2),
    ):
        ips = reference_train(fresh_model(), reference_loader(workers), 1, args.lr, args.steps)
        option_rows.append([label, ips])
    base_cfg = TrainConfig(epochs=1, lr=args.lr, seed=0)
    for label, bf16, cl in (
        ("edgeslim: cached uint8 + batched tensor augmentation, fp32", False, False),
        ("  + channels_last", False, True),
        ("  + bf16 autocast", True, False),
        ("  + bf16 autocast + channels_last (default)", True, True),
    ):
        cfg = base_cfg.replace(bf16=bf16, channels_last=cl)
        ips = edgeslim_train(fresh_model(), Limited(edgeslim_loader(cl), args.steps), cfg)
        option_rows.append([label, ips])
    ref_best = max(float(r[1]) for r in option_rows[:2])  # type: ignore[arg-type]
    for row in option_rows:
        row.append(float(row[1]) / ref_best)  # type: ignore[arg-type]

    # -- part 1: same epochs, same init, throughput and accuracy --------------------------------
    best_workers = 0 if option_rows[0][1] >= option_rows[1][1] else 2  # type: ignore[operator]
    ref_model = fresh_model()
    ref_ips = reference_train(ref_model, reference_loader(best_workers), args.epochs, args.lr, None)
    ref_top1 = evaluate(ref_model, test_loader).top1
    es_model = fresh_model()
    es_cfg = TrainConfig(epochs=args.epochs, lr=args.lr, seed=0, bf16=True, channels_last=True)
    es_ips = edgeslim_train(es_model, edgeslim_loader(True), es_cfg)
    es_top1 = evaluate(es_model, test_loader).top1

    env = env_fingerprint()
    head = (
        f"ResNet-20, JPEG CIFAR-10 train set ({len(train_set):,} images), batch {BATCH}, SGD Nesterov "
        f"lr {args.lr} cosine, {args.threads} threads, {env['cpu_model']}, torch {env['torch_version']}. "
        f"Command: `python benchmarks/train_speed.py --epochs {args.epochs} --steps {args.steps} "
        f"--threads {args.threads}`."
    )
    table1 = markdown_table(
        ["trainer", "images/s", "speed-up", f"test top-1 after {args.epochs} epochs (JPEG test set)"],
        [
            [f"reference (PIL per image, {best_workers} workers, fp32)", ref_ips, 1.0, f"{ref_top1:.2f}%"],
            [
                "edgeslim (cache, tensor augmentation, bf16, channels_last)",
                es_ips,
                es_ips / ref_ips,
                f"{es_top1:.2f}%",
            ],
        ],
    )
    table2 = markdown_table(["pipeline / option", "images/s", "vs best reference"], option_rows)
    cache_line = (
        f"Decoding the 50,000 JPEGs into the uint8 cache took {first:.1f} s the first time; "
        f"loading from the cache took {second:.2f} s."
    )
    body = (
        f"## Training speed (`benchmarks/train_speed.py`)\n\n{head}\n\n{table1}\n\n"
        f"Each option alone ({args.steps} steps of {BATCH}, after start-up):\n\n{table2}\n\n{cache_line}\n"
    )
    print(body)
    print(f"written to {write_section('train_speed', body)}")


if __name__ == "__main__":
    main()
