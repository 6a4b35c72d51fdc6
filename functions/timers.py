"""Scheduled work: carry out the outbox, and expire held cases."""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from shared import bootstrap

log = logging.getLogger("orgguard.timer")
bp = func.Blueprint()  # type: ignore[no-untyped-call]


def run_housekeeping() -> int:
    """Expire held cases past their time, then carry out every due action."""
    c = bootstrap.container()
    expired = c.service.expire_held()
    if expired:
        log.info("expired %d held case(s)", len(expired))
    asyncio.run(c.run_actions())
    return len(expired)


@bp.function_name("housekeeping")
@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False)
def housekeeping(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("housekeeping is running late")
    run_housekeeping()
