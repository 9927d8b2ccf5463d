"""How often does each stop rule pick a wrong proxy, and at what cost? Simulated searches, known truth.

Every search draws a fresh set of reference models and candidate proxies:

* Models. Each has a full-training quality ``q`` and a learning speed; better models learn
  *slower* (bigger models), so the ranks early in training differ from the final ones and
  cross over training. The curve family is drawn per search: exponential saturation
  ``q (1 - exp(-u / tau))`` or a power law ``q (1 - (1 + u / tau)^-c) / (1 - (1 + 1 / tau)^-c)``
  of the progress ``u`` (fraction of full training).
* The reference. Full-training scores measured once: ``y = g(1) + N(0, ref_std)``.
* Proxies. A proxy trains ``horizon`` of the full schedule (fewer evaluations), costs
  ``cost`` seconds per step (a scaled-down model is cheaper), distorts each model by a fixed
  ``bias`` (a data subset helps some models more than others: its best correlation stays
  below 1, and whether and where it crosses the target, and stays crossed, varies), and is
  noisy: a per-run offset and a smooth per-run trajectory (AR(1)) as seed noise, and
  independent per-evaluation noise. Five kinds per search: a clean full-length proxy, a short
  schedule, a cheap proxy with 3x the evaluation noise, a scaled-down one, and one whose
  ranks are disturbed for a while mid-way (it may cross, fall back, and cross again).
* Truth. The noise-free proxy score ``mu(k)`` of each model at evaluation ``k``; the true
  correlation at ``k`` is ``corr(mu(k), y)`` (against the reference the search uses: "would it
  hold if these models were trained again"). A proxy truly passes from its *stable crossing*
  ``k*``, the first evaluation after which the true correlation never falls below the target.

The search is the controller's: proxies in a random order, each decided by
``controllers.stats.decide_stop`` on its per-step series (the same functions the controller
calls: point correlation, bootstrap CI over models, the retraining-noise probability with the
noise estimated from the curves and, when the variance measurement gave it, ``seed_std``), the
not-best rule cutting a proxy at the best proxy's time, the winner the cheapest success.

Measured per rule over all searches:

* wrong winner: the winner decided before its stable crossing (its true correlation at the
  decision is below the target, or it crosses and falls back), or never truly passes; "below at
  decision" is the first kind alone (the second needs knowledge of the future);
* missed cheapest: the winner is not the truly cheapest passing proxy (none picked counts);
* late: for right winners, evaluations (and time ratio) after the true stable crossing;
* pick cost: the winner's hours per model at its decision over the truly cheapest passing
  proxy's at its stable crossing (median; below 1 when the pick is early on noise);
* trial-hours: the whole search's cost, relative to the point rule's.

Rows "+ elimination" add early elimination (``controllers.stats.decide_elimination`` on the
point correlation, against the best proxy's time; "wait" is its ``min_fraction``): a proxy
is then cut at the first evaluation where elimination or the stop rule holds.

With ``--score raw extrapolated`` the default rules are also scored on the extrapolated score
(``controllers.stats.extrapolate_curves``: each model's curve so far fitted by an exponential
saturation or a power law, and its predicted accuracy at the proxy's last step ranked instead of
the accuracy seen). Its truth is the same fit of the noise-free curves: a proxy judged by its
extrapolated score at evaluation ``k`` truly passes when the noise-free models' extrapolations
rank like the reference. Rows "[extrapolated]" show it; "evals to pick" and "hours to pick" (the
winner's evaluations and hours per model at its decision) say how early the target is reached,
under either score. The noise of an extrapolated score in the ``retrain`` rule is the median of
the models' prediction stds at that evaluation.

    python bench/decision_quality.py                  # 10 and 20 models, 150 searches each (~80 s)
    python bench/decision_quality.py --models 10 --searches 60 --score raw extrapolated
    python bench/decision_quality.py --method kendall # slower: ~1 min for 10 models, ~4 for 20
    python bench/decision_quality.py --searches 600 --models 10
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controllers.stats import (  # noqa: E402
    MET_DESIRED_ACCURACY_CORRELATION,
    Extrapolation,
    StepSeries,
    combine_noise,
    decide_elimination,
    decide_stop,
    extrapolate_curves,
    hold_probability,
    roughness_std,
)
from controllers.stats._rowcorr import correlate_rows  # noqa: E402

FULL_EVALS = 30  # evaluations of a full-length proxy
STEPS_PER_EVAL = 100
TARGET = 0.65


@dataclass(frozen=True)
class Rule:
    """A stop rule to score: its name in the table and ``decide_stop`` arguments."""

    label: str
    stop_rule: str
    false_pass_rate: float = 0.05
    confirm: int = 1
    use_seed_std: bool = False
    smooth: int = 1
    eliminate: float | None = None  # early elimination on top, with this min_fraction
    extrapolated: bool = False  # ranked by the predicted final accuracy, not the accuracy seen


RULES = (
    Rule("point", "point"),
    Rule("lower_bound (95 % CI)", "lower_bound"),
    Rule("retrain 95 %, 1 eval, curves", "retrain", 0.05, 1),
    Rule("retrain 95 %, 2 evals, curves", "retrain", 0.05, 2),
    Rule("retrain 90 %, 2 evals, curves", "retrain", 0.10, 2),
    Rule("retrain 80 %, 2 evals, curves", "retrain", 0.20, 2),
    Rule("retrain 80 %, 3 evals, curves", "retrain", 0.20, 3),
    Rule("retrain 95 %, 1 eval, +seed_std", "retrain", 0.05, 1, True),
    Rule("retrain 95 %, 2 evals, +seed_std", "retrain", 0.05, 2, True),
    Rule("retrain 95 %, 1 eval, mean of 2", "retrain", 0.05, 1, False, 2),
    Rule("retrain 95 %, 2 evals, mean of 2", "retrain", 0.05, 2, False, 2),
    Rule("retrain 90 %, 2 evals, mean of 2", "retrain", 0.10, 2, False, 2),
    Rule("retrain 95 %, 2 evals, mean of 2, +seed_std", "retrain", 0.05, 2, True, 2),
    Rule("point + elimination (wait 0.7, the default)", "point", eliminate=0.7),
    Rule("retrain 95 %, 2 evals, mean of 2 + elim. (no wait)", "retrain", 0.05, 2, False, 2, eliminate=0.0),
    Rule("retrain 95 %, 2 evals, mean of 2 + elim. (wait 0.3)", "retrain", 0.05, 2, False, 2, eliminate=0.3),
    Rule("retrain 95 %, 2 evals, mean of 2 + elim. (wait 0.5)", "retrain", 0.05, 2, False, 2, eliminate=0.5),
    Rule("retrain 95 %, 2 evals, mean of 2 + elim. (wait 0.7)", "retrain", 0.05, 2, False, 2, eliminate=0.7),
)
#: The default rule without and with elimination, on the extrapolated score (``--score extrapolated``).
EXTRAPOLATED_RULES = (
    Rule("retrain 95 %, 2 evals, mean of 2 [extrapolated]", "retrain", 0.05, 2, False, 2, extrapolated=True),
    Rule(
        "retrain 95 %, 2 evals, mean of 2 + elim. 0.7 [extrapolated]",
        "retrain",
        0.05,
        2,
        False,
        2,
        eliminate=0.7,
        extrapolated=True,
    ),
)


@dataclass
class Proxy:
    """One simulated proxy: what the search sees (``observed``) and the truth behind it."""

    name: str
    cost: float  # seconds per step
    observed: np.ndarray  # (n_models, evals)
    mu: np.ndarray  # noise-free scores (n_models, evals)
    run_std: float  # std of the per-run part of the seed noise (what the variance tool measures)
    stable_k: int | None  # first evaluation index of the stable true crossing
    dips: bool  # the true correlation reaches the target, then falls below it again
    true_corr: np.ndarray  # at each evaluation

    def hours(self, k: int) -> float:
        return (k + 1) * STEPS_PER_EVAL * self.cost / 3600.0


def _curve(u: np.ndarray, q: np.ndarray, tau: np.ndarray, family: str, c: np.ndarray) -> np.ndarray:
    u = u[None, :]
    q, tau, c = q[:, None], tau[:, None], c[:, None]
    if family == "exp":
        return q * (1.0 - np.exp(-u / tau)) / (1.0 - np.exp(-1.0 / tau))
    return q * (1.0 - (1.0 + u / tau) ** -c) / (1.0 - (1.0 + 1.0 / tau) ** -c)


def _rank_corr(method: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Correlation of each column of ``x`` (n, k) with ``y`` (n,)."""
    return correlate_rows(method, x.T, np.broadcast_to(y, (x.shape[1], y.size)))


def simulate_search(rng: np.random.Generator, n: int, method: str) -> tuple[list[Proxy], np.ndarray]:
    """One search's reference scores and five proxies with their truth."""
    z = rng.standard_normal(n)
    q = 0.70 + 0.04 * z
    tau = 0.12 * np.exp(0.5 * z + 0.3 * rng.standard_normal(n))  # better models learn slower
    c = rng.uniform(0.5, 1.5, n)
    family = "exp" if rng.random() < 0.5 else "power"
    y = _curve(np.array([1.0]), q, tau, family, c)[:, 0] + 0.004 * rng.standard_normal(n)

    def jitter(v: float) -> float:
        return v * float(np.exp(rng.uniform(-0.5, 0.5)))

    kinds = [  # name, horizon, cost, bias, late drift, eval noise, run noise
        ("full", 1.0, 1.0, jitter(0.006), 0.0, jitter(0.006), jitter(0.004)),
        ("short", 0.4, 1.0, jitter(0.012), 0.0, jitter(0.006), jitter(0.004)),
        ("noisy_cheap", 1.0, 0.6, jitter(0.006), 0.0, 3 * jitter(0.006), jitter(0.004)),
        ("scaled", 0.7, 0.4, jitter(0.02), 0.0, jitter(0.008), jitter(0.005)),
        ("dipping", 0.8, 0.5, jitter(0.006), jitter(0.06), jitter(0.006), jitter(0.004)),
    ]
    proxies = []
    for name, horizon, cost, bias, drift, eval_std, run_std in kinds:
        evals = max(4, round(FULL_EVALS * horizon))
        u = np.arange(1, evals + 1) / evals * horizon
        # a short schedule anneals sooner: its last evaluations catch up part of the way
        anneal = (np.arange(1, evals + 1) / evals) ** 3 * (1.0 - horizon) * 0.5
        mu = _curve(np.minimum(1.0, u + anneal), q, tau, family, c) + bias * rng.standard_normal((n, 1))
        # a proxy whose ranks are disturbed for a while mid-way (a learning-rate bump, say): its true
        # correlation may cross the target, dip below it, and cross again later for good
        centre = rng.uniform(0.55, 0.85)
        bump = np.exp(-((((np.arange(1, evals + 1) / evals) - centre) / 0.08) ** 2))
        mu += drift * rng.standard_normal((n, 1)) * bump[None, :]
        offset = 0.6 * run_std * rng.standard_normal((n, 1))
        traj = np.zeros((n, evals))
        phi = 0.8
        traj[:, 0] = rng.standard_normal(n)
        for k in range(1, evals):
            traj[:, k] = phi * traj[:, k - 1] + math.sqrt(1 - phi * phi) * rng.standard_normal(n)
        observed = mu + offset + 0.8 * run_std * traj + eval_std * rng.standard_normal((n, evals))
        true_corr = _rank_corr(method, mu, y)
        stable_k, dips = _stable_crossing(true_corr)
        proxies.append(Proxy(name, cost * jitter(1.0), observed, mu, run_std, stable_k, dips, true_corr))
    order = rng.permutation(len(proxies))
    return [proxies[i] for i in order], y


def _bootstrap_low(rng_seed: int, x: np.ndarray, y: np.ndarray, method: str, b: int = 200) -> float:
    rng = np.random.default_rng(rng_seed)
    idx = rng.integers(0, x.size, size=(b, x.size))
    vals = correlate_rows(method, x[idx], y[idx])
    vals = vals[np.isfinite(vals)]
    return float(np.quantile(vals, 0.025)) if vals.size >= 10 else math.nan


def proxy_series(p: Proxy, y: np.ndarray, method: str, seed: int, n_sim: int) -> dict[str, StepSeries]:
    """The per-step series each rule reads (computed once per proxy, shared by the rules)."""
    evals = p.observed.shape[1]
    point = _rank_corr(method, p.observed, y)
    low, prob_curves, prob_seed, prob_smooth, prob_smooth_seed = [], [], [], [], []
    for k in range(evals):
        x = p.observed[:, k]
        low.append(_bootstrap_low(seed + k, x, y, method))
        rough = roughness_std(list(p.observed[:, : k + 1]))
        x2 = p.observed[:, max(0, k - 1) : k + 1].mean(axis=1)
        rough2 = None if rough is None else rough / math.sqrt(min(2, k + 1))
        for out, seed_std, xs, r in (
            (prob_curves, None, x, rough),
            (prob_seed, p.run_std, x, rough),
            (prob_smooth, None, x2, rough2),
            (prob_smooth_seed, p.run_std, x2, rough2),
        ):
            noise = combine_noise(seed_std, r)
            out.append(
                None
                if noise is None
                else hold_probability(xs, y, noise, target=TARGET, method=method, n_sim=n_sim, seed=seed + k)
            )
    steps = [(k + 1) * STEPS_PER_EVAL - 1 for k in range(evals)]
    hours = [p.hours(k) for k in range(evals)]
    med = list(np.median(p.observed, axis=0))
    common = dict(training_steps=steps, correlation=list(point), ci_low=low, median_accuracy=med, median_hours=hours)
    return {
        "plain": StepSeries(**common),  # type: ignore[arg-type]
        "curves": StepSeries(**common, hold_prob=prob_curves),  # type: ignore[arg-type]
        "seed": StepSeries(**common, hold_prob=prob_seed),  # type: ignore[arg-type]
        "smooth": StepSeries(**common, hold_prob=prob_smooth),  # type: ignore[arg-type]
        "smooth_seed": StepSeries(**common, hold_prob=prob_smooth_seed),  # type: ignore[arg-type]
    }


def _predictions(curves: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Each model's extrapolation at every evaluation from its evaluations so far: (predictions, stds)."""
    steps = [(k + 1) * STEPS_PER_EVAL - 1 for k in range(curves.shape[1])]
    rows: list[list[Extrapolation]] = extrapolate_curves(
        [list(zip(steps, row)) for row in curves.tolist()], [horizon] * curves.shape[0]
    )
    pred = np.array([[math.nan if e.prediction is None else e.prediction for e in r] for r in rows])
    std = np.array([[math.nan if e.std is None else e.std for e in r] for r in rows])
    return pred, std


def _stable_crossing(true_corr: np.ndarray) -> tuple[int | None, bool]:
    """The first evaluation after which the true correlation never falls below the target (None: never),
    and whether it crossed earlier and fell back."""
    below = np.flatnonzero(~(true_corr >= TARGET))
    stable = 0 if below.size == 0 else int(below[-1]) + 1
    stable_k = stable if stable < len(true_corr) else None
    first = np.flatnonzero(true_corr >= TARGET)
    return stable_k, bool(first.size) and (stable_k is None or int(first[0]) < stable_k)


def extrapolated(p: Proxy, y: np.ndarray, method: str, seed: int, n_sim: int) -> tuple[Proxy, dict[str, StepSeries]]:
    """The proxy judged by its extrapolated scores: its truth (the noise-free curves' fits) and series."""
    evals = p.observed.shape[1]
    horizon = evals * STEPS_PER_EVAL - 1
    pred, std = _predictions(p.observed, horizon)
    mu, _ = _predictions(p.mu, horizon)
    true_corr = _rank_corr(method, mu, y)
    stable_k, dips = _stable_crossing(true_corr)
    truth = replace(p, observed=pred, mu=mu, stable_k=stable_k, dips=dips, true_corr=true_corr)
    point = _rank_corr(method, pred, y)
    low, prob = [], []
    for k in range(evals):
        low.append(_bootstrap_low(seed + k, pred[:, k], y, method))
        x2 = pred[:, max(0, k - 1) : k + 1].mean(axis=1)
        noise = float(np.median(std[:, k]))
        prob.append(hold_probability(x2, y, noise, target=TARGET, method=method, n_sim=n_sim, seed=seed + k))
    steps = [(k + 1) * STEPS_PER_EVAL - 1 for k in range(evals)]
    hours = [p.hours(k) for k in range(evals)]
    med = list(np.median(p.observed, axis=0))  # the accuracy seen: what desired_accuracy would read
    common = dict(training_steps=steps, correlation=list(point), ci_low=low, median_accuracy=med, median_hours=hours)
    return truth, {
        "plain": StepSeries(**common),  # type: ignore[arg-type]
        "smooth": StepSeries(**common, hold_prob=prob),  # type: ignore[arg-type]
    }


@dataclass
class Outcome:
    wrong: bool
    below: bool  # wrong, and the true correlation at the decision was below the target
    missed: bool
    picked: bool
    late_evals: float | None
    late_ratio: float | None
    trial_hours: float
    pick_cost: float | None = None  # winner's hours at its decision / the truly cheapest's at its stable crossing
    pick_evals: int | None = None  # the winner's evaluations at its decision
    pick_hours: float | None = None  # the winner's hours per model at its decision


def run_rule(rule: Rule, proxies: list[Proxy], series: list[dict[str, StepSeries]], n: int) -> Outcome:
    """The search under one rule: sequential proxies, not-best cut, cheapest success wins."""
    best: tuple[float, int, int] | None = None  # (crossing hours, proxy index, crossing index)
    cost = 0.0
    key = "plain" if rule.stop_rule != "retrain" else ("seed" if rule.use_seed_std else "curves")
    if rule.smooth > 1:
        key = "smooth_seed" if rule.use_seed_std else "smooth"
    for i, (p, s) in enumerate(zip(proxies, series)):
        d = decide_stop(
            s[key],
            desired_correlation=TARGET,
            best_training_time_hrs=None if best is None else best[0],
            early_stop_if_not_best=True,
            stop_rule=rule.stop_rule,  # type: ignore[arg-type]
            false_pass_rate=rule.false_pass_rate,
            confirm=rule.confirm,
        )
        evals = p.observed.shape[1]
        stop_k = evals - 1 if d.index is None else d.index
        if rule.eliminate is not None:
            plain = s["plain"]
            e = decide_elimination(
                plain.median_hours,
                plain.correlation,
                target=TARGET,
                best_hours=None if best is None else best[0],
                min_fraction=rule.eliminate,
            )
            if e.index is not None and e.index < stop_k:
                cost += n * p.hours(e.index)
                continue
        cost += n * p.hours(stop_k)
        if d.state == MET_DESIRED_ACCURACY_CORRELATION and d.crossing is not None:
            cand = (d.crossing.hours, i, d.crossing.index)
            if best is None or cand[0] < best[0]:
                best = cand
    passing = [(p.hours(p.stable_k), i) for i, p in enumerate(proxies) if p.stable_k is not None]
    cheapest = min(passing)[1] if passing else None
    if best is None:
        return Outcome(False, False, cheapest is not None, False, None, None, cost)
    winner = proxies[best[1]]
    wrong = winner.stable_k is None or best[2] < winner.stable_k
    below = wrong and bool(winner.true_corr[best[2]] < TARGET)
    late_e = late_r = None
    if not wrong:
        assert winner.stable_k is not None
        late_e = float(best[2] - winner.stable_k)
        late_r = winner.hours(best[2]) / winner.hours(winner.stable_k)
    pick = None if cheapest is None else best[0] / proxies[cheapest].hours(proxies[cheapest].stable_k or 0)
    return Outcome(wrong, below, best[1] != cheapest, True, late_e, late_r, cost, pick, best[2] + 1, best[0])


def run(
    n_models: int, searches: int, method: str, seed: int, n_sim: int, scores: tuple[str, ...] = ("raw",)
) -> tuple[dict[str, list[Outcome]], dict[str, float]]:
    rng = np.random.default_rng(seed)
    rules = (RULES if "raw" in scores else ()) + (EXTRAPOLATED_RULES if "extrapolated" in scores else ())
    out: dict[str, list[Outcome]] = {r.label: [] for r in rules}
    truth = {"proxies": 0.0, "passing": 0.0, "dipping": 0.0}
    for s in range(searches):
        proxies, y = simulate_search(rng, n_models, method)
        truth["proxies"] += len(proxies)
        truth["passing"] += sum(p.stable_k is not None for p in proxies)
        truth["dipping"] += sum(p.dips for p in proxies)
        seeds = [seed * 100_003 + s * 101 + j for j in range(len(proxies))]
        series = [proxy_series(p, y, method, seeds[j], n_sim) for j, p in enumerate(proxies)]
        if "extrapolated" in scores:
            judged = [extrapolated(p, y, method, seeds[j], n_sim) for j, p in enumerate(proxies)]
            x_proxies, x_series = [j[0] for j in judged], [j[1] for j in judged]
        for rule in rules:
            if rule.extrapolated:
                out[rule.label].append(run_rule(rule, x_proxies, x_series, n_models))
            else:
                out[rule.label].append(run_rule(rule, proxies, series, n_models))
    return out, truth


def table(results: dict[str, list[Outcome]]) -> str:
    base_label = "point" if "point" in results else next(iter(results))
    base = float(np.mean([o.trial_hours for o in results[base_label]]))
    lines = [
        f"{'rule':<60} {'wrong winner':>12} {'(below at decision)':>19} {'missed cheapest':>15} {'none picked':>11} "
        f"{'late (evals)':>12} {'late (time)':>11} {'pick cost':>9} {'trial-hours':>11} "
        f"{'evals to pick':>13} {'hours to pick':>13}"
    ]
    for label, outs in results.items():
        wrong = np.mean([o.wrong for o in outs])
        below = np.mean([o.below for o in outs])
        missed = np.mean([o.missed for o in outs])
        none = np.mean([not o.picked for o in outs])
        late_e = [o.late_evals for o in outs if o.late_evals is not None]
        late_r = [o.late_ratio for o in outs if o.late_ratio is not None]
        hours = float(np.mean([o.trial_hours for o in outs])) / base
        picks = [o.pick_cost for o in outs if o.pick_cost is not None]
        pc = f"{np.median(picks):.2f}x" if picks else "-"
        le = f"{np.mean(late_e):.2f}" if late_e else "-"
        lr = f"{np.mean(late_r):.2f}x" if late_r else "-"
        pe = [o.pick_evals for o in outs if o.pick_evals is not None]
        ph = [o.pick_hours for o in outs if o.pick_hours is not None]
        pes = f"{np.mean(pe):.2f}" if pe else "-"
        phs = f"{np.median(ph):.3f}" if ph else "-"
        lines.append(
            f"{label:<60} {wrong:>12.1%} {below:>19.1%} {missed:>15.1%} {none:>11.1%} {le:>12} {lr:>11} {pc:>9} "
            f"{hours:>10.2f}x {pes:>13} {phs:>13}"
        )
    lines.append(f"(trial-hours relative to {base_label!r}; hours to pick: median hours per model at the decision)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--searches", type=int, default=150, help="simulated searches per model count")
    ap.add_argument("--models", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--method", choices=("spearman", "kendall"), default="spearman")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-sim", type=int, default=200, help="draws of the retraining-noise probability")
    ap.add_argument(
        "--score",
        nargs="+",
        choices=("raw", "extrapolated"),
        default=["raw"],
        help="the proxy scores to judge: raw accuracy (every rule) and/or the extrapolated one (the default rules)",
    )
    args = ap.parse_args(argv)
    for n in args.models:
        t0 = time.perf_counter()
        results, truth = run(n, args.searches, args.method, args.seed, args.n_sim, tuple(args.score))
        secs = time.perf_counter() - t0
        print(
            f"\n{n} reference models, {args.searches} searches of 5 proxies, {args.method} target {TARGET}, "
            f"seed {args.seed} ({secs:.0f} s); truth: {truth['passing'] / truth['proxies']:.0%} of proxies pass "
            f"stably, {truth['dipping'] / truth['proxies']:.0%} cross and fall back below the target"
        )
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
