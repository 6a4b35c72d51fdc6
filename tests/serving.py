"""Run an ASGI app on a real socket in a background thread (for tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sandbox.server import serving


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` (OrgGuard's, mostly) on a free loopback port; its base URL. Its lifespan runs if it has one."""
    with serving(app, name="test server", lifespan="auto") as url:
        yield url
