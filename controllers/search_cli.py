"""``proxy-task search | report | analyze``: the search controller's subcommands (thin layer).

Exit codes (as the other tools): 0 done with a best proxy, 1 ran but no proxy met the target
(or aborted: target out of reach), 2 bad usage/config, 3 another controller holds the folder.
"""

from __future__ import annotations

import argparse
import logging
import sys

from controllers.cli import command

logger = logging.getLogger("controllers.search")


def _config_error_types() -> tuple[type[BaseException], ...]:
    from controllers.config import ConfigError
    from controllers.state import StateError
    from proxy_task_utils.errors import ConfigurationError

    return (ConfigError, ConfigurationError, StateError)


def _run_search(args: argparse.Namespace) -> int:
    from controllers.config import load_config
    from controllers.progress import make_progress
    from controllers.proxy_search import run_search
    from controllers.search.config import SearchConfig
    from controllers.search.controller import SearchAborted
    from controllers.search.report import search_status_text
    from controllers.state import LeaseHeldError

    try:
        config = load_config(args.config, SearchConfig)
        if args.poll_interval is not None:
            config.timeouts.poll_interval_secs = args.poll_interval
        progress = make_progress(interactive=False if args.no_progress else None)
        try:
            state = run_search(config, resume=args.resume, progress=progress)
        finally:
            progress.close()
    except LeaseHeldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except SearchAborted as exc:
        print(f"aborted: {exc}", file=sys.stderr)
        return 1
    except _config_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(search_status_text(config.controller_dir))
    return 0 if state.best_proxy_task_name else 1


@command("search", help="search for the cheapest proxy task that ranks models like full training")
def _add_search(parser: argparse.ArgumentParser):
    parser.add_argument("config", help="YAML config of the search (see controllers.search.config)")
    parser.add_argument("--resume", action="store_true", help="continue from the folder's state file")
    parser.add_argument("--poll-interval", type=float, default=None, help="override timeouts.poll_interval_secs")
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of a live table")
    return _run_search


def _run_report(args: argparse.Namespace) -> int:
    from controllers.search.report import write_report

    try:
        out = write_report(args.dir, train_steps_arg=args.train_steps_arg, decay_steps_arg=args.decay_steps_arg)
    except _config_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out['markdown']}\nwrote {out['html']}")
    if out["best_proxy_task"]:
        print(f"wrote {out['best_proxy_task']}")
        return 0
    print("no proxy task succeeded: no best_proxy_task.yaml")
    return 1


@command("report", help="write report.md/report.html (and best_proxy_task.yaml) for a search folder")
def _add_report(parser: argparse.ArgumentParser):
    parser.add_argument("dir", help="the search controller folder")
    parser.add_argument("--train-steps-arg", default=None, help="trainer arg for the step count (train_steps)")
    parser.add_argument("--decay-steps-arg", default=None, help="trainer arg for the cosine decay steps (decay_steps)")
    return _run_report


def _run_analyze(args: argparse.Namespace) -> int:
    from controllers.search.analyze import ANALYSIS_JSON, analyze_folder, format_table

    try:
        analysis = analyze_folder(args.dir, method=args.correlation, targets=tuple(args.target),
                                  n_bootstrap=args.bootstrap, plot=not args.no_plot)
    except _config_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(analysis))
    print(f"wrote {analysis.folder.rstrip('/')}/{ANALYSIS_JSON}")
    return 0


@command("analyze", help="correlation vs step from curves already recorded in a controller folder (no compute)")
def _add_analyze(parser: argparse.ArgumentParser):
    parser.add_argument("dir", help="a model-selection, search or job folder")
    parser.add_argument("--correlation", choices=("spearman", "kendall"), default="spearman")
    parser.add_argument("--target", type=float, action="append", default=None,
                        help="report the first step reaching this correlation (repeatable; default 0.65 0.8 0.9)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CI")
    parser.add_argument("--no-plot", action="store_true")

    def run(args: argparse.Namespace) -> int:
        if args.target is None:
            args.target = [0.65, 0.8, 0.9]
        return _run_analyze(args)

    return run
