"""OrgGuard's own work queue: a message per case with actions to carry out, on its mailbox's session.

A work message is a wake-up, not the work: the outbox in the ledger holds the actions, and
the handler runs the outbox worker, which leases what is due (so a message handled twice, or
by two consumers, writes nothing twice). The session keeps one mailbox's work in order and on
one consumer at a time. When an action is deferred (429, 5xx), the handler schedules the
next wake-up on the same session at the action's next attempt: backoff by scheduled message,
with the minute timer as the safety net under it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from shared.bus.port import Message, Received, Verdict, WorkQueue, session_of
from shared.domain.model import ActionStatus, MailboxKey, new_id, utcnow
from shared.ledger.port import CaseReads, LedgerError
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.work"))

KIND = "orgguard.work"


class BadWork(ValueError):
    """A work message OrgGuard cannot read."""


def work_message(case_id: str, key: MailboxKey, why: str, *, at: datetime | None = None) -> Message:
    """The wake-up for ``case_id``'s actions, on ``key``'s session; ``at``: not before then (backoff)."""
    body = json.dumps({"case": case_id, "why": why}, separators=(",", ":")).encode("utf-8")
    return Message(body, f"{case_id}.{new_id()[:8]}", session_of(key), {"kind": KIND}, deliver_at=at)


def case_of(body: bytes) -> str:
    """The case a work message names; ``BadWork`` saying why when there is none."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadWork(f"the body is not JSON ({exc})") from None
    case = doc.get("case") if isinstance(doc, dict) else None
    if not isinstance(case, str) or not case.strip() or len(case) > 100:
        raise BadWork("the body names no case (a JSON object with a 'case' string)")
    return case


@dataclass
class WorkHandler:
    """Carries out one work message: the outbox once, then the next wake-up if an action waits for its backoff."""

    cases: CaseReads
    run_outbox: Callable[[], Awaitable[object]]
    queue: WorkQueue
    clock: Callable[[], datetime] = utcnow

    async def handle(self, received: Received) -> Verdict:
        try:
            case_id = case_of(received.body)
        except BadWork as exc:
            return Verdict.dead_letter("malformed-work", str(exc))
        try:
            case = await asyncio.to_thread(self.cases.case, case_id)
            if case is None:
                return Verdict.dead_letter("unknown-case", f"no case {case_id} in the ledger")
            await self.run_outbox()
            case = await asyncio.to_thread(self.cases.case, case_id)
        except LedgerError as exc:
            return Verdict.abandon(f"the ledger is unavailable: {exc}")
        deferred = [
            a.next_attempt_at
            for a in (case.actions if case else ())
            if a.status is ActionStatus.PENDING and a.attempts > 0 and a.next_attempt_at is not None
        ]
        if case is not None and deferred:
            at = max(min(deferred), self.clock())
            try:
                await asyncio.to_thread(self.queue.send, [work_message(case.id, case.key, "deferred", at=at)])
            except Exception as exc:  # the timer carries it out; this message is done all the same
                log.warning("the next wake-up was not scheduled (%s); the minute timer carries it out", exc)
        return Verdict.complete()
