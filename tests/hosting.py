"""OrgGuard hosted for a test: a container installed for the entry points, and its HTTP API on a real socket.

The entry points (routes, timers, the CLI) find their container through
``bootstrap.install``; a test that forgot to take it away again would leave the
next test talking to a closed ledger, so both steps live here, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from shared import bootstrap
from tests.serving import serve


@contextmanager
def installed(c: bootstrap.Container) -> Iterator[bootstrap.Container]:
    """``c`` as the container every entry point uses; uninstalled and closed afterwards, whatever happened."""
    bootstrap.install(c)
    try:
        yield c
    finally:
        bootstrap.install(None)
        c.close()


@contextmanager
def api_url(c: bootstrap.Container) -> Iterator[str]:
    """OrgGuard's HTTP API answering from ``c`` on a free port; its base URL."""
    from functions.http_api import create_api

    with installed(c), serve(create_api()) as url:
        yield url


@contextmanager
def api_client(c: bootstrap.Container, **options: Any) -> Iterator[httpx.Client]:
    """A client on OrgGuard's HTTP API answering from ``c`` (``options`` go to ``httpx.Client``; 10 s timeout)."""
    with api_url(c) as url, httpx.Client(base_url=url, **{"timeout": 10, **options}) as client:
        yield client
