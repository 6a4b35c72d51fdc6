"""How jobs run against a ledger shared with other workers, on every ledger.

A migration's rollout must end when another worker (the local host's own
executor) carries its actions out; a reviewed plan is applied once, however
many ask at the same moment.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from sandbox.server import running
from shared.dataverse.clients import Connector
from shared.dataverse.pacing import Pacer
from shared.domain.jobs import Job, JobKind, JobState
from shared.domain.model import ActionStatus, CaseState, Effect, InvalidTransition, NotFound, utcnow
from shared.ledger.port import Ledger, job_ledger
from shared.service.migration import StalePlan, apply_plan
from shared.service.outbox import Executor
from shared.service.rollout import carry_out
from tests.contract.conftest import Clock, contested
from tests.factories import registry


@pytest.fixture(scope="module")
def orgs_url() -> Iterator[str]:
    """The simulated orgs: our executor asks each who OrgGuard is there (WhoAmI) before every round."""
    with running(port=0, mailboxes=5) as url:
        yield url


def test_a_rollout_ends_when_another_worker_carries_its_actions_out(ledger: Ledger, orgs_url: str) -> None:
    case = contested(ledger, Clock(utcnow()), Effect.OVERRIDE)
    now = utcnow()
    theirs = ledger.lease_actions(10, now=now, until=now + timedelta(minutes=5))  # the other worker's batch in flight
    assert {a.case_id for a in theirs} == {case.id} and len(theirs) == 2

    async def scenario() -> int:
        pacer = Pacer(Connector(client_id=None))
        ours = Executor(ledger, registry(orgs_url), pacer)
        try:
            rollout = asyncio.create_task(
                carry_out(ours, ledger, pacer, [case.id], orgs=["contoso-na", "contoso-jp"], poll=0.05, recheck=0.2)
            )
            await asyncio.sleep(0.5)
            assert not rollout.done()  # nothing it could take: it waits
            for action in theirs:  # the other worker's writes were accepted: it records them
                await asyncio.to_thread(ledger.record_attempt, action.id, ActionStatus.APPLIED)
            done = await asyncio.wait_for(rollout, timeout=10)
            return done.settled
        finally:
            await pacer.aclose()

    assert asyncio.run(scenario()) == 1
    assert ledger.case(case.id).state is CaseState.APPLIED


def _planned(ledger: Ledger, fingerprint: str | None = "f" * 64) -> Job:
    job = Job.start(
        JobKind.MIGRATION, {"from": "contoso-na", "to": "contoso-eu", "domain": "contoso.com"}, actor="a", apply=False
    )
    plan = {"moves": 3, **({"fingerprint": fingerprint} if fingerprint else {})}
    job = replace(job, result={"plan": plan}).moved_to(JobState.PLANNED)
    return job_ledger(ledger).save_job(job)


def test_a_reviewed_plan_is_applied_once_when_several_ask_at_once(instances: Callable[[], Ledger]) -> None:
    first = instances()
    planned = _planned(first)
    workers = [job_ledger(instances()) for _ in range(4)]
    start = threading.Barrier(len(workers))
    won: list[Job] = []
    refused: list[str] = []

    def ask(jobs: object) -> None:
        start.wait()
        try:
            won.append(apply_plan(jobs, planned.id, actor="admin"))  # type: ignore[arg-type]
        except InvalidTransition as exc:
            refused.append(exc.detail)

    threads = [threading.Thread(target=ask, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(refused) == len(workers) - 1
    winner = won[0]
    assert all(f"already applied by migration {winner.id}" in r for r in refused)
    jobs = job_ledger(first)
    assert jobs.job(planned.id).result["applied_by"] == winner.id
    assert winner.apply and winner.params["plan"] == planned.id and winner.params["plan_fingerprint"] == "f" * 64
    others = [j for j in jobs.jobs(JobKind.MIGRATION) if j.id not in (planned.id, winner.id)]
    assert {j.state for j in others} <= {JobState.CANCELLED}  # a loser's job never runs


def test_only_a_plan_with_its_fingerprint_can_be_applied(ledger: Ledger) -> None:
    jobs = job_ledger(ledger)
    with pytest.raises(NotFound):
        apply_plan(jobs, "no-such-migration", actor="admin")
    running = jobs.save_job(Job.start(JobKind.MIGRATION, {"from": "a", "to": "b"}, actor="a", apply=True))
    with pytest.raises(InvalidTransition, match="not a plan"):
        apply_plan(jobs, running.id, actor="admin")
    old = _planned(ledger, fingerprint=None)
    with pytest.raises(StalePlan, match="plan again"):
        apply_plan(jobs, old.id, actor="admin")
    assert {j.id for j in jobs.jobs(JobKind.MIGRATION)} == {running.id, old.id}  # a refusal starts nothing
