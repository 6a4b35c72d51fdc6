"""The HTTP API is built on its first call, once, and every call reaches it (functions/deferred_app.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from functions.deferred_app import DeferredApp


class Recorder:
    """A stand-in ASGI app: it records each scope it is called with."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(dict(scope))
        await send({"type": "seen", "path": scope.get("path")})


def call(app: DeferredApp, path: str) -> list[Any]:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "path": path}, receive, send))
    return sent


def test_nothing_is_built_until_the_first_call_and_then_once() -> None:
    built: list[Recorder] = []

    def build() -> Recorder:
        built.append(Recorder())
        return built[-1]

    app = DeferredApp(build)
    assert not app.built and built == []
    assert call(app, "/api/health") == [{"type": "seen", "path": "/api/health"}]
    assert call(app, "/api/cases") == [{"type": "seen", "path": "/api/cases"}]
    assert app.built and len(built) == 1
    assert [s["path"] for s in built[0].scopes] == ["/api/health", "/api/cases"]


def test_two_first_calls_at_once_build_one_app() -> None:
    builds: list[int] = []

    def slow_build() -> Recorder:
        builds.append(1)
        time.sleep(0.2)  # the second call arrives while the first is building
        return Recorder()

    app = DeferredApp(slow_build)
    answers: list[list[Any]] = []
    threads = [threading.Thread(target=lambda n=n: answers.append(call(app, f"/{n}"))) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert sorted(a[0]["path"] for a in answers) == ["/0", "/1"]


def test_a_build_that_fails_fails_its_call_and_the_next_call_builds_again() -> None:
    attempts: list[int] = []

    def flaky() -> Recorder:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("a setting is missing")
        return Recorder()

    app = DeferredApp(flaky)
    with pytest.raises(RuntimeError, match="a setting is missing"):
        call(app, "/api/health")
    assert not app.built
    assert call(app, "/api/health") == [{"type": "seen", "path": "/api/health"}]
    assert len(attempts) == 2
