"""Exceptions raised by hps.

Every error is an `HpsError` and also the builtin it resembles, so code that already catches
ValueError, KeyError, OSError, ConnectionError or MemoryError keeps working.
"""

__all__ = [
    "HpsError",
    "ConfigError",
    "InvalidArgumentError",
    "KeyTypeError",
    "NotFoundError",
    "StorageError",
    "BackendUnavailableError",
    "OutOfMemoryError",
    "ConfigWarning",
]


class HpsError(Exception):
    """Base class of every hps error."""


class ConfigError(HpsError, ValueError):
    """The configuration is malformed; the message names the JSON path."""


class InvalidArgumentError(HpsError, ValueError):
    """A call got an argument it cannot use (key width, dtype, shape)."""


class KeyTypeError(InvalidArgumentError, TypeError):
    """Keys of a dtype that is not an integer type the server takes."""


class NotFoundError(HpsError, KeyError):
    """A model or table the server does not hold."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class StorageError(HpsError, OSError):
    """A table file or database could not be read or written, or holds something unexpected."""


class BackendUnavailableError(HpsError, ConnectionError):
    """A backend the configuration asks for is not built in or cannot be reached."""


class OutOfMemoryError(HpsError, MemoryError):
    """A tier cannot hold what it was asked to hold."""


class ConfigWarning(UserWarning):
    """A configuration key that is accepted for HugeCTR compatibility but does nothing here."""
