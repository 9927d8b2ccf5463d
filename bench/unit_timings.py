"""Figures the unit tests used to assert on wall-clock time (or would), printed instead.

* bootstrap: one ``rank_correlation`` of 10 pairs with 1,000 bootstrap resamples (the cost of
  one step of one proxy task per poll; the search computes it for every recorded step).
  Best of ``--repeats`` runs, after a warm-up, for Spearman and Kendall.
* extrapolation: ``extrapolate_curves`` for 30 trials of 30 evaluations (the ``proxy_score:
  extrapolated`` work of one poll, half-way through the schedule): cold (every prefix fitted, as after a restart) and one poll
  later with the search's cache (one new evaluation per trial: 30 prefixes fitted).
* GCS give-up: how long ``GCSStorage`` takes to raise ``TransientStorageError`` against a
  server that refuses connections, for the retry budgets the storage test uses (1.5 s for a
  read, 0.3 s for each other operation): the budget bounds the wait, plus the back-off sleep
  that was already running. Needs the ``gcs`` extra; skipped without it.

The load average is printed with the figures: the seconds depend on it.

    python bench/unit_timings.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import time


def bootstrap_seconds(repeats: int) -> dict[str, float]:
    import numpy as np

    from controllers.stats import rank_correlation

    rng = np.random.default_rng(0)
    x, y = rng.random(10), rng.random(10)
    out = {}
    for method in ("spearman", "kendall"):
        rank_correlation(x, y, method=method)  # warm up
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            rank_correlation(x, y, method=method, n_bootstrap=1000)
            best = min(best, time.perf_counter() - t0)
        out[method] = best
    return out


def extrapolation_seconds(repeats: int, trials: int = 30, evals: int = 30) -> dict[str, float]:
    import numpy as np

    from controllers.stats import extrapolate_curves

    rng = np.random.default_rng(0)
    steps = [(k + 1) * 100 - 1 for k in range(evals)]
    x = (np.arange(evals) + 1) / evals
    curves = [
        list(zip(steps, (q * (1 - np.exp(-r * x)) + 0.005 * rng.standard_normal(evals)).tolist()))
        for q, r in zip(rng.uniform(0.6, 0.8, trials), rng.uniform(2, 10, trials))
    ]
    horizons: list[int | None] = [2 * evals * 100 - 1] * trials  # half-way through their schedule
    cold = incremental = math.inf
    for _ in range(repeats):
        cache: dict[tuple, object] = {}
        t0 = time.perf_counter()
        extrapolate_curves([c[:-1] for c in curves], horizons, cache=cache)
        cold = min(cold, time.perf_counter() - t0)
        t0 = time.perf_counter()
        extrapolate_curves(curves, horizons, cache=cache)
        incremental = min(incremental, time.perf_counter() - t0)
    return {f"cold ({trials} x {evals - 1} prefixes)": cold, f"next poll (+{trials} prefixes, cached)": incremental}


def gcs_give_up_seconds() -> dict[str, float] | None:
    try:
        from proxy_task_utils.storage.gcs import GCSStorage
    except ImportError:
        return None
    from proxy_task_utils.errors import TransientStorageError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave the block: connections are refused
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        patient = GCSStorage("unreachable-bucket", "p", retry_timeout=1.5, timeout=1.0)
        quick = GCSStorage("unreachable-bucket", "p", retry_timeout=0.3, timeout=1.0)
        ops = {
            "read (budget 1.5 s)": lambda: patient.read("x"),
            "write (budget 0.3 s)": lambda: quick.write("x", b"1"),
            "write_if_absent (0.3 s)": lambda: quick.write_if_absent("x", b"1"),
            "write_if_generation (0.3 s)": lambda: quick.write_if_generation("x", b"1", 7),
            "exists (0.3 s)": lambda: quick.exists("x"),
            "list (0.3 s)": lambda: quick.list(),
            "delete (0.3 s)": lambda: quick.delete("x"),
        }
        out = {}
        for label, op in ops.items():
            t0 = time.monotonic()
            try:
                op()
            except TransientStorageError:
                pass
            out[label] = time.monotonic() - t0
        return out
    finally:
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"\nrank_correlation, 10 pairs, 1000 bootstrap resamples (best of {args.repeats})")
    for method, secs in bootstrap_seconds(args.repeats).items():
        print(f"  {method:<10} {secs * 1000:8.1f} ms")
    print(f"\nextrapolate_curves, 30 trials x 30 evaluations (best of {args.repeats})")
    for label, secs in extrapolation_seconds(args.repeats).items():
        print(f"  {label:<36} {secs * 1000:8.1f} ms")
    gcs = gcs_give_up_seconds()
    if gcs is None:
        print("\nGCS give-up times: skipped (pip install 'proxy-task-utils[gcs]')")
        return
    print("\nGCSStorage against a refusing server: seconds until TransientStorageError")
    for label, secs in gcs.items():
        print(f"  {label:<28} {secs:6.2f} s")
    print(f"  {'all seven operations':<28} {sum(gcs.values()):6.2f} s")


if __name__ == "__main__":
    main()
