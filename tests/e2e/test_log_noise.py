"""Log noise an outside party can amplify: each repeated fault leaves one rate-limited line, no traceback.

The logs are read as an operator reads them: every record of OrgGuard and of
the server (uvicorn), formatted with its traceback, counted in lines.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from functions.http_api import create_api
from sandbox.server import free_port
from shared import bootstrap
from shared.dataverse.clients import ClientPool
from shared.dataverse.port import RetryPolicy
from shared.ledger.port import LedgerError
from shared.service.outbox import Executor
from tests.factories import KEYS, container, registry
from tests.serving import serve

REPEATS = 20


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, *, at_least: int = logging.WARNING, only: tuple[str, ...] = ("",)) -> list[str]:
        """Formatted lines of the records at ``at_least`` or above from loggers named ``only`` (prefixes)."""
        out: list[str] = []
        for record in self.records:
            if record.levelno >= at_least and record.name.startswith(only):
                out += self.format(record).splitlines()
        return out


UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.asgi")


@pytest.fixture
def logs() -> Iterator[Lines]:
    """Every record of OrgGuard, and of uvicorn once ``watch_the_server`` is called (after it configured its logs)."""
    handler = Lines()
    logging.getLogger().addHandler(handler)
    yield handler
    for name in ("", *UVICORN):
        logging.getLogger(name).removeHandler(handler)


def watch_the_server(handler: Lines) -> None:
    """uvicorn's loggers do not propagate to the root, and it resets their handlers when it starts."""
    for name in UVICORN:
        logging.getLogger(name).addHandler(handler)


def hang_up_mid_body(url: str, path: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        head = (f"POST {path} HTTP/1.1\r\nHost: orgguard\r\nx-orgguard-key: {KEYS['contoso-jp']}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")  # fmt: skip
        s.sendall(head.encode() + b'{"MessageName": "Update", ')
        time.sleep(0.05)  # the route is reading the body now


def test_clients_hanging_up_mid_body_leave_one_line_not_tracebacks(tmp_path, logs):
    c = container(tmp_path)
    bootstrap.install(c)
    try:
        with serve(create_api()) as url:
            watch_the_server(logs)
            for i in range(REPEATS):
                hang_up_mid_body(url, ("/api/dataverse/gate", "/api/dataverse/events")[i % 2])
            time.sleep(0.5)
    finally:
        bootstrap.install(None)
        c.close()
    lines = logs.lines(only=("uvicorn", "orgguard.http", "orgguard.gate", "orgguard.intake", "starlette", "fastapi"))
    assert not any("Traceback" in line for line in lines), "\n".join(lines[:60])
    assert 1 <= len(lines) <= 2, "\n".join(lines)  # one line per kind a minute, however many hang up
    assert "disconnected" in lines[0]


def test_an_unreachable_org_is_asked_who_orgguard_is_with_a_pause_and_said_once(logs):
    orgs = registry(f"http://127.0.0.1:{free_port()}")  # nothing listens there

    async def loop() -> int:
        pool = ClientPool(RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, timeout=0.5), client_id=None)
        executor = Executor(ledger=None, orgs=orgs, client_for=pool)  # type: ignore[arg-type]
        try:
            for _ in range(REPEATS):  # the local host runs this every half second
                await executor.learn_own_users()
                await asyncio.sleep(0.01)
            return pool.requests_sent
        finally:
            await pool.aclose()

    requests = asyncio.run(loop())
    assert requests == len(orgs) * 2, "each org is asked once (2 tries), then left alone for a while"
    mine = logs.lines(only=("orgguard.executor", "orgguard.dataverse"))
    whoami = [line for line in mine if "WhoAmI failed in" in line]
    assert len(whoami) == len(orgs) and all("asking again in 5 s" in line for line in whoami)
    assert len(mine) <= len(orgs) + 1, "\n".join(mine)  # and one line from the client, however many tries


def test_a_ledger_that_stays_down_is_reported_once_by_the_background_loop(tmp_path, logs, monkeypatch):
    from functions.local_host import work_loop

    c = container(tmp_path)

    def down(*args: object, **kwargs: object) -> None:
        raise LedgerError("the ledger is unavailable: disk I/O error")

    monkeypatch.setattr(c.ledger, "lease_actions", down)
    monkeypatch.setattr(c.service, "expire_held", down)
    monkeypatch.setattr(type(c.orgs), "__iter__", lambda self: iter(()))  # no WhoAmI in this test

    async def run_for(seconds: float) -> None:
        task = asyncio.create_task(work_loop(c, interval=0.01, expire_every=0.02))
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run_for(0.5))
    c.close()
    lines = logs.lines(only=("orgguard.local",))
    assert not any("Traceback" in line for line in lines), "\n".join(lines[:40])
    assert len(lines) == 1 and "waits for the ledger" in lines[0], "\n".join(lines)


def test_the_rate_limit_lets_a_kind_through_again_and_counts_what_it_left_out() -> None:
    from shared.telemetry.lograte import RateLimited

    now = [0.0]
    limit = RateLimited(60.0, clock=lambda: now[0])
    logger = logging.getLogger("orgguard.test.rate")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger.addFilter(limit)
    logger.addHandler(Keep())
    logger.propagate = False
    for i in range(5):
        logger.warning("org %s failed", "contoso-na", extra={"rate_key": "contoso-na"})
        logger.warning("org %s failed", "contoso-jp", extra={"rate_key": "contoso-jp"})
        now[0] += 10 * i
    assert seen[:2] == ["org contoso-na failed", "org contoso-jp failed"]
    assert seen[2:] == [
        "org contoso-na failed (3 more like this in the last 60 s)",
        "org contoso-jp failed (3 more like this in the last 60 s)",
    ]
