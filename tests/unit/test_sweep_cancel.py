"""A sweep cancelled (Ctrl-C, a shutdown) while its worker thread settles a finding: that finding is reported."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import pytest

from shared.domain.compliance import SweepCompliance
from shared.domain.findings import Finding
from shared.domain.model import MailboxKey
from shared.service.sweep import Settlement, Sweep, SweepResult
from tests.factories import HOLDING_POLICY, container
from tests.unit.test_sweep_settle import JP, NA, finding


@pytest.fixture
def service(tmp_path):
    c = container(tmp_path, HOLDING_POLICY)
    yield c.service
    c.close()


def test_a_cancelled_sweep_reports_the_finding_its_thread_was_settling_before_it_stops(service, monkeypatch) -> None:
    reported: list[str] = []
    sweep = Sweep(service, service.ledger, lambda org: None, "s1", apply=True,
                  on_finding=lambda doc: reported.append(doc["mailbox"]))  # type: ignore[arg-type,return-value]  # fmt: skip
    first, second = finding(None), replace(finding(None), key=MailboxKey("ren.sato@contoso.com"))
    entered, release = threading.Event(), threading.Event()
    settled: list[str] = []
    real = sweep._settle

    def slow(f: Finding, primary: str | None, row: str | None) -> Settlement:
        entered.set()
        release.wait(10)  # the cancel arrives while this finding is being settled
        done = real(f, primary, row)
        settled.append(f.key.address)
        return done

    monkeypatch.setattr(sweep, "_settle", slow)
    result = SweepResult(orgs=[NA, JP], apply=True, compliance=SweepCompliance(apply=True))
    case_ids: list[str] = []

    async def cancelled() -> None:
        task = asyncio.create_task(sweep._settled(sweep._settle_batch, [first, second], result, case_ids))
        await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        await asyncio.sleep(0.1)  # the cancel reaches the sweep while its thread is still on the first finding
        assert not task.done(), "the sweep stopped before its thread finished the finding it was on"
        task.cancel()  # a second Ctrl-C while it waits changes nothing
        await asyncio.sleep(0.05)
        assert not task.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert settled == [first.key.address]  # the thread stopped before the next finding
    assert reported == settled  # and what it settled was reported, its case counted
    assert [c["mailbox"] for c in result.conflicts] == settled and case_ids
    assert service.ledger.case(case_ids[0]) is not None
