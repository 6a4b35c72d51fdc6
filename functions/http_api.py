"""The HTTP face of OrgGuard: one FastAPI app for Azure (AsgiFunctionApp) and the local host."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from functions import admin_routes, dataverse_routes, job_routes, problems
from functions.dashboard import DASHBOARD_HTML
from functions.framing import RequestFraming

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_api(lifespan: Lifespan | None = None) -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="OrgGuard",
        version="0.1.0",
        summary="Guards which Dynamics 365 org syncs each Exchange mailbox",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    problems.install(app)
    app.add_middleware(RequestFraming)
    app.include_router(dataverse_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(job_routes.router)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        # The page holds no data; it asks the API (Reader) for everything it shows.
        return HTMLResponse(DASHBOARD_HTML)

    return app
