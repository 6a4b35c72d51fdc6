"""A minimal Microsoft Graph: the user attributes policy reads, group names, and sendMail."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.model import mailbox_key
from sandbox.state import GraphUser, SandboxState, now_iso

ROOT = "https://graph.microsoft.com/v1.0/"
USER_PROPERTIES = (
    "id",
    "displayName",
    "userPrincipalName",
    "mail",
    "usageLocation",
    "country",
    "department",
    "jobTitle",
)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def router(state: SandboxState) -> APIRouter:
    routes = APIRouter(prefix="/graph/v1.0")

    def authorized(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and bool(token.strip())

    def find(user: str) -> GraphUser | None:
        found = state.graph_users.get(user.lower())
        if found is None:
            user_id = state.graph_by_address.get(mailbox_key(user))
            found = state.graph_users.get(user_id) if user_id else None
        return found

    def missing(user: str) -> JSONResponse:
        return _error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{user}' does not exist or one of its queried reference-property objects are not present.",
        )

    def unauthorized() -> JSONResponse:
        return _error(401, "InvalidAuthenticationToken", "Access token is empty.")

    @routes.get("/users/{user}")
    async def get_user(user: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        found = find(user)
        if found is None:
            return missing(user)
        select = [name.strip() for name in request.query_params.get("$select", "").split(",") if name.strip()]
        unknown = [name for name in select if name not in USER_PROPERTIES]
        if unknown:
            return _error(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{unknown[0]}' on type 'microsoft.graph.user'.",
            )
        body = found.as_json()
        if select:
            body = {name: body[name] for name in ("id", *select)}
            context = f"{ROOT}$metadata#users({','.join(select)})/$entity"
        else:
            context = f"{ROOT}$metadata#users/$entity"
        return JSONResponse({"@odata.context": context, **body})

    @routes.get("/users/{user}/memberOf")
    async def member_of(user: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        found = find(user)
        if found is None:
            return missing(user)
        groups = [
            {"@odata.type": "#microsoft.graph.group", "id": group_id, "displayName": state.groups[group_id]}
            for group_id in found.groups
        ]
        return JSONResponse({"@odata.context": f"{ROOT}$metadata#directoryObjects", "value": groups})

    @routes.post("/users/{user}/sendMail")
    async def send_mail(user: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        found = find(user)
        if found is None:
            return missing(user)
        try:
            body: Any = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "ErrorInvalidRequest", "The request body is not valid JSON.")
        lowered = {str(key).lower(): value for key, value in body.items()} if isinstance(body, dict) else {}
        message = lowered.get("message")
        if not isinstance(message, dict):
            return _error(400, "ErrorInvalidRequest", "The 'message' property is required.")
        state.mail.append(
            {
                "at": now_iso(),
                "from": found.userPrincipalName,
                "message": message,
                "saveToSentItems": lowered.get("savetosentitems", True),
            }
        )
        return Response(status_code=202)

    return routes
