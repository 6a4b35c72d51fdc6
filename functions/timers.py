"""Scheduled work: carry out the outbox, and expire held cases."""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from shared import bootstrap
from shared.config.environment import sweep_schedule

log = logging.getLogger("orgguard.timer")
bp = func.Blueprint()  # type: ignore[no-untyped-call]


def run_housekeeping() -> int:
    """Expire held cases past their time, remind approvers of the ones near it, report the ones still waiting
    (an alert reads it) and the exemptions that ended, carry out every due action, and check OrgGuard's
    registration when it is due."""
    from shared.service.exemptions import Exemptions
    from shared.service.signals import report_held

    c = bootstrap.container()
    expired = c.service.expire_held()
    if expired:
        log.info("expired %d held case(s)", len(expired))
    reminded = c.service.remind_held()
    if reminded:
        log.info("reminded the approvers of %d held case(s)", len(reminded))
    report_held(c.service)
    Exemptions(c.service).report_expired()
    asyncio.run(c.run_actions())
    asyncio.run(c.refresh_registration())  # OrgGuard's steps in each org, checked again every few minutes
    return len(expired)


@bp.function_name("housekeeping")
@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False)
def housekeeping(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("housekeeping is running late")
    run_housekeeping()


# --- the scheduled sweep (ORGGUARD_SWEEP_SCHEDULE, ORGGUARD_SWEEP_APPLY) -------------------

SWEEP_SCHEDULE = sweep_schedule()  # the decorator needs it at import


def run_sweep_now(apply: bool | None = None) -> dict[str, object]:
    """One sweep of every org, acting only when ORGGUARD_SWEEP_APPLY says so; its summary."""
    c = bootstrap.container()
    jobs = c.jobs()
    job = jobs.start_sweep([], apply=c.settings.sweep_apply if apply is None else apply, actor="orgguard:timer")
    done, result = asyncio.run(jobs.run_sweep(job))
    summary = result.doc(limit=0)
    log.info("sweep %s: %s", done.id, {k: summary[k] for k in ("mailboxes", "conflicts_total", "requests", "apply")})
    return summary


@bp.function_name("sweep")
@bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False)
def sweep(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("the sweep is running late")
    run_sweep_now()
