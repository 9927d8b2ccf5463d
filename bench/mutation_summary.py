"""Per-module mutation score from the last ``mutmut run`` (reads ``mutmut results --all true``).

Killed = killed by a test or by a timeout (the mutant made the tests hang). Mutants that no
selected test reaches ("no tests") and survivors count as not killed. Run from the repository
root after ``mutmut run --max-children 1``:

    python bench/mutation_summary.py [--survivors]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys

_LINE = re.compile(r"^\s*(?P<name>\S+)__mutmut_\d+: (?P<status>.+)$")
_KILLED = {"killed", "timeout"}


def _module(mutant: str) -> str:
    """``controllers.stats._noise.xǁCeilingǁto_dict`` -> ``controllers/stats/_noise.py``."""
    parts = mutant.split(".")
    while parts and (parts[-1].startswith("x_") or parts[-1].startswith("xǁ")):
        parts.pop()
    path = "/".join(parts)
    return path + "/__init__.py" if os.path.isdir(path) else path + ".py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true", help="also list the mutants not killed")
    args = parser.parse_args()
    mutmut = shutil.which("mutmut") or "mutmut"
    out = subprocess.run([mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    alive: list[str] = []
    for line in out.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        status = m["status"].strip()
        counts[_module(m["name"])][status] += 1
        if status not in _KILLED:
            alive.append(line.strip())
    if not counts:
        print("no mutmut results: run `mutmut run --max-children 1` first", file=sys.stderr)
        return 1
    total = collections.Counter[str]()
    print(f"{'module':<44} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'score':>6}")
    for module in sorted(counts):
        c = counts[module]
        total.update(c)
        n = sum(c.values())
        killed = sum(c[s] for s in _KILLED)
        print(f"{module:<44} {n:>7} {killed:>7} {c['survived']:>8} {c['no tests']:>8} {100 * killed / n:>5.1f}%")
    n = sum(total.values())
    killed = sum(total[s] for s in _KILLED)
    print(f"{'all':<44} {n:>7} {killed:>7} {total['survived']:>8} {total['no tests']:>8} {100 * killed / n:>5.1f}%")
    others = {s: k for s, k in total.items() if s not in _KILLED | {"survived", "no tests"}}
    if others:
        print(f"other states: {others}")
    if args.survivors:
        print()
        print("\n".join(alive))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
