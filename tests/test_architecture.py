"""The structure the code keeps (docs/architecture.md, "Packages and the rules between them"): the import
contracts in pyproject.toml hold, and every regular expression spells digits [0-9]."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.deploy.conftest import ROOT, python_sources


def test_the_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Contracts: [1-9][0-9]* kept, 0 broken", done.stdout), done.stdout


def test_every_pattern_spells_digits_as_a_range():
    """In Python (and Rust) regexes \\d also matches non-ASCII digits (٣, ３): a pattern that means ASCII digits
    says [0-9] (duban/events/models.py). No string in the code holds a \\d."""
    found = [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
             for path in python_sources() for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\\d" in node.value]
    assert found == []
