"""RFC 9457 problem details for every HTTP error a Duban service returns."""

from __future__ import annotations

import json
from http import HTTPStatus

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from duban.pg import DATABASE_UNAVAILABLE, database_unavailable

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://duban.gulou.gov.cn/problems/"


class ProblemJSONResponse(JSONResponse):
    media_type = PROBLEM_JSON

    def render(self, content) -> bytes:
        # A problem may quote what the client sent, unpaired surrogates included; written as the
        # \uXXXX escapes JSON has for them instead of failing the answer with a 500.
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace")


class Problem(Exception):
    """Raise to answer with a problem document; `extra` members are added to the body."""

    def __init__(self, status: int, kind: str, detail: str, *, headers: dict[str, str] | None = None, **extra) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail
        self.headers, self.extra = headers or {}, extra


def problem_response(status: int, kind: str, detail: str, *, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    body = {"type": PROBLEM_BASE + kind, "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return ProblemJSONResponse(body, status_code=status, headers=headers)


def install_problem_handlers(app: FastAPI, *, retry_after_s: int = 5) -> None:
    """Problem documents for Problem, HTTP errors, invalid requests and an unavailable database (503,
    `database-unavailable`, with Retry-After: a PostgreSQL restart is an outage, not a server bug)."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.kind, exc.detail, instance=request.url.path, headers=exc.headers,
                                **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(exc.status_code, kind, str(exc.detail), instance=request.url.path,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": "/".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return problem_response(422, "invalid-request", "the request's parameters are invalid",
                                instance=request.url.path, errors=errors)

    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            raise exc  # a bug, not an outage: the server error it is
        log.warning("database unavailable", path=request.url.path, error=repr(exc))
        return problem_response(503, "database-unavailable", "the database is not answering; resend the same"
                                " request later", instance=request.url.path,
                                headers={"Retry-After": str(retry_after_s)})

    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, _database_unavailable)
