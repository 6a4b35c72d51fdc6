"""Job records and the ownership walk the sweep uses, on every ledger."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from shared.domain.jobs import Job, JobConflict, JobKind, JobState
from shared.domain.model import Change, MailboxKey, Ownership
from shared.ledger.port import Ledger, job_ledger
from tests.contract.conftest import T0


def _job(kind: JobKind = JobKind.MIGRATION, n: int = 0) -> Job:
    at = T0.replace(minute=n)
    return Job(f"job-{kind.value}-{n}", kind, JobState.RUNNING, {"from": "contoso-na", "apply": True}, "admin", at, at)


def test_a_job_saves_reads_back_and_counts_its_versions(ledger: Ledger) -> None:
    jobs = job_ledger(ledger)
    first = jobs.save_job(_job())
    assert first.version == 1 and jobs.job(first.id) == first
    moved = jobs.save_job(first.with_progress(recorded=150, plan={"moves": 500, "text": "ポリシー ✓" * 10}))
    assert moved.version == 2
    assert jobs.job(first.id) == moved and moved.progress["recorded"] == 150
    assert jobs.job("no-such-job") is None


def test_a_save_from_a_stale_read_is_refused(ledger: Ledger) -> None:
    jobs = job_ledger(ledger)
    read = jobs.save_job(_job())
    jobs.save_job(read.moved_to(JobState.PAUSED))  # an admin pauses it
    with pytest.raises(JobConflict):
        jobs.save_job(read.with_progress(recorded=1))  # the worker's progress from before
    assert jobs.job(read.id).state is JobState.PAUSED
    with pytest.raises(JobConflict):
        jobs.save_job(_job())  # the same id created twice


def test_jobs_are_listed_per_kind_newest_first(ledger: Ledger) -> None:
    jobs = job_ledger(ledger)
    for n in range(3):
        jobs.save_job(_job(JobKind.MIGRATION, n))
    jobs.save_job(_job(JobKind.SWEEP, 9))
    assert [j.id for j in jobs.jobs(JobKind.MIGRATION)] == ["job-migration-2", "job-migration-1", "job-migration-0"]
    assert [j.id for j in jobs.jobs(JobKind.MIGRATION, limit=2)] == ["job-migration-2", "job-migration-1"]
    assert [j.id for j in jobs.jobs(JobKind.SWEEP)] == ["job-sweep-9"]


def test_a_large_job_document_reads_back_unchanged(ledger: Ledger) -> None:
    jobs = job_ledger(ledger)
    big = jobs.save_job(replace(_job(), result={"moved_mailboxes": [f"user{i}@contoso.com" for i in range(5000)]}))
    assert jobs.job(big.id) == big


def _own(ledger: Ledger, address: str, org: str, at: datetime) -> None:
    key = MailboxKey(address)
    ledger.commit(Change(key, ledger.mailbox(key).version, Ownership(key, org, at, "first-claim", 1, None)))


def test_ownerships_walk_every_owned_mailbox_in_key_order_a_page_at_a_time(ledger: Ledger) -> None:
    jobs = job_ledger(ledger)
    addresses = [f"user{n:03d}@contoso.com" for n in range(25)]
    for n, address in enumerate(reversed(addresses)):
        _own(ledger, address, "contoso-na" if n % 2 else "contoso-eu", T0)
    key = MailboxKey("nobody-owns@contoso.com")
    ledger.commit(Change(key, 0))  # known to the ledger, owned by nobody
    seen: list[str] = []
    after = ""
    while page := jobs.ownerships(after, 10):
        assert len(page) <= 10
        seen += [o.key.address for o in page]
        after = page[-1].key.address
    assert seen == addresses
    owners = {o.key.address: o.owner for o in jobs.ownerships("", 100)}
    assert owners["user024@contoso.com"] == "contoso-eu" and owners["user023@contoso.com"] == "contoso-na"
