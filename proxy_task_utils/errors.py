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
    └── ConfigurationError (also ValueError) abort: bad user input (flag, env var, argument)

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
