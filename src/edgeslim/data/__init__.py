"""Datasets as in-memory uint8 tensors, batched augmentation, and a fast batch loader.

``load_dataset`` reads CIFAR-10 pickles or image-folder trees (decoded once, then cached);
``BatchLoader`` turns an :class:`ImageTensors` into normalized float batches; a dataset at a URL
(``s3://``, ``http(s)://``) is downloaded once per machine (:mod:`edgeslim.data.remote`).
"""

from __future__ import annotations

from edgeslim.data.augment import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    Augment,
    crop_at,
    normalize,
    random_crop,
    random_hflip,
)
from edgeslim.data.cifar import CIFAR10_CLASSES
from edgeslim.data.datasets import SPLITS, Split, find_or_fetch_data, load_dataset, resolve_data_path
from edgeslim.data.download import CIFAR10_MD5, CIFAR10_URL, download_cifar10
from edgeslim.data.folder import IMAGE_EXTENSIONS, default_cache_dir
from edgeslim.data.loader import BatchLoader
from edgeslim.data.remote import fetch_url, is_url, url_fingerprint
from edgeslim.data.resize import IMAGENET_MEAN, IMAGENET_STD, InputSize
from edgeslim.data.tensors import ImageTensors

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "Augment",
    "BatchLoader",
    "ImageTensors",
    "InputSize",
    "Split",
    "crop_at",
    "default_cache_dir",
    "download_cifar10",
    "fetch_url",
    "find_or_fetch_data",
    "is_url",
    "load_dataset",
    "normalize",
    "random_crop",
    "random_hflip",
    "resolve_data_path",
    "url_fingerprint",
]
