"""User-facing errors.

Anything a user can cause (a wrong path, a corrupt file, a bad option) raises a
`GenlearnError`. The CLI prints its message as one line and exits with code 2;
`--debug` shows the traceback instead.
"""


class GenlearnError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


class DataError(GenlearnError):
    """A dataset cannot be found, read or understood."""


class ConfigError(GenlearnError):
    """An option or configuration value is invalid."""


class RunError(GenlearnError):
    """A run directory is missing, incomplete or of the wrong kind."""


class WeightsError(GenlearnError):
    """Pretrained weights cannot be found, downloaded, verified or loaded."""
