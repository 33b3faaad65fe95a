"""Board: wiring of the pages, the read-API clients, templates, static files and the ops endpoints."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from duban import auth
from duban.catalog import load_catalog
from duban.logs import configure_logging
from duban.ops import Liveness, add_ops_routes
from duban.pg import create_pool
from duban.problems import Problem, problem_response
from duban.workcal import WorkingCalendar
from services.board.api import pages, public
from services.board.clients import ReadApis, UpstreamRefused
from services.board.domain.schedule import IssueSchedule
from services.board.domain.tables import SHANGHAI, civil
from services.board.domain.views import LIGHT_NAMES, UNIT_NAMES
from services.board.scheduled import BulletinJob, handoff_lease_for, token_from
from services.board.session import COOKIE, SignInRequired
from services.board.settings import BoardSettings

log = structlog.get_logger(__name__)
HERE = Path(__file__).resolve().parent


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["civil"] = civil
    templates.env.filters["light_name"] = lambda light: LIGHT_NAMES.get(light, "未计量")
    templates.env.filters["number"] = lambda value, digits=2: "—" if value is None else f"{value:,.{digits}f}".rstrip("0").rstrip(".")
    templates.env.filters["unit"] = lambda code: UNIT_NAMES.get(code, code)
    templates.env.filters["percent"] = lambda value: "—" if value is None else f"{value:.0%}"
    return templates


def create_app(settings: BoardSettings | None = None) -> FastAPI:
    settings = settings or BoardSettings()
    configure_logging("board", level=settings.log_level, json=settings.log_json)
    liveness = Liveness(settings.liveness_stale_after_s)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call would drown the log

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        auth.install(app, settings)  # no key to check tokens with: refuse to start rather than run open
        app.state.pool = await create_pool(settings.database_url, settings.schema_name, max_size=4)
        app.state.apis = ReadApis.open(settings)
        job = bulletin_job(app, settings)
        heartbeat = asyncio.create_task(liveness.beat_every(1.0, lambda: job is None or not job.done()),
                                        name="heartbeat")
        log.info("started", port=settings.http_port, tracker=settings.tracker_url, metrics=settings.metrics_url,
                 notifier=settings.notifier_url)
        try:
            yield
        finally:
            tasks = [task for task in (heartbeat, job) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # the job gives its connection back first
            await app.state.apis.close()
            await app.state.pool.close()
            log.info("stopped")

    app = FastAPI(title="Duban board", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.catalog, app.state.templates = settings, load_catalog(), make_templates()
    app.state.today = lambda: settings.clock().astimezone(SHANGHAI).date()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(public)
    app.include_router(pages)
    install_error_pages(app)

    @app.middleware("http")
    async def security_headers(request: Request, call_next) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def upstream_alive(url: str) -> None:
        (await app.state.apis.client.get(url + "/healthz", timeout=2.0)).raise_for_status()

    async def database_answers() -> None:
        await app.state.pool.fetchval("SELECT 1")

    add_ops_routes(app, liveness, {"postgresql": database_answers,
                                   "tracker": lambda: upstream_alive(settings.tracker_url),
                                   "metrics": lambda: upstream_alive(settings.metrics_url),
                                   "notifier": lambda: upstream_alive(settings.notifier_url)})
    return app


def bulletin_job(app: FastAPI, settings: BoardSettings) -> asyncio.Task | None:
    """The automatic bulletin and the hand-offs (services/board/scheduled.py), when the board has a token."""
    if settings.service_token_file is None:
        log.warning("no service token (DUBAN_SERVICE_TOKEN_FILE): no automatic bulletin, and issued bulletins"
                    " are not handed to the notifier for mailing")
        return None
    schedule = IssueSchedule(settings.bulletin_weekday, settings.bulletin_at) if settings.bulletin_schedule else None
    job = BulletinJob(app.state.apis, app.state.pool, app.state.catalog, WorkingCalendar(), schedule,
                      token_from(settings.service_token_file), handoff_lease_for(settings.upstream_timeout_s))
    return asyncio.create_task(job.run(settings.bulletin_interval_s, settings.clock), name="bulletins")


# Scripts, styles and everything else from the board itself only (the chart reads its data from the page, no
# inline script), no framing, no referrer leaving the board with a task's address in it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self';"
                               " base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status: int, detail: str) -> Response:
    if not wants_html(request):
        return problem_response(status, "board-error", detail, instance=request.url.path)
    return request.app.state.templates.TemplateResponse(
        request, "error.html", {"session": None, "status": status, "detail": detail}, status_code=status)


def sign_in_again(request: Request, next_path: str, detail: str) -> Response:
    """A browser goes to the sign-in form (and forgets a cookie that no longer works); a client gets 401."""
    if not wants_html(request):
        return problem_response(401, "unauthenticated", detail, instance=request.url.path,
                                headers={"WWW-Authenticate": f'Bearer realm="{auth.REALM}"'})
    response = RedirectResponse(f"/signin?next={next_path}", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return sign_in_again(request, exc.next, exc.detail)

    @app.exception_handler(UpstreamRefused)
    async def _upstream(request: Request, exc: UpstreamRefused) -> Response:
        if exc.status == 401:
            return sign_in_again(request, request.url.path, exc.detail)
        # What the user may not do or see is the service's answer; a fault behind the board is a bad gateway.
        status = exc.status if exc.status < 500 else 502
        return error_page(request, status, exc.detail)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return error_page(request, exc.status, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
        return error_page(request, 422, f"请求参数无效 — {fields}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return error_page(request, exc.status_code, str(exc.detail))
