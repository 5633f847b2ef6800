"""Domain errors.

Every error a user can cause by bad input is an :class:`EdgeslimError`; the CLI turns these into a
one-line message on stderr and exit code 2 instead of a traceback.
"""

from __future__ import annotations


class EdgeslimError(Exception):
    """Base class for errors caused by user input or environment, not by bugs.

    ``field``: the dotted name of the config field or function parameter the message is about
    (``FilterPruning.ratio``, ``bench_task.batch_sizes``), as the Python or YAML user wrote it; the
    message names it too. Front ends translate it to their own spelling (the CLI to its flag).
    """

    exit_code = 2

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        self.field = field


class ConfigError(EdgeslimError):
    """A config field has an invalid value; the message names the field and a fix."""


class DataError(EdgeslimError):
    """A dataset is missing, empty, corrupt or unreadable; the message names the file."""


class ModelError(EdgeslimError):
    """An unknown model name or a model that cannot be built."""


class CheckpointError(EdgeslimError):
    """A checkpoint that cannot be read or does not fit the model."""


class TrainingError(EdgeslimError):
    """Training diverged (NaN/inf loss) or cannot continue."""


class DownloadError(EdgeslimError):
    """A download failed or its checksum did not match."""


class ExportError(EdgeslimError):
    """A model could not be exported, an artifact failed parity, or its runtime is missing."""
