"""Every service has the same skeleton (docs/architecture.md, decision 022): pure `domain/`, all SQL in
`store.py`, routes in `api.py` at module level, wiring in `app.py`; every event type name is written once, in
duban/events, never under services/; the import contracts in pyproject.toml hold (docs/architecture.md,
"Packages and the rules between them"); and every regular expression spells digits [0-9]."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from duban.events.registry import CONTRACTS
from entrypoints.services import SERVICES as SERVICE_SPECS
from tests.conftest import ROOT
from tests.deploy.conftest import python_sources

SERVICES = ROOT / "services"
NAMES = tuple(spec.name for spec in SERVICE_SPECS)
STREAM_PROCESSORS = ("tracker", "metrics", "notifier")
# What a domain module must not reach for: a database, a broker, a web framework, the metrics registry.
NOT_IN_DOMAIN = ("asyncpg", "aiokafka", "faust", "fastapi", "starlette", "httpx", "prometheus_client",
                 "duban.pg", "duban.consumer", "duban.broker", "duban.outbox", "duban.streamservice", "duban.api_deps")
ROUTE_DECORATORS = {"get", "post", "put", "patch", "delete", "head", "options", "api_route", "route", "websocket"}
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE|DROP SCHEMA)\b", re.S)


def _modules(service: str) -> list[Path]:
    return sorted((SERVICES / service).rglob("*.py"))


def _strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    strings = [(node.lineno, node.value) for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    # An f-string's literal parts are constants too; its whole text is what reaches the database.
    strings += [(node.lineno, ast.unparse(node)) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
    return strings


@pytest.mark.parametrize("service", NAMES)
def test_the_service_has_the_common_skeleton(service):
    folder = SERVICES / service
    expected = ["domain/__init__.py", "store.py", "api.py", "app.py", "settings.py"]
    if service in STREAM_PROCESSORS:
        expected.append("handlers.py")
    assert [name for name in expected if not (folder / name).is_file()] == []


@pytest.mark.parametrize("service", NAMES)
def test_the_domain_does_no_io(service):
    reached = []
    for path in sorted((SERVICES / service / "domain").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            reached += [f"{path.relative_to(ROOT)}: {name}" for name in names
                        if any(name == banned or name.startswith(banned + ".") for banned in NOT_IN_DOMAIN)
                        or re.fullmatch(r"services\.\w+\.(store|api|app|handlers)", name)]
    assert reached == []


@pytest.mark.parametrize("service", NAMES)
def test_all_sql_is_in_the_store(service):
    elsewhere = [f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}" for path in _modules(service)
                 if path.name != "store.py" for line, text in _strings(path) if SQL.search(text)]
    assert elsewhere == []


def _routes_in_functions(source: str) -> list[str]:
    """Routes declared, or routers made, inside a function: a router factory whose routes close over what it was
    given, where a module-level route takes it from a typed dependency on app.state (duban/api_deps.py)."""
    found = []
    for outer in ast.walk(ast.parse(source)):
        if not isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(outer):
            if node is not outer and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                    isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ROUTE_DECORATORS
                    for d in node.decorator_list):
                found.append(f"{outer.name}:{node.lineno}: route {node.name}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "APIRouter":
                found.append(f"{outer.name}:{node.lineno}: APIRouter()")
    return sorted(found)


@pytest.mark.parametrize("service", NAMES)
def test_routes_are_declared_at_module_level(service):
    assert _routes_in_functions((SERVICES / service / "api.py").read_text(encoding="utf-8")) == []


def test_the_route_check_sees_a_router_factory():
    factory = ("def make_router(catalog):\n"
               "    router = APIRouter(prefix='/v1')\n"
               "    @router.get('/tasks')\n"
               "    async def list_tasks():\n"
               "        return catalog.tasks\n"
               "    return router\n")
    assert _routes_in_functions(factory) == ["make_router:2: APIRouter()", "make_router:4: route list_tasks"]
    assert _routes_in_functions("router = APIRouter()\n@router.get('/tasks')\nasync def list_tasks(): ...\n") == []


def test_the_sql_check_sees_sql():
    assert SQL.search("SELECT light FROM task_lights WHERE task_id = $1")
    assert SQL.search('f"UPDATE escalations SET level = $2 WHERE id = $1"')
    assert not SQL.search("select the tasks from the plan")


def test_no_event_type_name_is_written_under_services():
    written = [f"{path.relative_to(ROOT)}: {event_type}"
               for path in sorted(SERVICES.rglob("*")) if path.suffix in (".py", ".sql")
               for event_type in CONTRACTS if event_type in path.read_text(encoding="utf-8")]
    assert written == [], "name the model's TYPE (duban/events/models.py) instead"


def test_no_handler_compares_event_type_strings():
    compared = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                for path in sorted(SERVICES.rglob("*.py"))
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if re.search(r"""(\.type|\[["']type["']\])\s*(==|!=|in\b)|startswith\(["']duban\.""", line)]
    assert compared == [], "dispatch by model class: duban.events.registry.Dispatch"


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


def _module_imports(service: str) -> dict[str, set[str]]:
    """The service's modules (dotted names) and which of them each imports, at any depth of its code."""
    package = f"services.{service}"
    paths = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
             for path in _modules(service)}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        base = module if path.name == "__init__.py" else module.rpartition(".")[0]
        reached: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                reached.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                origin = ".".join([base.rsplit(".", node.level - 1)[0]] * bool(node.level) + [node.module or ""]).strip(".")
                # `from package import name` imports the submodule `name` when there is one.
                reached.update(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in paths else origin
                               for alias in node.names)
        graph[module] = {name for name in reached if name in paths and name != module and name.startswith(package)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` (its modules in order, the first repeated at the end), or []."""
    done: set[str] = set()

    def walk(module: str, trail: list[str]) -> list[str]:
        if module in trail:
            return trail[trail.index(module):] + [module]
        if module in done:
            return []
        for imported in sorted(graph[module]):
            if found := walk(imported, trail + [module]):
                return found
        done.add(module)
        return []

    return next((found for module in sorted(graph) if (found := walk(module, []))), [])


@pytest.mark.parametrize("service", NAMES)
def test_no_module_of_a_service_imports_itself_back(service):
    """Imports inside a service go one way (app wires api, api uses store and domain): a cycle, even through
    an import inside a function, means two modules that can only be understood and changed together."""
    assert _cycle(_module_imports(service)) == []


def test_the_cycle_check_sees_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
