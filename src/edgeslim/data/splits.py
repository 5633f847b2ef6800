"""Deterministic, stratified index selection: the held-out validation split and ``limit`` subsets.

Both work per class so that a small subset or a 10% validation split keeps the class balance of
the full data, and both depend only on (labels, seed), never on global RNG state.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

# Separate streams so that changing `limit` never changes which images are held out for val.
_VAL_STREAM = 0
_LIMIT_STREAM = 1


def _class_permutations(labels: IntArray, num_classes: int, seed: int, stream: int) -> list[IntArray]:
    """For each class, the positions of its images in a seeded random order."""
    rng = np.random.default_rng([seed, stream])
    out = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c).astype(np.int64)
        out.append(idx[rng.permutation(idx.shape[0])])
    return out


def val_holdout(labels: IntArray, num_classes: int, fraction: float, seed: int) -> tuple[IntArray, IntArray]:
    """(train indices, val indices), both sorted; each class gives ``round(fraction * count)`` to val."""
    val_parts = []
    for perm in _class_permutations(labels, num_classes, seed, _VAL_STREAM):
        n_val = int(np.floor(perm.shape[0] * fraction + 0.5))
        val_parts.append(perm[:n_val])
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, dtype=np.int64)
    mask = np.ones(labels.shape[0], dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask).astype(np.int64), val.astype(np.int64)


def per_class_quotas(counts: list[int], limit: int) -> list[int]:
    """Split ``limit`` over classes as equally as possible; a class with too few images gives its
    share to the others, and leftover single images go to the lowest class indices."""
    quotas = [0] * len(counts)
    remaining = min(limit, sum(counts))
    while remaining > 0:
        open_classes = [c for c, n in enumerate(counts) if quotas[c] < n]
        share = remaining // len(open_classes)
        if share == 0:
            for c in open_classes[:remaining]:
                quotas[c] += 1
            break
        for c in open_classes:
            take = min(share, counts[c] - quotas[c])
            quotas[c] += take
            remaining -= take
    return quotas


def stratified_limit(labels: IntArray, num_classes: int, limit: int, seed: int) -> IntArray:
    """Sorted indices of at most ``limit`` images, spread over classes by :func:`per_class_quotas`.

    Each class takes a prefix of one seeded permutation, so a smaller limit gives a subset of a
    larger one (same seed).
    """
    perms = _class_permutations(labels, num_classes, seed, _LIMIT_STREAM)
    quotas = per_class_quotas([p.shape[0] for p in perms], limit)
    picked = [p[:q] for p, q in zip(perms, quotas, strict=True)]
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.zeros(0, dtype=np.int64)
