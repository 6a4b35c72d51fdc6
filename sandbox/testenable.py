"""Test & Enable: what Exchange does when an org tests a mailbox, and when that happens.

Setting `testemailconfigurationscheduled` queues Test & Enable; server-side synchronization runs
it later and writes the outcome to the row (`actstatus`, `mailboxstatus`,
`testmailboxaccesscompletedon`, `testemailconfigurationretrycount`), which is why deployment tools
poll `mailboxstatus` (FACTS.md, "Checked again"; mailbox table reference,
TestEmailConfigurationScheduled). With `test_enable_delay_s` above 0 the sandbox does the same:
the save only schedules the test, and the test reads the row as it is when it runs. So a demote
that lands first wins (ACT None: nothing to test), and a flag set back to false cancels it.
With the delay at 0 the test runs inside the save, the sandbox's older deterministic world.

Exchange's OrgID under the org's `semantics` (FACTS.md; all three are modelled):

* `overwrite` (power-platform `admin/when-would-want-use-check-box.md`): the test takes the
  mailbox over; the old owner's next synchronization then fails with the "configured with
  another organization" alert (KB 4014622), modelled as a second job one delay later;
* `alert` (KB 4014622): without the check box the test fails here with that alert and Exchange
  keeps the old owner; with the check box it takes over as under `overwrite`;
* `disable-other` (a docs change that was closed unmerged, the least certain): the test takes
  over and the other org's row goes to ACT None at once, written by that org's SYSTEM user.

The alert is a failure `tracelog` row kept once per mailbox and updated in place (tracelog
table reference: TraceStatus 0 Failure, Level 3 Error, IsUnique, and ModifiedOn "the time the
error is updated and logged for the same regarding object").

Writes made by the test job (not by the saving user) go through the org's asynchronous steps
but not its synchronous ones, as the disable-other write always has: whether Dataverse runs
custom steps for the synchronization service's own updates is not documented.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Protocol

from sandbox.model import Mailbox, mailbox_key
from sandbox.state import OrgState, SandboxState, UnitOfWork, alert, now_iso

TEST = "test-and-enable"
SYNC = "synchronization"
JOB_LOG_LIMIT = 1000
ALERT_TRACECODE = 0


class SystemWrites(Protocol):
    """How the test writes a row as the org's SYSTEM user (the pipeline, with its asynchronous steps)."""

    def system_update(self, org: OrgState, row: Mailbox, changes: dict[str, object], unit: UnitOfWork) -> None: ...


@dataclass
class Job:
    id: str
    kind: str
    org: str
    mailbox_id: str
    scheduled_at: str
    due_in_s: float
    state: str = "pending"  # pending, ran, cancelled
    outcome: str | None = None
    ran_at: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        """The job as /_sandbox/test-enable shows it: every field but the task that runs it."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "task"}


def raise_alert(org: OrgState, row: Mailbox, unit: UnitOfWork) -> None:
    """The "configured with another organization" alert on `row`: a new trace, or the mailbox's one updated."""
    table = org.tables["tracelogs"]
    fresh = alert(org, row, str(uuid.uuid4()), now_iso())
    existing = next(
        (
            trace
            for trace in table.rows.values()
            if trace.get("_regardingobjectid_value") == row.mailboxid and trace.get("tracecode") == ALERT_TRACECODE
        ),
        None,
    )
    if existing is None:
        unit.add(table, fresh)
        return
    for column in ("text", "level", "tracestatus", "modifiedon"):
        unit.write(org, table, existing, column, fresh.get(column))
    unit.write(org, table, existing, "versionnumber", org.version())


class TestEnable:
    """Runs Test & Enable in the save or schedules it, and keeps a log of the jobs for `/_sandbox/test-enable`."""

    def __init__(self, state: SandboxState, writes: SystemWrites) -> None:
        self.state = state
        self.writes = writes
        self.jobs: list[Job] = []

    def delay(self, org: OrgState) -> float:
        return float(self.state.setting(org, "test_enable_delay_s"))

    def scheduled(self, org: OrgState, row: Mailbox, unit: UnitOfWork) -> None:
        """The save in `unit` set `testemailconfigurationscheduled`: test now (delay 0) or once it commits."""
        if self.delay(org) <= 0:
            self.run(org, row, unit, system=False)
        else:
            unit.after_commit.append(partial(self._schedule, TEST, org, row.mailboxid))

    def run(self, org: OrgState, row: Mailbox, unit: UnitOfWork, *, system: bool) -> str:
        """Test `row` against Exchange now; the outcome: not-syncing, alert, enabled or took-over."""
        changes: dict[str, object] = {
            "testemailconfigurationscheduled": False,
            "testmailboxaccesscompletedon": now_iso(),
            "testemailconfigurationretrycount": row.testemailconfigurationretrycount + 1,
        }
        outcome, loser = self._exchange(org, row, changes, unit)
        if system:
            self.writes.system_update(org, row, changes, unit)
        else:
            for column, value in changes.items():
                unit.write(org, org.mailboxes, row, column, value)
        if loser is not None:
            self._after_takeover(org, loser, mailbox_key(row.emailaddress or ""), unit)
        return outcome

    def _exchange(
        self, org: OrgState, row: Mailbox, changes: dict[str, object], unit: UnitOfWork
    ) -> tuple[str, OrgState | None]:
        if row.actdeliverymethod != 1 or row.statecode != 0:
            return "not-syncing", None
        key = mailbox_key(row.emailaddress or "")
        holder = self.state.exchange.get(key)
        checkbox = bool(row.orgmarkedasprimaryforexchangesync)
        if holder not in (None, org.name) and self.state.setting(org, "semantics") == "alert" and not checkbox:
            changes.update(actstatus=2, mailboxstatus=2)
            raise_alert(org, row, unit)
            return "alert", None
        unit.set_exchange(self.state, key, org.name)
        changes.update(actstatus=1, mailboxstatus=1, isactsyncorgflagset=True)
        if checkbox and self.state.setting(org, "checkbox_resets"):
            changes["orgmarkedasprimaryforexchangesync"] = False
        loser = self.state.orgs.get(holder) if holder not in (None, org.name) else None
        return ("took-over", loser) if loser is not None else ("enabled", None)

    def _after_takeover(self, org: OrgState, loser: OrgState, key: str, unit: UnitOfWork) -> None:
        rows = [row for row in map(loser.mailboxes.get, list(loser.mailboxes.by_key.get(key, []))) if row is not None]
        if self.state.setting(org, "semantics") == "disable-other":
            for row in rows:
                if isinstance(row, Mailbox) and row.actdeliverymethod != 2:
                    self.writes.system_update(loser, row, {"actdeliverymethod": 2, "isactsyncorgflagset": False}, unit)
        elif self.delay(org) > 0:
            for row in rows:
                unit.after_commit.append(partial(self._schedule, SYNC, loser, str(row.get("mailboxid"))))

    # jobs

    def _schedule(self, kind: str, org: OrgState, mailbox_id: str) -> None:
        if any(
            job.state == "pending" and (job.kind, job.org, job.mailbox_id) == (kind, org.name, mailbox_id)
            for job in self.jobs
        ):
            return  # the flag is already set: one test runs
        delay = self.delay(org)
        job = Job(str(uuid.uuid4()), kind, org.name, mailbox_id, now_iso(), delay)
        job.task = asyncio.get_running_loop().create_task(self._later(job, delay))
        self.jobs.append(job)
        if len(self.jobs) > JOB_LOG_LIMIT:
            done = [job for job in self.jobs if job.state != "pending"]
            for old in done[: len(self.jobs) - JOB_LOG_LIMIT]:
                self.jobs.remove(old)

    async def _later(self, job: Job, delay: float) -> None:
        await asyncio.sleep(delay)
        self._execute(job)

    def _execute(self, job: Job) -> None:
        if job.state != "pending":
            return
        job.state, job.ran_at = "ran", now_iso()
        org = self.state.org(job.org)
        row = None if org is None else org.mailboxes.get(job.mailbox_id)
        if org is None or not isinstance(row, Mailbox):
            job.state, job.outcome = "cancelled", "the mailbox is gone"
            return
        unit = UnitOfWork()
        try:
            job.outcome = self._test(job, org, row, unit) if job.kind == TEST else self._synchronize(org, row, unit)
        except Exception:
            unit.rollback()
            raise
        unit.commit()

    def _test(self, job: Job, org: OrgState, row: Mailbox, unit: UnitOfWork) -> str:
        if not row.testemailconfigurationscheduled:
            job.state = "cancelled"
            return "Test & Enable is no longer scheduled"
        return self.run(org, row, unit, system=True)

    def _synchronize(self, org: OrgState, row: Mailbox, unit: UnitOfWork) -> str:
        """The old owner's next synchronization after another org took the address over."""
        holder = self.state.exchange.get(mailbox_key(row.emailaddress or ""))
        if row.actdeliverymethod != 1 or row.statecode != 0:
            return "not-syncing"
        if holder in (None, org.name):
            return "synchronized"
        raise_alert(org, row, unit)
        self.writes.system_update(org, row, {"actstatus": 2, "mailboxstatus": 2}, unit)
        return "alert"

    @property
    def pending(self) -> int:
        return sum(1 for job in self.jobs if job.state == "pending")

    async def run_pending(self, org: str | None = None, kind: str | None = None) -> int:
        """Run the pending jobs (of `org`, of `kind`) now, in order, and the matching ones they schedule.

        Tests stage a race with it deterministically: which test or synchronization lands first.
        """
        ran = 0
        for _ in range(100):
            pending = [
                job
                for job in self.jobs
                if job.state == "pending" and org in (None, job.org) and kind in (None, job.kind)
            ]
            if not pending:
                break
            for job in pending:
                if job.task is not None:
                    job.task.cancel()
                self._execute(job)
                ran += 1
        return ran

    async def drain(self) -> None:
        """Wait until no job is pending."""
        while tasks := [
            job.task for job in self.jobs if job.state == "pending" and job.task is not None and not job.task.done()
        ]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def cancel_pending(self) -> None:
        tasks = [job.task for job in self.jobs if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.jobs.clear()
