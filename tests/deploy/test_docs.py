"""The operations docs stay true to the code: every `duban …` command they show exists, and the
files and settings they name are real."""

from __future__ import annotations

import re
import shlex

import pytest

from duban.cli import build_parser
from tests.deploy.conftest import ROOT, known_env_names

DOCS = ["docs/architecture.md", "docs/runbooks/operations.md", "docs/decisions/001-faust-as-thin-runtime.md",
        "docs/decisions/002-outbox-and-ledger.md", "docs/decisions/003-local-runtime.md", "docs/deploy.md",
        "docs/decisions/016-kubernetes-on-operators.md", "docs/runbooks/dead-letters-increasing.md",
        "docs/runbooks/outbox-rows-parked.md", "docs/decisions/013-record-and-infrastructure-faults.md"]


def commands(text: str) -> list[str]:
    """`duban …` invocations in code blocks and inline code, without comments and shell glue."""
    found = []
    for snippet in re.findall(r"```(?:sh)?\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text):
        for line in snippet.splitlines():
            line = line.split(" #")[0].strip()
            for part in re.split(r"&&|\|\||;", line):
                words = part.strip().split()
                while words and "=" in words[0]:
                    words.pop(0)  # VAR=value prefixes
                if words and words[0] in ("duban", ".venv/bin/duban") and len(words) > 1:
                    found.append(" ".join(words))
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_every_duban_command_in_the_docs_exists(doc, capsys):
    text = (ROOT / doc).read_text(encoding="utf-8")
    parser = build_parser()
    for command in commands(text):
        # Placeholders such as <department> stand for a value; a trailing … for the rest of the command.
        words = shlex.split(command)[1:]
        args = [re.sub(r"<[a-z ]+>", "x", a) for a in words if a not in ("…", "...")]
        if not args:
            continue
        unfinished = words[-1] in ("…", "...")
        try:
            parser.parse_args(args + ["--help"] if unfinished else args)
        except SystemExit as exc:
            if not (unfinished and exc.code == 0):
                pytest.fail(f"{doc}: `{command}` is not a command the duban CLI has (exit {exc.code})")
        else:
            assert not unfinished


@pytest.mark.parametrize("doc", DOCS)
def test_named_files_and_settings_exist(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    for path in set(re.findall(r"`((?:duban|services|deploy|contracts|docs)/[A-Za-z0-9_./-]+?)`", text)):
        if "<" in path or "NNN" in path or "2027" in path:
            continue
        assert (ROOT / path).exists() or (ROOT / "docs" / path).exists(), f"{doc} names {path}, which does not exist"
    known = known_env_names()
    for name in set(re.findall(r"\bDUBAN_[A-Z_]+\b", text)):
        if name.startswith("DUBAN_TEST_"):
            continue
        assert name in known, f"{doc} names {name}, which no settings class reads"
