"""The ``proxy-task`` command line: every verb, one parser, one exit-code map.

A verb is a function ``(args) -> int`` that imports what it needs when it runs, so
``proxy-task --help`` and ``import controllers.cli`` stay light. The parser is built in
:func:`build_parser`; :func:`main` runs a verb and turns the errors of
:mod:`controllers.errors` into one line on stderr and an exit code (0 done, 1 negative verdict or
diagnosed abort, 2 bad usage or config, 3 folder held by another controller, 130 interrupted).

Every controller verb (``measure-variance``, ``select-models``, ``search``, ``run``, ``demo``)
takes the same common flags: ``--resume``, ``--no-progress`` and ``-v``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from controllers import errors

__all__ = ["main", "build_parser"]

Verb = Callable[[argparse.Namespace], int]


def _version() -> str:
    try:
        return metadata.version("proxy-task-utils")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _progress(args: argparse.Namespace) -> Any:
    from controllers.engine.progress import make_progress

    return make_progress(interactive=False if args.no_progress else None)


# -- the three tools -----------------------------------------------------------------------------


def _measure_variance(args: argparse.Namespace) -> int:
    from controllers.config import load_config
    from controllers.variance.config import VarianceConfig
    from controllers.variance.controller import run_variance_measurement
    from controllers.variance.report import summary_lines

    config = load_config(args.config, VarianceConfig)
    progress = _progress(args)
    try:
        report = run_variance_measurement(config, resume=args.resume, retry_failed=args.retry_failed,
                                          progress=progress)  # fmt: skip
    finally:
        progress.close()
    print("\n".join(summary_lines(report.result)))
    return errors.EXIT_OK


def _select_models(args: argparse.Namespace) -> int:
    from controllers.config import load_config
    from controllers.selection.config import ModelSelectionConfig
    from controllers.selection.controller import run_model_selection
    from controllers.selection.report import summary_line

    config = load_config(args.config, ModelSelectionConfig)
    progress = _progress(args)
    try:
        result = run_model_selection(config, resume=args.resume, retry_failed=args.retry_failed, progress=progress)
    finally:
        progress.close()
    print(summary_line(result))
    return errors.EXIT_OK


def _search(args: argparse.Namespace) -> int:
    from controllers.config import load_config
    from controllers.search.config import SearchConfig
    from controllers.search.controller import run_search
    from controllers.search.report import search_status_text

    config = load_config(args.config, SearchConfig)
    if args.poll_interval is not None:
        config.timeouts.poll_interval_secs = args.poll_interval
    stop_dashboard = _with_dashboard(args, config.controller_dir)
    progress = _progress(args)
    try:
        state = run_search(config, resume=args.resume, retry_failed=args.retry_failed, progress=progress)
    finally:
        progress.close()
        stop_dashboard()
    print(search_status_text(config.controller_dir))
    return errors.EXIT_OK if state.best_proxy_task_name else errors.EXIT_NEGATIVE


# -- the pipeline ----------------------------------------------------------------------------------


def _run_pipeline(args: argparse.Namespace, config_path: str, output_dir: str | None) -> int:
    from controllers.config import load_config
    from controllers.pipeline import PipelineConfig, run_pipeline, summary_text

    config = load_config(config_path, PipelineConfig)
    if output_dir is not None:
        config = PipelineConfig.model_validate({**config.model_dump(), "output_dir": output_dir})
    if args.max_parallel_trials is not None:
        config.runner.max_parallel_trials = args.max_parallel_trials
    stop_dashboard = _with_dashboard(args, config.output_dir)
    progress = _progress(args)
    try:
        result = run_pipeline(config, resume=args.resume, retry_failed=args.retry_failed, progress=progress)
    except errors.StateError as exc:
        raise errors.StateError(f"{exc} (add --resume to continue a previous run in that folder)") from None
    finally:
        progress.close()
        stop_dashboard()
    print(summary_text(result))
    return errors.EXIT_OK if result.search is None or result.search.best_proxy_task_name else errors.EXIT_NEGATIVE


def _run(args: argparse.Namespace) -> int:
    return _run_pipeline(args, args.config, args.output_dir)


def _demo(args: argparse.Namespace) -> int:
    from controllers.pipeline import DEMO_IMPORT_ROOT, demo_config_path

    # The example's modules (search space, proxy generator) import from here and in every trial.
    sys.path.insert(0, DEMO_IMPORT_ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (DEMO_IMPORT_ROOT, os.environ.get("PYTHONPATH")) if p)
    output_dir = args.output_dir or ("proxy_task_demo_small" if args.small else "proxy_task_demo")
    return _run_pipeline(args, demo_config_path(small=args.small), os.path.abspath(output_dir))


# -- reading a folder ----------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from controllers.status import print_status

    return print_status(args.dir)


def _report(args: argparse.Namespace) -> int:
    from controllers.report import is_design_folder, write_design_report
    from controllers.search.report import write_report
    from controllers.search.state import SEARCH_CONTROLLER_STATE_FILE
    from proxy_task_utils.storage import open_storage

    folder = open_storage(args.dir)
    if not folder.exists(SEARCH_CONTROLLER_STATE_FILE) and is_design_folder(folder):
        files = write_design_report(args.dir)
        print(f"wrote {files['design_markdown']}\nwrote {files['design_html']}")
        return errors.EXIT_OK
    out = write_report(args.dir, train_steps_arg=args.train_steps_arg, decay_steps_arg=args.decay_steps_arg)
    print(f"wrote {out['markdown']}\nwrote {out['html']}")
    if out["best_proxy_task"]:
        print(f"wrote {out['best_proxy_task']}")
        return errors.EXIT_OK
    print("no proxy task succeeded: no best_proxy_task.yaml")
    return errors.EXIT_NEGATIVE


def _analyze(args: argparse.Namespace) -> int:
    from controllers.search.analyze import ANALYSIS_JSON, analyze_folder, format_table

    targets = tuple(args.target) if args.target else (0.65, 0.8, 0.9)
    analysis = analyze_folder(
        args.dir,
        method=args.correlation,
        targets=targets,
        n_bootstrap=args.bootstrap,
        plot=not args.no_plot,
        score=args.score,
    )
    print(format_table(analysis))
    print(f"wrote {analysis.folder.rstrip('/')}/{ANALYSIS_JSON}")
    return errors.EXIT_OK


def _dashboard(args: argparse.Namespace) -> int:
    from controllers.dashboard.app import serve

    serve(args.dir, host=args.host, port=args.port, refresh_secs=args.refresh_secs)
    return errors.EXIT_OK


def _with_dashboard(args: argparse.Namespace, folder: str) -> Callable[[], None]:
    """``--dashboard``: serve ``folder`` from a thread while the verb runs; returns the stop function."""
    if not getattr(args, "dashboard", False):
        return lambda: None
    from controllers.dashboard.app import start_dashboard

    server = start_dashboard(folder, port=args.dashboard_port)
    print(f"dashboard of {folder}: {server.url}", flush=True)
    return server.stop


def _init(args: argparse.Namespace) -> int:
    from controllers.init_config import write_template

    path = write_template(args.output, args.trainer, force=args.force)
    print(f"wrote {path}: edit it, then proxy-task run {path}")
    return errors.EXIT_OK


def _latency_worker(args: argparse.Namespace) -> int:
    import json
    import signal
    from dataclasses import asdict

    from controllers.latency.worker import LatencyWorker, WorkerConfig
    from proxy_task_utils.storage import open_storage

    config = WorkerConfig(
        worker_id=args.worker_id, num_workers=args.workers, device=args.device, repeats=args.repeats,
        warmup=args.warmup, poll_secs=args.poll_secs, steal_after_secs=args.steal_after_secs,
        exit_when_idle_secs=args.exit_when_idle_secs, threads=args.threads,
        claim_timeout_secs=args.claim_timeout_secs,
        controller_timeout_secs=args.controller_timeout_secs if args.controller_timeout_secs > 0 else None,
    )  # fmt: skip
    controller = open_storage(args.controller_dir) if args.controller_dir else None
    worker = LatencyWorker(open_storage(args.watch), config, controller=controller)

    def request_stop(signum: int, frame: object) -> None:
        worker.stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    log = logging.getLogger("controllers.latency.worker")
    log.info("latency worker %d/%d (%s) watching %s on %s", config.worker_id, config.num_workers,
             worker.instance, args.watch, config.device)  # fmt: skip
    summary = worker.run()
    log.info("latency worker %d exits: %s", config.worker_id, summary.exit_reason)
    print(json.dumps(asdict(summary)), flush=True)
    return errors.EXIT_OK


# -- the parser ----------------------------------------------------------------------------------


def _common_flags() -> argparse.ArgumentParser:
    """The flags every controller verb takes, the same way."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--resume", action="store_true", help="continue the run recorded in the folder's state")
    common.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live table")
    common.add_argument("--detach", action="store_true",
                        help="on Ctrl-C leave the running trials running (recorded; --resume re-attaches)")  # fmt: skip
    common.add_argument("--retry-failed", action="store_true",
                        help="with --resume: relaunch the failed trials as new attempts (their files are kept)")  # fmt: skip
    return common


def _verbose_flag() -> argparse.ArgumentParser:
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return verbose


def _dashboard_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dashboard", action="store_true", help="serve the live dashboard of the run on 127.0.0.1")
    p.add_argument("--dashboard-port", type=int, default=0, help="its port (default: a free one, printed)")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``proxy-task`` parser; each sub-parser's default ``_verb`` is the function it runs."""
    verbose = _verbose_flag()
    common = _common_flags()
    parser = argparse.ArgumentParser(
        prog="proxy-task", description="Proxy-task design for neural architecture search.", parents=[verbose]
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def verb(name: str, fn: Verb, help: str, *, controller: bool = False) -> argparse.ArgumentParser:
        parents = [verbose, common] if controller else [verbose]
        p = sub.add_parser(name, help=help, description=help, parents=parents)
        p.set_defaults(_verb=fn)
        return p

    p = verb("measure-variance", _measure_variance, "measure run-to-run variance and curve smoothness of one model",
             controller=True)  # fmt: skip
    p.add_argument("config", help="YAML config (controllers.variance.config.VarianceConfig)")

    p = verb("select-models", _select_models, "select the reference models for the proxy-task search", controller=True)
    p.add_argument("config", help="YAML config (controllers.selection.config.ModelSelectionConfig)")

    p = verb("search", _search, "search for the cheapest proxy task that ranks models like full training",
             controller=True)  # fmt: skip
    p.add_argument("config", help="YAML config (controllers.search.config.SearchConfig)")
    p.add_argument("--poll-interval", type=float, default=None, help="override timeouts.poll_interval_secs")
    _dashboard_flags(p)

    for name, fn, help in (
        ("run", _run, "run variance measurement, model selection and proxy-task search from one pipeline YAML"),
        ("demo", _demo, "the whole pipeline on the bundled PyTorch example (digits, MnasNet-like space)"),
    ):
        p = verb(name, fn, help, controller=True)
        if name == "run":
            p.add_argument("config", help="pipeline YAML (controllers.pipeline.PipelineConfig)")
        else:
            p.add_argument("--small", action="store_true", help="a tiny setting (a minute): 8 -> 4 models, few steps")
        p.add_argument("--output-dir", default=None,
                       help="where the three controller folders go (default: the config's output_dir; "
                            "for demo proxy_task_demo or proxy_task_demo_small)")  # fmt: skip
        p.add_argument("--max-parallel-trials", type=int, default=None, help="trials at once (default: cores)")
        _dashboard_flags(p)

    p = verb("status", _status, "print the state of a controller folder")
    p.add_argument("dir", help="controller folder (path or gs://)")

    p = verb("report", _report, "write the report of a pipeline's output folder or of a search folder")
    p.add_argument("dir", help="a pipeline output folder (design_report.md/.html) or a search folder "
                               "(report.md/.html and best_proxy_task.yaml)")  # fmt: skip
    p.add_argument("--train-steps-arg", default=None, help="trainer arg for the step count (train_steps)")
    p.add_argument("--decay-steps-arg", default=None, help="trainer arg for the cosine decay steps (decay_steps)")

    p = verb(
        "analyze", _analyze, "correlation vs step from curves already recorded in a controller folder (no compute)"
    )
    p.add_argument("dir", help="a model-selection, search or job folder")
    p.add_argument("--correlation", choices=("spearman", "kendall"), default="spearman")
    p.add_argument("--target", type=float, action="append", default=None,
                   help="report the first step reaching this correlation (repeatable; default 0.65 0.8 0.9)")  # fmt: skip
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CI")
    p.add_argument("--score", choices=("raw", "extrapolated"), default=None,
                   help="correlate the accuracy seen or each trial's extrapolated final accuracy "
                        "(default: a search's recorded proxy_score, else raw)")  # fmt: skip
    p.add_argument("--no-plot", action="store_true")

    p = verb(
        "dashboard", _dashboard, "a live web page of a controller folder: progress, correlations, trials, decisions"
    )
    p.add_argument("dir", help="a pipeline output_dir or a controller folder (path or gs://)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050; 0: a free one)")
    p.add_argument("--refresh-secs", type=float, default=5.0, help="how often the page reloads the folder (default 5)")

    p = verb("init", _init, "write a commented pipeline config to start from")
    p.add_argument("--trainer", choices=("pytorch", "keras", "custom"), default="pytorch",
                   help="the kind of trainer the config starts (default pytorch)")  # fmt: skip
    p.add_argument("--output", default="pipeline.yaml", help="where to write it (default pipeline.yaml)")
    p.add_argument("--force", action="store_true", help="replace an existing file")

    p = verb("latency-worker", _latency_worker,
             "measure exported models' latency on this machine for the trainers of a folder")  # fmt: skip
    p.add_argument("--watch", required=True, help="controller, job or trial folder (path or gs://) to serve")
    p.add_argument("--controller-dir", default=None, help="where controller_finished.json appears (default: --watch)")
    p.add_argument("--workers", type=int, default=1, help="number of workers sharing the folder (default 1)")
    p.add_argument("--worker-id", type=int, default=0, help="this worker's index in [0, --workers) (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or gpu (default cpu)")
    p.add_argument("--repeats", type=int, default=100, help="timed batch-1 runs per model (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--poll-secs", type=float, default=10.0, help="seconds between listings (default 10)")
    p.add_argument("--steal-after-secs", type=float, default=None,
                   help="take another shard's model left unclaimed this long (default 2 polls)")  # fmt: skip
    p.add_argument("--exit-when-idle-secs", type=float, default=None,
                   help="exit after this long with nothing to do (default: wait for the controller's marker)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--claim-timeout-secs", type=float, default=120.0,
                   help="take over a claim that stood still this long: its worker died (default 120)")  # fmt: skip
    p.add_argument("--controller-timeout-secs", type=float, default=900.0,
                   help="exit when the controller's lease stood still this long; 0: never (default 900)")  # fmt: skip
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; errors of :mod:`controllers.errors` become a message and an exit code."""
    # Like ``python -m``: user modules named in configs ("my.trainer.space:sample") import from here.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "retry_failed", False) and not args.resume:
        print("error: --retry-failed continues a recorded run: add --resume", file=sys.stderr)
        return errors.EXIT_USAGE
    resume_hint = ""
    restore: Callable[[], None] = lambda: None  # noqa: E731
    if hasattr(args, "resume"):  # a controller verb: Ctrl-C stops it cleanly (controllers.engine.interrupt)
        from controllers.engine import interrupt

        again = [a for a in argv if a not in ("--resume", "--retry-failed")] + ["--resume"]
        resume_hint = "proxy-task " + " ".join(again)
        if threading.current_thread() is threading.main_thread():
            restore = interrupt.install(detach_trials=bool(args.detach), hint=resume_hint)
    try:
        return int(args._verb(args))
    except BaseException as exc:
        code = errors.exit_code(exc)
        if code is None:
            raise
        if code == errors.EXIT_INTERRUPTED:
            what = f"{_one_line(exc)}; " if str(exc) else ""
            hint = f"; resume with: {resume_hint}" if resume_hint else ""
            print(f"interrupted: {what}the state is saved{hint}", file=sys.stderr)
        elif code == errors.EXIT_NEGATIVE:
            print(f"aborted: {_one_line(exc)}", file=sys.stderr)
        else:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
        return code
    finally:
        restore()


if __name__ == "__main__":  # python -m controllers.cli
    sys.exit(main())
