"""The local host behind `orgguard serve`: the same ASGI app as Azure, plus the background work.

In Azure the Service Bus trigger carries out a decision's work as soon as it is queued, and the
housekeeping timer, once a minute, is the safety net. Locally the same: with a queue
(``ORGGUARD_BUS``, which `orgguard serve` sets to ``.orgguard/bus.db``) consumers in the server's
event loop take OrgGuard's work queue (two, so a slow org does not hold up another mailbox) and
Dataverse's queue, and once a minute a round carries out whatever is due in the outbox, expires
held cases, reminds approvers, sends the operations digest when due and checks OrgGuard's
registration in the orgs when that is due. Without a queue that outbox round runs every half
second, as it always has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from functions.http_api import create_api
from shared.bootstrap import Container
from shared.bus.port import Delivery, Verdict
from shared.dataverse.clients import ClientPool
from shared.ledger.port import LedgerError
from shared.service.consumer import consume
from shared.service.execution import ExecutionReport
from shared.service.exemptions import Exemptions
from shared.service.outbox import Executor
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.local"))

SAFETY_NET_S = 60.0  # the outbox round with a queue: as the housekeeping timer in Azure
WORK_CONSUMERS = 2


async def work_loop(
    c: Container,
    executor: Executor | None = None,
    *,
    pool: ClientPool | None = None,
    interval: float = 0.5,
    expire_every: float = 60.0,
) -> None:
    """The outbox round and the housekeeping, on ``executor`` (the host's, shared with the consumers) or on one
    of its own."""
    own = executor is None or pool is None
    if executor is None or pool is None:
        pool = c.client_pool()
        executor = c.executor(pool)
    since_expiry = expire_every
    since_outbox = interval
    outbox_every = SAFETY_NET_S if c.work is not None else interval
    checking: asyncio.Task[None] | None = None
    try:
        while True:
            try:
                if since_expiry >= expire_every:
                    await asyncio.to_thread(c.service.expire_held)
                    await asyncio.to_thread(c.service.remind_held)
                    await asyncio.to_thread(Exemptions(c.service).report_expired)
                    await c.run_digest(pool)
                    if checking is None or checking.done():  # an org that does not answer holds up nothing else
                        checking = asyncio.create_task(c.refresh_registration())
                    since_expiry = 0.0
                if since_outbox >= outbox_every:
                    since_outbox = 0.0
                    report = await executor.run_once()
                    if report.applied or report.failed:
                        log.info(
                            "actions: %d applied, %d failed, %d deferred",
                            report.applied, report.failed, report.deferred,
                        )  # fmt: skip
            except LedgerError as exc:  # a stuck or unreachable ledger: one line, not a traceback a round
                log.warning("background work waits for the ledger: %s", exc)
            except Exception:
                log.exception("background work failed; trying again")
            await asyncio.sleep(interval)
            since_expiry += interval
            since_outbox += interval
    finally:
        if checking is not None:
            checking.cancel()
            await asyncio.gather(checking, return_exceptions=True)
        if own:
            await executor.aclose()
            await pool.aclose()


def consumers(c: Container, run_outbox: Callable[[], Awaitable[ExecutionReport]]) -> list[Coroutine[Any, Any, None]]:
    """The queue consumers of the local host: OrgGuard's work and Dataverse's messages."""
    tasks: list[Coroutine[Any, Any, None]] = []
    if c.bus.work is not None:
        handler = c.work_handler(run_outbox)
        tasks += [consume(c.bus.work, handler.handle) for _ in range(WORK_CONSUMERS)]
    if c.bus.inbound is not None:
        messages = c.dataverse_messages()

        async def decide(delivery: Delivery) -> Verdict:
            verdict, _ = await asyncio.to_thread(messages.decide, delivery)
            return verdict

        tasks.append(consume(c.bus.inbound, decide))
    return tasks


def create_local_app(c: Container, *, background: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        pool = c.client_pool()
        executor = c.executor(pool)
        if background:
            tasks.append(asyncio.create_task(work_loop(c, executor, pool=pool)))
            tasks += [asyncio.create_task(t) for t in consumers(c, executor.run_once)]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await executor.aclose()
            await pool.aclose()

    return create_api(lifespan=lifespan)
