"""Migrations: move mailboxes from org A to org B in bulk, as override cases (the article's S3).

A migration is planned first: both orgs are paged once (``$select`` of four
columns, 5,000 rows a page) to pair each selected address's row in A with its
row in B; what cannot move (no active row in B, nothing in A) or needs no move
(already owned by B, A at None) is said with a reason. The plan says how many
writes that is, how many requests, and how long at the budget the orgs report.

Then it runs in chunks sized to what both orgs' budgets allow: each move is one
override case (``OrgGuard.move_owner``: B promoted with the check box + Test &
Enable, A set to None), recorded with the event key ``migration:<job>:<address>``
so that asking again returns the recorded case instead of a second one; the
executor carries the chunk out in one ``$batch`` per org; the job record keeps
the progress. Resuming (after a pause, a crash or a restart) re-derives the plan,
finds every move already recorded in the ledger, reads back the rows of the
actions still pending from before (the batch in flight when the process died may
have been applied) and records those already done instead of sending them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from shared.dataverse.pacing import DOCUMENTED_BUDGET, DOCUMENTED_WINDOW_S, Pacer, estimate_seconds
from shared.dataverse.port import MAX_BATCH, MAX_PAGE_SIZE, OrgClient, odata_string
from shared.dataverse.schema import ACT_METHOD, ACTIVE, ADDRESS, MAILBOX_ID, MAILBOXES, ActMethod
from shared.domain.jobs import Job, JobConflict, JobKind, JobState
from shared.domain.model import (
    ActionStatus,
    CaseState,
    ClaimKind,
    DomainError,
    InvalidAddress,
    InvalidTransition,
    MailboxKey,
    NotFound,
    Origin,
)
from shared.domain.overrides import Move
from shared.ledger.port import JobLedger
from shared.service.orgguard import OrgGuard
from shared.service.outbox import Executor
from shared.service.rollout import Rollout, carry_out, verify_in_doubt

COLUMNS = (MAILBOX_ID, ADDRESS, ACT_METHOD)
REPORT_LIMIT = 1000  # entries per list kept in the job record; the counts are always whole


@dataclass(frozen=True)
class Selection:
    """Which mailboxes move: a list of addresses, or every address in a domain."""

    addresses: tuple[str, ...] = ()
    domain: str | None = None

    @classmethod
    def parse(cls, *, addresses: Iterable[str] | None = None, domain: str | None = None) -> Selection:
        if (addresses is None) == (domain is None):
            raise DomainError("give either mailbox addresses or a domain", field="mailboxes")
        if domain is not None:
            parsed = MailboxKey.parse(f"x@{domain.strip(' ').lstrip('@')}", field="domain").domain
            return cls(domain=parsed)
        keys = sorted({MailboxKey.parse(a, field="mailboxes").address for a in addresses or () if a.strip(" ")})
        if not keys:
            raise DomainError("the list names no mailbox", field="mailboxes")
        return cls(addresses=tuple(keys))

    def filter(self) -> str:
        base = ACTIVE
        return f"{base} and contains({ADDRESS},{odata_string('@' + self.domain)})" if self.domain else base

    def wants(self, key: MailboxKey) -> bool:
        return key.domain == self.domain if self.domain else key.address in self._set

    @property
    def _set(self) -> frozenset[str]:
        cached: frozenset[str] | None = self.__dict__.get("_cache")
        if cached is None:
            cached = frozenset(self.addresses)
            object.__setattr__(self, "_cache", cached)
        return cached

    def params(self) -> dict[str, Any]:
        return {"domain": self.domain} if self.domain else {"mailboxes": list(self.addresses)}


@dataclass(frozen=True)
class PlannedMove:
    key: MailboxKey
    source_id: str
    target_id: str


@dataclass
class Plan:
    source: str
    target: str
    moves: list[PlannedMove] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    reads: int = 0
    remaining: dict[str, int | None] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A digest of every move (with both rows) and every skip: equal only for the same plan.

        A reviewed plan is applied as planned only while planning again gives the same
        fingerprint; any change in the orgs or the ledger since makes it stale.
        """
        digest = hashlib.sha256()
        for m in self.moves:
            digest.update(f"move {m.key.address} {m.source_id} {m.target_id}\n".encode())
        for skip in self.skipped:
            digest.update(f"skip {skip['mailbox']} {skip['reason']}\n".encode())
        return digest.hexdigest()

    def doc(self) -> dict[str, Any]:
        n = len(self.moves)
        batches = 2 * math.ceil(n / MAX_BATCH)
        budget = DOCUMENTED_BUDGET
        seconds = max(
            (
                estimate_seconds(
                    n, math.ceil(n / MAX_BATCH), remaining=left, budget=budget, window_s=DOCUMENTED_WINDOW_S
                )
                for left in self.remaining.values()
            ),
            default=0.0,
        )
        return {
            "from": self.source,
            "to": self.target,
            "moves": n,
            "skipped": len(self.skipped),
            "skipped_by_reason": _count(s["reason"] for s in self.skipped),
            "changes": {self.source: {"demote": n}, self.target: {"promote (check box + Test & Enable)": n}},
            "requests": {"reads": self.reads, "write_batches": batches, "operations": 2 * n},
            "budget": {
                "remaining": self.remaining,
                "assumed_per_window": budget,
                "window_s": DOCUMENTED_WINDOW_S,
            },
            "estimated_seconds": round(seconds, 1),
            "fingerprint": self.fingerprint(),
            "sample": [m.key.address for m in self.moves[:20]],
            "skipped_sample": self.skipped[:REPORT_LIMIT],
        }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


async def _rows(client: OrgClient, selection: Selection) -> tuple[dict[str, dict[str, Any]], int]:
    """The selected addresses' active rows in one org (first row per address), and the pages read."""
    found: dict[str, dict[str, Any]] = {}
    pages = 0
    async for page in client.query(MAILBOXES, select=COLUMNS, filter=selection.filter(), page_size=MAX_PAGE_SIZE):
        pages += 1
        for row in page:
            try:
                key = MailboxKey.parse(row.get(ADDRESS))
            except InvalidAddress:
                continue
            if selection.wants(key):
                found.setdefault(key.address, row)
    return found, pages


async def plan(
    service: OrgGuard, pacer: Pacer, source: str, target: str, selection: Selection, *, job_id: str | None = None
) -> Plan:
    """Pair every selected mailbox's row in ``source`` with its row in ``target``; say what cannot move."""
    check_route(source, target)
    a, b = service.orgs.get(source), service.orgs.get(target)
    (in_a, pages_a), (in_b, pages_b) = await asyncio.gather(_rows(pacer(a), selection), _rows(pacer(b), selection))
    result = Plan(source, target, reads=pages_a + pages_b)
    keys = sorted(set(selection.addresses) | set(in_a)) if not selection.domain else sorted(in_a)
    for address in keys:
        key = MailboxKey(address)
        row_a, row_b = in_a.get(address), in_b.get(address)
        if row_a is None:
            result.skipped.append({"mailbox": address, "reason": f"no active mailbox in {source}"})
        elif row_b is None:
            result.skipped.append({"mailbox": address, "reason": f"no active mailbox in {target}: cannot move"})
        elif _already_moved(service, key, target, row_a, row_b) and not _ours(service, job_id, key):
            result.skipped.append({"mailbox": address, "reason": f"already owned by {target}, {source} at None"})
        else:
            result.moves.append(PlannedMove(key, str(row_a[MAILBOX_ID]), str(row_b[MAILBOX_ID])))
    result.remaining = {source: pacer.pace(source).remaining, target: pacer.pace(target).remaining}
    return result


def _already_moved(
    service: OrgGuard, key: MailboxKey, target: str, row_a: dict[str, Any], row_b: dict[str, Any]
) -> bool:
    owner = service.ledger.mailbox(key).ownership
    return (
        owner is not None
        and owner.owner == target
        and row_a.get(ACT_METHOD) == ActMethod.NONE
        and row_b.get(ACT_METHOD) == ActMethod.SERVER_SIDE_SYNC
    )


def _ours(service: OrgGuard, job_id: str | None, key: MailboxKey) -> bool:
    """Whether this job recorded the move itself (a resumed job keeps it in its plan and report)."""
    return job_id is not None and service.ledger.event(event_key(job_id, key)) is not None


# ---------------------------------------------------------------------------
# Running


JobSaved = Callable[[Job], Awaitable[None]]


@dataclass
class Migration:
    service: OrgGuard
    ledger: JobLedger
    pacer: Pacer
    job: Job
    on_progress: JobSaved | None = None

    @property
    def source(self) -> str:
        return str(self.job.params["from"])

    @property
    def target(self) -> str:
        return str(self.job.params["to"])

    def selection(self) -> Selection:
        p = self.job.params
        return Selection.parse(addresses=p.get("mailboxes"), domain=p.get("domain"))

    async def save(self, job: Job) -> Job:
        """Save ``job``; when an admin paused or cancelled it since it was read, stop (``Stopped``)."""
        try:
            self.job = await asyncio.to_thread(self.ledger.save_job, job)
        except JobConflict:
            current = await asyncio.to_thread(self.ledger.job, self.job.id)
            if current is None or current.state not in (JobState.PAUSED, JobState.CANCELLED):
                raise
            self.job = current
            raise Stopped from None
        if self.on_progress:
            await self.on_progress(self.job)
        return self.job

    async def stopping(self) -> bool:
        """Whether an admin paused or cancelled the job since it was last read."""
        current = await asyncio.to_thread(self.ledger.job, self.job.id)
        if current is not None and current.state in (JobState.PAUSED, JobState.CANCELLED):
            self.job = current
            return True
        return False

    async def run(self) -> Job:
        """Plan, and with ``apply`` move everything, chunk by chunk; safe to call again to resume.

        Interrupted (Ctrl-C, a shutdown cancelling the task) it is left ``paused``, never
        ``running``: ``orgguard migrate --resume`` carries on from the ledger.
        """
        try:
            the_plan = await plan(
                self.service, self.pacer, self.source, self.target, self.selection(), job_id=self.job.id
            )
            await self.save(self.job.with_progress(phase="planned", plan=the_plan.doc(), planned=len(the_plan.moves)))
            self._check_as_reviewed(the_plan)
            if not self.job.apply:
                return await self.save(self._finished(JobState.PLANNED, the_plan, None))
            rollout = await self._move(the_plan)
            if rollout.stopped:
                return self.job
            return await self.save(self._finished(JobState.DONE, the_plan, rollout))
        except Stopped:
            return self.job
        except asyncio.CancelledError:
            await self._interrupted()
            raise
        except DomainError as exc:
            return await self.save(self.job.moved_to(JobState.FAILED, error=exc.detail))
        except Exception as exc:
            await self.save(self.job.moved_to(JobState.FAILED, error=f"{type(exc).__name__}: {exc}"))
            raise

    def _check_as_reviewed(self, the_plan: Plan) -> None:
        """A migration applying a reviewed plan moves exactly what was reviewed, or nothing."""
        expected = self.job.params.get("plan_fingerprint")
        if not expected or self.job.progress.get("recorded") or the_plan.fingerprint() == expected:
            return
        raise StalePlan(
            f"the plan of migration {self.job.params.get('plan')} is stale: the orgs or the ledger changed since "
            f"it was made ({self.job.params.get('plan_moves')} moves then, {len(the_plan.moves)} now); "
            "nothing was moved; plan again"
        )

    async def _interrupted(self) -> None:
        current = await asyncio.to_thread(self.ledger.job, self.job.id)
        if current is not None and current.state is JobState.RUNNING:
            with contextlib.suppress(DomainError):
                await asyncio.to_thread(self.ledger.save_job, current.moved_to(JobState.PAUSED))

    async def _move(self, the_plan: Plan) -> Rollout:
        executor = Executor(self.ledger, self.service.orgs, self.pacer, clock=self.service.clock)
        total = Rollout(total=len(the_plan.moves))
        resumed = bool(self.job.progress.get("recorded"))
        recorded = 0
        start = 0
        while start < len(the_plan.moves):
            if await self.stopping():
                total.stopped = True
                return total
            size = min(
                self.pacer.pace(self.source).allowance(MAX_BATCH), self.pacer.pace(self.target).allowance(MAX_BATCH)
            )
            chunk = the_plan.moves[start : start + size]
            case_ids, earlier = await asyncio.to_thread(self._record, chunk)
            recorded += len(chunk)
            await self.save(self.job.with_progress(phase="moving", recorded=recorded))
            if resumed and earlier:
                total.verified += await verify_in_doubt(self.ledger, self._client, earlier)
            done = await carry_out(
                executor, self.ledger, self.pacer, case_ids, orgs=[self.source, self.target], stop=self.stopping
            )
            total.applied += done.applied
            total.failed += done.failed
            total.deferred += done.deferred
            total.settled += done.settled
            if done.stopped:
                total.stopped = True
                return total
            start += len(chunk)
            await self.save(
                self.job.with_progress(
                    settled=total.settled, applied=total.applied, failed=total.failed, verified=total.verified
                )
            )
        return total

    def _client(self, org: str) -> OrgClient:
        return self.pacer(self.service.orgs.get(org))

    def _record(self, chunk: Sequence[PlannedMove]) -> tuple[list[str], list[str]]:
        """Record each move's override case; (every case id, the ids recorded by an earlier run)."""
        ids, earlier = [], []
        for move in chunk:
            outcome = self.service.move_owner(self._as_move(move))
            if outcome.case_id:
                ids.append(outcome.case_id)
                if outcome.duplicate:
                    earlier.append(outcome.case_id)
        return ids, earlier

    def _as_move(self, move: PlannedMove) -> Move:
        reason = f"migration {self.job.id} by {self.job.actor}: {self.source} -> {self.target}"
        return Move(
            key=move.key,
            to=self.target,
            to_mailbox_id=move.target_id,
            demote={self.source: move.source_id},
            kind=ClaimKind.ADMIN,
            origin=Origin.ADMIN,
            rule="migration",
            reason=reason,
            actor=self.job.actor,
            event_key=event_key(self.job.id, move.key),
            how=f"migration:{self.job.id}",
            extra={"migration": self.job.id},
        )

    def _finished(self, state: JobState, the_plan: Plan, rollout: Rollout | None) -> Job:
        report = self.report(the_plan) if rollout is not None else {}
        job = self.job.with_progress(phase=state.value)
        job = Job(**{**job.__dict__, "result": {"plan": the_plan.doc(), **report}})
        return job.moved_to(state)

    def report(self, the_plan: Plan) -> dict[str, Any]:
        """What moved, what failed and why, what was skipped: read back from the ledger, so it is exact."""
        moved: list[str] = []
        failed: list[dict[str, Any]] = []
        pending: list[str] = []
        for move in the_plan.moves:
            outcome = self.ledger.event(event_key(self.job.id, move.key))
            case = self.ledger.case(outcome.case_id) if outcome and outcome.case_id else None
            if case is None:
                pending.append(move.key.address)
            elif case.state is CaseState.APPLIED:
                moved.append(move.key.address)
            elif case.state is CaseState.FAILED:
                errors = [
                    f"{a.kind.value} in {a.org}: {a.last_error}"
                    for a in case.actions
                    if a.status is ActionStatus.FAILED
                ]
                failed.append({"mailbox": move.key.address, "case": case.id, "errors": errors})
            else:
                pending.append(move.key.address)
        return {
            "moved": len(moved),
            "failed": len(failed),
            "pending": len(pending),
            "skipped": len(the_plan.skipped),
            "moved_mailboxes": moved[:REPORT_LIMIT],
            "failed_mailboxes": failed[:REPORT_LIMIT],
            "pending_mailboxes": pending[:REPORT_LIMIT],
            "skipped_mailboxes": the_plan.skipped[:REPORT_LIMIT],
            "truncated": max(len(moved), len(failed), len(pending), len(the_plan.skipped)) > REPORT_LIMIT,
        }


class Stopped(Exception):
    """An admin paused or cancelled the job while this worker was saving its progress."""


class StalePlan(DomainError, status=409, title="Stale plan"):
    """A reviewed migration plan that no longer matches the orgs or the ledger: nothing is moved."""


def apply_plan(ledger: JobLedger, planned_id: str, *, actor: str) -> Job:
    """A new migration that applies the reviewed plan of ``planned_id`` (a migration run without apply).

    It plans again and moves only if the plan is unchanged (``plan_fingerprint``). The
    plan's record names the migration applying it, saved conditionally on its version:
    of two asking at once, one applies it and the other is refused.
    """
    planned = ledger.job(planned_id)
    if planned is None or planned.kind is not JobKind.MIGRATION:
        raise NotFound(f"no migration {planned_id}", field="id")
    if planned.state is not JobState.PLANNED:
        raise InvalidTransition(
            f"migration {planned.id} is {planned.state.value}, not a plan; "
            "only a migration planned without --apply can be applied as planned",
            state=planned.state.value,
        )
    if planned.result.get("applied_by"):
        raise InvalidTransition(_applied_already(planned.id, planned.result["applied_by"]), state=planned.state.value)
    the_plan = planned.result.get("plan") or {}
    if not the_plan.get("fingerprint"):
        raise StalePlan(f"migration {planned.id} was planned before plans were fingerprinted; plan again")
    params = {k: v for k, v in planned.params.items() if k != "apply"}
    params |= {"plan": planned.id, "plan_fingerprint": the_plan["fingerprint"], "plan_moves": the_plan.get("moves")}
    job = ledger.save_job(Job.start(JobKind.MIGRATION, params, actor=actor, apply=True))
    try:
        ledger.save_job(replace(planned, result={**planned.result, "applied_by": job.id}))
    except JobConflict:
        ledger.save_job(job.moved_to(JobState.CANCELLED, error=f"another migration applied the plan of {planned.id}"))
        current = ledger.job(planned.id)
        by = current.result.get("applied_by") if current else None
        raise InvalidTransition(_applied_already(planned.id, by), state=JobState.PLANNED.value) from None
    return job


def _applied_already(planned_id: str, by: object) -> str:
    return f"the plan of migration {planned_id} was already applied by migration {by}; plan again to move more"


def event_key(job_id: str, key: MailboxKey) -> str:
    return f"migration:{job_id}:{key.address}"


def check_route(source: str, target: str) -> None:
    """A migration moves mailboxes between two different orgs; refused before anything is recorded."""
    if source == target:
        raise DomainError(f"a migration needs two different orgs; --from and --to are both {source}", field="to")


def new_job(source: str, target: str, selection: Selection, *, actor: str, apply: bool) -> Job:
    check_route(source, target)
    return Job.start(JobKind.MIGRATION, {"from": source, "to": target, **selection.params()}, actor=actor, apply=apply)
