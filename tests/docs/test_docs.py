"""Every document stays true to the code: README.md and each file under docs/ are read line by line, and
what they name must exist. Each failure says file:line and what is wrong.

- a `duban …` command parses with the real CLI parser (placeholders such as <year> or YEAR, optional
  [parts] and a trailing … are read as usage notation; `--opt X ...` claims --opt takes several values);
- a relative markdown link, and a repository path in backticks, points at a file that exists;
- a DUBAN_* variable is read by some settings class or module;
- an endpoint (`GET /v1/…`) is in a committed OpenAPI document or a service's routes;
- a metric `duban_…` is defined by some code;
- a decision (decision 004, decisions 001/002, docs/decisions/004-…) has its file.
Python sources that point at a document (docs/….md) are checked for the file too."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from duban.cli import build_parser
from tests.deploy.conftest import ROOT, known_env_names

DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
SOURCES = sorted([*(ROOT / "duban").rglob("*.py"), *(ROOT / "services").rglob("*.py")])
TOP_LEVEL = ("duban/", "services/", "deploy/", "contracts/", "docs/", "tests/", "bench/", ".ci/")
ROOT_FILES = ("Makefile", "Dockerfile", "docker-compose.yml", "pyproject.toml", "requirements.lock", "README.md",
              "package.json")
PLACEHOLDER = re.compile(r"<[^>]+>|^[A-Z][A-Z0-9_]*$")  # <department>, YEAR, KEY_ID
METHODS = "GET|POST|PUT|PATCH|DELETE"


def lines_of(doc: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, inside a fenced code block) of each line."""
    fenced = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        yield number, line, fenced


def code_of(line: str, fenced: bool) -> list[str]:
    return [line] if fenced else re.findall(r"`([^`]+)`", line)


# --- duban commands ------------------------------------------------------------------------------


def commands_in(code: str) -> Iterator[list[str]]:
    """The words after `duban` of each invocation in a piece of code, without comments and shell glue."""
    code = re.sub(r"<[^>]+>", "<x>", code.split(" #")[0])  # <key id> is one placeholder
    for part in re.split(r"&&|\|\||;|\|", code):
        part = re.split(r"\s\d?>>?\s", part)[0]  # `duban tokens keys > file`: the redirect is the shell's
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        while words and ("=" in words[0] or words[0] in ("$", "sudo")):
            words.pop(0)  # VAR=value prefixes, prompts
        if len(words) > 1 and words[0] in ("duban", ".venv/bin/duban"):
            yield words[1:]


def command_problem(parser: argparse.ArgumentParser, words: list[str]) -> str | None:
    """Why `duban <words>` is not a command the CLI has, or None."""
    notation = any(PLACEHOLDER.search(w) or w.startswith("[") or w.endswith("]") or w in ("…", "...")
                   for w in words)
    if not notation:
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                parser.parse_args(words)
            return None
        except SystemExit:
            pass  # perhaps a command group named on its own (`duban keys`): checked below
    tokens = [w.strip("[]") for w in words]
    tokens = [t for t in tokens if t]
    current, path = parser, ["duban"]
    while tokens and (sub := _subcommands(current)) is not None and tokens[0] in sub.choices:
        path.append(tokens[0])
        current = sub.choices[tokens.pop(0)]
    if not tokens or tokens[0] in ("…", "..."):
        return None  # a command, or a group of them, named without (all) its arguments
    if _subcommands(current) is not None:
        return f"`{' '.join(path)}` has no subcommand {tokens[0]!r} (it has {', '.join(_subcommands(current).choices)})"
    options = current._option_string_actions
    positionals = [a for a in current._actions if not a.option_strings]
    given = 0
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("…", "..."):
            i += 1
            continue
        if token.startswith("-"):
            name = token.split("=")[0]
            action = options.get(name)
            if action is None:
                return f"`{' '.join(path)}` has no option {name}"
            takes = action.nargs not in (0,) and not isinstance(
                action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
                         argparse._CountAction, argparse._HelpAction))
            i += 1
            if takes and "=" not in token and i < len(tokens) and not tokens[i].startswith("-"):
                i += 1
                if i < len(tokens) and tokens[i] in ("…", "...") and action.nargs not in ("+", "*"):
                    return f"{name} takes one value per flag (repeat `{name} X` for more)"
            continue
        given += 1
        i += 1
    many = any(a.nargs in ("+", "*", argparse.REMAINDER) for a in positionals)
    if given > len(positionals) and not many:
        return f"`{' '.join(path)}` takes {len(positionals)} argument(s), the docs give {given}"
    return None


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


# --- what the code defines -----------------------------------------------------------------------


def routes() -> list[re.Pattern]:
    """Every endpoint: the committed OpenAPI documents' paths and each router's decorated routes."""
    paths = set()
    for document in (ROOT / "contracts" / "openapi").glob("*.json"):
        for path, operations in json.loads(document.read_text(encoding="utf-8"))["paths"].items():
            paths |= {(method.upper(), path) for method in operations}
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        prefix = m.group(1) if (m := re.search(r'APIRouter\(prefix="([^"]*)"', text)) else ""
        for owner, method, path in re.findall(rf'@(router|app)\.({METHODS.lower()})\(\s*"([^"]+)"', text, re.I):
            paths.add((method.upper(), (prefix if owner == "router" else "") + path))
    return [re.compile(rf"{method} " + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
            for method, path in paths]


def metric_names() -> list[re.Pattern]:
    """Names of the metrics the code defines (a {placeholder} in an f-string stands for any word)."""
    found = set()
    for source in SOURCES:
        found |= set(re.findall(r'["\'](duban_[a-z0-9_{}]+)["\']', source.read_text(encoding="utf-8")))
    return [re.compile(re.sub(r"\\\{[^}]*\\\}", "[a-z_]+", re.escape(n)) + "(_bucket|_sum|_count|_created)?$")
            for n in found]


DECISIONS = {p.name[:3] for p in (ROOT / "docs" / "decisions").glob("[0-9][0-9][0-9]-*.md")}


# --- the checks ----------------------------------------------------------------------------------


def problems(doc: Path) -> list[str]:
    parser, known_env, endpoints, metrics = build_parser(), known_env_names(), routes(), metric_names()
    where = doc.relative_to(ROOT) if doc.is_relative_to(ROOT) else doc.name
    found = []
    for number, line, fenced in lines_of(doc):
        at = f"{where}:{number}"
        for code in code_of(line, fenced):
            for words in commands_in(code):
                if problem := command_problem(parser, words):
                    found.append(f"{at}: `duban {' '.join(words)}`: {problem}")
            for path in re.findall(r"(?<![\w/.-])((?:%s)[\w./-]*|(?:%s))(?![\w/-])"
                                   % ("|".join(map(re.escape, TOP_LEVEL)), "|".join(map(re.escape, ROOT_FILES))),
                                   code):
                path = path.rstrip(".")
                if "kubectl" in code and re.fullmatch(r"deploy/[a-z-]+", path):
                    continue  # a Kubernetes Deployment (kubectl … deploy/tracker), not a file
                if re.fullmatch(r"contracts/calendar/\d{4}\.yaml", path):
                    continue  # the yearly schedule file an operator adds
                if not any(c in path for c in "<*{") and "NNN" not in path and not _exists(doc, path):
                    found.append(f"{at}: names {path}, which does not exist")
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            target = target.split("#")[0]
            if target and not re.match(r"[a-z]+:", target) and not (doc.parent / target).exists():
                found.append(f"{at}: links {target}, which does not exist")
        for name in re.findall(r"\bDUBAN_[A-Z0-9_]*[A-Z0-9]\b", line):
            if not name.startswith("DUBAN_TEST_") and name not in known_env:
                found.append(f"{at}: names {name}, which no settings class or module reads")
        for method, path in re.findall(rf"\b({METHODS}) +(/[^\s`)|,?]*)", line):
            path = re.sub(r"<[^>]+>", "x", path).rstrip(".")
            if path.startswith("/v") and not any(r.match(f"{method} {path}") for r in endpoints):
                found.append(f"{at}: {method} {path} is in no OpenAPI document and no service's routes")
        for name in re.findall(r"\b(duban_[a-z0-9_]*[a-z0-9])\b", line):
            if not any(m.match(name) for m in metrics):
                found.append(f"{at}: metric {name} is defined by no code")
        for number_ in _decision_numbers(line):
            if number_ not in DECISIONS:
                found.append(f"{at}: decision {number_} has no file in docs/decisions/")
    return found


def _exists(doc: Path, path: str) -> bool:
    return any((base / path).exists() for base in (ROOT, doc.parent, ROOT / "docs"))


def _decision_numbers(line: str) -> list[str]:
    numbers = re.findall(r"decisions/(\d{3})-", line)
    for group in re.findall(r"\b[Dd]ecisions? ((?:\d{3}(?:\s*(?:/|,|and|&)\s*)?)+)", line):
        numbers += re.findall(r"\d{3}", group)
    return numbers


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_document_names_only_what_exists(doc):
    assert problems(doc) == []


def test_every_document_is_read():
    assert ROOT / "README.md" in DOCUMENTS
    files = {p for p in (ROOT / "docs").rglob("*") if p.is_file()}
    # Besides documents, docs/ holds only the screenshots the documents show (checked to exist above).
    images = {p for p in files if p.suffix == ".png"}
    assert files - images <= set(DOCUMENTS), "a non-markdown file in docs/"
    shown = "\n".join(doc.read_text(encoding="utf-8") for doc in DOCUMENTS)
    assert {p for p in images if str(p.relative_to(ROOT)) not in shown and p.name not in shown} == set(), \
        "a screenshot no document shows"


def test_documents_the_code_points_at_exist():
    missing = [f"{source.relative_to(ROOT)}:{number}: names {path}, which does not exist"
               for source in SOURCES
               for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1)
               for path in re.findall(r"\bdocs/[\w./-]+\.md\b", line) if not (ROOT / path).exists()]
    assert missing == []


@pytest.mark.parametrize("words, problem", [
    ("calendar coverage --require 2027", None),
    ("calendar coverage --require YEAR ...", "--require takes one value per flag (repeat `--require X` for more)"),
    ("keys list --owner x", "`duban keys list` has no option --owner"),
    ("metrics frobnicate", "`duban metrics` has no subcommand 'frobnicate' (it has rebuild)"),
    ("keys", None),
    ("keys revoke <key id>", None),
    ("keys revoke <key id> <other>", "`duban keys revoke` takes 1 argument(s), the docs give 2"),
])
def test_the_command_check_reads_usage_notation(words, problem):
    assert command_problem(build_parser(), next(commands_in("duban " + words))) == problem


def test_the_checker_reports_file_and_line(tmp_path):
    doc = tmp_path / "probe.md"
    doc.write_text("fine\nrun `duban keys list --owner x` and read [it](nowhere.md),\n"
                   "set DUBAN_NO_SUCH_THING, call GET /v1/nothing, watch duban_nothing_total (decision 999).\n",
                   encoding="utf-8")
    assert problems(doc) == [
        "probe.md:2: `duban keys list --owner x`: `duban keys list` has no option --owner",
        "probe.md:2: links nowhere.md, which does not exist",
        "probe.md:3: names DUBAN_NO_SUCH_THING, which no settings class or module reads",
        "probe.md:3: GET /v1/nothing is in no OpenAPI document and no service's routes",
        "probe.md:3: metric duban_nothing_total is defined by no code",
        "probe.md:3: decision 999 has no file in docs/decisions/",
    ]
