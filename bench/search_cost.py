"""Trial-hours of a proxy-task search: our decision logic vs the oracle vs the reference.

A simulation on replayed learning curves with known truth (seconds to run, no
subprocesses). Ten reference models have known full-training accuracies. Each
candidate proxy re-trains them; at every recorded step the proxy's ranking of
the ten has an exact number of inversions ``I`` with respect to the truth, so
its Kendall tau is exactly ``1 - 2 I / 45``. ``I`` falls by one every ``r``
steps down to a floor (the proxy's best achievable correlation), so the
crossing step of the target and the cheapest proxy that truly meets it are
known analytically.

* oracle: the cost of just the cheapest proxy that truly meets the target,
  stopped exactly at its crossing.
* ours: the search controller's per-step statistics and decision
  (``controllers.search.step_stats.compute_step_stats``,
  ``controllers.search.evaluate.decide`` -> ``controllers.stats.decide_stop``)
  evaluated at every poll on what the trials have recorded by then; a stop
  takes effect one training cycle after the poll that decides it (the trainer
  finishes its cycle and sees "stop now" at its next check). Proxies run one
  after the other in generator order; a later proxy is stopped by the
  not-best rule when its median hours reach the best proxy's final hours.
  With early elimination (``controllers.stats.decide_elimination``, the
  search's defaults) and proxies run cheapest first by seconds per step (cost
  order); "before" is the same without either (the not-best rule alone, in
  the listed order).
* hard floor: the oracle plus two evaluations of every other proxy (a trend
  needs two points): what no sequential search can go below.
* racing: two proxies at once, cheapest first (``race`` in the search config): a proxy's rules
  that need the best time wait until every cheaper proxy is decided, then judge all its
  evaluations; wall time against one proxy after another, trial-hours and the verdicts.
* reference: the same decisions, but its "stop now" is never written (0.0
  dropped), so every proxy's trials run until ``MAX_TRAINING_TIME`` (the time
  limit, checked at cycle boundaries) or completion.

    python bench/search_cost.py [--poll-secs 60] [--min-fraction 0.7] [--z 1.645] [--noise-floor 0.01]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controllers.search.evaluate import Targets, decide  # noqa: E402
from controllers.search.step_stats import TrialCurve, compute_step_stats  # noqa: E402
from controllers.stats import (  # noqa: E402
    DEFAULT_ELIMINATION_Z,
    DEFAULT_MIN_FRACTION,
    DEFAULT_NOISE_FLOOR,
    decide_elimination,
)

N_MODELS = 10
PAIRS = N_MODELS * (N_MODELS - 1) // 2
TRUTH = [0.60 + 0.02 * j for j in range(N_MODELS)]
TOTAL_STEPS = 2000
CYCLE_STEPS = 100
TARGET_TAU = 0.6  # Kendall: at most 9 inversions of 45
TIME_LIMIT_HRS = 1.0
START_INVERSIONS = 30


@dataclass(frozen=True)
class Proxy:
    """A candidate proxy: seconds per training step, inversions lost per step, best reachable ranking."""

    name: str
    secs_per_step: float
    steps_per_inversion: int
    floor_inversions: int

    @property
    def cycle_secs(self) -> float:
        return CYCLE_STEPS * self.secs_per_step

    def inversions(self, end_step: int) -> int:
        return max(self.floor_inversions, START_INVERSIONS - (end_step + 1) // self.steps_per_inversion)

    def crossing_step(self) -> int | None:
        """First recorded 0-based end step where tau >= target (analytic truth), None if never."""
        allowed = math.floor((1.0 - TARGET_TAU) * PAIRS / 2.0 + 1e-9)
        for cycle in range(TOTAL_STEPS // CYCLE_STEPS):
            step = (cycle + 1) * CYCLE_STEPS - 1
            if self.inversions(step) <= allowed:
                return step
        return None


def _permutation_with_inversions(n: int, inversions: int) -> list[int]:
    """Ranks 0..n-1 (one per model, sorted by truth) with exactly ``inversions`` inversions.

    Each swap of an ascending adjacent pair adds exactly one inversion.
    """
    if not 0 <= inversions <= n * (n - 1) // 2:
        raise ValueError(f"inversions must be in [0, {n * (n - 1) // 2}], but got {inversions}")
    order = list(range(n))
    for _ in range(inversions):
        k = next(k for k in range(n - 1) if order[k] < order[k + 1])
        order[k], order[k + 1] = order[k + 1], order[k]
    return order


def _scores(proxy: Proxy, end_step: int) -> list[float]:
    base = 0.3 + 0.4 * (1.0 - math.exp(-(end_step + 1) / (0.3 * TOTAL_STEPS)))
    ranks = _permutation_with_inversions(N_MODELS, proxy.inversions(end_step))
    return [base + 0.005 * r for r in ranks]


def _curves(proxy: Proxy, cycles: int, ended: bool) -> list[TrialCurve]:
    steps = [(c + 1) * CYCLE_STEPS - 1 for c in range(cycles)]
    per_step = [_scores(proxy, s) for s in steps]
    return [
        TrialCurve(tuple((s, per_step[i][j]) for i, s in enumerate(steps)), proxy.secs_per_step, ended)
        for j in range(N_MODELS)
    ]


TARGETS = Targets(
    desired_correlation=TARGET_TAU, desired_accuracy=None, training_time_hrs_limit=TIME_LIMIT_HRS,
    desired_latency_correlation=None, early_stop_if_not_best=True, stop_rule="point", method="kendall",
)  # fmt: skip


@dataclass
class Run:
    state: str
    run_secs: float  # wall seconds the proxy's trials ran (all ten in parallel)
    final_hours: float | None  # crossing hours when the proxy passed

    @property
    def trial_hours(self) -> float:
        return N_MODELS * self.run_secs / 3600.0


@dataclass(frozen=True)
class Elimination:
    """Early elimination settings (``None``: off, the not-best rule alone)."""

    z: float = DEFAULT_ELIMINATION_Z
    noise_floor: float = DEFAULT_NOISE_FLOOR
    min_fraction: float = DEFAULT_MIN_FRACTION


def _decide(stats, best_hours: float | None, elim: Elimination | None) -> tuple[str, float | None] | None:
    """The controller's stop rule then early elimination over every evaluation: (state, crossing hours) or None."""
    decision = decide(stats, TARGETS, best_hours)
    if elim is not None:
        series = stats.series(TARGETS.method)
        out = decide_elimination(
            series.median_hours,
            series.correlation,
            target=TARGET_TAU,
            best_hours=best_hours,
            horizon_hours=TIME_LIMIT_HRS,
            z=elim.z,
            noise_floor=elim.noise_floor,
            min_fraction=elim.min_fraction,
        )
        if out.stop and (not decision.stop or decision.index is None or (out.index or 0) < decision.index):
            return out.state, None
    if decision.stop:
        return decision.state, decision.crossing.hours if decision.succeeded and decision.crossing else None
    return None


def simulate(
    proxy: Proxy,
    best_hours: float | None,
    poll_secs: float,
    elim: Elimination | None = None,
    *,
    best_known_after: float = 0.0,
) -> tuple[Run, float]:
    """Our controller on one proxy; returns (run, wall seconds when the decision was taken).

    Racing: before ``best_known_after`` (wall seconds from its start) the cheaper proxies are
    undecided, so only the rules that need no best time act; its verdict is then judged again
    with ``best_hours`` over all its evaluations, as the controller does.
    """
    total_cycles = TOTAL_STEPS // CYCLE_STEPS
    total_secs = total_cycles * proxy.cycle_secs
    cache: dict = {}
    w = 0.0
    while True:
        w += poll_secs
        cycles = min(total_cycles, int(w // proxy.cycle_secs))
        ended = cycles == total_cycles
        stats = compute_step_stats(_curves(proxy, cycles, ended), TRUTH, n_bootstrap=50, seed=0, cache=cache)
        known = w >= best_known_after
        found = _decide(stats, best_hours if known else None, elim)
        if found is not None or ended:
            run_secs = total_secs if found is None else min(total_secs, (cycles + 1) * proxy.cycle_secs)
            if not known:  # judged again once the cheaper proxies are decided
                found = _decide(stats, best_hours, elim)
            state, hours = found if found is not None else ("ran to completion", None)
            return Run(state, run_secs, hours), w


def reference_secs(proxy: Proxy) -> float:
    """Stop-now ignored: trials stop at the first cycle boundary past MAX_TRAINING_TIME, or at completion."""
    total = (TOTAL_STEPS // CYCLE_STEPS) * proxy.cycle_secs
    past_limit = (math.floor(TIME_LIMIT_HRS * 3600.0 / proxy.cycle_secs) + 1) * proxy.cycle_secs
    return min(total, past_limit)


def oracle(proxies: list[Proxy]) -> tuple[str, float]:
    best: tuple[str, float] | None = None
    for px in proxies:
        step = px.crossing_step()
        if step is None or (step + 1) * px.secs_per_step / 3600.0 > TIME_LIMIT_HRS:
            continue
        cost = N_MODELS * (step + 1) * px.secs_per_step / 3600.0
        if best is None or cost < best[1]:
            best = (px.name, cost)
    if best is None:
        raise ValueError("no proxy in the scenario meets the target: fix the scenario")
    return best


def hard_floor(proxies: list[Proxy]) -> float:
    """The oracle plus two evaluations of every other proxy (a trend needs two points)."""
    name, cost = oracle(proxies)
    return cost + sum(N_MODELS * 2 * px.cycle_secs / 3600.0 for px in proxies if px.name != name)


def search(
    proxies: list[Proxy], poll_secs: float, elim: Elimination | None, cost_order: bool
) -> tuple[float, list[tuple[Proxy, Run]]]:
    """One sequential search; with ``cost_order`` cheapest seconds per step first."""
    order = sorted(proxies, key=lambda p: p.secs_per_step) if cost_order else list(proxies)
    best_hours: float | None = None
    total, runs = 0.0, []
    for px in order:
        run, _ = simulate(px, best_hours, poll_secs, elim)
        if run.final_hours is not None and (best_hours is None or run.final_hours < best_hours):
            best_hours = run.final_hours
        total += run.trial_hours
        runs.append((px, run))
    return total, runs


def race(
    proxies: list[Proxy], poll_secs: float, elim: Elimination | None, jobs: int
) -> tuple[float, float, float, list[tuple[Proxy, Run]]]:
    """The search racing ``jobs`` proxies at once (cheapest first); (trial-hours, wall secs, sequential wall secs, runs).

    Each proxy starts when a job slot frees; it is decided after every cheaper proxy and against
    their best, so its verdict is the sequential one.
    """
    order = sorted(proxies, key=lambda p: p.secs_per_step)
    free_at = [0.0] * jobs
    done_at: list[float] = []
    best_hours: float | None = None
    total, runs, wall, seq_wall = 0.0, [], 0.0, 0.0
    for px in order:
        slot = min(range(jobs), key=lambda k: free_at[k])
        start = free_at[slot]
        known_at = max(done_at, default=start)
        run, _ = simulate(px, best_hours, poll_secs, elim, best_known_after=known_at - start)
        end = start + run.run_secs
        free_at[slot] = end
        done_at.append(max(end, known_at))  # recorded as done only after the cheaper ones
        if run.final_hours is not None and (best_hours is None or run.final_hours < best_hours):
            best_hours = run.final_hours
        total += run.trial_hours
        wall = max(wall, end)
        runs.append((px, run))
    _, seq_runs = search(proxies, poll_secs, elim, cost_order=True)
    seq_wall = sum(r.run_secs for _, r in seq_runs)
    return total, wall, seq_wall, runs


def run_scenario(title: str, proxies: list[Proxy], poll_secs: float, elim: Elimination) -> dict[str, float]:
    print(f"\n{title} (target Kendall tau {TARGET_TAU}, time limit {TIME_LIMIT_HRS:g} h, poll {poll_secs:g} s)")
    plain, plain_runs = search(proxies, poll_secs, None, cost_order=False)
    ours, runs = search(proxies, poll_secs, elim, cost_order=True)
    before = {px.name: run for px, run in plain_runs}
    print(
        f"{'proxy':8s} {'s/step':>7s} {'truth: crossing':>16s} {'ours: outcome':>50s} {'ours h':>7s} "
        f"{'before h':>8s} {'ref h':>7s}"
    )
    ref_total = 0.0
    for px, run in runs:
        ref = N_MODELS * reference_secs(px) / 3600.0
        ref_total += ref
        step = px.crossing_step()
        truth = "never" if step is None else f"step {step} ({(step + 1) * px.secs_per_step / 3600:.2f} h)"
        print(
            f"{px.name:8s} {px.secs_per_step:7.2f} {truth:>16s} {run.state:>50s} {run.trial_hours:7.2f} "
            f"{before[px.name].trial_hours:8.2f} {ref:7.2f}"
        )
    name, oracle_cost = oracle(proxies)
    floor = hard_floor(proxies)
    print(f"oracle: {name} stopped at its crossing = {oracle_cost:.2f} trial-hours; hard floor {floor:.2f}")
    print(
        f"total trial-hours: ours {ours:.2f} (before: no elimination, given order {plain:.2f}), "
        f"reference {ref_total:.2f}, oracle {oracle_cost:.2f}, hard floor {floor:.2f}"
    )
    print(
        f"ratios: ours/hard floor {ours / floor:.2f}x, ours/oracle {ours / oracle_cost:.2f}x, "
        f"before/hard floor {plain / floor:.2f}x, reference/oracle {ref_total / oracle_cost:.2f}x"
    )
    if len(proxies) > 1:
        raced, wall, seq_wall, race_runs = race(proxies, poll_secs, elim, jobs=2)
        same = [(px.name, r.state) for px, r in race_runs] == [(px.name, r.state) for px, r in runs]
        print(
            f"racing 2 proxies at once: wall {wall / 3600:.2f} h vs {seq_wall / 3600:.2f} h one after another "
            f"({seq_wall / wall:.2f}x sooner), trial-hours {raced:.2f} vs {ours:.2f} "
            f"({raced / floor:.2f}x the hard floor); same verdicts: {'yes' if same else 'NO'}"
        )
    return {"ours": ours, "before": plain, "oracle": oracle_cost, "floor": floor, "reference": ref_total}


SCENARIOS: dict[str, list[Proxy]] = {
    "one proxy (the stop mechanism alone)": [Proxy("p1", 0.9, 50, 3)],
    "best proxy first, then costlier ones (not-best rule)": [
        Proxy("p1", 0.9, 50, 3),
        Proxy("p2", 1.5, 40, 2),
        Proxy("p3", 2.4, 30, 1),
    ],
    "cheapest first: a cheap proxy that never gets there, then the best": [
        Proxy("p0", 0.4, 60, 14),
        Proxy("p1", 0.9, 50, 3),
        Proxy("p2", 1.5, 40, 2),
    ],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--poll-secs", type=float, default=60.0, help="controller poll interval (reference: 60)")
    ap.add_argument("--z", type=float, default=DEFAULT_ELIMINATION_Z, help="elimination band, in standard errors")
    ap.add_argument("--noise-floor", type=float, default=DEFAULT_NOISE_FLOOR, help="smallest trend scatter")
    ap.add_argument("--min-fraction", type=float, default=DEFAULT_MIN_FRACTION, help="wait before eliminating")
    args = ap.parse_args(argv)
    for title, proxies in SCENARIOS.items():
        run_scenario(title, proxies, args.poll_secs, Elimination(args.z, args.noise_floor, args.min_fraction))
    return 0


if __name__ == "__main__":
    sys.exit(main())
