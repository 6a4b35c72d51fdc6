"""The HTTP API built on its first call, not when the Functions host indexes the functions.

``import function_app`` is what every instance runs before anything else (the host indexes the functions on a
cold start). Building the FastAPI app there imports FastAPI, Starlette and every route's request models (about
150 ms here), which an instance that only runs the Service Bus triggers or the timers never uses: Flex
Consumption scales those apart from the HTTP functions. The HTTP app's first call (the ASGI lifespan's startup,
which ``AsgiFunctionApp`` sends before the first request) builds it instead; an HTTP instance pays the same as
before, once.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class DeferredApp:
    """An ASGI app that builds the real one with ``build()`` on its first call, once, and passes every call on."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._app is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or self._built()
        await app(scope, receive, send)

    def _built(self) -> ASGIApp:
        with self._lock:  # two first calls at once build one app
            if self._app is None:
                self._app = self._build()
            return self._app
