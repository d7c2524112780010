"""The errors that mean "bad input": the CLI prints their message as one line and exits 2.
Kept free of heavy imports so that refusing input never waits for torch or Ray."""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid experiment input; the message names the file and the key path."""


class DataError(ValueError):
    """A dataset file or directory is missing, unreadable or inconsistent (message has the path)."""


class PretrainedWeightsError(FileNotFoundError):
    """The pretrained weights file is not on disk (they are never downloaded)."""


class ResultsWriteError(OSError):
    """A result file could not be written (disk full, read-only, a file where a folder should
    be). Files written before stay whole: every write is atomic."""


USER_ERRORS = (ConfigError, DataError, PretrainedWeightsError)
