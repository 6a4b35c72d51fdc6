"""The outbox worker against the sandbox's Web API under throttling, 5xx and timeouts.

Every action must end applied, none applied twice, none lost; what a case asks
for must be what the org holds afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import httpx
import pytest

from shared.dataverse import clients as orgclients
from shared.dataverse.port import RetryPolicy
from shared.domain.model import Action, ActionStatus, CaseQuery, CaseState, Claim, ClaimKind, MailboxKey, Origin
from shared.ledger.port import Attempt
from shared.ledger.sqlite import SqliteLedger
from shared.service.orgguard import OrgGuard
from shared.service.outbox import END_OF_TIME, Executor, has_pending
from tests.factories import ORG_IDS, registry

pytestmark = pytest.mark.sandbox
API = "/api/data/v9.2"
COLUMNS = "mailboxid,emailaddress,actdeliverymethod,orgmarkedasprimaryforexchangesync,statecode"


def rows(base: str, org: str) -> dict[MailboxKey, dict]:
    """Every active mailbox of ``org`` with ACT on server-side sync, by key (as an admin would page it)."""
    found: dict[MailboxKey, dict] = {}
    url = f"{base}/orgs/{org}{API}/mailboxes?$select={COLUMNS}&$filter=statecode eq 0 and actdeliverymethod eq 1"
    with httpx.Client(headers={"Authorization": "Bearer reader"}, timeout=30) as client:
        while url:
            page = client.get(url).json()
            for row in page["value"]:
                found[MailboxKey.parse(row["emailaddress"])] = row
            url = page.get("@odata.nextLink")
    return found


def contested_world(tmp_path, base: str, count: int):
    """NA owns ``count`` mailboxes that JP also has; an admin moves each to JP (demote NA, promote JP)."""
    orgs = registry(base)
    service = OrgGuard(SqliteLedger(tmp_path / "l.db"), orgs)
    na, jp = rows(base, "contoso-na"), rows(base, "contoso-jp")
    shared_keys = sorted(set(na) & set(jp))[:count]
    assert len(shared_keys) == count, f"the seed has only {len(shared_keys)} shared mailboxes"
    for i, key in enumerate(shared_keys):
        service.handle_claim(
            Claim(
                key,
                "contoso-na",
                na[key]["mailboxid"],
                ClaimKind.SWEEP,
                Origin.SWEEP,
                {"org": ORG_IDS["contoso-na"], "operation": f"seed-{i}"},
            )
        )
        service.designate_owner(key, "contoso-jp", actor="admin", reason="moved to JP")
    return service, shared_keys


async def work(
    service: OrgGuard, *, timeout: float = 0.5, rounds: int = 200, limit: int = 1000, pause: float = 0.05
) -> None:
    """One outbox worker with its own clients: ``rounds`` runs of up to ``limit`` actions, or until none is pending."""
    pool = orgclients.ClientPool(
        RetryPolicy(attempts=3, base_delay=0.05, max_delay=1.0, timeout=timeout), client_id=None
    )
    executor = Executor(service.ledger, service.orgs, pool, base_delay=0.05, max_delay=1.0, max_attempts=50)
    try:
        for _ in range(rounds):
            await executor.run_once(limit=limit)
            if not has_pending(service.ledger):
                return
            await asyncio.sleep(pause)
    finally:
        await pool.aclose()


def drain(service: OrgGuard, *, timeout: float = 0.5, rounds: int = 200) -> None:
    """Carry out the outbox the way the timer would, until nothing is pending."""
    asyncio.run(work(service, timeout=timeout, rounds=rounds))


def configure(base: str, *changes: dict[str, object]) -> None:
    """The sandbox's settings changed in turn (each a PUT to /_sandbox/settings: all orgs, or the one named ``org``)."""
    with httpx.Client(base_url=base) as control:
        for change in changes:
            control.put("/_sandbox/settings", json=change).raise_for_status()


def patches(base: str) -> int:
    """PATCH requests the orgs received since their counters were last cleared (inside $batch too)."""
    with httpx.Client(base_url=base) as control:
        counters = control.get("/_sandbox/requests").json()
    return sum(org.get("by_method", {}).get("PATCH", 0) for org in counters.values())


def assert_all_applied_once(service: OrgGuard, base: str, keys: list[MailboxKey]) -> None:
    cases = service.ledger.cases(CaseQuery(limit=500)).items
    designations = [c for c in cases if c.origin is Origin.ADMIN]
    assert len(designations) == len(keys)
    assert all(c.state is CaseState.APPLIED for c in designations), Counter(c.state for c in designations)
    actions = [a for c in designations for a in c.actions]
    assert all(a.status is ActionStatus.APPLIED for a in actions)
    applied_entries = Counter(
        e.event.data["action"] for e in service.ledger.audit_entries(limit=100_000) if e.event.kind == "action.applied"
    )
    assert set(applied_entries) == {a.id for a in actions}, "an action was lost"
    assert max(applied_entries.values()) == 1, "an action was applied twice"
    na, jp = rows(base, "contoso-na"), rows(base, "contoso-jp")
    for key in keys:
        assert key not in na, f"{key} still syncs from NA"
        assert jp[key]["orgmarkedasprimaryforexchangesync"] is True
        with httpx.Client() as client:
            assert client.get(f"{base}/_sandbox/exchange/{key.address}").json()["org"] == "contoso-jp"


def test_actions_survive_throttling_and_5xx(tmp_path):
    from sandbox.server import running

    with running(mailboxes=200, overlap=0.8) as base:
        service, keys = contested_world(tmp_path, base, 25)
        configure(
            base,
            {"budget": 15, "window_s": 0.5, "gate": False, "events": False},
            {"org": "contoso-na", "fail": {"status": 503, "count": 4}},
            {"org": "contoso-jp", "fail": {"status": 502, "count": 3}},
        )
        drain(service)
        assert_all_applied_once(service, base, keys)


def test_actions_survive_timeouts(tmp_path):
    from sandbox.server import running

    with running(mailboxes=100, overlap=0.8) as base:
        service, keys = contested_world(tmp_path, base, 6)
        configure(base, {"gate": False, "events": False}, {"org": "contoso-na", "latency_ms": 800})
        drain(service, timeout=0.3, rounds=2)
        pending = service.ledger.pending_actions(100, now=END_OF_TIME)
        assert pending and all(a.last_error for a in pending)  # NA kept timing out: deferred, not lost
        configure(base, {"org": "contoso-na", "latency_ms": 0})
        drain(service, timeout=5)
        assert_all_applied_once(service, base, keys)


def test_two_workers_never_apply_an_action_twice(tmp_path):
    """Two OrgGuard instances draining one ledger (leases keep them off each other's actions)."""
    from sandbox.server import running

    with running(mailboxes=200, overlap=0.8) as base:
        service, keys = contested_world(tmp_path, base, 20)
        configure(base, {"gate": False, "events": False})
        with httpx.Client(base_url=base) as control:
            control.delete("/_sandbox/requests")

        async def both() -> None:
            timeout = RetryPolicy().timeout
            await asyncio.gather(*(work(service, timeout=timeout, limit=5, pause=0.02) for _ in range(2)))

        asyncio.run(both())
        assert_all_applied_once(service, base, keys)
        assert patches(base) == 2 * len(keys), "a mailbox was written twice"


def test_a_round_slower_than_its_lease_hands_the_rest_back_rather_than_write_what_another_worker_leased(tmp_path):
    """A slow org: one worker's round would outlast its lease, and a second worker leases what the lease let go.

    The first must stop starting ``$batch``es before its lease runs out and hand the rest back (unattempted, due
    at once): every mailbox is written once, each action applied once, none spends an attempt it did not make.
    """
    from sandbox.server import running

    with running(mailboxes=200, overlap=0.8) as base:
        service, keys = contested_world(tmp_path, base, 12)
        configure(base, {"gate": False, "events": False}, {"org": "contoso-na", "latency_ms": 500})
        with httpx.Client(base_url=base) as control:
            control.delete("/_sandbox/requests")
        held: list[int] = []

        async def worker(start_after: float) -> None:
            await asyncio.sleep(start_after)
            pool = orgclients.ClientPool(RetryPolicy(attempts=3, base_delay=0.05, max_delay=1.0), client_id=None)
            executor = Executor(service.ledger, service.orgs, pool, lease_s=2.0, lease_reserve_s=1.2,
                                batch_size=2, batches_in_flight=1)  # fmt: skip
            try:
                for _ in range(100):
                    report = await executor.run_once()
                    held.append(report.held)
                    if not has_pending(service.ledger):
                        return
                    await asyncio.sleep(0.05)
            finally:
                await pool.aclose()

        async def both() -> None:  # the second starts while the first is sending: it leases what is let go
            await asyncio.gather(worker(0.0), worker(0.5))

        asyncio.run(both())
        assert patches(base) == 2 * len(keys), "a mailbox was written twice"
        assert_all_applied_once(service, base, keys)
        assert sum(held) > 0, "the slow round should have handed actions back"
        actions = [a for c in service.ledger.cases(CaseQuery(limit=50)).items if c.origin is Origin.ADMIN
                   for a in c.actions]  # fmt: skip
        assert {a.attempts for a in actions} == {1}  # a hand-back costs no attempt


def test_one_round_carries_out_more_than_a_first_batch_when_the_budget_holds_it(tmp_path):
    """An org that reports its execution time gets a first batch of about ten (FACTS.md); the rest of the round's
    actions follow in further batches as the answers show what one costs, not after the round's lease runs out."""
    from sandbox.server import running

    with running(mailboxes=200, overlap=0.8) as base:
        service, keys = contested_world(tmp_path, base, 25)
        configure(base, {"gate": False, "events": False})

        async def one_round() -> None:
            pool = orgclients.ClientPool(RetryPolicy(attempts=3, base_delay=0.05, max_delay=1.0), client_id=None)
            executor = Executor(service.ledger, service.orgs, pool, paces=pool.pace)
            try:
                report = await executor.run_once()
                assert report.applied == 50 and report.held == 0, report
            finally:
                await pool.aclose()

        asyncio.run(one_round())
        assert not has_pending(service.ledger)
        assert_all_applied_once(service, base, keys)


def test_a_round_records_each_outcome_once(tmp_path):
    """What a round settles before its ``$batch`` (a look-up that failed) and the batch's results: each once.

    An admin designation leaves the promote's mailbox row to be looked up in JP; the first look-up
    fails (503 on every try), the rest go through.
    """
    from sandbox.server import running

    with running(mailboxes=100, overlap=0.8) as base:
        service, _ = contested_world(tmp_path, base, 4)
        waiting = [a for a in service.ledger.pending_actions(100) if a.mailbox_id is None]
        assert waiting, "the designations should leave rows to look up"
        configure(base, {"gate": False, "events": False})

        async def once():  # type: ignore[no-untyped-def]
            pool = orgclients.ClientPool(RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.1), client_id=None)
            executor = Executor(service.ledger, service.orgs, pool, base_delay=60, max_delay=60)
            try:
                await executor.learn_own_users()
                configure(base, {"org": "contoso-jp", "fail": {"status": 503, "count": 3, "match": "mailboxes"}})
                return await executor.run_once()
            finally:
                await pool.aclose()

        report = asyncio.run(once())
        actions = [a for c in service.ledger.cases(CaseQuery(limit=50)).items if c.origin is Origin.ADMIN
                   for a in c.actions]  # fmt: skip
        deferred = [a for a in actions if a.status is ActionStatus.PENDING]
        assert [a.attempts for a in deferred] == [1]
        assert (report.deferred, report.applied) == (1, len(actions) - 1)
        attempts = Counter(e.event.data["action"] for e in service.ledger.audit_entries(limit=10_000)
                           if e.event.kind.startswith("action."))  # fmt: skip
        assert set(attempts.values()) == {1}


class LostAnswers(SqliteLedger):
    """A ledger whose answer to each round is lost on the way back: the round is recorded again."""

    def record_attempts(self, attempts: Sequence[Attempt]) -> list[Action]:
        super().record_attempts(attempts)
        return super().record_attempts(attempts)


def test_a_round_recorded_again_counts_each_deferral_once(tmp_path):
    """Every write answers 503 (the action stays pending, deferred): recorded twice, each attempt counts once."""
    from sandbox.server import running

    with running(mailboxes=100, overlap=0.8) as base:
        service, _ = contested_world(tmp_path, base, 3)
        configure(base, {"gate": False, "events": False}, {"fail": {"status": 503, "count": 10_000}})

        async def once() -> None:
            pool = orgclients.ClientPool(RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.1), client_id=None)
            executor = Executor(LostAnswers(tmp_path / "l.db"), service.orgs, pool, base_delay=60, max_delay=60)
            try:
                report = await executor.run_once()
                assert report.deferred == 6, report
            finally:
                await pool.aclose()

        asyncio.run(once())
        actions = [a for c in service.ledger.cases(CaseQuery(limit=50)).items if c.origin is Origin.ADMIN
                   for a in c.actions]  # fmt: skip
        assert [(a.status, a.attempts) for a in actions] == [(ActionStatus.PENDING, 1)] * 6
        attempts = Counter(e.event.data["action"] for e in service.ledger.audit_entries(limit=10_000)
                           if e.event.kind.startswith("action."))  # fmt: skip
        assert attempts == Counter({a.id: 1 for a in actions})
