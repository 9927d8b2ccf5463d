"""``proxy-task run PIPELINE.yaml`` and ``proxy-task demo``: the three tools in one command."""

from __future__ import annotations

import argparse
import os
import sys

from controllers.cli import RunFn, command

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(_REPO_ROOT, "examples", "pytorch", "pipeline.yaml")
DEMO_SMALL_CONFIG = os.path.join(_REPO_ROOT, "examples", "pytorch", "pipeline_small.yaml")


def _run_pipeline(args: argparse.Namespace, config_path: str, output_dir: str | None) -> int:
    from controllers.config import ConfigError, load_config
    from controllers.model_selection import ModelSelectionAborted
    from controllers.pipeline import PipelineConfig, run_pipeline, summary_text
    from controllers.progress import make_progress
    from controllers.search.controller import SearchAborted
    from controllers.state import LeaseHeldError, StateError
    from controllers.variance import VarianceError
    from proxy_task_utils.errors import ConfigurationError

    progress = None
    try:
        config = load_config(config_path, PipelineConfig)
        if output_dir is not None:
            config = PipelineConfig.model_validate({**config.model_dump(), "output_dir": output_dir})
        if args.max_parallel_trials is not None:
            config.runner.max_parallel_trials = args.max_parallel_trials
        progress = make_progress(interactive=False if args.no_progress else None)
        result = run_pipeline(config, resume=args.resume, progress=progress)
    except (ConfigError, ConfigurationError, StateError) as exc:
        hint = " (add --resume to continue a previous run in that folder)" if isinstance(exc, StateError) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    except LeaseHeldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (VarianceError, ModelSelectionAborted, SearchAborted) as exc:
        print(f"aborted: {exc}", file=sys.stderr)
        return 1
    finally:
        if progress is not None:
            progress.close()
    print(summary_text(result))
    return 0 if result.search is None or result.search.best_proxy_task_name else 1


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true", help="continue each stage from its state file")
    parser.add_argument("--max-parallel-trials", type=int, default=None, help="trials at once (default: cores)")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live table")


@command("run", help="run variance measurement, model selection and proxy-task search from one pipeline YAML")
def _add_run(parser: argparse.ArgumentParser) -> RunFn:
    parser.add_argument("config", help="pipeline YAML (see controllers.pipeline)")
    parser.add_argument("--output-dir", default=None, help="override the config's output_dir")
    _common(parser)
    return lambda args: _run_pipeline(args, args.config, args.output_dir)


@command("demo", help="the whole pipeline on the bundled PyTorch example (digits, MnasNet-like space)")
def _add_demo(parser: argparse.ArgumentParser) -> RunFn:
    parser.add_argument("--output-dir", default=None,
                        help="where the three controller folders go (proxy_task_demo, or proxy_task_demo_small)")
    parser.add_argument("--small", action="store_true", help="a tiny setting (a minute): 8 -> 4 models, few steps")
    _common(parser)

    def run(args: argparse.Namespace) -> int:
        # The example lives in the repository, not in the installed package: make it importable
        # here (search space, proxy generator) and in every trial process.
        sys.path.insert(0, _REPO_ROOT)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
        config = DEMO_SMALL_CONFIG if args.small else DEMO_CONFIG
        output_dir = args.output_dir or ("proxy_task_demo_small" if args.small else "proxy_task_demo")
        return _run_pipeline(args, config, os.path.abspath(output_dir))

    return run
