"""Versioned state files of the controllers.

State files are standard JSON objects with a ``schema_version`` key, written
atomically through :class:`~proxy_task_utils.storage.Storage`. A missing file
means "start fresh"; a corrupt one raises :class:`StateError` naming the path
(never a silent fresh start that would relaunch everything). Each tool names its
own files (``controllers.variance``, ``controllers.selection``, ``controllers.search``).

Each tool also gives the *schema* of its file (:data:`Schema`: the keys it
cannot do without, and their types): ``{}``, a missing key or a key of the wrong
type is a :class:`StateError` naming the file and the key (``iterations[0].job.trials``),
and the file is left as it is. A *fence* (the lease's ``confirm``) runs before
every save: a controller that lost its folder writes nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controllers.errors import StateError
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import CorruptFileError, NotFoundError
from proxy_task_utils.storage import Storage

__all__ = ["SCHEMA_VERSION", "Schema", "JOB_RECORD_SCHEMA", "StateFile", "open_state", "check_schema"]

SCHEMA_VERSION = 1

#: A state file's shape: a type, a frozenset of allowed values, a dict of required keys (extra
#: keys are allowed; ``"key?"`` is optional; ``{"*": shape}`` is a map whose every value has that
#: shape), a one-item list (every item has that shape), or a tuple of shapes (any one of them;
#: ``type(None)`` for "may be null").
Schema = Any  # recursive: type | frozenset | dict[str, Schema] | list[Schema] | tuple[Schema, ...]

_TRIAL_STATES = frozenset({"pending", "launching", "running", "succeeded", "failed", "cancelled", "skipped"})

#: A :class:`~controllers.engine.records.JobRecord` as the tools embed it.
JOB_RECORD_SCHEMA: dict[str, Schema] = {
    "name": str,
    "job_dir": str,
    "trials": [{"trial_id": str, "state": _TRIAL_STATES}],
}


def _type_name(spec: Any) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_type_name(s) for s in spec)
    if isinstance(spec, dict):
        return "an object"
    if isinstance(spec, list):
        return "a list"
    if isinstance(spec, frozenset):
        return "one of " + ", ".join(sorted(map(str, spec)))
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false",
            type(None): "null"}.get(spec, spec.__name__)  # fmt: skip


def _matches(value: Any, spec: Any) -> bool:
    if isinstance(spec, tuple):
        return any(_matches(value, s) for s in spec)
    if isinstance(spec, dict):
        return isinstance(value, dict)
    if isinstance(spec, list):
        return isinstance(value, list)
    if isinstance(spec, frozenset):
        return isinstance(value, str | int | float | bool | type(None)) and value in spec
    if spec is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, spec)


def check_schema(obj: Any, schema: Schema, where: str = "") -> str | None:
    """The first problem of ``obj`` against ``schema`` (``"key 'iterations[0].job' is missing"``), or None."""
    if not _matches(obj, schema):
        what = f"key '{where}'" if where else "the file"
        return f"{what} must be {_type_name(schema)}, but is {obj!r:.60}"
    if isinstance(schema, tuple):  # the first shape that matches decides (null or an object, say)
        shape = next(s for s in schema if _matches(obj, s))
        return check_schema(obj, shape, where) if isinstance(shape, dict | list) else None
    if isinstance(schema, dict):
        if "*" in schema:  # a map: every value has this shape
            for key, value in obj.items():
                problem = check_schema(value, schema["*"], f"{where}[{key!r}]")
                if problem is not None:
                    return problem
            return None
        for name, spec in schema.items():
            key = name.rstrip("?")
            path = f"{where}.{key}" if where else key
            if key not in obj:
                if name.endswith("?"):
                    continue
                return f"key '{path}' is missing"
            problem = check_schema(obj[key], spec, path)
            if problem is not None:
                return problem
    elif isinstance(schema, list):
        for i, item in enumerate(obj):
            problem = check_schema(item, schema[0], f"{where}[{i}]")
            if problem is not None:
                return problem
    return None


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
    schema: Mapping[str, Schema] | None = None
    fence: Callable[[], None] | None = None

    @property
    def uri(self) -> str:
        return self.storage.child_uri(self.name)

    def exists(self) -> bool:
        return self.storage.exists(self.name)

    def load(self) -> dict[str, Any] | None:
        """The saved object, or None when the file does not exist.

        Raises:
            StateError: not JSON, not an object, a newer ``schema_version``, another tool's
                file, or (with a schema) a missing or mistyped key; the file is left as it is.
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
        if self.schema is not None:
            problem = check_schema(obj, dict(self.schema))
            if problem is not None:
                raise StateError(
                    f"state file {self.uri} is not a valid {self.kind or 'state'} file: {problem}; "
                    "it was left as it is: restore it, or move it away to start over (every trial runs again)"
                )
        return obj

    def save(self, obj: dict[str, Any]) -> None:
        """Atomically replace the file; adds ``schema_version`` (and ``tool``) keys. Standard JSON only.

        Raises:
            controllers.errors.LeaseLostError: the fence says another controller holds the folder
                (nothing is written).
        """
        if self.fence is not None:
            self.fence()
        out = dict(obj)
        out.setdefault("schema_version", SCHEMA_VERSION)
        if self.kind:
            out.setdefault("tool", self.kind)
        self.storage.write(self.name, p.dump_json(out))


def open_state(
    storage: Storage,
    name: str,
    kind: str,
    *,
    resume: bool,
    schema: Mapping[str, Schema] | None = None,
    fence: Callable[[], None] | None = None,
) -> tuple[StateFile, dict[str, Any] | None]:
    """The tool's state file and its content; refuses to overwrite a run unless ``resume``.

    Raises:
        StateError: the folder holds a state file and ``resume`` is False (it
            names the flag), or the file is corrupt or does not fit ``schema``.
    """
    state = StateFile(storage, name, kind, schema, fence)
    obj = state.load()
    if obj is not None and not resume:
        raise StateError(
            f"{state.uri} already exists: pass --resume to continue that run, or choose a new controller_dir"
        )
    return state, obj
