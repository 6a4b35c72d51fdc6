"""Errors as RFC 9457 problem+json: the one place errors become HTTP answers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from shared.bus.port import QueueError
from shared.domain.model import DomainError
from shared.domain.policy import PolicyError
from shared.ledger.port import LedgerError
from shared.service.intake import OrgUnavailable
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.http"))

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def install(app: FastAPI) -> None:
    @app.exception_handler(PolicyError)
    async def _policy(_: Request, exc: PolicyError) -> JSONResponse:
        return problem(422, exc.title, exc.detail, errors=exc.errors)

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, field=exc.field, **exc.facts)

    @app.exception_handler(LedgerError)
    async def _ledger(_: Request, exc: LedgerError) -> JSONResponse:
        log.error("ledger unavailable: %s", exc)
        return problem(503, "Ledger unavailable", str(exc))

    @app.exception_handler(QueueError)
    async def _queue(_: Request, exc: QueueError) -> JSONResponse:
        log.error("queue unavailable: %s", exc)
        return problem(503, "Queue unavailable", str(exc))

    @app.exception_handler(OrgUnavailable)
    async def _org(_: Request, exc: OrgUnavailable) -> JSONResponse:
        return problem(503, "Org unavailable", str(exc))  # its text holds no token or credential detail

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        # No traceback: anyone can hang up mid-body as often as they like. The answer reaches no one.
        log.warning("client disconnected before sending its whole request (%s %s)", request.method, request.url.path)
        return problem(400, "Incomplete request", "the client disconnected before sending its whole body")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"path": "", "message": "invalid request"}
        return problem(400, "Bad request", f"{first['path']}: {first['message']}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))
