"""Errors meant for a user: each message says what went wrong and what to do.

Anything else that escapes is a bug. Front ends (CLI, worker, dashboard) catch
``ImoriError`` and show its message instead of a traceback.
"""


class ImoriError(Exception):
    """A problem the user can fix; ``str(err)`` is the message to show."""


class ConfigError(ImoriError):
    """A run configuration that cannot work (nonsense hyperparameters, bad combos)."""


class DatasetError(ImoriError):
    """A dataset that cannot be found, read or imported safely."""


class ModelError(ImoriError):
    """An unknown model, an input size it cannot take, or weights that do not fit."""


class CheckpointError(ImoriError):
    """A file that is not a usable checkpoint for what was asked."""
