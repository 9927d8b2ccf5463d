"""Terminal progress of a running job (rich), or plain log lines when not on a terminal.

The job loop calls :meth:`Progress.update` once per poll; tools call
:meth:`Progress.message` for milestones. :class:`NullProgress` does nothing
(tests, libraries).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controllers.jobs import JobView

__all__ = ["Progress", "NullProgress", "RichProgress", "LogProgress", "make_progress", "print_status"]

logger = logging.getLogger("controllers")


class Progress:
    """Sink for progress; subclasses draw it."""

    def update(self, view: JobView) -> None:  # noqa: B027 - optional hook
        """One poll of a job."""

    def message(self, text: str) -> None:  # noqa: B027 - optional hook
        """A milestone ("round 2: 25 trials, 7.3 %")."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop drawing."""


class NullProgress(Progress):
    pass


def _summary(view: JobView) -> tuple[dict[str, int], list[tuple[str, str, str, str]]]:
    counts: dict[str, int] = {}
    rows = []
    for trial_id, state in view.states.items():
        counts[state.value] = counts.get(state.value, 0) + 1
        snap = view.snapshots.get(trial_id)
        metrics = snap.metrics if snap is not None else None
        pct = "" if metrics is None or metrics.last_pct is None else f"{metrics.last_pct:.1f}"
        acc = "" if metrics is None or metrics.final_accuracy is None else f"{metrics.final_accuracy:.4f}"
        rows.append((trial_id, state.value, pct, acc))
    return counts, rows


class LogProgress(Progress):
    """One log line per change of the state counts (for logs and pipes)."""

    def __init__(self) -> None:
        self._last: Mapping[str, Any] | None = None

    def update(self, view: JobView) -> None:
        counts, _ = _summary(view)
        if counts != self._last:
            self._last = counts
            logger.info("%s: %s", view.name, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    def message(self, text: str) -> None:
        logger.info("%s", text)


class RichProgress(Progress):
    """A live rich table: one row per trial (state, last %, last accuracy)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(stderr=True)
        self._live = Live(console=self._console, refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, view: JobView) -> None:
        from rich.table import Table

        counts, rows = _summary(view)
        table = Table(title=f"{view.name}  ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})")
        for col in ("trial", "state", "last %", "accuracy"):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        self._live.update(table)

    def message(self, text: str) -> None:
        self._live.console.print(text)

    def close(self) -> None:
        self._live.stop()


def make_progress(*, interactive: bool | None = None) -> Progress:
    """Rich when stderr is a terminal, log lines otherwise."""
    if interactive is None:
        interactive = sys.stderr.isatty()
    return RichProgress() if interactive else LogProgress()


def _job_counts(job: Mapping[str, Any] | None) -> str:
    if not job:
        return ""
    counts: dict[str, int] = {}
    for t in job.get("trials", []):
        counts[t.get("state", "?")] = counts.get(t.get("state", "?"), 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def print_status(controller_dir: str, *, file: Any = None) -> int:
    """Print the state of a controller folder as a table; the tool is detected by its state file.

    Returns the exit code for the CLI (0 shown, 2 no state file, corrupt file).
    """
    from rich.console import Console
    from rich.table import Table

    from controllers.state import (
        MEASUREMENT_STATE_FILE,
        MODEL_SELECTION_STATE_FILE,
        SEARCH_CONTROLLER_STATE_FILE,
        StateError,
        StateFile,
    )
    from proxy_task_utils.storage import open_storage

    console = Console(file=file or sys.stdout, width=140)
    storage = open_storage(controller_dir)
    for name, tool in (
        (MODEL_SELECTION_STATE_FILE, "model selection"),
        (MEASUREMENT_STATE_FILE, "variance measurement"),
        (SEARCH_CONTROLLER_STATE_FILE, "proxy-task search"),
    ):
        try:
            state = StateFile(storage, name).load()
        except StateError as exc:
            console.print(f"[red]{exc}[/red]")
            return 2
        if state is None:
            continue
        table = Table(title=f"{tool}: {storage.uri}")
        if name == MODEL_SELECTION_STATE_FILE:
            for col in ("round", "trials", "desired %", "job", "trials state", "kept"):
                table.add_column(col)
            for it in state.get("iterations", []):
                table.add_row(
                    str(it.get("iteration", "")), str(it.get("num_trials")),
                    f"{it.get('desired_training_step_pct', 0):.4g}", str(it.get("search_job_name")),
                    _job_counts(it.get("job")), ",".join(it.get("trials_to_retrain", [])),
                )  # fmt: skip
            console.print(table)
            console.print(f"status: {state.get('status')}" + (f"\n{state['abort_reason']}" if state.get("abort_reason") else ""))
        elif name == MEASUREMENT_STATE_FILE:
            for col in ("step", "job", "outcome / trials"):
                table.add_column(col)
            for a in state.get("attempts", []):
                job = a.get("job") or {}
                table.add_row(f"find workable #{a.get('attempt')}", str(job.get("name")),
                              str(a.get("outcome") or _job_counts(job)) + (f": {a['failure']}" if a.get("failure") else ""))  # fmt: skip
            if state.get("copies_job"):
                table.add_row("copies", str(state.get("training_job_name")), _job_counts(state["copies_job"]))
            console.print(table)
            console.print(f"done: {bool(state.get('done'))}; finished copies: {len(state.get('finished_model_dirs', []))}")
        else:
            from controllers.search.report import search_status_text

            console.print(search_status_text(controller_dir), markup=False, highlight=False)
        return 0
    console.print(f"no controller state file in {storage.uri}")
    return 2
