"""The local host behind `orgguard serve`: the same ASGI app as Azure, plus the background work.

In Azure the timer trigger carries out the outbox; locally a task in the
server's event loop does, every half second, and once a minute expires held
cases, reminds approvers, sends the operations digest when due and checks
OrgGuard's registration in the orgs when that is due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from functions.http_api import create_api
from shared.bootstrap import Container
from shared.ledger.port import LedgerError
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.local"))


async def work_loop(c: Container, *, interval: float = 0.5, expire_every: float = 60.0) -> None:
    pool = c.client_pool()
    executor = c.executor(pool)
    since_expiry = expire_every
    checking: asyncio.Task[None] | None = None
    try:
        while True:
            try:
                if since_expiry >= expire_every:
                    await asyncio.to_thread(c.service.expire_held)
                    await asyncio.to_thread(c.service.remind_held)
                    await c.run_digest(pool)
                    if checking is None or checking.done():  # an org that does not answer holds up nothing else
                        checking = asyncio.create_task(c.refresh_registration())
                    since_expiry = 0.0
                report = await executor.run_once()
                if report.applied or report.failed:
                    log.info(
                        "actions: %d applied, %d failed, %d deferred", report.applied, report.failed, report.deferred
                    )
            except LedgerError as exc:  # a stuck or unreachable ledger: one line, not a traceback a round
                log.warning("background work waits for the ledger: %s", exc)
            except Exception:
                log.exception("background work failed; trying again")
            await asyncio.sleep(interval)
            since_expiry += interval
    finally:
        if checking is not None:
            checking.cancel()
            await asyncio.gather(checking, return_exceptions=True)
        await executor.aclose()
        await pool.aclose()


def create_local_app(c: Container, *, background: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(work_loop(c)) if background else None
        yield
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return create_api(lifespan=lifespan)
