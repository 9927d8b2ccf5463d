"""``proxy-task status DIR``: what a controller folder holds, read from its state file alone."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["print_status"]


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

    from controllers.engine.state import StateFile
    from controllers.errors import StateError
    from controllers.search.report import search_status_text
    from controllers.search.state import SEARCH_CONTROLLER_STATE_FILE
    from controllers.selection.controller import MODEL_SELECTION_STATE_FILE
    from controllers.variance.controller import MEASUREMENT_STATE_FILE
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
            console.print(
                f"status: {state.get('status')}" + (f"\n{state['abort_reason']}" if state.get("abort_reason") else ""),
                markup=False,
                highlight=False,
            )
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
            console.print(
                f"done: {bool(state.get('done'))}; finished copies: {len(state.get('finished_model_dirs', []))}",
                markup=False,
            )
            if state.get("status"):
                console.print(f"status: {state['status']}", markup=False)
            if state.get("abort_reason"):
                console.print(state["abort_reason"], markup=False, highlight=False)
        else:
            console.print(search_status_text(controller_dir), markup=False, highlight=False)
        return 0
    console.print(f"no controller state file in {storage.uri}")
    return 2
