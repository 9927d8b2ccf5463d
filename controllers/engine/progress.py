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

from controllers.units import human_duration

if TYPE_CHECKING:
    from controllers.engine.records import JobView

__all__ = ["Progress", "NullProgress", "RichProgress", "LogProgress", "make_progress"]

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
            states = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            logger.info("%s: %s (%s)", view.name, states, human_duration(view.elapsed_secs))

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
        states = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        table = Table(title=f"{view.name}  ({states}; {human_duration(view.elapsed_secs)})")
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
