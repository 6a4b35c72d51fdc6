"""The outbox worker: carries decided actions out in the orgs through the Web API.

Each pending action is one PATCH of one mailbox row. Several for one org go
out as one ``$batch`` (continue-on-error, so one bad row does not stop the
rest). Each reaches the org at most once, even when an answer is lost
(``org_writes``). Every attempt is recorded; an action ends ``applied`` or, after its
attempts or on a permanent error, ``failed`` with the error, visible in its case
and retryable. Throttling (429) and transient errors (5xx, timeouts) defer it
with exponential backoff, honouring ``Retry-After``.

With ``paces`` (each org's service-protection budget as its answers report it,
``shared.dataverse.pacing``) the executor paces itself before a 429: an org that is
over its budget is left alone until its window ends (its leased actions are handed
back, due when the window ends; no attempt is spent on them), and an org's ``$batch``es
hold no more operations than the execution time it has left allows.

A round never starts a ``$batch`` with less than ``lease_reserve_s`` left on its lease: what is
left is handed back, due at once, so a slow org's round does not go on sending actions another
worker may lease once the lease runs out.

What becomes of each action is recorded per ``$batch``, in one ledger call
(``Outbox.record_attempts``: one transaction on SQLite), as soon as its answer is in.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from shared import telemetry
from shared.dataverse.mailboxes import find_mailbox
from shared.dataverse.pacing import OrgPace
from shared.dataverse.port import ClientFor, DataverseError, OrgClient, Throttled
from shared.domain import backoff
from shared.domain.model import Action, ActionKind, ActionStatus, utcnow
from shared.domain.orgs import OrgRegistry
from shared.ledger.port import Attempt, Ledger
from shared.service.execution import ExecutionReport
from shared.service.org_writes import Applied, OrgWrites, Write
from shared.telemetry.lograte import Backoff, rate_limited

log = logging.getLogger("orgguard.executor")
if TYPE_CHECKING:
    from shared.service.delivery import Delivery

quiet_log = rate_limited(logging.getLogger("orgguard.executor.orgs"))  # what an unreachable org repeats

PERMANENT = {400, 401, 403, 404, 405, 409, 413, 422}


@dataclass
class Executor:
    ledger: Ledger
    orgs: OrgRegistry
    client_for: ClientFor
    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 300.0
    # A killed worker holds its actions this long (and a live one hands them back before it runs out: lease_reserve_s).
    lease_s: float = 30.0
    clock: Callable[[], datetime] = utcnow
    mail: Delivery | None = None  # sends notify actions; without it they wait for a worker that has one
    paces: Callable[[str], OrgPace] | None = None  # each org's budget (the client pool's or a job's pacer)
    # An org's round goes out as $batches of at most this many writes, a few at once, each recorded as soon as
    # its answer is in: the org works on one while OrgGuard records another (one big $batch left both idle in turn).
    batch_size: int = 200
    batches_in_flight: int = 4
    # No $batch starts with less than this left on its round's lease: the rest are handed back, due at once, so a slow
    # org's round never sends what another worker may lease once the lease runs out (one $batch slower than this
    # still may: the writes are idempotent, and each is recorded once).
    lease_reserve_s: float = 10.0
    _known_users: set[str] = field(default_factory=set)
    whoami_backoff: Backoff = field(default_factory=Backoff)

    async def learn_own_users(self) -> None:
        """Ask each org who OrgGuard is there (WhoAmI), for the gate's loop guard.

        An org that does not answer is asked again after a growing pause (``whoami_backoff``), not on
        every run of the loop, and said so in one rate-limited line.
        """
        for org in list(self.orgs):
            if org.name in self._known_users or self.whoami_backoff.waiting(org.name):
                continue
            try:
                me = await self.client_for(org).who_am_i()
            except (DataverseError, OSError) as exc:
                pause = self.whoami_backoff.failed(org.name)
                quiet_log.warning("WhoAmI failed in %s (%s); asking again in %.0f s", org.name, exc, pause,
                                  extra={"rate_key": org.name})  # fmt: skip
                continue
            self.whoami_backoff.succeeded(org.name)
            self.orgs.with_app_user(org.name, me.user_id)
            self._known_users.add(org.name)

    async def run_once(self, limit: int = 1000) -> ExecutionReport:
        """Carry out every action that is due now; return what happened."""
        await self.learn_own_users()
        now = self.clock()
        lease = now + timedelta(seconds=self.lease_s)
        actions = await asyncio.to_thread(self.ledger.lease_actions, limit, now=now, until=lease)
        by_org: dict[str, list[Action]] = defaultdict(list)
        notices = [a for a in actions if a.kind is ActionKind.NOTIFY]
        for action in actions:
            if action.kind is not ActionKind.NOTIFY:
                by_org[action.org].append(action)
        report = ExecutionReport()
        writes = [self._run_org(org, acts, lease) for org, acts in by_org.items()]
        results = await asyncio.gather(*writes, self._deliver_notices(notices))
        for r in results:
            report.add(r)
        return report

    async def drain(self, *, rounds: int = 50, pause: float = 0.2) -> ExecutionReport:
        """Run until nothing is due (or ``rounds`` runs), for the CLI, tests and benchmarks."""
        total = ExecutionReport()
        for _ in range(rounds):
            report = await self.run_once()
            total.add(report)
            if not await asyncio.to_thread(has_pending, self.ledger):
                break
            if report.applied + report.failed == 0:
                await asyncio.sleep(pause)
        return total

    async def _run_org(self, org_name: str, actions: list[Action], lease: datetime) -> ExecutionReport:
        """One org's share of the round (its actions leased until ``lease``): its writes, each ``$batch``'s
        results recorded in one go as soon as its answer is in."""
        report = ExecutionReport()
        round_ = Round(self, report, lease)
        await self._carry_out(org_name, actions, round_)
        await round_.record()
        return report

    async def _carry_out(self, org_name: str, actions: list[Action], round_: Round) -> None:
        try:
            org = self.orgs.get(org_name)
        except DataverseError:  # pragma: no cover - registry raises UnknownOrg, handled below
            raise
        except Exception as exc:
            for a in actions:
                round_.fail(a, f"org {org_name} is no longer registered ({exc})")
            return
        pace = self.paces(org.name) if self.paces is not None else None
        client = self.client_for(org)
        before = client.requests_sent
        gate = asyncio.Semaphore(self.batches_in_flight)

        async def deliver(chunk: Sequence[tuple[Action, str]]) -> None:
            async with gate:
                part = Round(self, round_.report, round_.lease)
                if self._lease_running_out(round_):
                    part.hand_back([action for action, _ in chunk], due=self.clock())
                    await part.record()
                    return
                outcomes = await OrgWrites(client).deliver([Write(action, mailbox_id) for action, mailbox_id in chunk])
                for action, outcome in outcomes:
                    if isinstance(outcome, Applied):
                        part.applied(action)
                    else:
                        part.defer_or_fail(action, outcome.error)
            await part.record()

        size = self.batch_size
        while actions:
            if self._lease_running_out(round_):
                round_.hand_back(actions, due=self.clock())
                log.info("%s: %d actions handed back, their lease nearly spent", org.name, len(actions))
                break
            if pace is not None and pace.wait_s() > 0:
                wait = pace.wait_s()
                round_.hand_back(actions, due=self.clock() + timedelta(seconds=wait))  # not one request until it ends
                quiet_log.info("%s is over its service protection budget for %.0f s; its actions wait",
                               org.name, wait, extra={"rate_key": f"held:{org.name}"})  # fmt: skip
                break
            # as many as the execution time left holds; each answer teaches the pace what the next may hold
            take = pace.allowance(len(actions)) if pace is not None else len(actions)
            chunk, actions = actions[:take], actions[take:]
            ready: list[tuple[Action, str]] = []
            for action in chunk:
                mailbox_id = action.mailbox_id or await self._resolve(client, action, round_)
                if mailbox_id:
                    ready.append((action, mailbox_id))
            await round_.record()  # what was settled without a write (a gone case, a failed look-up, a hold)
            await _all_of(deliver(ready[start : start + size]) for start in range(0, len(ready), size))
        round_.report.requests += client.requests_sent - before

    def _lease_running_out(self, round_: Round) -> bool:
        return self.clock() >= round_.lease - timedelta(seconds=self.lease_reserve_s)

    async def _resolve(self, client: OrgClient, action: Action, round_: Round) -> str | None:
        """Find the org's own mailbox row for the case's address (admin designations, unknown owners)."""
        case = await asyncio.to_thread(self.ledger.case, action.case_id)
        if case is None:
            round_.fail(action, "its case is gone")
            return None
        try:
            row = await find_mailbox(client, case.key)
        except DataverseError as exc:
            round_.defer_or_fail(action, exc)
            return None
        if row is None:
            round_.fail(action, f"no active mailbox for {case.key.redacted} in {action.org}")
            return None
        return str(row["mailboxid"])

    async def _deliver_notices(self, notices: list[Action]) -> ExecutionReport:
        """Send notify actions through Graph (``shared.service.delivery``); without a mail sender, leave them leased."""
        report = ExecutionReport()
        if notices and self.mail is not None:
            await self.mail.deliver(notices, report)
        return report

    async def aclose(self) -> None:
        if self.mail is not None:
            await self.mail.aclose()

    def after_error(self, action: Action, exc: DataverseError) -> Attempt:
        """A failed write: deferred with backoff (honouring ``Retry-After``), or failed when permanent or the last."""
        attempts = attempt_number(action)
        if exc.status in PERMANENT or attempts >= self.max_attempts:
            return Attempt(action.id, ActionStatus.FAILED, _describe(exc), number=attempts)
        delay = backoff.delay(attempts, base=self.base_delay, cap=self.max_delay, jitter=0.0)
        if isinstance(exc, Throttled) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        retry_at = self.clock() + timedelta(seconds=delay)
        return Attempt(action.id, ActionStatus.PENDING, _describe(exc), retry_at=retry_at, number=attempts)


@dataclass
class Round:
    """What became of one org's actions in a round, recorded at once: one ledger transaction for a ``$batch``.

    Recording them together is what keeps the executor's cost per action low (one commit, one thread hop);
    the rules per action are ``Outbox.record_attempt``'s, so the case settles exactly as it would one by one.
    """

    executor: Executor
    report: ExecutionReport
    lease: datetime  # how long the round's actions are leased: what a hand-back proves it still holds
    attempts: list[tuple[Action, Attempt]] = field(default_factory=list)

    def applied(self, action: Action) -> None:
        self.attempts.append((action, Attempt(action.id, ActionStatus.APPLIED, number=attempt_number(action))))

    def fail(self, action: Action, error: str) -> None:
        self.attempts.append((action, Attempt(action.id, ActionStatus.FAILED, error, number=attempt_number(action))))

    def defer_or_fail(self, action: Action, exc: DataverseError) -> None:
        self.attempts.append((action, self.executor.after_error(action, exc)))

    def hand_back(self, actions: Sequence[Action], *, due: datetime) -> None:
        """Unattempted, due again at ``due``: their lease is given back rather than left to run out."""
        for a in actions:
            self.attempts.append((a, Attempt(a.id, ActionStatus.PENDING, retry_at=due, spent=False, lease=self.lease)))
            self.report.held += 1

    async def record(self) -> None:
        """Write what is noted so far in one ledger call, and start afresh (each outcome is recorded once)."""
        taken, self.attempts = self.attempts, []
        if not taken:
            return
        await asyncio.to_thread(self.executor.ledger.record_attempts, [attempt for _, attempt in taken])
        for action, attempt in taken:
            if not attempt.spent:
                continue
            status = "deferred" if attempt.status is ActionStatus.PENDING else attempt.status
            telemetry.count(telemetry.ACTIONS, kind=action.kind, org=action.org, status=status)
            if attempt.status is ActionStatus.APPLIED:
                self.report.applied += 1
            elif attempt.status is ActionStatus.FAILED:
                self.report.failed += 1
                self.report.errors.append(f"{action.kind.value} in {action.org}: {attempt.error}")
                log.warning("action %s (%s in %s) failed: %s", action.id, action.kind.value, action.org, attempt.error)
            else:
                self.report.deferred += 1


END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def attempt_number(action: Action) -> int:
    """Which attempt at ``action`` this round makes: one more than it was leased with (``Attempt.number``)."""
    return action.attempts + 1


def has_pending(ledger: Ledger) -> bool:
    """Whether any action is still pending, due now or deferred."""
    return bool(ledger.pending_actions(1, now=END_OF_TIME))


def _describe(exc: DataverseError) -> str:
    return f"{exc.status or 'no answer'}: {exc}"


async def _all_of(batches: Iterable[Awaitable[None]]) -> None:
    """Run the batches together and wait for every one, each recording its own answers, before a failure goes up:
    a batch that fails must not leave the others writing to the orgs after the round has returned."""
    failed = [r for r in await asyncio.gather(*batches, return_exceptions=True) if isinstance(r, BaseException)]
    if failed:
        raise failed[0]
