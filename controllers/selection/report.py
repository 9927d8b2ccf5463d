"""What model selection tells a person: its summary line (CLI and pipeline summary)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controllers.selection.controller import ModelSelectionResult

__all__ = ["summary_line"]


def summary_line(result: ModelSelectionResult) -> str:
    """The reference models the search will use, and where their job folder is."""
    return f"reference models: trials {', '.join(result.reference_trials)} of {result.final_job_dir}"
