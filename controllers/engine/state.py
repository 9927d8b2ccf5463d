"""Versioned state files of the controllers.

State files are standard JSON objects with a ``schema_version`` key, written
atomically through :class:`~proxy_task_utils.storage.Storage`. A missing file
means "start fresh"; a corrupt one raises :class:`StateError` naming the path
(never a silent fresh start that would relaunch everything). Each tool names its
own files (``controllers.variance``, ``controllers.selection``, ``controllers.search``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controllers.errors import StateError
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import CorruptFileError, NotFoundError
from proxy_task_utils.storage import Storage

__all__ = ["SCHEMA_VERSION", "StateFile", "open_state"]

SCHEMA_VERSION = 1


@dataclass
class StateFile:
    """One versioned JSON state file in a controller folder.

    Args:
        storage: The controller folder.
        name: File name (e.g. ``MODEL_SELECTION_STATE.json``).
        kind: What the file belongs to (stored as ``"tool"``; checked on load when present).
    """

    storage: Storage
    name: str
    kind: str = ""

    @property
    def uri(self) -> str:
        return self.storage.child_uri(self.name)

    def exists(self) -> bool:
        return self.storage.exists(self.name)

    def load(self) -> dict[str, Any] | None:
        """The saved object, or None when the file does not exist.

        Raises:
            StateError: not JSON, not an object, a newer ``schema_version``, or another tool's file.
        """
        try:
            data, _ = self.storage.read(self.name)
        except NotFoundError:
            return None
        try:
            obj = p.load_json_object(data, path=self.uri)
        except CorruptFileError as exc:
            raise StateError(f"state file {self.uri} is corrupt ({exc}); fix or move it away to start over") from None
        version = obj.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise StateError(
                f"state file {self.uri} has schema_version {version!r}; this version reads up to {SCHEMA_VERSION}"
            )
        if self.kind and obj.get("tool", self.kind) != self.kind:
            raise StateError(f"state file {self.uri} belongs to tool {obj.get('tool')!r}, not {self.kind!r}")
        return obj

    def save(self, obj: dict[str, Any]) -> None:
        """Atomically replace the file; adds ``schema_version`` (and ``tool``) keys. Standard JSON only."""
        out = dict(obj)
        out.setdefault("schema_version", SCHEMA_VERSION)
        if self.kind:
            out.setdefault("tool", self.kind)
        self.storage.write(self.name, p.dump_json(out))


def open_state(storage: Storage, name: str, kind: str, *, resume: bool) -> tuple[StateFile, dict[str, Any] | None]:
    """The tool's state file and its content; refuses to overwrite a run unless ``resume``.

    Raises:
        StateError: the folder holds a state file and ``resume`` is False (it
            names the flag), or the file is corrupt.
    """
    state = StateFile(storage, name, kind)
    obj = state.load()
    if obj is not None and not resume:
        raise StateError(
            f"{state.uri} already exists: pass --resume to continue that run, or choose a new controller_dir"
        )
    return state, obj
