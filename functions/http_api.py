"""The HTTP face of OrgGuard: one FastAPI app for Azure (AsgiFunctionApp) and the local host."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from functions import (
    admin_routes,
    dataverse_routes,
    deadletter_routes,
    governance_routes,
    job_routes,
    mailbox_routes,
    page_routes,
    problems,
)
from functions.framing import RequestFraming

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_api(lifespan: Lifespan | None = None) -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="OrgGuard",
        version="0.1.0",
        summary="Guards which Dynamics 365 org syncs each Exchange mailbox",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served by page_routes from Swagger UI's own files, not a CDN
        redoc_url=None,
        # FastAPI's own spans and logs record request paths and rejected inputs, which carry mailbox
        # addresses (/api/mailboxes/{address}); OrgGuard records its own spans (shared/telemetry.py).
        telemetry={"tracing": False, "operation_spans": False, "logs": False, "metrics": True},
    )
    problems.install(app)
    app.add_middleware(RequestFraming)
    app.include_router(dataverse_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(mailbox_routes.router)
    app.include_router(job_routes.router)
    app.include_router(deadletter_routes.router)
    app.include_router(governance_routes.router)
    page_routes.install(app)
    return app
