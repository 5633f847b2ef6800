"""Image-folder trees (``root/{train,val,test}/<class>/*.jpg``), decoded once into an on-disk cache.

Decoding 60k small JPEGs costs seconds even with all cores; reading the decoded uint8 array back
from an ``.npy`` file costs a fraction of that. The cache key covers every file's path, size and
mtime, so editing, adding or removing an image rebuilds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import PIL
from PIL import Image

from edgeslim.errors import DataError
from edgeslim.io import atomic_write

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
SPLIT_FOLDERS = ("train", "val", "test")
_CACHE_FORMAT = 1
# Below this many images a process pool costs more to start than it saves.
_POOL_MIN_IMAGES = 2048


@dataclass
class SplitListing:
    """The image files of one split folder, in label order; plain lists because 50k Path objects
    cost more to build than the scan itself."""

    root: Path
    names: list[str]  # "<class>/<file>", relative to root
    sizes: list[int]
    mtimes_ns: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.names)

    def paths(self) -> list[str]:
        base = str(self.root)
        return [os.path.join(base, n) for n in self.names]


def is_image_tree(path: Path) -> bool:
    return any((path / name).is_dir() for name in SPLIT_FOLDERS)


def list_classes(split_dir: Path) -> list[str]:
    """Class folder names in sorted order (hidden folders skipped), the label order for every split."""
    try:
        entries = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot list {split_dir}: {exc.strerror or exc}") from None
    if not entries:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/*.jpg")
    return entries


def scan_split(split_dir: Path, classes: list[str]) -> SplitListing:
    """Every image file under ``split_dir/<class>/``, class by class, sorted by name within a class."""
    present = set(list_classes(split_dir))
    unknown = sorted(present - set(classes))
    if unknown:
        raise DataError(
            f"{split_dir} has class folder(s) {', '.join(unknown)} that the train split lacks "
            f"(classes: {', '.join(classes)})"
        )
    listing = SplitListing(split_dir, [], [], [], [])
    for label, name in enumerate(classes):
        if name not in present:
            continue
        class_dir = split_dir / name
        try:
            entries = sorted(
                (e for e in os.scandir(class_dir) if _is_image_name(e.name) and e.is_file()),
                key=lambda e: e.name,
            )
            stats = [e.stat() for e in entries]
        except OSError as exc:
            raise DataError(f"cannot read {class_dir}: {exc.strerror or exc}") from None
        if not entries:
            raise DataError(
                f"class folder {class_dir} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                "add images or remove the folder"
            )
        listing.names.extend(f"{name}/{e.name}" for e in entries)
        listing.sizes.extend(st.st_size for st in stats)
        listing.mtimes_ns.extend(st.st_mtime_ns for st in stats)
        listing.labels.extend([label] * len(entries))
    return listing


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# -- decoding -------------------------------------------------------------------------------------
def _decode_one(path: str) -> npt.NDArray[np.uint8]:
    """One image as uint8 HWC RGB; any PIL failure becomes a DataError naming the file."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None


def _decode_chunk(job: tuple[int, list[str], tuple[int, int]]) -> tuple[int, npt.NDArray[np.uint8]]:
    """Decode consecutive files into one CHW array (runs in a pool worker; returns one pickle)."""
    start, paths, (height, width) = job
    out = np.empty((len(paths), 3, height, width), dtype=np.uint8)
    for i, path in enumerate(paths):
        hwc = _decode_one(path)
        if hwc.shape[:2] != (height, width):
            raise DataError(
                f"image {path} is {hwc.shape[1]}x{hwc.shape[0]} but the dataset's images are "
                f"{width}x{height}; all images must share one size (resize them first)"
            )
        out[i] = hwc.transpose(2, 0, 1)
    return start, out


def _decode_images(paths: list[str], workers: int | None = None) -> npt.NDArray[np.uint8]:
    """All images as uint8 ``[N,3,H,W]``, decoded by a process pool when that pays off."""
    if not paths:
        raise DataError("no images to decode")
    first = _decode_one(paths[0])
    size = (int(first.shape[0]), int(first.shape[1]))
    out = np.empty((len(paths), 3, *size), dtype=np.uint8)
    workers = workers or _usable_cpus()
    # Daemonic processes (e.g. DataLoader workers) may not start children: decode in-process there.
    if workers < 2 or len(paths) < _POOL_MIN_IMAGES or multiprocessing.current_process().daemon:
        out[:] = _decode_chunk((0, paths, size))[1]
        return out
    chunk = max(64, min(1024, math.ceil(len(paths) / (workers * 8))))
    jobs = [(i, paths[i : i + chunk], size) for i in range(0, len(paths), chunk)]
    # fork: workers need only PIL and numpy, and start in milliseconds instead of re-importing torch.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with multiprocessing.get_context(method).Pool(min(workers, len(jobs))) as pool:
        for start, block in pool.imap_unordered(_decode_chunk, jobs):
            out[start : start + block.shape[0]] = block
    return out


def _usable_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# -- cache ----------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    env = os.environ.get("EDGESLIM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgeslim"


def _cache_key(listing: SplitListing, classes: list[str]) -> tuple[str, str]:
    """(prefix naming this source and split, hash of every file's name, size and mtime)."""
    split_dir = listing.root
    where = hashlib.sha256(str(split_dir).encode()).hexdigest()[:12]
    header = f"edgeslim-image-cache v{_CACHE_FORMAT} pillow {PIL.__version__}\n" + "\0".join(classes)
    rows = map("{}\0{}\0{}".format, listing.names, listing.sizes, listing.mtimes_ns)
    digest = hashlib.sha256("\n".join([header, *rows]).encode()).hexdigest()[:20]
    name = f"{split_dir.parent.name}-{split_dir.name}"
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return f"{slug}-{where}", digest


def load_split_images(
    split_dir: Path, classes: list[str], cache_dir: Path | None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Images and labels of one split folder, from the cache when it is current."""
    listing = scan_split(split_dir.resolve(), classes)
    labels = np.asarray(listing.labels, dtype=np.int64)
    cache_root = (cache_dir or default_cache_dir()).expanduser()
    prefix, digest = _cache_key(listing, classes)
    cache_file = cache_root / f"{prefix}-{digest}.npy"
    cached = _read_cache(cache_file, len(listing))
    if cached is not None:
        return cached, labels
    t0 = time.perf_counter()
    log.info("decoding %d images under %s (first load; cached in %s)", len(listing), listing.root, cache_root)
    images = _decode_images(listing.paths())
    log.info("decoded %d images in %.1f s", len(listing), time.perf_counter() - t0)
    _write_cache(cache_file, images, prefix)
    return images, labels


def _read_cache(path: Path, count: int) -> npt.NDArray[np.uint8] | None:
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        log.warning("ignoring unreadable cache file %s: %s", path, exc)
        return None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[0] != count or arr.shape[1] != 3:
        log.warning("ignoring cache file %s with unexpected shape %s", path, arr.shape)
        return None
    return arr


def _write_cache(path: Path, images: npt.NDArray[np.uint8], prefix: str) -> None:
    """Write atomically and drop older versions for the same source; a read-only disk only warns."""
    try:
        atomic_write(path, lambda fh: np.save(fh, images, allow_pickle=False))
    except OSError as exc:
        log.warning("could not write the decoded-image cache %s: %s", path, exc)
        return
    for old in path.parent.glob(f"{prefix}-*.npy"):
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink()
