"""Errors raised by the controllers, grouped by what the caller (and the CLI) does with them.

::

    ProxyTaskError (proxy_task_utils.errors)
    └── ControllerError                 base of everything the controllers raise on purpose
        ├── UsageError                  exit 2: fix the command line, the config or the folder
        │   ├── ConfigError (ValueError)    a config file or field is invalid; names the field
        │   └── StateError              a state file is corrupt, foreign, or already there
        ├── VerdictError                exit 1: the tool ran; its answer is negative or it aborted
        │   ├── VarianceError           with a diagnosis (too many failures, no workable model)
        │   ├── ModelSelectionAborted
        │   └── SearchAborted
        ├── FolderHeldError             exit 3: another controller drives this folder
        │   ├── LeaseHeldError          refused at start; names the holder
        │   └── LeaseLostError          taken over while running: we stop acting at once
        ├── RunInterrupted              exit 130: Ctrl-C; the state is saved, resume with --resume
        └── RunnerError                 record and go on (or retry): one trial, not the run
            ├── LaunchError             a trial could not be started (the trial fails)
            └── BackendUnreachableError the cluster API did not answer; nothing changed, retry

:func:`exit_code` is the one place that maps an exception to the CLI's exit code. Errors of
``proxy_task_utils`` that are bad user input (``ConfigurationError``, ``UnsafePathError``,
a missing extra) are usage errors too.
"""

from __future__ import annotations

from proxy_task_utils.errors import ConfigurationError, ProxyTaskError, UnsafePathError

__all__ = [
    "EXIT_OK",
    "EXIT_NEGATIVE",
    "EXIT_USAGE",
    "EXIT_HELD",
    "EXIT_INTERRUPTED",
    "ControllerError",
    "UsageError",
    "ConfigError",
    "StateError",
    "VerdictError",
    "VarianceError",
    "ModelSelectionAborted",
    "SearchAborted",
    "FolderHeldError",
    "LeaseHeldError",
    "LeaseLostError",
    "RunInterrupted",
    "RunnerError",
    "LaunchError",
    "BackendUnreachableError",
    "exit_code",
]

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_USAGE = 2
EXIT_HELD = 3
EXIT_INTERRUPTED = 130


class ControllerError(ProxyTaskError):
    """Base class of the errors the controllers raise on purpose."""


class UsageError(ControllerError):
    """Bad usage, config or folder: nothing was started; the message says what to fix."""


class ConfigError(UsageError, ValueError):
    """A config file is unreadable or invalid; the message names the file and each bad field."""


class StateError(UsageError, RuntimeError):
    """A state file is corrupt, of a newer schema, or inconsistent; the message names the path."""


class VerdictError(ControllerError, RuntimeError):
    """The tool ran and stopped with a negative answer or a diagnosis; its state is saved."""


class VarianceError(VerdictError):
    """The variance measurement could not produce a result; the message is the diagnosis."""


class ModelSelectionAborted(VerdictError):
    """Too many trials failed (or none is left); the message is the diagnosis."""


class SearchAborted(VerdictError):
    """The search stopped before evaluating all proxies (e.g. target out of reach); state is saved."""


class FolderHeldError(ControllerError, RuntimeError):
    """Another controller drives the folder."""


class LeaseHeldError(FolderHeldError):
    """Another live controller holds the folder; the message names it."""


class LeaseLostError(FolderHeldError):
    """Our lease was taken over by another controller: stop acting on this folder."""


class RunInterrupted(ControllerError):
    """The user interrupted the run (Ctrl-C); the state is saved and ``--resume`` continues it."""


class RunnerError(ControllerError, RuntimeError):
    """A runner could not do one thing for one trial; the run goes on."""


class LaunchError(RunnerError):
    """A trial process could not be started (record the trial as failed and go on)."""


class BackendUnreachableError(RunnerError):
    """A cluster API (Ray dashboard, Vertex AI) did not answer; retry later, nothing was changed."""


def exit_code(exc: BaseException) -> int | None:
    """The CLI's exit code for ``exc``, or None for an error that is a bug (let it show its traceback)."""
    if isinstance(exc, KeyboardInterrupt | RunInterrupted):
        return EXIT_INTERRUPTED
    if isinstance(exc, UsageError | ConfigurationError | UnsafePathError):
        return EXIT_USAGE
    if isinstance(exc, FolderHeldError):
        return EXIT_HELD
    if isinstance(exc, VerdictError):
        return EXIT_NEGATIVE
    return None
