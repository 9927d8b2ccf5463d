"""One small storage interface for trial and controller folders, and the scheme registry.

Trainers and controllers talk to storage only through :class:`Storage`
(:mod:`proxy_task_utils.storage.base`). Two backends implement it:
:class:`LocalStorage` (a folder, :mod:`.local`) and ``GCSStorage``
(``gs://bucket/prefix``, :mod:`.gcs`, imported lazily through the registry so
that ``import proxy_task_utils`` needs nothing beyond the standard library).
``open_storage(uri)`` picks the backend by scheme (fsspec style): a backend
registers a factory with :func:`register_scheme`; no backend imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from proxy_task_utils.errors import ConfigurationError, MissingExtraError
from proxy_task_utils.storage.base import ObjectInfo, Storage, safe_join
from proxy_task_utils.storage.local import LocalStorage

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


# -- scheme registry ---------------------------------------------------------

_SchemeFactory = Callable[[str], Storage]
_REGISTRY: dict[str, _SchemeFactory] = {}


def register_scheme(scheme: str, factory: _SchemeFactory) -> None:
    """Make ``open_storage`` hand URIs starting with ``scheme://`` to ``factory``."""
    _REGISTRY[scheme] = factory


def _open_gcs(uri: str) -> Storage:
    try:
        from proxy_task_utils.storage.gcs import GCSStorage
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"{uri} needs google-cloud-storage, which is not installed: pip install 'proxy-task-utils[gcs]' ({exc})"
        ) from None
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
    if "://" in text and "://" not in parent:
        raise ConfigurationError(f"{uri!r} names a bucket, not a folder inside it")
    return parent or "/", last


def join_uri(root: str, *parts: str) -> str:
    """Join a storage URI and relative parts (validated like object names)."""
    return normalize_uri(root).rstrip("/") + "/" + safe_join(*parts)
