"""``proxy-task report DIR``: a readable summary of a search folder, and the winner as a config.

Writes ``report.md``, ``report.html`` and (when a proxy succeeded) ``best_proxy_task.yaml``:
the winning proxy's arguments with the training steps set to its final training steps and the
cosine-decay steps equal to them, so the learning rate ends near zero at the new length.
Everything is read from ``SEARCH_CONTROLLER_STATE.json``; nothing is recomputed or guessed.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from controllers.search.full_setup import FULL_SETUP_NAME, stopped_at_pct
from controllers.search.plots import plot_file_names
from controllers.search.state import DONE, SEARCH_CONTROLLER_STATE_FILE, ProxyTaskEntry, SearchState, read_folder_json
from controllers.search.uncertainty import ceiling_blocks_target, hold_line, verdict_lines
from controllers.units import human_hours
from proxy_task_utils.storage import Storage, open_storage

__all__ = [
    "REPORT_MD",
    "REPORT_HTML",
    "BEST_PROXY_YAML",
    "Report",
    "load_search_state",
    "build_report",
    "best_proxy_config",
    "write_report",
    "search_status_text",
]

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
BEST_PROXY_YAML = "best_proxy_task.yaml"


def load_search_state(storage: Storage) -> SearchState:
    """Reads the search state of a controller folder (ConfigurationError naming it if absent)."""
    obj, path = read_folder_json(storage, SEARCH_CONTROLLER_STATE_FILE, missing="is this a search controller folder?")
    return SearchState.from_dict(obj, path=path)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 10 ** (-digits) or v == 0 else f"{v:.{digits}g}"
    return str(v)


def _median(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _bold(text: str) -> str:
    """Markdown ``**x**`` -> ``<b>x</b>`` in already-escaped text."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)


@dataclass
class Report:
    """The report as sections of paragraphs and tables, rendered to Markdown or HTML."""

    title: str
    sections: list[tuple[str, list[Any]]] = field(default_factory=list)

    def add(self, heading: str, *blocks: Any) -> None:
        self.sections.append((heading, list(blocks)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for heading, blocks in self.sections:
            out += [f"## {heading}", ""]
            for block in blocks:
                if isinstance(block, tuple):  # (header, rows)
                    header, rows = block
                    out.append("| " + " | ".join(header) + " |")
                    out.append("|" + "---|" * len(header))
                    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
                elif isinstance(block, list):
                    out += [f"- {item}" for item in block]
                else:
                    out.append(str(block))
                out.append("")
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        out = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{e(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}"
            "img{max-width:32em;margin:4px}</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for heading, blocks in self.sections:
            out.append(f"<h2>{e(heading)}</h2>")
            for block in blocks:
                if isinstance(block, tuple):
                    header, rows = block
                    out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
                    out += ["<tr>" + "".join(f"<td>{_bold(e(str(c)))}</td>" for c in row) + "</tr>" for row in rows]
                    out.append("</table>")
                elif isinstance(block, list):
                    out.append("<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in block) + "</ul>")
                elif isinstance(block, str) and block.startswith("!["):
                    alt, _, src = block[2:-1].partition("](")
                    out.append(f"<img alt='{e(alt)}' src='{e(src)}'>")
                else:
                    out.append(f"<p>{_bold(e(str(block)))}</p>")
        out.append("</body></html>")
        return "\n".join(out)


def _train_steps_count(entry: ProxyTaskEntry) -> int | None:
    """Steps to train so the crossing's 0-based step is done: ``ceil(step) + 1``."""
    if entry.crossing and entry.crossing.get("step") is not None:
        return int(math.ceil(float(entry.crossing["step"]))) + 1
    steps = entry.proxy_task_stats.final_training_steps
    return None if steps is None else int(steps) + 1


def _correlation_at_decision(entry: ProxyTaskEntry, method: str) -> dict[str, Any] | None:
    if not entry.crossing or entry.crossing.get("index") is None:
        return None
    rows = entry.correlation_over_step.get(method, [])
    i = int(entry.crossing["index"])
    return rows[i] if i < len(rows) else None


def _rule_words(rule: str, targets: dict[str, Any]) -> str:
    if rule == "lower_bound":
        return " (the CI lower bound must reach the target)"
    if rule == "retrain":
        fpr, k = targets.get("false_pass_rate"), targets.get("confirm_evaluations")
        return (
            f" (the correlation must hold under retraining noise with probability >= {1 - float(fpr or 0.05):.0%}"
            f" on {k} consecutive evaluations)"
        )
    return " (the reference's: the point correlation must reach the target once)"


def _score_words(entries: list[ProxyTaskEntry]) -> str:
    """Which score the correlations ranked (``proxy_score``), from what each decided proxy recorded."""
    used = sorted({e.score for e in entries if e.proxy_task_stats.training_steps}) or ["raw"]
    if used == ["raw"]:
        return "proxy score: raw (the accuracy each trial recorded)"
    words = (
        "proxy score: extrapolated (each trial's accuracy predicted at the end of its schedule from its curve "
        "so far); a NAS search using the winner must rank its models by the same extrapolation"
    )
    return words if used == ["extrapolated"] else f"proxy score: mixed ({', '.join(used)}: the search was resumed)"


def _hold_cell(entry: ProxyTaskEntry) -> str:
    line = hold_line(entry)
    return "–" if line is None else line.split(": ", 1)[1].split(";")[0]


def _cost_cell(entry: ProxyTaskEntry) -> str:
    c = entry.cost_per_step
    if not c:
        return "–"
    return f"{float(c['median']):.4g} [{float(c['low']):.4g}, {float(c['high']):.4g}]"


def best_proxy_config(
    state: SearchState, *, train_steps_arg: str | None = None, decay_steps_arg: str | None = None
) -> dict[str, Any] | None:
    """The winner as a config for the NAS search, or None when no proxy succeeded."""
    name = state.best_proxy_task_name
    if not name or name not in state.proxy_tasks_map:
        return None
    entry = state.proxy_tasks_map[name]
    steps = _train_steps_count(entry)
    if steps is None:
        return None
    if name == FULL_SETUP_NAME:
        return _full_setup_config(state, entry, steps)
    length = _length_settings(state, train_steps_arg, decay_steps_arg)
    args = dict(entry.args)
    notes = []
    for flag, unit in ((length.get("flag"), length.get("unit")), (length.get("decay_flag"), length.get("decay_unit"))):
        if not flag:
            continue
        if unit == "epochs":
            per = int(length.get("steps_per_epoch") or 1)
            args[flag] = int(math.ceil(steps / per))
            notes.append(f"{flag} = {args[flag]} epochs ({steps} steps at {per} steps per epoch)")
        else:
            args[flag] = steps
            notes.append(f"{flag} = {steps} steps")
    if not notes:
        notes.append("the trainer declares no length flag (trainer.length_flag): args are the proxy's own; "
                     f"stop its training after {steps} steps")  # fmt: skip
    s = entry.proxy_task_stats
    return {
        "proxy_task_name": name,
        "args": args,
        "final_training_steps": s.final_training_steps,
        "final_training_time_in_hours": s.final_training_time_in_hours,
        "stopping_state": s.stopping_state,
        "correlation_method": state.correlation_method,
        "correlation_at_decision": _correlation_at_decision(entry, state.correlation_method),
        "note": "; ".join(notes) + " (the proxy's final training step + 1; a decay flag gets the same length so "
        "a cosine learning-rate decay ends near zero at the new length)",
    }


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.3g}"


def _full_setup_config(state: SearchState, entry: ProxyTaskEntry, steps: int) -> dict[str, Any]:
    """The zero-compute winner: the search's own settings (length and decay too), stopped early."""
    s = entry.proxy_task_stats
    pct = stopped_at_pct(steps, state.reference or {})
    return {
        "proxy_task_name": FULL_SETUP_NAME,
        "args": dict(entry.args),
        "stop_at_step": steps,
        "stop_at_pct": pct,
        "final_training_steps": s.final_training_steps,
        "final_training_time_in_hours": s.final_training_time_in_hours,
        "stopping_state": s.stopping_state,
        "correlation_method": state.correlation_method,
        "correlation_at_decision": _correlation_at_decision(entry, state.correlation_method),
        "note": f"the full setup (the search's own settings, its length and decay unchanged), stopped after "
        f"{steps} steps ({_pct(pct)} % of the full training): judged on the reference models' own curves",
    }


def full_setup_lines(state: SearchState) -> list[str]:
    """What the zero-compute candidate said, and whether it won (empty when it was not evaluated)."""
    entry = state.proxy_tasks_map.get(FULL_SETUP_NAME)
    if entry is None:
        return []
    s = entry.proxy_task_stats
    if not entry.succeeded:
        return [f"The full setup stopped early ({FULL_SETUP_NAME}, judged on the reference's own curves at no "
                f"cost) never met the target before its last evaluation: {entry.stop_reason}."]  # fmt: skip
    pct = stopped_at_pct(_train_steps_count(entry), state.reference or {})
    head = (
        f"The full setup stopped at {_pct(pct)} % of its steps ({FULL_SETUP_NAME}, judged on the reference's own "
        f"curves at no cost) meets the target at {human_hours(s.final_training_time_in_hours)} per model"
    )
    if state.best_proxy_task_name == FULL_SETUP_NAME:
        return [head + ": no proxy beat it, so it is the best (train as in the search and stop there)."]
    return [head + f"; the best proxy, {state.best_proxy_task_name}, is cheaper."]


def _length_settings(state: SearchState, train_steps_arg: str | None, decay_steps_arg: str | None) -> dict[str, Any]:
    """The declared length flags; states written before ``trainer.length_flag`` keep their two step flags."""
    if "length" in state.settings:
        length = dict(state.settings["length"] or {})
    else:
        length = {"flag": state.settings.get("train_steps_arg", "train_steps"), "unit": "steps",
                  "decay_flag": state.settings.get("decay_steps_arg", "decay_steps"), "decay_unit": "steps"}  # fmt: skip
    if train_steps_arg:
        length.update(flag=train_steps_arg, unit="steps")
    if decay_steps_arg:
        length.update(decay_flag=decay_steps_arg, decay_unit="steps")
    return length


def build_report(state: SearchState, *, controller_uri: str, existing_files: set[str] | None = None) -> Report:
    """Builds the report from a state (pure: no I/O)."""
    rep = Report(f"Proxy-task search report: {controller_uri}")
    method = state.correlation_method
    targets = state.targets
    ref = state.reference or {}
    accs = ref.get("accuracies", [])
    ref_hours = _median(ref.get("hours", []))
    best = state.best_proxy_task_name
    entries = state.ordered_entries()
    total_cost = sum(e.cost_trial_hours or 0.0 for e in entries)

    summary = []
    blocked = ceiling_blocks_target(state)
    if best:
        e = state.proxy_tasks_map[best]
        s = e.proxy_task_stats
        if blocked is None:
            summary.append(f"Best proxy task: **{best}** ({s.stopping_state}).")
        else:
            summary.append(
                f"Cheapest proxy that passed: **{best}** ({s.stopping_state}); not a good proxy against this "
                "target, which the noise ceiling puts out of reach."
            )
        summary += [f"{line[0].upper()}{line[1:]}." for line in verdict_lines(state, e)]
        summary.append(
            f"Final training steps: {_fmt(s.final_training_steps)}; median training time per model at the "
            f"decision: {human_hours(s.final_training_time_in_hours)}."
        )
        if ref_hours and s.final_training_time_in_hours is not None:
            ratio = s.final_training_time_in_hours / ref_hours
            summary.append(
                f"Savings vs full training: {human_hours(ref_hours)} per model fully trained (median) -> "
                f"{human_hours(s.final_training_time_in_hours)} with the proxy ({ratio:.1%} of the time, "
                f"{1 - ratio:.1%} saved per NAS trial)."
            )
        summary.append(f"Cost of evaluating this proxy: {human_hours(e.cost_trial_hours)} of trial time.")
    else:
        summary.append("No proxy task met the target: see below why each one stopped.")
    summary += full_setup_lines(state)
    probe_hours = state.probe_cost_trial_hours()
    summary.append(
        f"Total cost of the search: {human_hours(total_cost + probe_hours)} of trial time over {len(entries)} "
        "proxy tasks" + (f", of which the cost probe {human_hours(probe_hours)}." if state.cost_probe else ".")
    )
    if not state.finished:
        summary.append("The search has not finished: this report shows the state so far.")
    rep.add("Summary", *summary)

    rep.add(
        "Settings",
        [
            f"correlation used for decisions: {method} (both Spearman and Kendall are recorded)",
            f"stop rule: {state.stop_rule}" + _rule_words(state.stop_rule, targets),
            _score_words(entries),
            *(f"{k}: {_fmt(v)}" for k, v in targets.items() if k not in ("correlation", "stop_rule")),
        ],
    )
    valid = [a for a in accs if a is not None]
    ref_lines = [
        f"source: {ref.get('source', '?')}",
        f"models: {len(accs)} ({len(valid)} with a full-training accuracy)",
    ]
    if valid:
        ref_lines.append(f"accuracy range: {min(valid):.4f} .. {max(valid):.4f}")
    if ref_hours is not None:
        ref_lines.append(f"median full-training time per model: {human_hours(ref_hours)}")
    rep.add("Reference models", ref_lines)

    if state.noise_ceiling:
        nc = state.noise_ceiling
        lines = [nc.get("message", "")]
        rows = [
            (e.proxy_task_name, _fmt(e.best_correlation), _fmt(e.ceiling_fraction))
            for e in entries
            if e.status == "done"
        ]
        rep.add("Noise ceiling", lines, (["proxy", f"best {method}", "fraction of ceiling median"], rows))

    if state.expected_costs or state.cost_probe:
        rep.add("Cost order", cost_order_lines(state))

    header = [
        "#",
        "proxy",
        "state",
        "final steps",
        "time per model",
        f"{method} at decision (n, CI)",
        "holds if retrained",
        f"best {method}",
        "latency corr",
        "cost per step (s, IQR)",
        "cost (trial time)",
        "failed trials",
        "why it stopped",
    ]
    rows = []
    for e in entries:
        s = e.proxy_task_stats
        at = "–"
        c = _correlation_at_decision(e, method)
        if c is not None:
            at = f"{_fmt(c['coefficient'])} (n={c['n']}, [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}])"
        rows.append(
            (
                e.order_index + 1,
                e.proxy_task_name + (" **(best)**" if e.proxy_task_name == best else ""),
                s.stopping_state or e.status,
                _fmt(s.final_training_steps),
                human_hours(s.final_training_time_in_hours),
                at,
                _hold_cell(e),
                _fmt(e.best_correlation),
                _fmt(s.latency_correlation),
                _cost_cell(e),
                human_hours(e.cost_trial_hours),
                e.num_failed_trials,
                e.stop_reason + _race_note(e),
            )
        )
    rep.add("Proxy tasks", (header, rows))

    if state.warnings:
        rep.add("Warnings", list(state.warnings))
    failures = [
        f"{e.proxy_task_name} trial {tid}: {f.get('kind')}: {f.get('message')} ({f.get('advice')})"
        for e in entries
        for tid, f in e.failures.items()
    ]
    if failures:
        rep.add("Failed trials", failures)

    images = []
    for e in entries:
        for key, fname in plot_file_names(e.proxy_task_name).items():
            if existing_files is None or fname in existing_files:
                if key in ("corr_steps", "corr_time", "scatter", "latency"):
                    images.append(f"![{fname}]({fname})")
    if images:
        rep.add("Plots", *images)
    return rep


def _race_note(entry: ProxyTaskEntry) -> str:
    if not entry.raced_with:
        return ""
    return (
        f" (raced with {', '.join(entry.raced_with)}: its rules that need the best proxy's time waited "
        "until they were decided)"
    )


def write_report(
    controller_dir: str, *, train_steps_arg: str | None = None, decay_steps_arg: str | None = None
) -> dict[str, str]:
    """Writes ``report.md``, ``report.html`` and ``best_proxy_task.yaml`` into the folder.

    Returns:
        ``{"markdown": uri, "html": uri, "best_proxy_task": uri or ""}``.
    """
    import yaml

    storage = open_storage(controller_dir)
    state = load_search_state(storage)
    existing = {o.name for o in storage.list("") if "/" not in o.name}
    rep = build_report(state, controller_uri=storage.uri, existing_files=existing)
    storage.write(REPORT_MD, rep.markdown().encode("utf-8"))
    storage.write(REPORT_HTML, rep.html().encode("utf-8"))
    out = {"markdown": storage.child_uri(REPORT_MD), "html": storage.child_uri(REPORT_HTML), "best_proxy_task": ""}
    best = best_proxy_config(state, train_steps_arg=train_steps_arg, decay_steps_arg=decay_steps_arg)
    if best is not None:
        text = "# Proxy task chosen by `proxy-task search`; use `args` as the NAS search's trainer args.\n"
        text += yaml.safe_dump(best, sort_keys=False)
        storage.write(BEST_PROXY_YAML, text.encode("utf-8"))
        out["best_proxy_task"] = storage.child_uri(BEST_PROXY_YAML)
    return out


def cost_order_lines(state: SearchState) -> list[str]:
    """Each proxy's expected seconds per step and where it came from (declared or probed), cheapest first."""
    costs = state.expected_costs
    known = sorted(costs, key=lambda n: (float(costs[n]["secs_per_step"]), n))
    lines = [
        f"{n}: {costs[n]['text']}" if costs[n]["source"] == "probed"  # the text holds the rate
        else f"{n}: {float(costs[n]['secs_per_step']):.3g} s/step ({costs[n]['text']})"
        for n in known
    ]  # fmt: skip
    unknown = [e.proxy_task_name for e in state.ordered_entries() if e.proxy_task_name not in costs
               and e.proxy_task_name != FULL_SETUP_NAME]  # fmt: skip
    if unknown:
        lines.append(f"no cost declared or probed (run after the others, in their listed order): {', '.join(unknown)}")
    probes = (state.cost_probe or {}).get("proxies", {})
    if probes:
        lines.append(
            f"cost probe: {len(probes)} job(s), {human_hours(state.probe_cost_trial_hours())} of trial time"
            + "".join(f"; {n}: {pr['problem']}" for n, pr in probes.items() if pr.get("problem"))
        )
    return lines


def search_status_text(controller_dir: str) -> str:
    """A few lines for ``proxy-task status``: each proxy's state and the best so far."""
    storage = open_storage(controller_dir)
    state = load_search_state(storage)
    method = state.correlation_method
    lines = [f"search {storage.uri} ({'finished' if state.finished else 'in progress'}; {method})"]
    for e in state.ordered_entries():
        s = e.proxy_task_stats
        last = next((c for c in reversed(s.accuracy_correlation_over_step) if c is not None), None)
        lines.append(
            f"  {e.proxy_task_name:<28} {e.status:<8} {s.stopping_state or '-':<30} steps {len(s.training_steps):>4} "
            f"last {method} {_fmt(last)}  time per model {human_hours(s.final_training_time_in_hours)}  "
            f"cost {human_hours(e.cost_trial_hours)} of trials"
        )
        waiting = [n for n in e.raced_with if n in state.proxy_tasks_map and state.proxy_tasks_map[n].status != DONE]
        if e.status != DONE and waiting:
            lines.append(f"    racing: its rules that need the best time wait for {', '.join(waiting)}")
        if e.failures and e.stop_reason:  # the recorded cause: reason, last log lines, log path
            lines += [f"    {line}" for line in e.stop_reason.splitlines()]
    if state.expected_costs or state.cost_probe:
        lines += [f"  {line}" for line in cost_order_lines(state)]
    best = state.best_proxy_task_name
    lines.append(f"best proxy task: {best or '(none yet)'}")
    if best and best in state.proxy_tasks_map:
        lines += [f"  {line}" for line in verdict_lines(state, state.proxy_tasks_map[best])]
    lines.append(f"status: {state.status}")
    if state.abort_reason:
        lines += state.abort_reason.splitlines()
    lines += [f"warning: {w}" for w in state.warnings]
    return "\n".join(lines)
