"""``LocalStorage``: a folder, with atomic writes (temp + fsync + ``os.replace``) and flock'd compare-and-swap."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import time
from collections.abc import Iterator, Sequence

from proxy_task_utils.errors import NotFoundError, PreconditionFailedError, StorageError
from proxy_task_utils.storage.base import (
    _HIDDEN_PREFIX,
    _PLAIN_NAME,
    ObjectInfo,
    Storage,
    _safe_prefix,
    compile_glob,
    safe_join,
)

__all__ = ["LocalStorage"]


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
                raise PreconditionFailedError(f"{path} changed: generation {current}, expected {generation}", uri=path)
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
