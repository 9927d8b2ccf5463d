"""The ``proxy-task`` command line: a thin layer over the tools.

Subcommands are registered in a tiny registry, so each tool module owns its
own command. To add one (e.g. ``search``, ``report``, ``analyze``)::

    # controllers/search_cli.py  (any module listed in COMMAND_MODULES)
    from controllers.cli import command

    @command("search", help="search for the cheapest proxy task")
    def _add_search(parser):                      # gets an argparse sub-parser
        parser.add_argument("config")
        parser.add_argument("--resume", action="store_true")
        return run_search_command                 # called as run(args) -> exit code

The CLI imports every module of :data:`COMMAND_MODULES` at start-up (a module
that does not exist yet is skipped, any other import error is raised), so
registering is one line in that tuple, or nothing at all for the module names
already listed there. ``measure-variance``, ``select-models`` and ``status``
are registered at the bottom of this module. Modules are imported only when the CLI runs, so
``import controllers.cli`` stays light.

Exit codes: 0 done, 1 the tool ran but its verdict is negative or aborted
(diagnosis printed), 2 bad usage or config, 3 another controller holds the folder.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["command", "main", "build_parser", "COMMAND_MODULES", "Command"]

#: Modules that register subcommands; missing ones are skipped.
COMMAND_MODULES: tuple[str, ...] = (
    "controllers.search_cli",  # search, report, analyze (the search controller)
    "controllers.search.cli",
    "controllers.latency_worker",  # latency-worker
    "controllers.pipeline_cli",  # run, demo
)

RunFn = Callable[[argparse.Namespace], int]
AddFn = Callable[[argparse.ArgumentParser], RunFn]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add: AddFn


_REGISTRY: dict[str, Command] = {}


def command(name: str, *, help: str) -> Callable[[AddFn], AddFn]:
    """Decorator: register a subcommand whose function adds arguments and returns the runner."""

    def register(add: AddFn) -> AddFn:
        if name in _REGISTRY and _REGISTRY[name].add is not add:
            raise ValueError(f"subcommand {name!r} is registered twice")
        _REGISTRY[name] = Command(name, help, add)
        return add

    return register


def _load_command_modules() -> None:
    for module in COMMAND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but one of its imports is missing
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_command_modules()
    parser = argparse.ArgumentParser(
        prog="proxy-task", description="Proxy-task design for neural architecture search."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in sorted(_REGISTRY):
        cmd = _REGISTRY[name]
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        p.set_defaults(_run=cmd.add(p))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Like ``python -m``: user modules named in configs ("my.trainer.space:sample") import from here.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args._run(args))


# -- the commands of this module's tools ---------------------------------------------------


def _run_tool(args: argparse.Namespace, which: str) -> int:
    from controllers.config import ConfigError, ModelSelectionConfig, VarianceConfig, load_config
    from controllers.progress import make_progress
    from controllers.state import LeaseHeldError, StateError

    progress = None
    try:
        if which == "variance":
            from controllers.variance import VarianceError, run_variance_measurement

            config = load_config(args.config, VarianceConfig)
            progress = make_progress()
            try:
                report = run_variance_measurement(config, resume=args.resume, progress=progress)
            except VarianceError as exc:
                print(f"variance measurement failed:\n{exc}", file=sys.stderr)
                return 1
            r = report.result
            print(f"{r['variance_info']} (variance {r['variance_value']}, seed std {r['seed_std']:.4g}, "
                  f"{r['n_succeeded']}/{r['n_copies']} copies)")  # fmt: skip
            print(r["smoothness_info"] + f" (smoothness {r['smoothness_value']:.4g})")
            return 0
        from controllers.model_selection import ModelSelectionAborted, run_model_selection

        config = load_config(args.config, ModelSelectionConfig)
        progress = make_progress()
        try:
            result = run_model_selection(config, resume=args.resume, progress=progress)
        except ModelSelectionAborted as exc:
            print(f"model selection aborted:\n{exc}", file=sys.stderr)
            return 1
        print(f"reference models: trials {', '.join(result.reference_trials)} of {result.final_job_dir}")
        return 0
    except (ConfigError, StateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LeaseHeldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        if progress is not None:
            progress.close()


@command("measure-variance", help="measure run-to-run variance and curve smoothness of one model")
def _add_variance(parser: argparse.ArgumentParser) -> RunFn:
    parser.add_argument("config", help="YAML config (VarianceConfig)")
    parser.add_argument("--resume", action="store_true", help="continue the run recorded in controller_dir")
    return lambda args: _run_tool(args, "variance")


@command("select-models", help="select the reference models for the proxy-task search")
def _add_select(parser: argparse.ArgumentParser) -> RunFn:
    parser.add_argument("config", help="YAML config (ModelSelectionConfig)")
    parser.add_argument("--resume", action="store_true", help="continue the run recorded in controller_dir")
    return lambda args: _run_tool(args, "selection")


@command("status", help="print the state of a controller folder")
def _add_status(parser: argparse.ArgumentParser) -> RunFn:
    parser.add_argument("dir", help="controller folder (path or gs://)")

    def run(args: argparse.Namespace) -> int:
        from controllers.progress import print_status

        return print_status(args.dir)

    return run


if __name__ == "__main__":  # python -m controllers.cli
    # Run the *imported* module's main so plugins and this code share one registry.
    from controllers.cli import main as _main

    sys.exit(_main())
