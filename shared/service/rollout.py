"""Carrying out a job's decided actions through the executor, at the pace the orgs allow.

The executor (the outbox worker) does the writing: one ``$batch`` per org per
round, retries, ``Retry-After``, every attempt recorded. This loop decides how
much to hand it per round (what each org's remaining budget allows, or
everything when the orgs report no budget), waits out throttled windows instead
of knocking, and stops when every case of the job is settled, or when asked to
(pause, cancel). Cases are checked in the ledger, so a loop that is stopped and
started again picks up exactly what is still pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from shared.dataverse import schema
from shared.dataverse.pacing import Pacer
from shared.dataverse.port import MAX_BATCH, OrgClient
from shared.domain.model import Action, ActionKind, ActionStatus, Case, CaseState
from shared.ledger.port import Ledger
from shared.service.execution import ExecutionReport
from shared.service.org_writes import landed
from shared.service.outbox import Executor

UNBOUNDED = 100_000  # actions per round when no org reports a budget
SETTLED = {CaseState.APPLIED, CaseState.FAILED, CaseState.DENIED, CaseState.EXPIRED}

Stop = Callable[[], Awaitable[bool]]
Progress = Callable[["Rollout"], Awaitable[None]]


@dataclass
class Rollout:
    applied: int = 0
    failed: int = 0
    deferred: int = 0
    verified: int = 0  # found already done in the org after a restart: recorded, not sent again
    settled: int = 0
    total: int = 0
    rounds: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: bool = False


def round_size(pacer: Pacer, orgs: Sequence[str]) -> int:
    """Actions to hand the executor now, for a job writing to ``orgs``.

    Everything when no org reports a budget; otherwise what the tightest org allows,
    once per org (a job's actions alternate between its orgs), so no org is handed a
    batch bigger than what is left of its window.
    """
    paces = [pacer.pace(o) for o in orgs]
    if not paces or all(p.remaining is None for p in paces):
        return UNBOUNDED
    return len(paces) * min(p.allowance(MAX_BATCH) for p in paces)


def unsettled(ledger: Ledger, case_ids: Sequence[str]) -> list[str]:
    out = []
    for case_id in case_ids:
        case = ledger.case(case_id)
        if case is not None and case.state not in SETTLED and _pending(case):
            out.append(case_id)
    return out


def _pending(case: Case) -> bool:
    return any(a.status is ActionStatus.PENDING for a in case.actions)


async def carry_out(
    executor: Executor,
    ledger: Ledger,
    pacer: Pacer,
    case_ids: Sequence[str],
    *,
    orgs: Sequence[str] | None = None,
    stop: Stop | None = None,
    progress: Progress | None = None,
    poll: float = 0.2,
    recheck: float = 1.0,
) -> Rollout:
    """Run the executor until every case in ``case_ids`` is settled (or ``stop`` says so).

    ``orgs`` are the orgs the cases write to (all registered ones by default): their
    budgets size each round.
    """
    state = Rollout(total=len(case_ids))
    waiting = await asyncio.to_thread(unsettled, ledger, case_ids)
    state.settled = state.total - len(waiting)
    orgs = list(orgs or executor.orgs.names)
    idle = 0.0
    while waiting:
        if stop is not None and await stop():
            state.stopped = True
            break
        # Wait out a spent window here, before the executor leases actions, not while holding them.
        pause = max((pacer.pace(o).wait_s() for o in orgs), default=0.0)
        if pause > 0:
            await asyncio.sleep(pause)
        report: ExecutionReport = await executor.run_once(limit=round_size(pacer, orgs))
        state.rounds += 1
        state.applied += report.applied
        state.failed += report.failed
        state.deferred += report.deferred
        state.errors += report.errors[: max(0, 50 - len(state.errors))]
        if report.applied + report.failed == 0:
            # Everything left is deferred (throttled, backing off) or leased by another worker,
            # such as the local host's own executor: look in the ledger now and then, as that
            # worker may settle it (waiting only for our own results would wait forever).
            await asyncio.sleep(poll)
            idle += poll
            if idle < recheck:
                continue
        idle = 0.0
        waiting = await asyncio.to_thread(unsettled, ledger, waiting)
        state.settled = state.total - len(waiting)
        if progress is not None:
            await progress(state)
    return state


# ---------------------------------------------------------------------------
# After a restart: was the write already made?


def done_in_org(action: Action, row: dict[str, object]) -> bool:
    """Whether ``row`` (read back from the org) already shows ``action``'s write.

    A demote is done when every column it writes holds its value (``org_writes.landed``).
    A promote is done when the check box is on, ACT is server-side sync, and Test & Enable
    was scheduled or has run since the action was decided (so a row that merely looked
    promoted before does not skip its Test & Enable).
    """
    if action.kind is ActionKind.DEMOTE:
        return landed(action.kind, row, None, action.fence)
    if action.kind is ActionKind.PROMOTE:
        if row.get(schema.ACT_METHOD) != schema.ActMethod.SERVER_SIDE_SYNC or not row.get(schema.PRIMARY_FLAG):
            return False
        if row.get(schema.TEST_ENABLE) is True:
            return True
        tested = str(row.get(schema.TESTED_ON) or "")
        decided = action.created_at.strftime("%Y-%m-%dT%H:%M:%S")
        return bool(tested) and tested[:19] >= decided
    return False


VERIFY_COLUMNS = (
    schema.MAILBOX_ID,
    schema.ACT_METHOD,
    schema.PRIMARY_FLAG,
    schema.TEST_ENABLE,
    schema.TESTED_ON,
    schema.INCOMING_EMAIL,
    schema.OUTGOING_EMAIL,
)
IDS_PER_QUERY = 50


async def verify_in_doubt(ledger: Ledger, client_for: Callable[[str], OrgClient], case_ids: Sequence[str]) -> int:
    """Record as applied the pending actions of ``case_ids`` whose write already reached the org.

    Used when a job resumes: the batch that was in flight when the process died may
    have been applied without being recorded. Sending it again would repeat a Test &
    Enable; reading the rows back (50 per request) tells which writes are done.
    """
    by_org: dict[str, list[Action]] = {}
    for case_id in case_ids:
        case = await asyncio.to_thread(ledger.case, case_id)
        for action in case.actions if case else ():
            if action.status is ActionStatus.PENDING and action.mailbox_id:
                by_org.setdefault(action.org, []).append(action)
    verified = 0
    for org, actions in by_org.items():
        client = client_for(org)
        for start in range(0, len(actions), IDS_PER_QUERY):
            chunk = actions[start : start + IDS_PER_QUERY]
            query = " or ".join(f"{schema.MAILBOX_ID} eq {a.mailbox_id}" for a in chunk)
            rows: dict[str, dict[str, object]] = {}
            async for page in client.query(schema.MAILBOXES, select=VERIFY_COLUMNS, filter=query):
                rows.update({str(r[schema.MAILBOX_ID]).lower(): r for r in page})
            for action in chunk:
                row = rows.get(str(action.mailbox_id).lower())
                if row is not None and done_in_org(action, row):
                    await asyncio.to_thread(
                        ledger.record_attempt, action.id, ActionStatus.APPLIED, "verified in the org after a restart"
                    )
                    verified += 1
    return verified
