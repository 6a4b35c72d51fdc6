"""Scheduled work: expire held cases (and, as they arrive, the outbox and the sweep)."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import bootstrap

log = logging.getLogger("orgguard.timer")
bp = func.Blueprint()  # type: ignore[no-untyped-call]


def run_housekeeping() -> int:
    expired = bootstrap.container().service.expire_held()
    if expired:
        log.info("expired %d held case(s)", len(expired))
    return len(expired)


@bp.function_name("housekeeping")
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False)
def housekeeping(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("housekeeping is running late")
    run_housekeeping()
