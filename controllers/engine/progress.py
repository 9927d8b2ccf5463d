"""Terminal progress of a running job (rich), or plain log lines when not on a terminal.

The job loop calls :meth:`Progress.update` once per poll; tools call
:meth:`Progress.message` for milestones; the pipeline calls :meth:`Progress.stage` as each
stage starts. Above the job's table stands one overall line (:func:`overall_line`: the stage,
the trials done and running, the time so far and an ETA from the trial times observed so
far). The live view is redrawn whole by rich (no stale fragments after a resize); when the
output is not a terminal, plain log lines instead. :class:`NullProgress` does nothing
(tests, libraries).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from controllers.units import human_duration

if TYPE_CHECKING:
    from controllers.engine.records import JobView

__all__ = ["Progress", "NullProgress", "RichProgress", "LogProgress", "make_progress", "overall_line", "eta_secs"]

logger = logging.getLogger("controllers")


class Progress:
    """Sink for progress; subclasses draw it."""

    _stage: tuple[str, int, int] | None = None

    def update(self, view: JobView) -> None:  # noqa: B027 - optional hook
        """One poll of a job."""

    def message(self, text: str) -> None:  # noqa: B027 - optional hook
        """A milestone ("round 2: 25 trials, 7.3 %")."""

    def stage(self, name: str, index: int, total: int) -> None:
        """A pipeline stage starts (``index`` from 1 of ``total``); shown on the overall line."""
        self._stage = (name, index, total)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop drawing."""


class NullProgress(Progress):
    pass


def eta_secs(elapsed_secs: float, done: int, total: int) -> float | None:
    """Time left for a job, from the pace so far: ``elapsed * (total - done) / done`` (None before the first end).

    Trials of one job are alike (same setup, same length), so the pace of the ones that ended
    is the best guess for the rest; it is an upper bound when the job is stopped early.
    """
    if done <= 0 or total <= 0 or elapsed_secs < 0:
        return None
    return elapsed_secs * max(0, total - done) / done


def overall_line(view: JobView, stage: tuple[str, int, int] | None = None) -> str:
    """``stage 2 of 3, model selection | Model_Selection_x_iter_1: 3 of 10 done, 2 running | 1.5 min, ETA 3.4 min``."""
    total = len(view.states)
    done = sum(1 for s in view.states.values() if s.is_final)
    running = sum(1 for s in view.states.values() if s.value in ("running", "launching"))
    eta = eta_secs(view.elapsed_secs, done, total)
    parts = []
    if stage is not None:
        name, index, of = stage
        parts.append(f"stage {index} of {of}, {name.replace('_', ' ')}")
    parts.append(f"{view.name}: {done} of {total} done, {running} running")
    parts.append(human_duration(view.elapsed_secs) + ("" if eta is None else f", ETA {human_duration(eta)}"))
    return " | ".join(parts)


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
        self._last: dict[str, Mapping[str, Any]] = {}  # by job: racing jobs interleave their polls

    def update(self, view: JobView) -> None:
        counts, _ = _summary(view)
        if counts != self._last.get(view.name):
            self._last[view.name] = counts
            logger.info("%s", overall_line(view, self._stage))

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
        self._views: dict[str, JobView] = {}  # the jobs running at once (racing), in start order

    def update(self, view: JobView) -> None:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        self._views[view.name] = view
        for name in [
            n for n, v in self._views.items() if n != view.name and all(s.is_final for s in v.states.values())
        ]:
            del self._views[name]  # an ended job leaves the screen when another one polls
        parts: list[Any] = []
        for shown in self._views.values():
            counts, rows = _summary(shown)
            states = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
            table = Table(title=f"{shown.name}  ({states})")
            for col in ("trial", "state", "last %", "accuracy"):
                table.add_column(col)
            for row in rows:
                table.add_row(*row)
            parts += [Text(overall_line(shown, self._stage), style="bold"), table]
        # one renderable, redrawn whole: the overall line can never be left behind as a fragment
        self._live.update(Group(*parts))

    def message(self, text: str) -> None:
        self._live.console.print(text)

    def close(self) -> None:
        self._live.stop()


def make_progress(*, interactive: bool | None = None) -> Progress:
    """Rich when stderr is a terminal, log lines otherwise."""
    if interactive is None:
        interactive = sys.stderr.isatty()
    return RichProgress() if interactive else LogProgress()
