"""Google Cloud Storage backend of :class:`~proxy_task_utils.storage.Storage`.

Imported lazily by ``open_storage("gs://...")``; needs ``google-cloud-storage``
(``pip install 'proxy-task-utils[gcs]'``).

* One ``storage.Client`` per process and per (project, ``STORAGE_EMULATOR_HOST``),
  shared by every :class:`GCSStorage` (module-level cache, thread-safe). Under
  the emulator, or when no credentials are found, it is anonymous.
* Every operation is one HTTP request (plus one per extra page of a listing and
  one per retry): ``read`` takes the generation from the download's
  ``x-goog-generation`` header, ``write`` is a single multipart upload (objects
  up to 8 MiB; larger ones are uploaded resumably by the library), ``exists``
  asks for the ``name`` field only, buckets are addressed without a lookup.
* Retries use the library's ``DEFAULT_RETRY`` for every call. That is safe:
  create-only and compare-and-swap writes carry a generation precondition (what
  ``DEFAULT_RETRY_IF_GENERATION_SPECIFIED`` would allow), a plain write uploads
  a whole object (replaying it gives the same content), and ``delete`` ignores
  404. What still fails is raised as :class:`TransientStorageError`.
* A lost answer: when a create-only or compare-and-swap upload was sent more
  than once (its first answer never came) and the retry gets 412, the object
  is read back; if it holds exactly our bytes, the first attempt was ours and
  the write succeeded. Writers that race with equal bytes must put a unique
  token in the payload (the lease and the latency claims do).
* ``request_count`` counts real HTTP requests, retries included: a transport
  adapter on the shared session credits them to the storage whose call is
  running in the current thread.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import storage as gcs  # type: ignore[attr-defined]
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import DEFAULT_RETRY

from proxy_task_utils.errors import (
    ConfigurationError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    TransientStorageError,
)
from proxy_task_utils.storage.base import (
    _HIDDEN_PREFIX,
    ObjectInfo,
    Storage,
    _safe_prefix,
    compile_glob,
    glob_literal_prefix,
    safe_join,
)

__all__ = ["GCSStorage"]

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
_EMULATOR_PROJECT = "proxy-task-test"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_LIST_FIELDS = "items(name,generation),nextPageToken"

_CLIENTS: dict[tuple[str | None, str | None], gcs.Client] = {}
_CLIENTS_LOCK = threading.Lock()
_ACTIVE = threading.local()  # .storage: the GCSStorage whose call runs in this thread


class _CountingAdapter(requests.adapters.HTTPAdapter):
    """Counts every HTTP attempt for the storage active in the calling thread."""

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        owner = getattr(_ACTIVE, "storage", None)
        if owner is not None:
            owner._count_request()
            _ACTIVE.attempts = getattr(_ACTIVE, "attempts", 0) + 1
        return super().send(*args, **kwargs)


def _new_client(project: str | None, emulator: str | None) -> gcs.Client:
    if emulator:
        client = gcs.Client(project=project or _EMULATOR_PROJECT, credentials=AnonymousCredentials())
    else:
        try:
            client = gcs.Client(project=project) if project else gcs.Client()
        except DefaultCredentialsError:
            client = gcs.Client(project=project or "<none>", credentials=AnonymousCredentials())
    session = client._http
    for scheme in ("https://", "http://"):
        # Keep any special adapter (mutual TLS) the auth library mounted.
        if type(session.get_adapter(scheme)) is requests.adapters.HTTPAdapter:
            session.mount(scheme, _CountingAdapter(pool_connections=4, pool_maxsize=32))
    return client


def shared_client(project: str | None = None) -> gcs.Client:
    """The process-wide client for ``project`` and the current ``STORAGE_EMULATOR_HOST``."""
    key = (project, os.environ.get(EMULATOR_ENV) or None)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = _new_client(*key)
        return client


def _content_type(name: str) -> str:
    return "application/json" if name.endswith(".json") else "application/octet-stream"


class GCSStorage(Storage):
    """Objects under ``gs://bucket/prefix``; see the module docstring for costs and retries.

    Args:
        bucket: the bucket name (it is not looked up: no request is made here).
        prefix: the root folder inside the bucket, ``""`` for the whole bucket.
        project: billing project of the client; default from the environment.
        retry_timeout: seconds after which retrying a failing call gives up
            (default: the library's 120 s).
        timeout: seconds to wait for one HTTP response.

    Raises:
        ConfigurationError: the bucket name is empty or invalid.
        UnsafePathError: the prefix contains ``..``, a NUL byte or a backslash.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        project: str | None = None,
        retry_timeout: float | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
            raise ConfigurationError(
                f"bucket must be a GCS bucket name (3-222 chars of a-z, 0-9, '.', '_', '-'), but got {bucket!r}"
            )
        prefix = prefix.strip("/")
        self._bucket_name = bucket
        self._prefix = safe_join(prefix) if prefix else ""
        self._client = shared_client(project)
        self._bucket = self._client.bucket(bucket)
        self._retry = DEFAULT_RETRY if retry_timeout is None else DEFAULT_RETRY.with_timeout(retry_timeout)
        self._timeout = timeout
        self._count = 0
        self._count_lock = threading.Lock()

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> GCSStorage:
        """``gs://bucket`` or ``gs://bucket/prefix`` (keyword arguments go to the constructor)."""
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme != "gs":
            raise ConfigurationError(f"not a gs:// URI: {uri!r}")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigurationError(f"{uri!r} names no bucket; expected gs://BUCKET[/PREFIX]")
        return cls(bucket, prefix, **kwargs)

    @property
    def uri(self) -> str:
        return f"gs://{self._bucket_name}" + (f"/{self._prefix}" if self._prefix else "")

    @property
    def request_count(self) -> int:  # type: ignore[override]
        return self._count

    def _count_request(self) -> None:
        with self._count_lock:
            self._count += 1

    def __repr__(self) -> str:
        return f"GCSStorage({self.uri!r})"

    def _key(self, name: str) -> str:
        name = safe_join(name)
        return f"{self._prefix}/{name}" if self._prefix else name

    @contextmanager
    def _call(self, key: str, what: str) -> Iterator[None]:
        """Credit requests to this storage and translate library errors into ours."""
        uri = f"gs://{self._bucket_name}/{key}"
        previous = getattr(_ACTIVE, "storage", None)
        _ACTIVE.storage = self
        _ACTIVE.attempts = 0
        try:
            yield
        except gexc.NotFound as exc:
            raise NotFoundError(f"{uri} does not exist ({what}: {exc.message})", uri=uri) from None
        except (gexc.PreconditionFailed, gexc.NotModified, gexc.Conflict) as exc:
            raise PreconditionFailedError(f"{uri}: precondition failed ({what}: {exc.message})", uri=uri) from None
        except gexc.RetryError as exc:
            raise TransientStorageError(
                f"{what} {uri} still failing after retrying: {exc.cause or exc}", uri=uri
            ) from exc
        except (
            gexc.ServerError,
            gexc.TooManyRequests,
            gexc.RequestRangeNotSatisfiable,
            requests.ConnectionError,
            requests.Timeout,
            ConnectionError,
            TimeoutError,
            DataCorruption,
        ) as exc:
            raise TransientStorageError(f"{what} {uri} failed: {exc}", uri=uri) from exc
        except gexc.GoogleAPICallError as exc:
            raise StorageError(f"{what} {uri} failed: {exc}", uri=uri) from exc
        finally:
            _ACTIVE.storage = previous

    # -- reads -------------------------------------------------------------
    def read(self, name: str) -> tuple[bytes, int]:
        key = self._key(name)
        blob = self._bucket.blob(key)
        with self._call(key, "read"):
            data = blob.download_as_bytes(retry=self._retry, timeout=self._timeout)
        if blob.generation is None:
            raise StorageError(f"gs://{self._bucket_name}/{key}: the server sent no x-goog-generation header")
        return data, blob.generation

    def exists(self, name: str) -> bool:
        key = self._key(name)
        with self._call(key, "exists"):
            return self._bucket.blob(key).exists(retry=self._retry, timeout=self._timeout)

    def list(self, prefix: str = "", *, glob: str | None = None) -> list[ObjectInfo]:
        rel = _safe_prefix(prefix)
        root = f"{self._prefix}/" if self._prefix else ""
        pattern = None if glob is None else compile_glob(glob)
        # matchGlob matches whole object names: our root goes in front (odd segments as '*';
        # the prefix still pins the root). Servers that ignore it (fake-gcs-server) send
        # everything, so the names are always filtered here too.
        server_glob = None if glob is None else glob_literal_prefix(self._prefix) + glob
        found: list[ObjectInfo] = []
        with self._call(root + rel, "list"):
            pages = self._client.list_blobs(
                self._bucket, prefix=root + rel, match_glob=server_glob, fields=_LIST_FIELDS,
                retry=self._retry, timeout=self._timeout,
            ).pages  # fmt: skip
            for page in pages:
                for blob in page:
                    name = blob.name[len(root) :]
                    last = name.rpartition("/")[2]
                    if not last or last.startswith(_HIDDEN_PREFIX):
                        continue  # folder placeholders ("a/") and hidden files
                    if pattern is not None and not pattern.fullmatch(name):
                        continue
                    found.append(ObjectInfo(name, int(blob.generation)))
        found.sort()
        return found

    # -- writes ------------------------------------------------------------
    def _upload(self, name: str, data: bytes, if_generation_match: int | None, what: str) -> int:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, but got {type(data).__name__}")
        key = self._key(name)
        blob = self._bucket.blob(key)
        data = bytes(data)
        try:
            with self._call(key, what):
                blob.upload_from_string(
                    data,
                    content_type=_content_type(key),
                    if_generation_match=if_generation_match,
                    retry=self._retry,
                    timeout=self._timeout,
                )
        except PreconditionFailedError:
            if if_generation_match is None or getattr(_ACTIVE, "attempts", 0) <= 1:
                raise  # answered at the first attempt: a real conflict
            try:  # a retry after a lost answer: did our first attempt land?
                current, generation = self.read(name)
            except NotFoundError:
                raise PreconditionFailedError(
                    f"gs://{self._bucket_name}/{key}: precondition failed ({what}) and the object is gone", uri=key
                ) from None
            if current != data:
                raise
            return generation
        return int(blob.generation)

    def write(self, name: str, data: bytes, *, durable: bool = True) -> int:
        del durable  # every completed upload is durable on GCS
        return self._upload(name, data, None, "write")

    def write_if_absent(self, name: str, data: bytes) -> int:
        return self._upload(name, data, 0, "write_if_absent")

    def write_if_generation(self, name: str, data: bytes, generation: int) -> int:
        if isinstance(generation, bool) or not isinstance(generation, int):
            raise TypeError(f"generation must be an int from read() or write(), but got {generation!r}")
        if generation <= 0:  # GCS would read 0 as "create only"; no object has generation 0
            key = self._key(name)
            raise PreconditionFailedError(f"gs://{self._bucket_name}/{key}: generation {generation} never matches")
        return self._upload(name, data, generation, "write_if_generation")

    def delete(self, name: str) -> None:
        key = self._key(name)
        try:
            with self._call(key, "delete"):
                self._bucket.blob(key).delete(retry=self._retry, timeout=self._timeout)
        except NotFoundError:
            pass
