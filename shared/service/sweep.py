"""The sweep: find every latent conflict across all orgs, and settle it per policy.

Situations the sweep finds (DESIGN.md "Sweep"; the article's S2):

* ``multi_org``: one address with ACT on server-side sync, active, in more than one org;
* ``alert``: a row failing (``actstatus`` Failure) whose alert (a ``tracelog`` regarding
  the mailbox) says it is "configured with another organization";
* ``owner_not_syncing``: the ledger's owner has no active server-side-sync row for the
  mailbox while another org does;
* ``unknown_owner``: the ledger's owner is not a registered org any more;

and, per org, whether OrgGuard's own endpoints, steps and images are there, enabled and as
registered (``registration``): a step someone disabled or deleted is a finding too, repaired
with ``orgguard register``.

How memory stays flat: rows are read a page at a time (``$select`` of three
columns, 5,000 rows a page, every org in parallel) and each page goes straight
into a scratch SQLite file (``ScratchIndex``) with a bounded page cache, then is
dropped. Grouping by ``MailboxKey`` and comparing with the ledger (whose owners
are copied in 1,000 at a time) are SQL over that file, and findings stream out of
it key by key. What stays in Python is one page per org in flight plus the
findings themselves, which grow with conflicts, not with mailboxes.

Without ``apply`` nothing is written anywhere: each finding carries what the
policy *would* decide (``OrgGuard.evaluate``). With ``apply`` each finding goes
through the service layer like any other claim (``handle_claim`` with kind and
origin ``sweep``; ``move_owner`` to repair an alerting mailbox in its designated
primary), and the executor carries the actions out in ``$batch``es, paced.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from shared.dataverse.pacing import Pacer
from shared.dataverse.port import MAX_PAGE_SIZE, OrgClient
from shared.dataverse.registration import check_orgs
from shared.dataverse.schema import (
    MAILBOXES,
)
from shared.dataverse.syncing import ADDRESSES_PER_QUERY, COLUMNS, SYNCING, active_rows, read_alerts, stamps
from shared.domain.compliance import SweepCompliance
from shared.domain.drift import OrgRegistration
from shared.domain.findings import Finding, FindingKind, Row, claim_order, needs_stamp
from shared.domain.jobs import Job, JobKind, JobState
from shared.domain.model import (
    ActionKind,
    Claim,
    ClaimKind,
    DomainError,
    Effect,
    MailboxKey,
    Org,
    Origin,
)
from shared.domain.overrides import Move
from shared.ledger.port import JobLedger
from shared.service.compliance import take_snapshot
from shared.service.orgguard import OrgGuard
from shared.service.outbox import Executor
from shared.service.rollout import carry_out
from shared.service.scratch import ScratchIndex, copy_owners

JOB_CONFLICTS = 200  # conflicts kept in the job record (the CLI's --json and --csv have them all)


@dataclass
class Settlement:
    """What the policy decided (or would decide) for one finding."""

    winner: str | None
    effect: str
    rule: str
    explanation: str
    cases: list[str] = field(default_factory=list)
    exemption: str | None = None  # the exemption that made the decision audit
    unheard: dict[str, dict[str, object]] = field(default_factory=dict)  # per org: a save that skipped the gate


@dataclass
class SweepResult:
    orgs: list[str]
    mailboxes: int = 0  # rows read (active, server-side sync)
    alerts_read: int = 0
    keys: int = 0
    unowned: int = 0  # syncing in exactly one org, unknown to the ledger: no conflict, nothing to do
    counts: dict[str, int] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    pages: dict[str, int] = field(default_factory=dict)
    rows_by_org: dict[str, int] = field(default_factory=dict)
    alerts_by_org: dict[str, int] = field(default_factory=dict)
    cases: int = 0
    applied: int = 0
    failed: int = 0
    registration: list[OrgRegistration] = field(default_factory=list)  # OrgGuard's own steps in each org
    requests: int = 0
    throttled: int = 0
    seconds: float = 0.0
    apply: bool = False
    started: float = field(default_factory=time.perf_counter)
    compliance: SweepCompliance = field(default_factory=lambda: SweepCompliance(apply=False))
    snapshot: dict[str, Any] | None = None  # ``compliance`` as written once the sweep is done (``compliance.py``)

    def doc(self, *, limit: int | None = None) -> dict[str, Any]:
        conflicts = self.conflicts if limit is None else self.conflicts[:limit]
        return {
            "orgs": len(self.orgs),
            "org_names": self.orgs,
            "mailboxes": self.mailboxes,
            "keys": self.keys,
            "conflicts": conflicts,
            "conflicts_total": len(self.conflicts),
            "truncated": len(conflicts) < len(self.conflicts),
            "counts": {kind.value: self.counts.get(kind.value, 0) for kind in FindingKind},
            **{kind.value: self.counts.get(kind.value, 0) for kind in FindingKind},
            "unowned": self.unowned,
            "alerts_read": self.alerts_read,
            "pages": self.pages,
            "rows_by_org": self.rows_by_org,
            "alerts_by_org": self.alerts_by_org,
            "requests": self.requests,
            "throttled": self.throttled,
            "apply": self.apply,
            "registration": [r.doc() for r in self.registration],
            "registration_drift": sum(1 for r in self.registration if not r.ok),
            "cases": self.cases,
            "applied": self.applied,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "compliance": self.snapshot,
        }


# ---------------------------------------------------------------------------
# Reading the orgs

Progress = Callable[[str, int, int], None]  # org, rows so far, pages so far


async def read_org(
    org: Org, client: OrgClient, scratch: ScratchIndex, result: SweepResult, progress: Progress | None
) -> None:
    """Page one org's syncing mailboxes into the index, then the alerts of its failing ones."""
    rows = pages = 0
    async for page in client.query(MAILBOXES, select=COLUMNS, filter=SYNCING, page_size=MAX_PAGE_SIZE):
        pages += 1
        rows += len(page)
        scratch.add_rows(org.name, page)
        if progress:
            progress(org.name, rows, pages)
    result.rows_by_org[org.name] = rows
    failing = scratch.failing(org.name)
    if failing:
        found = await read_alerts(client, failing)
        result.alerts_read += found[1]
        result.alerts_by_org[org.name] = found[1]
        scratch.add_alerts(org.name, found[0])
        pages += found[2]
    result.pages[org.name] = pages
    if progress:
        progress(org.name, rows, pages)


# ---------------------------------------------------------------------------
# Settling a finding per policy


def designation(service: OrgGuard, finding: Finding) -> str | None:
    """The designated primary of an alerting mailbox (the org to repair it in), if the policy names one."""
    if FindingKind.ALERT not in finding.kinds:
        return None
    return service.designated(finding.key, owner=finding.owner)


def settle(
    service: OrgGuard,
    finding: Finding,
    *,
    sweep_id: str,
    apply: bool,
    primary: str | None = None,
    primary_row: str | None = None,
) -> Settlement:
    """Decide (and with ``apply`` record) what becomes of one finding.

    An alerting mailbox whose designated ``primary`` has an active row there
    (``primary_row``, or its syncing row) is repaired in it with one override case
    (check box + Test & Enable in the primary, None everywhere else). Anything else
    goes through the rules as claims, one per syncing org: the first is the owner's
    (or the one that syncs fine), the others compete with it.
    """
    row = finding.row(primary) if primary else None
    if primary is not None and (primary_row or row):
        exempt = service.exemption_covering(finding.key, primary, finding.owner)
        if exempt is not None:  # an exemption leaves the mailbox as it is: the repair is only recorded here
            why = f"{exempt.sentence()} exempts {exempt.what}: the sweep does not repair it in {primary}"
            return Settlement(finding.owner, Effect.AUDIT.value, "designated-primary", why, exemption=exempt.id)
        target = primary_row or (row.mailbox_id if row else None)
        return _repair(service, finding, primary, target, sweep_id=sweep_id, apply=apply)
    settlement = _claims(service, finding, sweep_id=sweep_id, apply=apply)
    if primary is not None:
        settlement.explanation += f" (the designated primary {primary} has no active mailbox for it.)"
    if FindingKind.ALERT in finding.kinds and settlement.winner and not settlement.exemption:
        won = finding.row(settlement.winner)
        if won is not None and won.failing and not _promotes(service, settlement.cases, settlement.winner):
            extra = _repair(
                service, finding, settlement.winner, won.mailbox_id, sweep_id=sweep_id, apply=apply, demote=False
            )
            settlement.cases += extra.cases
            settlement.explanation += f" {extra.explanation}"
    return settlement


def _repair(
    service: OrgGuard,
    finding: Finding,
    org: str,
    target: str | None,
    *,
    sweep_id: str,
    apply: bool,
    demote: bool = True,
) -> Settlement:
    failing = sorted({r.org for r in finding.rows if r.alert})
    reason = (
        f"the sweep found {finding.key.redacted} failing with the 'configured with another organization' alert "
        f"in {', '.join(failing)}; {org} "
        + ("is its designated primary" if demote else _holding(finding, org))
        + " and is made the syncing org (check box + Test & Enable)"
        + ("; every other org is set to None" if demote else "")
    )
    rule = "designated-primary" if demote else "owner-repair"
    others = {r.org: r.mailbox_id for r in claim_order(finding) if r.org != org} if demote else {}
    settlement = Settlement(org, Effect.OVERRIDE.value, rule, reason)
    if not apply:
        return settlement
    move = Move(
        key=finding.key,
        to=org,
        to_mailbox_id=target,
        demote=others,
        kind=ClaimKind.SWEEP,
        origin=Origin.SWEEP,
        rule=rule,
        reason=reason,
        actor="orgguard:sweep",
        event_key=f"sweep:{sweep_id}:{rule}:{finding.key.address}",
        how=f"sweep:{rule}",
        demote_owner=False,
        extra={"sweep": sweep_id},
    )
    outcome = service.move_owner(move)
    if outcome.case_id:
        settlement.cases.append(outcome.case_id)
    return settlement


def _holding(finding: Finding, org: str) -> str:
    """How ``org`` came to win a repair: the ledger's owner, or the claim that prevailed (no owner recorded)."""
    return "owns it" if finding.owner == org else "prevails over the other claims"


def _claims(service: OrgGuard, finding: Finding, *, sweep_id: str, apply: bool) -> Settlement:
    order = claim_order(finding)
    owner = finding.owner if finding.owner in service.orgs.names else None
    settlement = Settlement(owner, Effect.ALLOW.value, "uncontested", "no competing claim")
    decided: list[str] = []
    for row in order:
        claim = _claim(service, finding.key, row, sweep_id)
        if (unheard := service.unheard(claim)) is not None:
            settlement.unheard[row.org] = unheard.facts()  # a save there skipped the gate
        if apply:
            outcome = service.handle_claim(claim)
            decision = outcome.decision
            if outcome.case_id:
                settlement.cases.append(outcome.case_id)
        else:  # a dry run: the first claim is not recorded, so its org is not the ledger's owner
            recorded = owner == finding.owner
            decision = service.evaluate(
                finding.key, row.org, owner, ClaimKind.SWEEP, Origin.SWEEP, owner_recorded=recorded
            )
        if owner is None or (decision.effect is Effect.OVERRIDE and not decision.dry_run):
            owner = row.org
        if decision.effect is not Effect.ALLOW:
            decided.append(decision.explanation)
            settlement.effect, settlement.rule = decision.effect.value, decision.rule
            settlement.exemption = decision.exemption or settlement.exemption
    settlement.winner = owner
    settlement.explanation = " ".join(decided) or settlement.explanation
    return settlement


def _claim(service: OrgGuard, key: MailboxKey, row: Row, sweep_id: str) -> Claim:
    org = service.orgs.get(row.org)
    stamp = row.stamp
    return Claim(
        key=key,
        org=row.org,
        mailbox_id=row.mailbox_id,
        kind=ClaimKind.SWEEP,
        origin=Origin.SWEEP,
        source_ids={"org": org.id, "operation": f"sweep-{sweep_id}"},
        modified_by=stamp.modified_by if stamp else None,
        modified_on_behalf_of=stamp.on_behalf_of if stamp else None,
        modified_on=stamp.modified_on if stamp else None,
    )


def _promotes(service: OrgGuard, case_ids: Sequence[str], org: str) -> bool:
    for case_id in case_ids:
        case = service.ledger.case(case_id)
        if case and any(a.kind is ActionKind.PROMOTE and a.org == org for a in case.actions):
            return True
    return False


def conflict_doc(finding: Finding, settlement: Settlement) -> dict[str, Any]:
    return {
        "mailbox": finding.key.address,
        "orgs": finding.orgs,
        "kinds": [k.value for k in finding.kinds],
        "owner": finding.owner,
        "failing": sorted({r.org for r in finding.rows if r.alert}),
        "winner": settlement.winner,
        "effect": settlement.effect,
        "rule": settlement.rule,
        "explanation": settlement.explanation,
        "cases": settlement.cases,
        "exemption": settlement.exemption,
        "unheard": settlement.unheard,
    }


# ---------------------------------------------------------------------------
# The whole sweep


@dataclass
class Sweep:
    """One sweep over ``orgs`` (all registered ones by default)."""

    service: OrgGuard
    ledger: JobLedger
    client_for: Callable[[Org], OrgClient]
    sweep_id: str
    orgs: Sequence[str] = ()
    apply: bool = False
    progress: Progress | None = None
    on_finding: Callable[[dict[str, Any]], None] | None = None
    webhook_base: str | None = None  # OrgGuard's URL, to compare the endpoints' with (None: their path only)

    async def find(self) -> tuple[SweepResult, list[str]]:
        """Read every org, find, and settle; the case ids recorded (with ``apply``)."""
        names = list(self.orgs) or self.service.orgs.names
        orgs = [self.service.orgs.get(n) for n in names]
        if not orgs:
            raise DomainError("no org to sweep", field="org")
        result = SweepResult(orgs=names, apply=self.apply, compliance=SweepCompliance(apply=self.apply))
        scratch = ScratchIndex(names)
        case_ids: list[str] = []
        try:
            checked = check_orgs(
                self.service.orgs, names, self.webhook_base, client_for=self.client_for, now=self.service.clock()
            )
            reads = asyncio.gather(
                *(read_org(org, self.client_for(org), scratch, result, self.progress) for org in orgs)
            )
            result.registration, _ = await asyncio.gather(checked, reads)
            self.service.registrations.record(result.registration)
            await asyncio.to_thread(copy_owners, self.ledger, scratch)
            scratch.index()
            result.mailboxes = sum(result.rows_by_org.values())
            result.keys, result.unowned = scratch.totals()
            later: dict[str, list[Finding]] = {}
            async for batch in self._with_users(scratch.findings()):
                for finding, primary, _ in await self._settled(self._settle_batch, batch, result, case_ids):
                    later.setdefault(str(primary), []).append(finding)  # its row there is looked up below, in bulk
            for org, waiting in later.items():
                found = await active_rows(self.client_for(self.service.orgs.get(org)), [f.key for f in waiting])
                result.pages[org] = result.pages.get(org, 0) + math.ceil(len(waiting) / ADDRESSES_PER_QUERY)
                repairs = [(f, org, found.get(f.key.address)) for f in waiting]
                await self._settled(self._settle_each, repairs, result, case_ids)
        finally:
            scratch.close()
        result.cases = len(set(case_ids))
        result.seconds = time.perf_counter() - result.started
        return result, list(dict.fromkeys(case_ids))

    async def _with_users(self, findings: Iterator[Finding], chunk: int = 500) -> AsyncIterator[list[Finding]]:
        """The findings, a chunk at a time, the users behind each chunk looked up at once first (Graph ``$batch``),
        and who last changed each row that syncs against the ledger's owner (a save may have skipped the gate)."""
        while batch := list(itertools.islice(findings, chunk)):
            await asyncio.to_thread(self.service.know_users, [f.key for f in batch])
            yield await self._stamped(batch)

    async def _stamped(self, batch: list[Finding]) -> list[Finding]:
        """``batch`` with the stamps of the rows that need one (``needs_stamp``), read per org at once."""
        wanted: dict[str, list[str]] = {}
        for finding in batch:
            for row in finding.rows:
                if needs_stamp(finding, row) and row.org in self.service.orgs.names:
                    wanted.setdefault(row.org, []).append(row.mailbox_id)
        if not wanted:
            return batch
        orgs = list(wanted)
        read = await asyncio.gather(*(stamps(self.client_for(self.service.orgs.get(o)), wanted[o]) for o in orgs))
        found = {
            (org, mailbox_id): stamp
            for org, by_id in zip(orgs, read, strict=True)
            for mailbox_id, stamp in by_id.items()
        }
        return [
            replace(f, rows=tuple(replace(r, stamp=found.get((r.org, r.mailbox_id.lower()))) for r in f.rows))
            for f in batch
        ]

    async def _settled(
        self, work: Settling[Items], items: Items, result: SweepResult, case_ids: list[str]
    ) -> list[Settled]:
        """Settle a chunk in a worker thread (the ledger and the policy block), one hop for the whole chunk: a hop
        per finding cost more wall time than the settling itself on a busy machine. Each settled finding is
        recorded in order, also those before one that failed; cancelled (Ctrl-C, a shutdown), the worker stops
        before its next finding, and the cancel waits for the finding it is on: what it settles is reported before
        the sweep says it was cancelled. The findings left unsettled (their primary's row is still to be read) come
        back.
        """
        done: list[Settled] = []
        stop = threading.Event()
        worker = asyncio.ensure_future(asyncio.to_thread(work, items, done, stop))
        try:
            await asyncio.shield(worker)
        except asyncio.CancelledError:
            stop.set()
            await _outlast(worker)
            raise
        finally:
            for finding, _, settlement in list(done):
                if settlement is not None:
                    self._record(finding, settlement, result, case_ids)
        return [entry for entry in done if entry[2] is None]

    def _settle_batch(self, batch: Sequence[Finding], done: list[Settled], stop: threading.Event) -> None:
        """Settle findings in order; one whose designated primary has no row among its syncing ones is left
        unsettled (``None``), to be settled once its row there is read."""
        for finding in batch:
            if stop.is_set():
                return
            primary = designation(self.service, finding)
            if primary is not None and finding.row(primary) is None:
                done.append((finding, primary, None))
            else:
                done.append((finding, primary, self._settle(finding, primary, None)))

    def _settle_each(
        self, repairs: Sequence[tuple[Finding, str, str | None]], done: list[Settled], stop: threading.Event
    ) -> None:
        """Settle findings whose designated primary's row was read (``None``: it has no active row there)."""
        for finding, primary, row in repairs:
            if stop.is_set():
                return
            done.append((finding, primary, self._settle(finding, primary, row)))

    def _settle(self, finding: Finding, primary: str | None, row: str | None) -> Settlement:
        return settle(self.service, finding, sweep_id=self.sweep_id, apply=self.apply, primary=primary, primary_row=row)

    def _record(self, finding: Finding, settlement: Settlement, result: SweepResult, case_ids: list[str]) -> None:
        for kind in finding.kinds:
            result.counts[kind.value] = result.counts.get(kind.value, 0) + 1
        result.compliance.add([*finding.orgs, finding.owner], settlement.rule, settlement.effect, settlement.exemption)
        doc = conflict_doc(finding, settlement)
        result.conflicts.append(doc)
        case_ids += settlement.cases
        if self.on_finding:
            self.on_finding(doc)


async def _outlast(worker: asyncio.Future[None]) -> None:
    """Wait for ``worker`` (a thread, which no cancel stops) to end, however often this wait is cancelled meanwhile:
    a thread that settles a finding after its sweep returned would leave it settled but never reported."""
    while not worker.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([worker])
    with contextlib.suppress(Exception):
        worker.result()  # the cancel goes up, not what the thread raised while it was stopping


Settled = tuple[Finding, str | None, Settlement | None]  # a finding, its designated primary, how it was settled
Items = TypeVar("Items")
Settling = Callable[[Items, list[Settled], threading.Event], None]  # settles items into the list until stopped


# ---------------------------------------------------------------------------
# A sweep as a job (CLI, API, timer)


async def run_sweep(
    service: OrgGuard,
    ledger: JobLedger,
    job: Job,
    *,
    pacer: Pacer,
    progress: Progress | None = None,
    on_finding: Callable[[dict[str, Any]], None] | None = None,
    keep: int = JOB_CONFLICTS,
    webhook_base: str | None = None,
) -> tuple[Job, SweepResult]:
    """Find, settle, and with ``job.apply`` carry out; the job record follows along."""
    try:
        sweep = Sweep(
            service,
            ledger,
            pacer,
            job.id,
            orgs=list(job.params.get("orgs") or ()),
            apply=job.apply,
            progress=progress,
            on_finding=on_finding,
            webhook_base=webhook_base,
        )
        result, case_ids = await sweep.find()
        job = await asyncio.to_thread(ledger.save_job, job.with_progress(phase="found", cases=len(case_ids)))
        if job.apply and case_ids:
            executor = Executor(ledger, service.orgs, pacer, clock=service.clock)
            rollout = await carry_out(executor, ledger, pacer, case_ids, orgs=result.orgs)
            result.applied, result.failed = rollout.applied, rollout.failed
        result.requests, result.throttled = pacer.requests, pacer.throttled
        result.snapshot = await asyncio.to_thread(
            take_snapshot, service, result.compliance, result.rows_by_org, mailboxes=result.keys
        )
        result.seconds = time.perf_counter() - result.started
        done = job.with_progress(phase="done", paces=pacer.summary())
        done = replace(done, result=result.doc(limit=keep)).moved_to(JobState.DONE)
        return await asyncio.to_thread(ledger.save_job, done), result
    except asyncio.CancelledError:  # Ctrl-C or a shutdown: never leave the record saying it runs
        with contextlib.suppress(DomainError):
            stopped = job.moved_to(JobState.CANCELLED, error="interrupted before it finished; run it again")
            await asyncio.to_thread(ledger.save_job, stopped)
        raise
    except DomainError as exc:
        failed = job.moved_to(JobState.FAILED, error=exc.detail)
        await asyncio.to_thread(ledger.save_job, failed)
        raise
    except Exception as exc:
        failed = job.moved_to(JobState.FAILED, error=f"{type(exc).__name__}: {exc}")
        await asyncio.to_thread(ledger.save_job, failed)
        raise


def new_job(orgs: Sequence[str], *, actor: str, apply: bool) -> Job:
    return Job.start(JobKind.SWEEP, {"orgs": list(orgs)}, actor=actor, apply=apply)
