"""The operations digest: every ``notify.digest_every``, one mail listing the actions that failed since the last.

A digest belongs to no case, so it is not an outbox action; it is a job record
(kind ``digest``) whose id is the audit position it starts after. Two instances
due at once both try to create that record and only one can, so one digest goes
out. The record stays ``running`` until Graph answered 202 (a clean failure is
tried again on the next round), ends ``done``, or ``failed`` when Graph refused
it or its answer was lost (never resent by itself, as for notify actions).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from shared.domain import letters
from shared.domain.jobs import Job, JobConflict, JobKind, JobState
from shared.domain.model import MailboxKey
from shared.domain.policy import Policy
from shared.ledger.port import JobLedger
from shared.service.delivery import Delivery, SendFailed

log = logging.getLogger("orgguard.digest")

LISTED = 200  # failures named in one digest; the rest are counted


async def send_digest(ledger: JobLedger, delivery: Delivery, policy: Policy, *, now: datetime) -> Job | None:
    """Send the digest if one is due (or one is still unsent); the job as it ends, or None when none was due."""
    n = policy.notify
    if not n.operations:
        return None
    newest = await asyncio.to_thread(ledger.jobs, JobKind.DIGEST, 1)
    last = newest[0] if newest else None
    if last is not None and last.state is JobState.RUNNING:
        return await _send(ledger, delivery, last, list(n.operations), now)
    if last is not None and last.created_at + n.digest_every > now:
        return None
    made: Job | None = await asyncio.to_thread(_new, ledger, int(last.params["to_seq"]) if last else 0, now)
    if made is None or made.state is JobState.DONE:
        return made
    return await _send(ledger, delivery, made, list(n.operations), now)


def _new(ledger: JobLedger, after: int, now: datetime) -> Job | None:
    failures: list[dict[str, str]] = []
    more, seq = 0, after
    while True:
        entries = ledger.audit_entries(after=seq, limit=1000)
        if not entries:
            break
        for entry in entries:
            seq = entry.seq
            if entry.event.kind != "action.failed":
                continue
            if len(failures) >= LISTED:
                more += 1
                continue
            failures.append(_failure(ledger, entry.event.subject, entry.event.data))
    state = JobState.RUNNING if failures or more else JobState.DONE
    params: dict[str, Any] = {"from_seq": after, "to_seq": seq, "failures": failures, "more": more}
    job = Job(f"digest-{after}", JobKind.DIGEST, state, params, "orgguard", now, now)
    try:
        return ledger.save_job(job)
    except JobConflict:  # another instance made this digest first
        return None


def _failure(ledger: JobLedger, case_id: str, data: dict[str, object]) -> dict[str, str]:
    case = ledger.case(case_id)
    mailbox = MailboxKey(case.key.address).redacted if case else "unknown"
    return {
        "case": case_id,
        "mailbox": mailbox,
        "kind": str(data.get("kind", "")),
        "org": str(data.get("org", "")),
        "error": str(data.get("error") or "")[:300],
    }


async def _send(ledger: JobLedger, delivery: Delivery, job: Job, to: list[str], now: datetime) -> Job:
    since = job.created_at.strftime("%Y-%m-%d %H:%M UTC")
    letter = letters.digest(job.params["failures"], more=int(job.params["more"]), since=since,
                            public_url=delivery.public_url)  # fmt: skip
    attempts = int(job.progress.get("attempts", 0)) + 1
    try:
        sent = await delivery.send(letter, to, message_key=job.id)
    except SendFailed as exc:
        if exc.again and attempts < delivery.max_attempts:
            job = job.with_progress(attempts=attempts, error=exc.reason)
        else:
            job = replace(job.with_progress(attempts=attempts), error=exc.reason).moved_to(JobState.FAILED)
        log.warning("the operations digest %s was not sent: %s", job.id, exc.reason)
    else:
        job = replace(job.with_progress(attempts=attempts, sent_to=sent), error=None).moved_to(JobState.DONE)
    try:
        return await asyncio.to_thread(ledger.save_job, job)
    except JobConflict:
        return job
