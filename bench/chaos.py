"""Chaos campaigns: kill/resume runs of the real controllers, compared with an uninterrupted run.

Each campaign runs one tool through the CLI (real processes, the replay trainer) N times
with a fault, resumes it with ``--resume`` until it ends, and compares the result with an
uninterrupted run of the same config:

* ``selection-kill``: model selection; the controller alone is SIGKILLed 1-3 times at
  random moments (its trials live on and are re-attached);
* ``selection-crash``: model selection; a machine crash 1-3 times: the controller and every
  trial process group are SIGKILLed together (nothing records an exit code);
* ``selection-gcs``: model selection on ``gs://`` (the fake GCS server) through a fault proxy
  that loses 2 % of the answers (after the server applied the request) and answers 503 to 5 %
  of the requests; controller and trainers alike; no kill;
* ``search-crash``: the proxy-task search (reference and noise from one uninterrupted
  pipeline run); 1-2 kills, each either of the controller alone or a machine crash;
* ``pipeline-crash``: the whole pipeline (variance, selection, search); 1-2 machine crashes.

Counted per campaign: **mismatches** (the result differs from the uninterrupted run: kept
models, reference models, best proxy, each proxy's stopping state, the variance figures),
**duplicates** (a trial started more often than its record's attempts: a trial twice),
**lost** (a trial that ended ``lost`` or failed where the uninterrupted run's succeeded),
**crashes** (a run that did not end with the uninterrupted run's exit code, or printed a
traceback). Kill moments are uniform in [0.15, 0.85] of the uninterrupted run's wall time.

    python bench/chaos.py [--runs 30] [--campaigns selection-kill,selection-crash,...] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controllers.testing import crash_with_trials  # noqa: E402

REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]
TIMEOUTS = {
    "poll_interval_secs": 0.1,
    "no_metrics_timeout_secs": 60.0,
    "stop_grace_secs": 20.0,
    "cancel_grace_secs": 2.0,
    "heartbeat_interval_secs": 1.0,
    "lease_timeout_secs": 5.0,
}
SPACE = {"choices": {"quality": [round(0.3 + 0.05 * i, 2) for i in range(13)], "latency_ms": [2, 5, 9, 14, 20]}}


# -- configs ----------------------------------------------------------------------------------------


def selection_config(ctl: str, logs: str) -> dict[str, Any]:
    return {
        "controller_dir": ctl,
        "job_name": "ms",
        "seed": 5,
        "trainer": {"command": REPLAY, "args": {"train_steps": 40, "cycle_steps": 4, "noise": 0.01,
                                                "sleep_per_cycle": 0.05}},
        "search_space": SPACE,
        "runner": {"max_parallel_trials": 4, "log_dir": logs},
        "timeouts": TIMEOUTS,
        "start_num_models": 8,
        "final_num_models": 4,
        "num_models_to_remove_per_iter": 2,
    }  # fmt: skip


def pipeline_config(out: str, logs: str, *, stages: list[str] | None = None, base: str | None = None) -> dict:
    data: dict[str, Any] = {
        "output_dir": out,
        "job_name": "pipe",
        "seed": 3,
        "trainer": {"command": REPLAY, "args": {"train_steps": 60, "cycle_steps": 6, "noise": 0.002,
                                                "sleep_per_cycle": 0.03}},
        "search_space": SPACE,
        "runner": {"max_parallel_trials": 4, "log_dir": logs},
        "timeouts": TIMEOUTS,
        "variance": {"num_copies": 3},
        "model_selection": {"start_num_models": 8, "final_num_models": 5, "num_models_to_remove_per_iter": 3},
        "search": {
            "proxy_tasks": {"configs": [
                {"name": "flat", "args": {"curve": "table:0.5", "noise": 0}},
                {"name": "short", "args": {"train_steps": 30, "cycle_steps": 3}},
            ]},
            "desired_accuracy_correlation": 0.8,
            "desired_latency_correlation": None,
            "bootstrap_resamples": 200,
            "plot_interval_secs": 0,
        },
    }  # fmt: skip
    if stages is not None:
        data["stages"] = stages
    if base is not None:  # the search alone, on the reference and noise of an uninterrupted pipeline
        data["search"]["reference"] = {"model_selection_dir": os.path.join(base, "model_selection")}
        data["search"]["noise"] = {"variance_dir": os.path.join(base, "variance")}
    return data


# -- results ----------------------------------------------------------------------------------------


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def selection_signature(ctl: Path) -> Any:
    state = _json(ctl / "MODEL_SELECTION_STATE.json")
    return {
        "kept": [it["trials_to_retrain"] for it in state["iterations"]],
        "reference": state["reference_trials"],
        "status": state["status"],
    }


def search_signature(ctl: Path) -> Any:
    state = _json(ctl / "SEARCH_CONTROLLER_STATE.json")
    return {
        "best": state["best_proxy_task_name"],
        "stops": {k: v["proxy_task_stats"]["stopping_state"] for k, v in state["proxy_tasks_map"].items()},
        "steps": {k: v["proxy_task_stats"]["training_steps"][-1:] for k, v in state["proxy_tasks_map"].items()},
    }


def variance_signature(ctl: Path) -> Any:
    result = _json(ctl / "variance_and_smoothness.json")
    return {k: round(result[k], 9) for k in ("variance_value", "smoothness_value") if result.get(k) is not None}


def pipeline_signature(out: Path) -> Any:
    return {
        "variance": variance_signature(out / "variance"),
        "selection": selection_signature(out / "model_selection"),
        "search": search_signature(out / "search"),
    }


def _jobs(state: Any) -> list[dict]:
    """Every embedded job record of a state file."""
    found = []
    if isinstance(state, dict):
        if "trials" in state and "job_dir" in state:
            found.append(state)
        for value in state.values():
            found += _jobs(value)
    elif isinstance(state, list):
        for value in state:
            found += _jobs(value)
    return found


def trial_counts(state_files: list[Path], logs: Path) -> tuple[int, int, dict[str, str]]:
    """(duplicates, lost, final state per job/trial) from the state files and the trial logs."""
    duplicates = lost = 0
    states: dict[str, str] = {}
    for path in state_files:
        for job in _jobs(_json(path)):
            for t in job["trials"]:
                key = f"{job['name']}/{t['trial_id']}"
                states[key] = t["state"]
                log = logs / job["name"] / t["trial_id"] / "trainer.log"
                starts = log.read_text().count("replay trainer: start") if log.exists() else 0
                duplicates += max(0, starts - (1 + t.get("relaunches", 0)))
                if (t.get("failure") or {}).get("kind") == "lost":
                    lost += 1
    return duplicates, lost, states


# -- one run ----------------------------------------------------------------------------------------


class Tool:
    def __init__(self, name: str, verb: list[str], make: Callable[[Path], dict], signature: Callable[[Path], Any],
                 state_files: Callable[[Path], list[Path]], result_dir: Callable[[Path], Path]) -> None:  # fmt: skip
        self.name, self.verb, self.make, self.signature = name, verb, make, signature
        self.state_files, self.result_dir = state_files, result_dir


def _start(tool: Tool, config: Path, *, resume: bool, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "controllers.cli", *tool.verb, str(config), "--no-progress"]
    return subprocess.Popen(argv + (["--resume"] if resume else []), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip


def run_once(tool: Tool, root: Path, *, kills: list[tuple[float, str]], env: dict[str, str],
             timeout: float = 600) -> dict[str, Any]:  # fmt: skip
    """One run with ``kills`` ((delay, 'controller'|'machine') each, on successive starts), then resumes."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(tool.make(root)))
    outputs, resume, start, done = [], False, time.monotonic(), 0
    for delay, how in kills:
        proc = _start(tool, config, resume=resume, env=env)
        resume = True
        try:
            proc.wait(timeout=delay)
            ended = True  # before the kill came: the resume below says how it ends
        except subprocess.TimeoutExpired:
            ended = False
            done += 1
            if how == "machine":
                crash_with_trials(proc.pid)
            else:
                proc.send_signal(signal.SIGKILL)
        outputs.append(proc.communicate()[0].decode(errors="replace"))
        if ended:
            break
    proc = _start(tool, config, resume=resume, env=env)
    out = proc.communicate(timeout=timeout)[0].decode(errors="replace")
    outputs.append(out)
    result: dict[str, Any] = {"exit": proc.returncode, "secs": time.monotonic() - start, "kills": done,
                              "traceback": any("Traceback" in o for o in outputs), "output": out[-2000:]}  # fmt: skip
    try:
        result["signature"] = tool.signature(tool.result_dir(root))
        result["duplicates"], result["lost"], result["states"] = trial_counts(tool.state_files(root), root / "logs")
    except (OSError, ValueError, KeyError) as exc:
        result.update(signature=None, duplicates=0, lost=0, states={}, error=str(exc))
    return result


# -- campaigns --------------------------------------------------------------------------------------


def _tools(work: Path, gcs_uri: str | None, base: Path | None) -> dict[str, Tool]:
    sel_dir: Callable[[Path], Path] = lambda r: r / "ctl"  # noqa: E731
    tools = {
        "selection": Tool("selection", ["select-models"],
                          lambda r: selection_config(str(r / "ctl"), str(r / "logs")),
                          selection_signature, lambda r: [r / "ctl" / "MODEL_SELECTION_STATE.json"], sel_dir),
        "pipeline": Tool("pipeline", ["run"], lambda r: pipeline_config(str(r / "out"), str(r / "logs")),
                         pipeline_signature,
                         lambda r: [r / "out" / "variance" / "measurement_state.json",
                                    r / "out" / "model_selection" / "MODEL_SELECTION_STATE.json",
                                    r / "out" / "search" / "SEARCH_CONTROLLER_STATE.json"],
                         lambda r: r / "out"),
    }  # fmt: skip
    if base is not None:
        tools["search"] = Tool("search", ["run"],
                               lambda r: pipeline_config(str(r / "out"), str(r / "logs"), stages=["search"],
                                                         base=str(base)),
                               search_signature, lambda r: [r / "out" / "search" / "SEARCH_CONTROLLER_STATE.json"],
                               lambda r: r / "out" / "search")  # fmt: skip
    if gcs_uri is not None:
        tools["selection-gcs"] = Tool("selection-gcs", ["select-models"],
                                      lambda r: selection_config(f"{gcs_uri}/{r.name}", str(r / "logs")),
                                      lambda r: _gcs_selection_signature(f"{gcs_uri}/{r.name}", r),
                                      lambda r: [r / "state.json"], lambda r: r)  # fmt: skip
    return tools


def _gcs_selection_signature(uri: str, root: Path) -> Any:
    from proxy_task_utils.storage import open_storage

    data, _ = open_storage(uri).read("MODEL_SELECTION_STATE.json")
    (root / "state.json").write_bytes(data)
    state = json.loads(data)
    return {"kept": [it["trials_to_retrain"] for it in state["iterations"]], "reference": state["reference_trials"],
            "status": state["status"]}  # fmt: skip


CAMPAIGNS = {
    # name: (tool, kills per run (min, max), kinds of kill)
    "selection-kill": ("selection", (1, 3), ("controller",)),
    "selection-crash": ("selection", (1, 3), ("machine",)),
    "selection-gcs": ("selection-gcs", (0, 0), ()),
    "search-crash": ("search", (1, 2), ("controller", "machine")),
    "pipeline-crash": ("pipeline", (1, 2), ("machine",)),
}


def campaign(name: str, runs: int, work: Path, rng: random.Random, env: dict[str, str],
             tools: dict[str, Tool]) -> dict[str, Any]:  # fmt: skip
    tool_name, (kmin, kmax), kinds = CAMPAIGNS[name]
    tool = tools[tool_name]
    base = run_once(tool, work / f"{name}-baseline", kills=[], env=env)
    if base["exit"] != 0 or base["signature"] is None:
        raise RuntimeError(f"{name}: the uninterrupted run failed: {base['output']}")
    secs = base["secs"]
    counts = {"runs": 0, "kills": 0, "mismatches": 0, "duplicates": 0, "lost": 0, "crashes": 0, "relaunched": 0}
    wall = []
    for i in range(runs):
        n = rng.randint(kmin, kmax)
        kills = [(rng.uniform(0.15, 0.85) * secs, rng.choice(kinds)) for _ in range(n)]
        res = run_once(tool, work / f"{name}-{i}", kills=kills, env=env)
        counts["runs"] += 1
        counts["kills"] += res["kills"]  # the kills that happened (a run may end before its next one)
        counts["duplicates"] += res["duplicates"]
        lost = res["lost"] + sum(1 for k, s in res["states"].items()
                                 if s == "failed" and base["states"].get(k) == "succeeded")  # fmt: skip
        counts["lost"] += lost
        crashed = res["exit"] != base["exit"] or res["traceback"]
        counts["crashes"] += int(crashed)
        counts["mismatches"] += int(res["signature"] != base["signature"])
        wall.append(res["secs"])
        for path in tools[tool_name].state_files(work / f"{name}-{i}"):
            if path.exists():
                counts["relaunched"] += sum(t.get("relaunches", 0) for j in _jobs(_json(path)) for t in j["trials"])
        if crashed or res["signature"] != base["signature"] or res["duplicates"] or lost:
            print(f"  {name} run {i} kills {kills}: exit {res['exit']}, dup {res['duplicates']}, lost {lost}, "
                  f"match {res['signature'] == base['signature']}\n{res['output'][-1500:]}", flush=True)  # fmt: skip
        shutil.rmtree(work / f"{name}-{i}", ignore_errors=True)
    counts["baseline_secs"] = round(secs, 1)
    counts["median_run_secs"] = round(sorted(wall)[len(wall) // 2], 1) if wall else None
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--campaigns", default=",".join(CAMPAIGNS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drop-rate", type=float, default=0.02)
    ap.add_argument("--error-rate", type=float, default=0.05)
    args = ap.parse_args()
    names = [c for c in args.campaigns.split(",") if c]
    unknown = [c for c in names if c not in CAMPAIGNS]
    if unknown:
        raise SystemExit(f"--campaigns: unknown {unknown}; choose from {list(CAMPAIGNS)}")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    env = dict(os.environ)
    env.pop("PROXY_TASK_TEST_CRASH_AT", None)
    server = proxy = None
    base = None
    try:
        gcs_uri = None
        if "selection-gcs" in names:
            from controllers.testing.fault_proxy import FaultProxy
            from proxy_task_utils.testing import launch_fake_gcs_server

            server = launch_fake_gcs_server()
            server.create_bucket("chaos")
            proxy = FaultProxy(server.endpoint, drop_rate=args.drop_rate, error_rate=args.error_rate,
                               seed=args.seed).start()  # fmt: skip
            env["STORAGE_EMULATOR_HOST"] = proxy.endpoint  # the runs: through the faults
            os.environ["STORAGE_EMULATOR_HOST"] = server.endpoint  # our own reads of the results: straight
            gcs_uri = "gs://chaos"
        if "search-crash" in names:
            tools0 = _tools(work, None, None)
            first = run_once(tools0["pipeline"], work / "search-base", kills=[], env=env)
            if first["exit"] != 0:
                raise RuntimeError(f"the pipeline that gives the search its reference failed: {first['output']}")
            base = work / "search-base" / "out"
        tools = _tools(work, gcs_uri, base)
        print(f"{'campaign':<16} {'runs':>4} {'kills':>5} {'mismatch':>8} {'dup':>4} {'lost':>4} {'crash':>5} "
              f"{'relaunched':>10} {'base s':>6} {'run s':>6}")  # fmt: skip
        for name in names:
            c = campaign(name, args.runs, work, rng, env, tools)
            extra = ""
            if name == "selection-gcs" and proxy is not None:
                extra = f"  (proxy so far: {proxy.counts})"
            print(f"{name:<16} {c['runs']:>4} {c['kills']:>5} {c['mismatches']:>8} {c['duplicates']:>4} "
                  f"{c['lost']:>4} {c['crashes']:>5} {c['relaunched']:>10} {c['baseline_secs']:>6} "
                  f"{c['median_run_secs']:>6}{extra}", flush=True)  # fmt: skip
    finally:
        if proxy is not None:
            proxy.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
