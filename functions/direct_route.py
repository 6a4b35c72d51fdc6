"""A route whose endpoint takes the ``Request`` and returns its ``Response`` itself.

FastAPI's request handler solves an endpoint's dependencies and validates and
serializes what it returns, on every call. The gate (Dataverse's synchronous
webhook, which holds a user's save until it answers) needs none of that: it reads
the raw body once and writes its JSON answer itself. Declared with this route class,
it is still an ordinary route for everything else: the OpenAPI document, the
exception handlers (problem+json), the middleware and the body limit.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class DirectRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint
