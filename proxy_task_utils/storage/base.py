"""The storage interface: what trainers and controllers may ask of a folder or a bucket.

Every object carries a *generation*: an integer that changes whenever the
object's content is replaced. On GCS it is the object generation; locally it
is the file's ``st_mtime_ns``, kept strictly increasing by our writers. Readers
use it to re-read only what changed, writers use it for compare-and-swap.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass

from proxy_task_utils.errors import ConfigurationError, NotFoundError, UnsafePathError

__all__ = ["ObjectInfo", "Storage", "safe_join", "compile_glob", "glob_literal_prefix"]

_HIDDEN_PREFIX = "."  # temp and lock files start with a dot and are never listed


@dataclass(frozen=True, order=True)
class ObjectInfo:
    """One listed object: its name relative to the storage root and its generation."""

    name: str
    generation: int


def safe_join(*parts: str) -> str:
    """Join relative path parts into one normalised name that cannot leave the root.

    Raises:
        UnsafePathError: a part is absolute, contains ``..``, a NUL byte, a
            backslash, or the result is empty.
    """
    pieces: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise UnsafePathError(f"path part must be a string, but got {part!r}")
        if "\x00" in part:
            raise UnsafePathError(f"path part contains a NUL byte: {part!r}")
        if "\\" in part:
            raise UnsafePathError(f"path part contains a backslash: {part!r}; use '/'")
        if part.startswith("/"):
            raise UnsafePathError(f"path part {part!r} is absolute; names inside a storage root must be relative")
        for piece in part.split("/"):
            if piece in ("", "."):
                continue
            if piece == "..":
                raise UnsafePathError(f"path part {part!r} contains '..' and would leave the storage root")
            pieces.append(piece)
    if not pieces:
        raise UnsafePathError(f"empty object name from parts {parts!r}")
    return "/".join(pieces)


#: A name that :func:`safe_join` would return unchanged (checked in one regex call on hot paths).
_PLAIN_NAME = re.compile(r"(?!\.\.?(?:/|$))[^/\\\x00]+(?:/(?!\.\.?(?:/|$))[^/\\\x00]+)*")
_GLOB_META = frozenset("*?{},[]\\")


def compile_glob(glob: str) -> re.Pattern[str]:
    """The regex of a listing glob: the subset of GCS ``matchGlob`` that every backend implements.

    ``*`` matches within one folder level, ``?`` one character other than
    ``/``, ``{a,b}`` one of the comma-separated alternatives (not nested, no
    ``/`` inside); everything else is literal. ``**``, ``[...]`` and ``\\``
    are refused rather than half-implemented.

    Raises:
        ConfigurationError: the glob uses something outside that subset.
    """
    if not isinstance(glob, str) or not glob or glob.startswith("/") or glob.endswith("/"):
        raise ConfigurationError(f"glob must be a relative pattern such as '*/file.json', but got {glob!r}")
    for bad, fix in (("**", "one '*' per folder level"), ("[", "'{a,b}'"), ("]", "'{a,b}'"), ("\\", "'/'"),
                     ("//", "one '/'"), ("\x00", "no NUL byte")):  # fmt: skip
        if bad in glob:
            raise ConfigurationError(f"glob {glob!r} contains {bad!r}; use {fix}")
    out: list[str] = []
    depth = 0
    for ch in glob:
        if ch == "{":
            depth += 1
            out.append("(?:")
        elif ch == "}":
            depth -= 1
            out.append(")")
        elif ch == "," and depth:
            out.append("|")
        elif ch == "/" and depth:
            raise ConfigurationError(f"glob {glob!r} has '/' inside braces; use one pattern per folder level")
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(ch) or re.escape(ch))
        if depth not in (0, 1):
            raise ConfigurationError(f"glob {glob!r} has nested or unbalanced braces")
    if depth:
        raise ConfigurationError(f"glob {glob!r} has an unclosed '{{'")
    return re.compile("".join(out))


def glob_literal_prefix(folder: str) -> str:
    """``folder`` (a validated name) as a glob prefix ending in '/': segments with glob characters become '*'."""
    return "".join(("*" if _GLOB_META & set(seg) else seg) + "/" for seg in folder.split("/") if seg)


def _safe_prefix(prefix: str) -> str:
    """Like :func:`safe_join` for a listing prefix, where the empty prefix is allowed."""
    if prefix in ("", "/", "."):
        return ""
    name = safe_join(prefix)
    return name + "/" if prefix.endswith("/") else name


class Storage(abc.ABC):
    """A flat namespace of byte objects under one root (``uri``).

    Contract, shared by all backends and checked by one test suite
    (``tests/proxy_task_utils/test_storage.py``):

    * Names are relative, ``/``-separated, and validated by :func:`safe_join`.
    * ``write`` is atomic: a reader sees the old bytes or the new bytes, never
      a mix. Concurrent ``write`` calls are last-writer-wins. It is durable
      (survives a power loss once it returns) unless called with
      ``durable=False``: then it is still atomic and visible at once to every
      reader, but a machine crash may lose it (local folders skip ``fsync``;
      GCS is always durable and ignores the flag). For files rewritten again
      and again whose loss costs nothing, such as the controller heartbeat.
    * ``write_if_absent`` and ``write_if_generation`` are atomic
      create-only / compare-and-swap: across threads and processes (and
      machines, on GCS) exactly one of several racing writers wins; losers
      get :class:`PreconditionFailedError` and nothing of theirs is visible.
    * ``read`` of a missing object raises :class:`NotFoundError`;
      ``delete`` of a missing object is a no-op (idempotent).
    * Transient failures are retried inside the backend; what still fails is
      raised as :class:`~proxy_task_utils.errors.TransientStorageError`.
    * Instances are safe to share between threads. ``request_count`` counts
      the backend requests made (one per call here; more on retries), which
      the benchmarks report.
    """

    request_count: int = 0
    cheap_stat: bool = False  # True where probing single names costs less than one listing

    @property
    @abc.abstractmethod
    def uri(self) -> str:
        """The root, as a URI a user would type (a path or ``gs://bucket/prefix``)."""

    @abc.abstractmethod
    def read(self, name: str) -> tuple[bytes, int]:
        """Return ``(content, generation)`` of an object; :class:`NotFoundError` if missing."""

    @abc.abstractmethod
    def write(self, name: str, data: bytes, *, durable: bool = True) -> int:
        """Atomically replace (or create) an object; return its new generation.

        ``durable=False``: atomic but not necessarily durable (see the class docstring).
        """

    @abc.abstractmethod
    def write_if_absent(self, name: str, data: bytes) -> int:
        """Create an object only if it does not exist; :class:`PreconditionFailedError` otherwise."""

    @abc.abstractmethod
    def write_if_generation(self, name: str, data: bytes, generation: int) -> int:
        """Replace an object only if its current generation is ``generation``."""

    @abc.abstractmethod
    def list(self, prefix: str = "", *, glob: str | None = None) -> list[ObjectInfo]:
        """All objects whose name starts with ``prefix``, sorted by name (one request).

        ``glob`` (see :func:`compile_glob`, e.g. ``"*/job_status.json"``) keeps
        only the names (relative to this root) that match it, and lets the
        backend skip the rest (GCS ``matchGlob``: fewer pages to fetch).
        """

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove an object; missing objects are ignored."""

    def exists(self, name: str) -> bool:
        """Whether the object exists."""
        try:
            self.read(name)
        except NotFoundError:
            return False
        return True

    def generations(self, names: Sequence[str]) -> dict[str, int | None]:
        """Current generation of each name (None if missing), in one request.

        The default lists the root once; backends override it when probing a
        few names is cheaper (local ``stat``).
        """
        wanted = {n: safe_join(n) for n in names}  # two spellings of one name both get an answer
        targets = set(wanted.values())
        found = {o.name: o.generation for o in self.list("") if o.name in targets}
        return {original: found.get(name) for original, name in wanted.items()}

    def child(self, *parts: str) -> Storage:
        """A storage rooted at a sub-folder (for example one trial folder)."""
        return _SubStorage(self, safe_join(*parts))

    def child_uri(self, *parts: str) -> str:
        """The URI of a name below this root (for flags such as ``--job-dir``)."""
        return self.uri.rstrip("/") + "/" + safe_join(*parts)


class _SubStorage(Storage):
    """A view of a parent storage below a fixed prefix; shares the parent's client."""

    def __init__(self, parent: Storage, prefix: str) -> None:
        self._parent = parent
        self._prefix = prefix

    @property
    def uri(self) -> str:
        return self._parent.child_uri(self._prefix)

    @property
    def request_count(self) -> int:  # type: ignore[override]
        return self._parent.request_count

    @property
    def cheap_stat(self) -> bool:  # type: ignore[override]
        return self._parent.cheap_stat

    def _name(self, name: str) -> str:
        return self._prefix + "/" + safe_join(name)

    def read(self, name: str) -> tuple[bytes, int]:
        return self._parent.read(self._name(name))

    def write(self, name: str, data: bytes, *, durable: bool = True) -> int:
        if durable:  # the plain call, so subclasses that predate the flag keep working
            return self._parent.write(self._name(name), data)
        return self._parent.write(self._name(name), data, durable=False)

    def write_if_absent(self, name: str, data: bytes) -> int:
        return self._parent.write_if_absent(self._name(name), data)

    def write_if_generation(self, name: str, data: bytes, generation: int) -> int:
        return self._parent.write_if_generation(self._name(name), data, generation)

    def exists(self, name: str) -> bool:
        return self._parent.exists(self._name(name))

    def generations(self, names: Sequence[str]) -> dict[str, int | None]:
        if not self._parent.cheap_stat:
            return Storage.generations(self, names)  # list this sub-folder only
        full_names = {n: self._name(n) for n in names}
        full = self._parent.generations(list(full_names.values()))
        return {n: full[f] for n, f in full_names.items()}

    def list(self, prefix: str = "", *, glob: str | None = None) -> list[ObjectInfo]:
        full = self._prefix + "/" + _safe_prefix(prefix)
        cut = len(self._prefix) + 1
        if glob is None:
            return [ObjectInfo(o.name[cut:], o.generation) for o in self._parent.list(full)]
        pattern = compile_glob(glob)  # the parent's glob may be wider: our prefix's odd segments become '*'
        found = self._parent.list(full, glob=glob_literal_prefix(self._prefix) + glob)
        return [ObjectInfo(o.name[cut:], o.generation) for o in found if pattern.fullmatch(o.name[cut:])]

    def delete(self, name: str) -> None:
        self._parent.delete(self._name(name))

    def child(self, *parts: str) -> Storage:
        return _SubStorage(self._parent, self._prefix + "/" + safe_join(*parts))
