"""The kill rate of each mutated module, from mutmut's results (`make mutation`, decision 018).

A mutant listed in tests/mutation/equivalent.md (a line "- `<mutant name>`: why") behaves like the
original and is counted apart; the rate is killed / (mutants - equivalent). A timeout or a crash is a
detection. Exits 1 when a module reached falls below the bar, or when an equivalent is no longer
a survivor (the list must stay true).

    python tests/mutation/rates.py [MODULE ...]    # default: every module mutmut mutates
    python tests/mutation/rates.py --list          # those modules' names
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).with_name("equivalent.md")
BAR = 0.90
DETECTED = {"killed", "timeout", "segfault", "caught by type check"}
_LISTED = re.compile(r"^- `(?P<name>[^`]+)`")
_RESULT = re.compile(r"^\s*(?P<name>\S+)__mutmut_\d+: (?P<status>.+)$")


def mutated_modules() -> list[str]:
    """The dotted names of the files `[tool.mutmut]` mutates (only_mutate less do_not_mutate; a package's
    __init__ only re-exports)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["mutmut"]
    files = {p.relative_to(ROOT) for pattern in config["only_mutate"] for p in ROOT.glob(pattern) if p.suffix == ".py"}
    files = {p for p in files if p.name != "__init__.py"
             and not any(fnmatch.fnmatch(str(p), pattern) for pattern in config.get("do_not_mutate", []))}
    return sorted(".".join(p.with_suffix("").parts) for p in files)


def module_of(mutant: str) -> str:
    # duban.workcal.calendar.xǁWorkingCalendarǁ_index__mutmut_3 -> duban.workcal.calendar
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def equivalents() -> set[str]:
    return {m["name"] for line in EQUIVALENT.read_text("utf-8").splitlines() if (m := _LISTED.match(line))}


def results() -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return {line.split(": ")[0].strip(): line.rsplit(": ", 1)[1].strip()
            for line in out.splitlines() if _RESULT.match(line)}


def main(modules: list[str]) -> int:
    modules = modules or mutated_modules()
    listed, statuses = equivalents(), results()
    failing = []
    stale = sorted(name for name in listed if statuses.get(name) in DETECTED)
    print(f"{'module':38} {'mutants':>7} {'killed':>6} {'equiv.':>6} {'survived':>8} {'no test':>7}  kill rate")
    for module in modules:
        ours = {n: s for n, s in statuses.items() if module_of(n) == module and s != "not checked"}
        if not ours:
            print(f"{module:38} not run")
            continue
        counts = Counter("equivalent" if n in listed and s not in DETECTED else
                         "killed" if s in DETECTED else s for n, s in ours.items())
        judged = len(ours) - counts["equivalent"]
        rate = counts["killed"] / judged if judged else 1.0
        print(f"{module:38} {len(ours):7} {counts['killed']:6} {counts['equivalent']:6} {counts['survived']:8}"
              f" {counts['no tests']:7}  {rate:7.1%}")
        if rate < BAR:
            failing.append(module)
    for name in sorted(n for n, s in statuses.items() if module_of(n) in modules and s not in DETECTED
                       and n not in listed and s != "not checked"):
        print(f"  not killed: {name} ({statuses[name]})")
    for name in stale:
        print(f"  {EQUIVALENT.name} lists {name}, which is now killed: remove it")
    if failing:
        print(f"below {BAR:.0%}: {', '.join(failing)}")
    return 1 if failing or stale else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:  # the modules mutated, one a line (make mutation-changed)
        print("\n".join(mutated_modules()))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
