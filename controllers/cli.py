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
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["command", "main", "build_parser", "COMMAND_MODULES", "Command"]

#: Modules that register subcommands; missing ones are skipped.
COMMAND_MODULES: tuple[str, ...] = (
    "controllers.search_cli",  # search, report, analyze (the search controller)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args._run(args))


if __name__ == "__main__":  # python -m controllers.cli
    # Run the *imported* module's main so plugins and this code share one registry.
    from controllers.cli import main as _main

    sys.exit(_main())
