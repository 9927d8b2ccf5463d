"""One report for the whole design: ``proxy-task report OUTPUT_DIR`` (and the end of ``run``/``demo``).

Reads the three stage folders of a pipeline run (``variance/``, ``model_selection/``,
``search/``) and writes ``design_report.md`` and ``design_report.html`` into the output folder:

* a summary: the verdict, and the cost of each stage (trials and recorded training time);
* variance: seed noise, smoothness and the copies' curves;
* model selection: every round's kept and removed models and its (accuracy, latency) scatter;
* search: one chart that compares every proxy (correlation against cost, the target, the winner
  marked), then the search report's own sections (the decision with its uncertainties, why
  each proxy stopped, the plots).

Everything comes from the files the tools wrote; a stage that did not run says so. Images are
linked by paths relative to the output folder.
"""

from __future__ import annotations

import re
from typing import Any

from controllers.engine.state import StateFile
from controllers.search.plots import proxy_comparison_png
from controllers.search.report import Report, _correlation_at_decision, build_report, load_search_state
from controllers.search.state import SEARCH_CONTROLLER_STATE_FILE, SearchState
from controllers.search.uncertainty import best_label, verdict_lines
from controllers.selection import report as selection_report
from controllers.selection.controller import MODEL_SELECTION_STATE_FILE
from controllers.selection.plots import FILTERED_TRIAL_SCORES_FILE
from controllers.stats import MET_DESIRED_ACCURACY_CORRELATION
from controllers.units import human_duration, human_hours
from controllers.variance import report as variance_report
from controllers.variance.controller import VARIANCE_RESULT_FILE
from controllers.variance.plots import VARIANCE_CURVES_FILE
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import CorruptFileError, NotFoundError
from proxy_task_utils.storage import Storage, open_storage

__all__ = [
    "DESIGN_REPORT_MD",
    "DESIGN_REPORT_HTML",
    "COMPARISON_PNG",
    "STAGE_FOLDERS",
    "is_design_folder",
    "build_design_report",
    "write_design_report",
]

DESIGN_REPORT_MD = "design_report.md"
DESIGN_REPORT_HTML = "design_report.html"
COMPARISON_PNG = "proxy_task_comparison.png"
#: The stage folders of a pipeline run, as ``controllers.pipeline`` names them.
STAGE_FOLDERS = {"variance": "variance", "model_selection": "model_selection", "search": "search"}


def is_design_folder(storage: Storage) -> bool:
    """Whether ``storage`` is a pipeline's output folder (it holds at least one stage's state)."""
    return any(
        storage.exists(f"{STAGE_FOLDERS[stage]}/{name}")
        for stage, name in (
            ("variance", VARIANCE_RESULT_FILE),
            ("variance", "measurement_state.json"),
            ("model_selection", MODEL_SELECTION_STATE_FILE),
            ("search", SEARCH_CONTROLLER_STATE_FILE),
        )
    )


def _read_json(storage: Storage, name: str) -> dict[str, Any] | None:
    try:
        data, _ = storage.read(name)
    except NotFoundError:
        return None
    try:
        return p.load_json_object(data, path=storage.child_uri(name))
    except CorruptFileError:
        return None


def _recorded_training(storage: Storage) -> tuple[int, float]:
    """(trials, seconds of training they recorded) below a stage folder."""
    n, secs = 0, 0.0
    for info in storage.list():
        if not info.name.endswith("/" + p.TRIAL_TRAINING_METRICS_FILE):
            continue
        record = _read_json(storage, info.name)
        if record is None:
            continue
        n += 1
        value = (record.get("training_time") or {}).get("total_training_time_in_secs")
        if isinstance(value, int | float):
            secs += float(value)
    return n, secs


def _relative(root: Storage, uri: str) -> str | None:
    prefix = root.uri.rstrip("/") + "/"
    return uri[len(prefix) :] if uri.startswith(prefix) else None


def _comparison(state: SearchState) -> list[tuple[str, float | None, float | None, bool]]:
    points = []
    for entry in state.ordered_entries():
        stats = entry.proxy_task_stats
        corr = _correlation_at_decision(entry, state.correlation_method)
        if corr is None:  # no decision point: the last settled correlation, if any
            rows = entry.correlation_over_step.get(state.correlation_method, [])
            corr = rows[-1] if rows else None
        hours = stats.final_training_time_in_hours
        points.append(
            (
                entry.proxy_task_name,
                None if hours is None else hours * 3600.0,
                None if corr is None else corr.get("coefficient"),
                stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION,
            )
        )
    return points


_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")


def _under(folder: str, block: Any) -> Any:
    """A search-report block with its image paths made relative to the output folder."""
    if isinstance(block, str) and (m := _IMAGE.match(block)):
        return f"![{m['alt']}]({folder}/{m['src']})"
    return block


def build_design_report(root: Storage, *, write_images: bool = True) -> Report:
    """The whole-design report of a pipeline output folder (``write_images``: draw the comparison chart)."""
    rep = Report(f"Proxy-task design report: {root.uri}")
    stages = {stage: root.child(folder) for stage, folder in STAGE_FOLDERS.items()}

    variance = _read_json(stages["variance"], VARIANCE_RESULT_FILE)
    selection = StateFile(stages["model_selection"], MODEL_SELECTION_STATE_FILE).load()
    search_storage = stages["search"]
    search = load_search_state(search_storage) if search_storage.exists(SEARCH_CONTROLLER_STATE_FILE) else None

    summary: list[Any] = []
    if search is None:
        summary.append("The proxy-task search has not run: no verdict yet.")
    elif search.best_proxy_task_name:
        entry = search.proxy_tasks_map[search.best_proxy_task_name]
        label = best_label(search)
        summary.append(
            f"{label}: **{search.best_proxy_task_name}** ({entry.proxy_task_stats.stopping_state}), "
            f"{human_hours(entry.proxy_task_stats.final_training_time_in_hours)} of training per model."
        )
        summary += [f"{line[0].upper()}{line[1:]}." for line in verdict_lines(search, entry)]
    else:
        summary.append("No proxy task met the target: see the search section for why each one stopped.")
    cost_rows = []
    for stage, storage in stages.items():
        n, secs = _recorded_training(storage)
        cost_rows.append((stage.replace("_", " "), n, human_duration(secs) if n else "–"))
    summary.append((("stage", "trials", "recorded training time"), cost_rows))
    rep.add("Summary", *summary)

    image = f"{STAGE_FOLDERS['variance']}/{VARIANCE_CURVES_FILE}"
    has_curves = stages["variance"].exists(VARIANCE_CURVES_FILE)
    rep.add(
        "Variance measurement", *variance_report.report_blocks(variance, curves_image=image if has_curves else None)
    )

    def round_image(job_dir: str) -> str | None:
        rel = _relative(root, job_dir.rstrip("/") + "/" + FILTERED_TRIAL_SCORES_FILE)
        return rel if rel is not None and root.exists(rel) else None

    rep.add("Model selection", *selection_report.report_blocks(selection, image_for=round_image))

    if search is None:
        rep.add("Proxy-task search", "The search has not run.")
        return rep
    blocks: list[Any] = []
    if write_images:
        png = proxy_comparison_png(
            _comparison(search),
            target=search.targets.get("desired_accuracy_correlation"),
            winner=search.best_proxy_task_name,
            method=search.correlation_method,
        )
        search_storage.write(COMPARISON_PNG, png)
        blocks.append(
            f"![Every proxy: rank correlation vs training time per model (s)]({STAGE_FOLDERS['search']}/{COMPARISON_PNG})"
        )
    rep.add("Proxy-task search: all proxies compared", *blocks)
    existing = {info.name for info in search_storage.list()}
    inner = build_report(search, controller_uri=search_storage.uri, existing_files=existing)
    for heading, section in inner.sections:
        rep.add(f"Search: {heading}", *(_under(STAGE_FOLDERS["search"], b) for b in section))
    return rep


def write_design_report(output_dir: str) -> dict[str, str]:
    """Writes ``design_report.md`` and ``design_report.html`` into a pipeline's output folder.

    Returns:
        ``{"design_markdown": uri, "design_html": uri}``.

    Raises:
        controllers.errors.StateError: a stage's state file is corrupt.
    """
    root = open_storage(output_dir)
    rep = build_design_report(root)
    root.write(DESIGN_REPORT_MD, rep.markdown().encode("utf-8"))
    root.write(DESIGN_REPORT_HTML, rep.html().encode("utf-8"))
    return {"design_markdown": root.child_uri(DESIGN_REPORT_MD), "design_html": root.child_uri(DESIGN_REPORT_HTML)}
