"""What model selection tells a person: its summary line (CLI and pipeline summary)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controllers.selection.controller import ModelSelectionResult

__all__ = ["summary_line", "report_blocks"]


def summary_line(result: ModelSelectionResult) -> str:
    """The reference models the search will use, and where their job folder is."""
    return f"reference models: trials {', '.join(result.reference_trials)} of {result.final_job_dir}"


def _trained_to(pct: Any) -> str:
    from controllers.stats import FINAL_ROUND_PCT

    if pct is None:
        return "–"
    return "100 % (to completion)" if pct >= FINAL_ROUND_PCT else f"{pct:.3g} %"


def _score(scores: Mapping[str, Any], tid: str, key: str, fmt: str) -> str:
    value = (scores.get(tid) or {}).get(key)
    return "–" if value is None else format(value, fmt)


def report_blocks(state: Mapping[str, Any] | None, *, image_for: Callable[[str], str | None]) -> list[Any]:
    """The model-selection section of the whole-design report.

    Args:
        state: ``MODEL_SELECTION_STATE.json`` (None: model selection has not started).
        image_for: A round's job folder -> the path of its ``filtered_trial_scores.png`` relative to
            the report (None when it has none).
    """
    if state is None:
        return ["Model selection has not started."]
    rounds = state.get("iterations") or []
    rows = []
    for it in rounds:
        chosen = it.get("filter") or {}
        rows.append(
            (
                it.get("iteration", ""),
                it.get("num_trials", ""),
                _trained_to(it.get("desired_training_step_pct")),
                ", ".join(chosen.get("kept") or []) or ("(final round)" if it.get("done") else "–"),
                ", ".join(chosen.get("removed") or []) or "–",
                ", ".join(chosen.get("invalid") or []) or "–",
            )
        )
    blocks: list[Any] = [
        f"{len(rounds)} rounds; status: {state.get('status', '?')}."
        + (f" {state['abort_reason']}" if state.get("abort_reason") else ""),
        (("round", "trials", "trained to", "kept", "removed", "invalid"), rows),
    ]
    reference = state.get("reference_trials") or []
    if reference and rounds:
        final = rounds[-1]
        scores = final.get("scores") or {}
        blocks.append(f"Reference models: trials {', '.join(reference)} of {state.get('final_job_dir')}.")
        if scores:
            blocks.append(
                (
                    ("trial", "accuracy", "latency (ms)"),
                    [(t, _score(scores, t, "accuracy", ".4f"), _score(scores, t, "latency", ".3g")) for t in reference],
                )
            )
    for it in rounds:
        image = image_for(str(it.get("job_dir", "")))
        if image:
            blocks.append(
                f"![Round {it.get('iteration')}: accuracy vs latency (ms), kept (blue) and removed (red)]({image})"
            )
    return blocks
