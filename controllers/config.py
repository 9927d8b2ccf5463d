"""User configs (YAML -> pydantic v2): the parts every tool shares, and loading them.

Each tool's own model lives in its package (``controllers.variance.config``, ...).

Every model forbids unknown keys, so a typo is an error that names the field.
The search controller builds its ``SearchConfig`` from the shared parts::

    from controllers.config import ControllerConfig
    class SearchConfig(ControllerConfig):
        desired_accuracy_correlation: float = 0.65
        ...

and loads it with ``load_config(path, SearchConfig)``. ``ControllerConfig``
carries: ``controller_dir``, ``job_name``, ``seed``, ``trainer``,
``search_space`` (optional), ``runner``, ``timeouts``, ``latency``.
"""

from __future__ import annotations

import os
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controllers.engine.records import JobSettings
from controllers.errors import ConfigError
from controllers.runners.ray_runner import RayOptions
from controllers.runners.vertex_runner import VertexOptions

__all__ = [
    "StrictModel",
    "TrainerConfig",
    "SearchSpaceConfig",
    "RunnerConfig",
    "TimeoutsConfig",
    "LatencyConfig",
    "ControllerConfig",
    "ConfigError",
    "load_config",
    "parse_config",
]

_C = TypeVar("_C", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of all config models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


FlagValue = str | int | float | bool

#: Names (job, proxy task) become parts of file names: keep them well under the 255-byte limit.
NAME_MAX_LENGTH = 100
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


def _no_nul(where: str, text: str) -> None:
    if "\x00" in text:
        raise ValueError(
            f"{where} contains a NUL byte (\\x00), which no command line or environment can carry; remove it"
        )


class TrainerConfig(StrictModel):
    """How to start the user's trainer.

    ``command`` is the argv prefix (``["python", "-m", "examples.pytorch.trainer"]``
    or ``["python", "train.py"]``); the controller appends ``--job-dir=<trial folder>``,
    ``--nas_params_str=<json>``, ``args`` as ``--key=value`` and the re-training flags.
    """

    command: list[str] = Field(min_length=1)
    args: dict[str, FlagValue] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    # How the trainer's training length is set, for best_proxy_task.yaml (which sets exactly these flags):
    length_flag: str | None = None  # e.g. train_steps or num_epochs; None: the file sets no length
    length_unit: Literal["steps", "epochs"] = "steps"
    steps_per_epoch: int | None = Field(default=None, ge=1)  # needed for epochs: metrics count steps
    decay_flag: str | None = None  # e.g. decay_steps (a cosine schedule's length); None: no such flag
    decay_unit: Literal["steps", "epochs"] | None = None  # default: length_unit

    @model_validator(mode="after")
    def _length(self) -> TrainerConfig:
        units = set()
        if self.length_flag:
            units.add(self.length_unit)
        if self.decay_flag:
            units.add(self.decay_unit or self.length_unit)
        if "epochs" in units and self.steps_per_epoch is None:
            raise ValueError("trainer.steps_per_epoch is required when a length is in epochs (the metrics count steps)")
        if self.length_flag is not None and self.length_flag == self.decay_flag:
            raise ValueError(f"trainer.length_flag and trainer.decay_flag are both {self.length_flag!r}")
        return self

    def length_settings(self) -> dict[str, Any]:
        """What ``best_proxy_task.yaml`` sets (recorded in the search state)."""
        return {"flag": self.length_flag, "unit": self.length_unit, "steps_per_epoch": self.steps_per_epoch,
                "decay_flag": self.decay_flag, "decay_unit": self.decay_unit or self.length_unit}  # fmt: skip

    @field_validator("command")
    @classmethod
    def _no_empty(cls, v: list[str]) -> list[str]:
        if any(not part for part in v):
            raise ValueError("command parts must be non-empty strings, e.g. ['python', '-m', 'my.trainer']")
        for i, part in enumerate(v):
            _no_nul(f"part {i}", part)
        return v

    @field_validator("args")
    @classmethod
    def _args_carry(cls, v: dict[str, FlagValue]) -> dict[str, FlagValue]:
        for key, value in v.items():
            _no_nul(f"the name of {key!r}", key)
            if isinstance(value, str):
                _no_nul(f"the value of {key!r}", value)
        return v

    @field_validator("env")
    @classmethod
    def _env_carries(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            _no_nul(f"the name of {key!r}", key)
            if not key or "=" in key:
                raise ValueError(f"environment variable name {key!r} must be non-empty and without '='")
            _no_nul(f"the value of {key!r}", value)
        return v

    def flag_items(self) -> list[tuple[str, str]]:
        """``args`` as (key, value) strings; booleans become ``True``/``False`` like the reference."""
        return [(k, str(v)) for k, v in self.args.items()]


class SearchSpaceConfig(StrictModel):
    """Where architectures come from: exactly one of ``function``, ``choices``, ``file``.

    * ``function``: ``"package.module:function"`` or ``"path/to/space.py:function"``,
      called as ``function(rng)`` with a ``random.Random`` and returning a JSON-able dict.
    * ``choices``: a table ``{name: [choice, ...]}``; each name gets one choice.
    * ``file``: a YAML file holding such a table.
    """

    function: str | None = None
    choices: dict[str, list[Any]] | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchSpaceConfig:
        given = [n for n in ("function", "choices", "file") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                f"search_space needs exactly one of 'function', 'choices' or 'file', but got {given or 'none'}"
            )
        if self.function is not None and ":" not in self.function:
            raise ValueError(f"search_space.function must look like 'module:function', but got {self.function!r}")
        if self.choices is not None:
            for name, options in self.choices.items():
                if not options:
                    raise ValueError(f"search_space.choices.{name} is empty; give at least one choice")
        return self


class RunnerConfig(StrictModel):
    """Where trials run: ``local`` subprocesses, a ``ray`` cluster, or ``vertex`` custom jobs (docs/scale_out.md)."""

    kind: Literal["local", "ray", "vertex"] = "local"
    max_parallel_trials: int | None = Field(default=None, ge=1)
    log_dir: str | None = None  # local folder for trial logs; default: <controller_dir>/logs (local dirs)
    # local only: modules imported once in a server that forks each trial (warm start), e.g.
    # [torch, examples.pytorch.trainer]; a trial then skips those imports
    preload: list[str] = Field(default_factory=list)
    ray: RayOptions | None = None
    vertex: VertexOptions | None = None

    @model_validator(mode="after")
    def _sections(self) -> RunnerConfig:
        for section in ("ray", "vertex"):
            if getattr(self, section) is not None and self.kind != section:
                raise ValueError(
                    f"runner.{section} is set but runner.kind is {self.kind!r}; set runner.kind: {section}"
                )
        if self.preload and self.kind != "local":
            raise ValueError(
                f"runner.preload is for runner.kind local (trials forked on this machine), not {self.kind!r}"
            )
        for name in self.preload:
            if not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"runner.preload: {name!r} is not a module name (e.g. torch or my_pkg.trainer)")
        if self.kind == "vertex" and self.vertex is None:
            raise ValueError("runner.kind 'vertex' needs a runner.vertex section with at least project and image_uri")
        if self.kind != "local" and self.max_parallel_trials is None:
            raise ValueError(
                f"runner.max_parallel_trials is required for runner.kind {self.kind!r} "
                "(the cluster's size is not this machine's CPU count)"
            )
        return self

    def effective_max_parallel(self) -> int:
        return self.max_parallel_trials or os.cpu_count() or 1

    def log_dir_for(self, controller_dir: str) -> str:
        """Local folder for trial logs: ``log_dir``, else ``<controller_dir>/logs`` (local), else a cache folder."""
        if self.log_dir:
            return os.path.abspath(self.log_dir)
        if "://" not in controller_dir and not controller_dir.startswith("/gcs/"):
            return os.path.join(os.path.abspath(controller_dir), "logs")
        safe = controller_dir.split("://", 1)[-1].strip("/").replace("/", "_")
        return os.path.join(os.path.expanduser("~"), ".cache", "proxy-task", "logs", safe)

    def make_runner(self):  # -> controllers.runners.Runner
        """The runner this config describes."""
        from controllers.runners import make_runner

        options: dict[str, Any] = {"preload": list(self.preload)} if self.preload else {}
        if self.kind == "ray":
            options = (self.ray or RayOptions()).model_dump()
        elif self.kind == "vertex":
            assert self.vertex is not None  # checked by _sections
            options = self.vertex.model_dump()
        return make_runner(self.kind, max_parallel_trials=self.effective_max_parallel(), **options)


class TimeoutsConfig(StrictModel):
    """Loop timing in seconds (controller's monotonic clock)."""

    poll_interval_secs: float = Field(default=10.0, gt=0)
    no_metrics_timeout_secs: float | None = Field(default=3600.0, gt=0)
    stop_grace_secs: float = Field(default=600.0, ge=0)
    cancel_grace_secs: float = Field(default=30.0, ge=0)
    heartbeat_interval_secs: float | None = Field(default=60.0, gt=0)
    nan_grace_secs: float = Field(default=60.0, ge=0)
    lease_timeout_secs: float = Field(default=900.0, gt=0)
    # poll again as soon as a local trial ends, so its slot is refilled at once (false: at the next poll)
    wake_on_trial_end: bool = True

    def job_settings(self) -> JobSettings:
        return JobSettings(
            poll_interval_secs=self.poll_interval_secs,
            no_metrics_timeout_secs=self.no_metrics_timeout_secs,
            stop_grace_secs=self.stop_grace_secs,
            cancel_grace_secs=self.cancel_grace_secs,
            heartbeat_interval_secs=self.heartbeat_interval_secs,
            nan_grace_secs=self.nan_grace_secs,
            wake_on_trial_end=self.wake_on_trial_end,
        )


_WORKER_OWN_FLAGS = ("--watch", "--controller-dir", "--workers", "--worker-id", "--device")


class LatencyConfig(StrictModel):
    """Where trial latencies come from (model selection's spread, the search's latency correlation).

    * ``mode: trainer`` (default): the trainer measures itself and records
      ``latency`` in ``TRIAL_TRAINING_METRICS.json``.
    * ``mode: worker``: the trainer exports its model and waits
      (``proxy_task_utils.export_and_wait_for_latency``, e.g. the trainer's
      ``--latency_mode=worker`` flag, set in ``trainer.args``); a latency worker
      measures it on its own device and answers in ``saved_model/model_latency.json``,
      which the controller reads. For a local ``controller_dir`` the controller
      starts ``num_workers`` worker processes on this machine; for ``gs://`` start
      them yourself on the measuring machines
      (``proxy-task latency-worker --watch <controller_dir> --workers N --worker-id K``)
      or set ``start_local_workers: true``. They exit when the controller ends.
    * ``mode: none``: no latency at all.
    """

    mode: Literal["none", "trainer", "worker"] = "trainer"
    num_workers: int = Field(default=1, ge=1)
    device: str = "cpu"
    start_local_workers: bool | None = None  # None: yes for a local controller_dir, no for gs://
    worker_args: list[str] = Field(default_factory=list)  # more latency-worker flags, e.g. ["--repeats", "50"]
    # How long trainers wait for an answer (give the trainer the same value through its own flag);
    # checked against timeouts.no_metrics_timeout_secs and timeouts.stop_grace_secs.
    timeout_secs: float = Field(default=600.0, gt=0)
    exit_timeout_secs: float = Field(default=60.0, ge=0)  # wait this long for the workers at the end, then stop them

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not (v == "cpu" or v.startswith(("cuda", "gpu"))):
            raise ValueError(f"latency.device must be cpu, cuda, cuda:N or gpu, but got {v!r}")
        return v

    @field_validator("worker_args")
    @classmethod
    def _own_flags(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a.split("=", 1)[0] in _WORKER_OWN_FLAGS]
        if bad:
            raise ValueError(
                f"latency.worker_args must not set {bad}: the controller sets them (use latency.num_workers / latency.device)"
            )
        return v

    def starts_local_workers(self, controller_dir: str) -> bool:
        """Whether the controller starts worker processes on this machine."""
        if self.mode != "worker":
            return False
        if self.start_local_workers is not None:
            return self.start_local_workers
        return "://" not in controller_dir


class ControllerConfig(StrictModel):
    """Shared by all tools: the controller folder, the trainer, the runner, the timing, the latency source."""

    controller_dir: str = Field(min_length=1)
    job_name: str = Field(default="proxy_task", pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)
    seed: int = 0
    trainer: TrainerConfig
    search_space: SearchSpaceConfig | None = None
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    # the accuracy of a random guess (0.1 for 10 balanced classes): scores at that level are "at chance"
    chance_accuracy: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _latency_wait(self) -> ControllerConfig:
        if self.latency.mode != "worker":
            return self
        wait, silent, grace = (
            self.latency.timeout_secs,
            self.timeouts.no_metrics_timeout_secs,
            self.timeouts.stop_grace_secs,
        )
        if silent is not None and wait >= silent:
            raise ValueError(
                f"latency.timeout_secs ({wait:g}) must be < timeouts.no_metrics_timeout_secs ({silent:g}): "
                "a trainer waiting for its latency writes no metrics and would be cancelled"
            )
        if wait > grace:
            raise ValueError(
                f"latency.timeout_secs ({wait:g}) must be <= timeouts.stop_grace_secs ({grace:g}): a trainer told "
                "to stop still waits for its latency before it exits"
            )
        return self


def _format_errors(exc: ValidationError, source: str) -> str:
    """One line for one bad field; a list under a heading for several."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the documented fields)"
        elif err["type"] == "string_too_long" and err["loc"] and err["loc"][-1] in ("job_name", "name", "name_prefix"):
            msg = f"{msg}: it names folders and files, so keep it short"
        problems.append(f"{where}: {msg}")
    if len(problems) == 1:
        return f"{source}: invalid config: {problems[0]}"
    return "\n".join([f"{source}: invalid config ({len(problems)} problems)", *(f"  {p}" for p in problems)])


def parse_config(data: Any, model: type[_C], *, source: str = "config") -> _C:
    """Validate a dict; :class:`ConfigError` lists every bad field by its dotted path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a mapping of keys to values, but got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | os.PathLike[str], model: type[_C]) -> _C:
    """Read a YAML config file and validate it."""
    import yaml

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_config(data, model, source=path)
