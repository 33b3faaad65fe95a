"""What every service exposes for operations: /healthz, /readyz, /metrics, and the process entrypoint.

/healthz answers "is my loop alive" (it ticked recently); /readyz answers "do my dependencies
answer" (PostgreSQL, the broker, …). Kubernetes restarts on the first and routes on the second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from duban.settings import ServiceSettings

ReadinessCheck = Callable[[], Awaitable[object]]


class Liveness:
    """A heartbeat the service's main loop calls; stale means the loop is stuck."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.last_tick = time.monotonic()

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.last_tick

    async def beat_every(self, interval_s: float, still_healthy: Callable[[], bool]) -> None:
        """Background task: tick while `still_healthy()` says the service's workers are running."""
        while True:
            if still_healthy():
                self.tick()
            await asyncio.sleep(interval_s)


def add_ops_routes(app: FastAPI, liveness: Liveness, checks: dict[str, ReadinessCheck]) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        age = liveness.age()
        alive = age < liveness.stale_after_s
        return JSONResponse({"status": "ok" if alive else "stale", "loop_age_s": round(age, 3)},
                            status_code=200 if alive else 503)

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        results = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=2.0)
                results[name] = "ok"
            except Exception as exc:  # any failure means not ready; the reason is reported, not raised
                results[name] = f"failed: {type(exc).__name__}: {exc}"[:300]
        ready = all(v == "ok" for v in results.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": results},
                            status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run until SIGTERM/SIGINT; uvicorn then stops accepting, finishes requests and runs the lifespan
    shutdown, where each service stops its consumers, commits offsets and closes its pools."""
    # uvloop: the stream processors spend much of their time in socket and callback work, which it does in C.
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, loop="uvloop",
                access_log=False, timeout_graceful_shutdown=20, lifespan="on")
