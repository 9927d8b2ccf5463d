"""One small storage interface for trial and controller folders.

Trainers and controllers talk to storage only through :class:`Storage`. Two
backends implement it: :class:`LocalStorage` (a folder) and ``GCSStorage``
(``gs://bucket/prefix``, in :mod:`proxy_task_utils._gcs`, imported lazily so
that ``import proxy_task_utils`` needs nothing beyond the standard library).

Every object carries a *generation*: an integer that changes whenever the
object's content is replaced. On GCS it is the object generation; locally it
is the file's ``st_mtime_ns``, kept strictly increasing by our writers. Readers
use it to re-read only what changed, writers use it for compare-and-swap.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import fcntl
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from proxy_task_utils.errors import (
    ConfigurationError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    UnsafePathError,
)

__all__ = [
    "ObjectInfo",
    "Storage",
    "LocalStorage",
    "open_storage",
    "register_scheme",
    "safe_join",
    "normalize_uri",
    "split_uri",
    "join_uri",
]

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
            raise UnsafePathError(
                f"path part {part!r} is absolute; names inside a storage root must be relative"
            )
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


class LocalStorage(Storage):
    """A local folder. Atomic writes by temp file + fsync + ``os.replace``.

    Create-only writes publish a fully written temp file with ``os.link``
    (which fails if the target exists), so a reader never sees a partial new
    object. Compare-and-swap holds an ``fcntl`` lock on a hidden lock file
    beside the object; every writer keeps ``st_mtime_ns`` strictly
    increasing, so the generation changes on every write even within one
    clock tick.
    """

    cheap_stat = True

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self._root = os.path.abspath(os.fspath(root))
        self._fsync = fsync
        self.request_count = 0

    @property
    def uri(self) -> str:
        return self._root

    @property
    def root(self) -> str:
        return self._root

    def path(self, name: str) -> str:
        """The absolute file path of an object (for logs and humans)."""
        return os.path.join(self._root, *safe_join(name).split("/"))

    # -- reads -------------------------------------------------------------
    def read(self, name: str) -> tuple[bytes, int]:
        path = self.path(name)
        self.request_count += 1
        try:
            with open(path, "rb") as f:
                generation = os.fstat(f.fileno()).st_mtime_ns
                return f.read(), generation
        except FileNotFoundError:
            raise NotFoundError(f"{path} does not exist", uri=path) from None
        except IsADirectoryError:
            raise NotFoundError(f"{path} is a folder, not a file", uri=path) from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}", uri=path) from exc

    def exists(self, name: str) -> bool:
        self.request_count += 1
        return os.path.isfile(self.path(name))

    def generations(self, names: Sequence[str]) -> dict[str, int | None]:
        # The controller's hot path (two names per live trial per poll): one regex
        # check per name and a stat relative to the root's descriptor.
        self.request_count += 1
        result: dict[str, int | None] = {}
        try:
            root_fd: int | None = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            root_fd = None
        try:
            for name in names:
                rel = name if _PLAIN_NAME.fullmatch(name) else safe_join(name)
                try:
                    result[name] = None if root_fd is None else os.stat(rel, dir_fd=root_fd).st_mtime_ns
                except (FileNotFoundError, NotADirectoryError):
                    result[name] = None
        finally:
            if root_fd is not None:
                os.close(root_fd)
        return result

    def list(self, prefix: str = "", *, glob: str | None = None) -> list[ObjectInfo]:
        prefix = _safe_prefix(prefix)
        pattern = None if glob is None else compile_glob(glob)
        levels = None if glob is None else [compile_glob(g) for g in glob.split("/")]
        self.request_count += 1
        # Walk only the deepest folder that the prefix names completely.
        folder, _, _ = prefix.rpartition("/")
        start = os.path.join(self._root, *folder.split("/")) if folder else self._root
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in _walk(start):
            rel_dir = os.path.relpath(dirpath, self._root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = [
                d for d in dirnames if not d.startswith(_HIDDEN_PREFIX) and _may_match(rel_dir + d + "/", prefix)
            ]
            if levels is not None:  # walk only folders that the glob's levels can match
                depth = rel_dir.count("/")
                dirnames[:] = [d for d in dirnames if depth + 1 < len(levels) and levels[depth].fullmatch(d)]
            for filename in filenames:
                if filename.startswith(_HIDDEN_PREFIX):
                    continue
                name = rel_dir + filename
                if not name.startswith(prefix) or (pattern is not None and not pattern.fullmatch(name)):
                    continue
                try:
                    generation = os.stat(os.path.join(dirpath, filename)).st_mtime_ns
                except FileNotFoundError:
                    continue  # deleted while listing
                found.append(ObjectInfo(name, generation))
        found.sort()
        return found

    # -- writes ------------------------------------------------------------
    def write(self, name: str, data: bytes, *, durable: bool = True) -> int:
        path = self.path(name)
        self.request_count += 1
        with self._locked(path):
            return self._replace(path, data, fsync=self._fsync and durable)

    def write_if_absent(self, name: str, data: bytes) -> int:
        path = self.path(name)
        self.request_count += 1
        tmp = self._write_temp(path, data)
        try:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise PreconditionFailedError(f"{path} already exists", uri=path) from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise StorageError(f"cannot create {path}: {exc}", uri=path) from exc
                return self._create_exclusive_fallback(path, data)
            if self._fsync:
                _fsync_dir(os.path.dirname(path))
            # The temp name is the same inode as the new object; stat'ing the
            # object's path could see a concurrent writer's newer generation.
            return os.stat(tmp).st_mtime_ns
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def write_if_generation(self, name: str, data: bytes, generation: int) -> int:
        path = self.path(name)
        self.request_count += 1
        with self._locked(path):
            try:
                current = os.stat(path).st_mtime_ns
            except FileNotFoundError:
                raise PreconditionFailedError(
                    f"{path} does not exist (expected generation {generation})", uri=path
                ) from None
            if current != generation:
                raise PreconditionFailedError(
                    f"{path} changed: generation {current}, expected {generation}", uri=path
                )
            return self._replace(path, data, previous=current)

    def delete(self, name: str) -> None:
        path = self.path(name)
        self.request_count += 1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    # -- helpers -----------------------------------------------------------
    def _write_temp(self, path: str, data: bytes, *, fsync: bool | None = None) -> str:
        folder, base = os.path.split(path)
        try:
            os.makedirs(folder, exist_ok=True)
        except (NotADirectoryError, FileExistsError) as exc:
            raise StorageError(f"cannot create folder for {path}: {exc}", uri=path) from exc
        tmp = os.path.join(folder, f"{_HIDDEN_PREFIX}{base}.tmp.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if self._fsync if fsync is None else fsync:
                    os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp

    def _replace(self, path: str, data: bytes, previous: int | None = None, *, fsync: bool | None = None) -> int:
        fsync = self._fsync if fsync is None else fsync
        if previous is None:
            try:
                previous = os.stat(path).st_mtime_ns
            except FileNotFoundError:
                previous = 0
        tmp = self._write_temp(path, data, fsync=fsync)
        try:
            generation = max(time.time_ns(), previous + 1)
            os.utime(tmp, ns=(generation, generation))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if fsync:
            _fsync_dir(os.path.dirname(path))
        return generation

    def _create_exclusive_fallback(self, path: str, data: bytes) -> int:
        """For file systems without hard links: O_EXCL create under the object's lock."""
        with self._locked(path):
            if os.path.exists(path):
                raise PreconditionFailedError(f"{path} already exists", uri=path)
            return self._replace(path, data, previous=0)

    @contextlib.contextmanager
    def _locked(self, path: str) -> Iterator[None]:
        folder, base = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, f"{_HIDDEN_PREFIX}{base}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _walk(start: str) -> Iterator[tuple[str, list[str], list[str]]]:
    if not os.path.isdir(start):
        return iter(())
    return os.walk(start)


def _may_match(folder: str, prefix: str) -> bool:
    """Whether names inside ``folder`` (ending in '/') can start with ``prefix``."""
    return folder.startswith(prefix) or prefix.startswith(folder)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- scheme registry ---------------------------------------------------------

_SchemeFactory = Callable[[str], Storage]
_REGISTRY: dict[str, _SchemeFactory] = {}


def register_scheme(scheme: str, factory: _SchemeFactory) -> None:
    """Make ``open_storage`` hand URIs starting with ``scheme://`` to ``factory``."""
    _REGISTRY[scheme] = factory


def _open_gcs(uri: str) -> Storage:
    try:
        from proxy_task_utils._gcs import GCSStorage
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{uri} needs google-cloud-storage: pip install 'proxy-task-utils[gcs]' ({exc})"
        ) from exc
    return GCSStorage.from_uri(uri)


register_scheme("gs", _open_gcs)


def normalize_uri(uri: str | os.PathLike[str]) -> str:
    """``/gcs/bucket/x`` (the gcsfuse mount) -> ``gs://bucket/x``; paths become absolute."""
    text = os.fspath(uri)
    if not text:
        raise ConfigurationError("storage location is empty; give a folder or a gs://bucket/path")
    if text.startswith("/gcs/"):
        return "gs://" + text[len("/gcs/") :]
    if "://" in text:
        return text
    return os.path.abspath(text)


def open_storage(uri: str | os.PathLike[str]) -> Storage:
    """Open the storage rooted at ``uri``: ``gs://`` / ``/gcs/`` -> GCS, anything else -> a folder."""
    text = normalize_uri(uri)
    scheme, sep, _ = text.partition("://")
    if sep:
        factory = _REGISTRY.get(scheme)
        if factory is None:
            raise ConfigurationError(
                f"unknown storage scheme {scheme!r} in {text!r}; known: {sorted(_REGISTRY)} or a local path"
            )
        return factory(text)
    return LocalStorage(text)


def split_uri(uri: str) -> tuple[str, str]:
    """Split a storage URI into (root, last component): for a trial's model_dir -> (job dir, trial id)."""
    text = normalize_uri(uri).rstrip("/")
    parent, _, last = text.rpartition("/")
    if not last:
        raise ConfigurationError(f"{uri!r} has no last path component")
    if "://" in text and "://" not in parent + "/":
        raise ConfigurationError(f"{uri!r} names a bucket, not a folder inside it")
    return parent or "/", last


def join_uri(root: str, *parts: str) -> str:
    """Join a storage URI and relative parts (validated like object names)."""
    return normalize_uri(root).rstrip("/") + "/" + safe_join(*parts)

