"""The ASGI app: every simulated org's Web API, Graph, and the control routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import Response

from sandbox import control, discovery, graph, throttle
from sandbox.batch import Batch
from sandbox.odata import QUERY_ERROR, ODataError
from sandbox.pipeline import Pipeline
from sandbox.seed import seed
from sandbox.state import OrgState, SandboxState
from sandbox.webapi import ApiRequest, ApiResponse, WebApi
from sandbox.webhooks import Poster

API_ROOT = "api/data/v9.2"


def create_app(state: SandboxState | None = None) -> FastAPI:
    """The sandbox over `state` (seeded with the defaults when not given)."""
    state = seed() if state is None else state
    poster = Poster(state)
    pipeline = Pipeline(state, poster)
    api = WebApi(state, pipeline)
    batch = Batch(api)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await pipeline.tests.cancel_pending()
        await poster.close()

    app = FastAPI(
        title="OrgGuard sandbox",
        description="Simulated Dataverse orgs, Exchange and Graph. Never deployed.",
        lifespan=lifespan,
    )
    app.state.sandbox = state
    app.state.poster = poster
    app.include_router(control.router(state, poster, pipeline.tests))
    app.include_router(graph.router(state))
    app.include_router(discovery.router(state))

    @app.api_route(f"/orgs/{{org_name}}/{API_ROOT}/{{path:path}}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def web_api(org_name: str, path: str, request: Request) -> Response:
        org = state.org(org_name)
        if org is None:
            return _send(ApiResponse.error(ODataError(404, f"No organization named '{org_name}'.", QUERY_ERROR)))
        org.counters.http += 1
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Response(
                status_code=401,
                headers={"WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/{org.id}"'},
            )
        user_id = org.user_for_token(token.strip())
        injected = _fault(org, request.method, path)
        if injected is not None:
            return _send(injected)
        if path == "$batch" and request.method == "POST":
            org.counters.batches += 1
        try:
            load = throttle.admit(state, org, user_id)
        except ODataError as error:
            return _send(ApiResponse.error(error))
        started = time.monotonic()
        answer = ApiResponse(500)
        try:
            if org.latency_ms:
                await asyncio.sleep(org.latency_ms / 1000)
            answer = await answer_for(org, user_id, path, request)
        finally:
            throttle.release(state, org, load, answer.operations, time.monotonic() - started)
        answer.headers.update(throttle.remaining(state, org, user_id))
        return _send(answer)

    async def answer_for(org: OrgState, user_id: str, path: str, request: Request) -> ApiResponse:
        inner = ApiRequest(
            method=request.method,
            path=path,
            query=dict(request.query_params),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.body(),
            root=f"{str(request.base_url).rstrip('/')}/orgs/{org.name}/{API_ROOT}/",
        )
        if path == "$batch" and request.method == "POST":
            try:
                return await batch.execute(org, user_id, inner)
            except ODataError as error:
                return ApiResponse.error(error)
        return await api.handle(org, user_id, inner)

    return app


def _fault(org: OrgState, method: str, path: str) -> ApiResponse | None:
    fault = org.fault
    if fault is None or not fault.applies(method, path):
        return None
    fault.count -= 1
    org.counters.faults += 1
    headers = {}
    if fault.retry_after is not None or fault.status in (429, 503):
        headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
    phrase = HTTPStatus(fault.status).phrase if fault.status in HTTPStatus._value2member_map_ else "Error"
    return ApiResponse.error(ODataError(fault.status, f"Injected fault: {phrase}.", "0x80040216", headers))


def _send(response: ApiResponse) -> Response:
    return Response(content=response.body, status_code=response.status, headers=response.headers)
