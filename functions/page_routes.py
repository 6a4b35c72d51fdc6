"""The approver's page and the API docs, served by the app itself: no CDN, no network at run time.

The page is static files (``functions/static``) that ask the API for everything,
with the caller's own credentials; ``/api/me`` tells it what to offer. Behind App
Service Authentication the platform lets anonymous requests through to the app
(``AllowAnonymous``), so the app sends a browser without a session to the
platform's login instead of answering a bare 401.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from functions.deps import container, role
from functions.problems import problem
from shared.domain.auth import Principal, Role

STATIC = Path(__file__).resolve().parent / "static"
SWAGGER = STATIC / "vendor" / "swagger-ui"
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
LOGIN = "/.auth/login/aad?post_login_redirect_uri=/"

# The page runs only its own files; nothing may frame it (clickjacking an Approve button).
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)

router = APIRouter()
Reader = Annotated[Principal, Depends(role(Role.READER))]


@functools.cache
def _index() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


@router.get("/", include_in_schema=False)
async def page(request: Request) -> Response:
    auth = container().settings.auth
    if auth == "easyauth" and not request.headers.get("x-ms-client-principal"):
        return RedirectResponse(LOGIN, status_code=302)
    html = _index().replace("{{auth}}", auth)
    return HTMLResponse(
        html,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": PAGE_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@router.get("/api/me", tags=["admin"])
async def me(who: Reader) -> dict[str, Any]:
    """Who is calling, what the page may offer them (any OrgGuard role), and the registered orgs' names."""
    c = container()
    return {
        "name": who.name,
        "role": who.role.name.lower(),
        "roles": [r.app_role for r in Role if r <= who.role],
        "auth": c.settings.auth,
        "orgs": c.orgs.names,
    }


@router.get("/api/docs", include_in_schema=False)
async def docs() -> Response:
    missing = [name for name in SWAGGER_FILES if not (SWAGGER / name).is_file()]
    if missing:
        return problem(
            503,
            "API docs unavailable",
            f"Swagger UI's files are missing ({', '.join(missing)}); `make static` copies them from npm",
        )
    return get_swagger_ui_html(
        openapi_url="/api/openapi.json",
        title="OrgGuard API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
        # No online validator badge: it would call validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
    )


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
