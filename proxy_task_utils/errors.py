"""Errors raised by proxy_task_utils, grouped by what the caller should do.

::

    ProxyTaskError                      base of everything we raise on purpose
    ├── StorageError                    a storage operation did not happen
    │   ├── TransientStorageError       retry: the service hiccuped (5xx, timeout, reset)
    │   ├── NotFoundError               record and go on: the object is not there
    │   └── PreconditionFailedError     someone else wrote first (create-only / compare-and-swap lost)
    ├── UnsafePathError (also ValueError)   abort: a name would escape the storage root
    ├── ProtocolError (also ValueError)     record and go on: a file violates the wire format
    │   └── CorruptFileError            the bytes are not JSON at all (torn or foreign write)
    ├── ConfigurationError (also ValueError) abort: bad user input (flag, env var, argument)
    │   └── MissingExtraError (also ImportError)  a feature's optional dependency is not installed
    ├── LatencyError                    record and go on: the worker could not measure this model
    │   └── LatencyTimeoutError (also TimeoutError)  no answer in time
    └── TrainingDivergedError (also RuntimeError)    the trial failed: loss or metric became NaN/inf

``ValueError`` subclasses keep ``except ValueError`` in user code working.
"""

from __future__ import annotations


class ProxyTaskError(Exception):
    """Base class of all errors raised on purpose by this package."""


class StorageError(ProxyTaskError):
    """A storage operation failed; ``uri`` names the object when known."""

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri


class TransientStorageError(StorageError):
    """A failure that may succeed when retried (network, 5xx, rate limit)."""


class NotFoundError(StorageError):
    """The object does not exist."""


class PreconditionFailedError(StorageError):
    """A create-only or compare-and-swap write lost against another writer."""


class UnsafePathError(ProxyTaskError, ValueError):
    """A name from outside (trial id, file name) would leave the storage root."""


class ProtocolError(ProxyTaskError, ValueError):
    """A protocol file does not match the wire format; the message names the field."""

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.field = field


class CorruptFileError(ProtocolError):
    """A protocol file is not valid JSON (torn write, foreign content)."""


class ConfigurationError(ProxyTaskError, ValueError):
    """Bad user input: the message names the argument and the fix."""


class MissingExtraError(ConfigurationError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the pip extra."""


class LatencyError(ProxyTaskError):
    """The worker could not measure this model (``latency_error.json``): fix the export."""


class LatencyTimeoutError(LatencyError, TimeoutError):
    """No answer within the timeout: no worker is watching, or it is busy or dead."""


class TrainingDivergedError(ProxyTaskError, RuntimeError):
    """The loss or the evaluation metric became NaN/inf: the trial failed with a NaN error."""
