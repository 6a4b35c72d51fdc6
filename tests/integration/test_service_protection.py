"""OrgGuard under Dataverse's service protection as documented, against the sandbox's model of it.

FACTS.md ("Checked again"): 6,000 requests and 1,200 s of execution time per user within a sliding 300 s
window; a ``$batch`` counts once against the requests but adds the time of all its operations; a 429's
``Retry-After`` is to be honoured in full, since requests sent meanwhile extend the penalty. The sandbox
enforces each (``sandbox/throttle.py``); these tests shrink the budgets so OrgGuard meets them in seconds.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from shared.dataverse import clients as orgclients
from shared.dataverse.port import RetryPolicy
from shared.domain.jobs import JobState
from shared.domain.model import ActionKind, ActionStatus, CaseQuery, MailboxKey
from shared.service.outbox import END_OF_TIME, Executor
from tests.integration.test_executor_sandbox import contested_world
from tests.jobs_support import exchange, rows, wired

pytestmark = pytest.mark.sandbox
POLICY = "version: 1\nmode: enforce\ndefault: hold\nrules: []\n"


SANDBOX_SEED = {"mailboxes": 400, "overlap": 0.8}


def counters(sandbox: httpx.Client) -> dict[str, dict[str, int]]:
    doc: dict[str, dict[str, int]] = sandbox.get("/_sandbox/requests").json()
    return doc


def na_and_eu(sandbox: httpx.Client, n: int) -> list[str]:
    def active(org: str) -> set[str]:
        return {MailboxKey.parse(r["emailaddress"]).address for r in rows(sandbox, org) if r["statecode"] == 0}

    both = sorted(active("contoso-na") & active("contoso-eu"))
    assert len(both) >= n, f"the seed has only {len(both)} NA/EU pairs"
    return both[:n]


def migrate(tmp_path: Path, base_url: str, addresses: list[str]) -> tuple[dict[str, object], float]:
    c = wired(tmp_path, base_url, POLICY)
    jobs = c.jobs()
    job = jobs.start_migration("contoso-na", "contoso-eu", addresses=addresses, domain=None, apply=True, actor="test")
    started = time.monotonic()
    done = asyncio.run(jobs.run_migration(job))
    assert done.state is JobState.DONE, done.error
    return dict(done.result or {}), time.monotonic() - started


def test_a_batch_counts_once_so_a_tight_request_budget_still_moves_a_hundred_mailboxes_unrefused(
    sandbox: httpx.Client, base_url: str, tmp_path: Path
):
    """Ten requests a minute per org: enough for a hundred moves in one $batch per org, never a 429.

    Counting each operation inside a $batch against the request budget (stricter than documented)
    shrank the batches to the requests left, spent them, and waited out the minute.
    """
    chosen = na_and_eu(sandbox, 100)
    sandbox.put("/_sandbox/settings", json={"budget": 10, "window_s": 60, "execution_budget_s": None})
    report, seconds = migrate(tmp_path, base_url, chosen)
    assert report["moved"] == 100 and report["failed"] == 0
    seen = counters(sandbox)
    assert {org: seen[org]["throttled"] for org in ("contoso-na", "contoso-eu")} == {"contoso-na": 0, "contoso-eu": 0}
    assert seen["contoso-na"]["batch_inner"] >= 100 and seen["contoso-na"]["http"] <= 10
    assert seconds < 30  # no window waited out
    assert {exchange(sandbox, a) for a in chosen} == {"contoso-eu"}


def test_the_execution_time_left_sizes_each_batch(sandbox: httpx.Client, base_url: str, tmp_path: Path):
    """One second of execution time per two-second window at 50 ms an operation: no $batch carries more
    than twenty operations once the pacer has seen what one costs, and every mailbox still moves."""
    chosen = na_and_eu(sandbox, 60)
    sandbox.put(
        "/_sandbox/settings",
        json={"budget": None, "execution_budget_s": 1.0, "execution_cost_s": 0.05, "window_s": 2.0},
    )
    report, _ = migrate(tmp_path, base_url, chosen)
    assert report["moved"] == 60 and report["failed"] == 0
    seen = counters(sandbox)
    for org in ("contoso-na", "contoso-eu"):
        assert seen[org]["batches"] >= 3, seen[org]  # 60 writes in batches of at most 20
        assert seen[org]["batch_inner"] / seen[org]["batches"] <= 20, seen[org]
    assert {exchange(sandbox, a) for a in chosen} == {"contoso-eu"}


def test_the_executor_waits_out_a_long_retry_after_without_sending_anything(sandbox: httpx.Client, tmp_path: Path):
    """A two-minute penalty: the actions wait two minutes, and nothing goes to that org meanwhile.

    Cutting Retry-After to the client's 30 s (here 1 s) and knocking again would extend the penalty.
    """
    base = str(sandbox.base_url).rstrip("/")
    service, keys = contested_world(tmp_path, base, 4)  # 4 demotes in NA, 4 promotes in JP
    sandbox.put("/_sandbox/settings", json={"gate": False, "events": False}).raise_for_status()
    sandbox.put("/_sandbox/settings", json={"org": "contoso-na", "budget": 1, "window_s": 120}).raise_for_status()
    sandbox.delete("/_sandbox/requests")

    async def go() -> tuple[int, int, float]:
        pool = orgclients.ClientPool(RetryPolicy(attempts=3, base_delay=0.05, max_delay=1.0), client_id=None)
        executor = Executor(service.ledger, service.orgs, pool, base_delay=0.05, max_delay=1.0, paces=pool.pace)
        try:
            await executor.run_once()  # NA: WhoAmI spends the budget, the $batch gets 429 Retry-After ~120
            sent = counters(sandbox)["contoso-na"]["http"]
            deferred = [a for a in service.ledger.pending_actions(100, now=END_OF_TIME) if a.org == "contoso-na"]
            wait = min((a.next_attempt_at - service.clock()).total_seconds() for a in deferred if a.next_attempt_at)
            service.designate_owner(keys[0], "contoso-na", actor="admin", reason="back to NA")  # a promote, due now
            again = await executor.run_once()
            return sent, again.held, wait
        finally:
            await pool.aclose()

    sent, held, wait = asyncio.run(go())
    assert sent == 2  # WhoAmI, then the refused $batch: not one retry inside the penalty
    assert wait > 100  # the demotes wait the whole Retry-After
    assert held >= 1  # the new promote waits too, without a request
    assert counters(sandbox)["contoso-na"]["http"] == sent
    jp = [a for c in service.ledger.cases(CaseQuery()).items for a in c.actions if a.org == "contoso-jp"]
    promotes = [a for a in jp if a.kind is ActionKind.PROMOTE]
    assert promotes and all(a.status is ActionStatus.APPLIED for a in promotes)  # the other org was not held up


def test_actions_held_for_a_budget_come_back_when_its_window_ends_not_when_their_lease_does(
    sandbox: httpx.Client, tmp_path: Path
) -> None:
    """Held actions give their lease back (due when the org takes requests again), and no attempt is spent."""
    base = str(sandbox.base_url).rstrip("/")
    service, keys = contested_world(tmp_path, base, 4)
    sandbox.put("/_sandbox/settings", json={"gate": False, "events": False}).raise_for_status()
    sandbox.put("/_sandbox/settings", json={"org": "contoso-na", "budget": 1, "window_s": 4}).raise_for_status()

    async def go() -> tuple[float, list[ActionStatus]]:
        pool = orgclients.ClientPool(RetryPolicy(attempts=3, base_delay=0.05, max_delay=1.0), client_id=None)
        executor = Executor(service.ledger, service.orgs, pool, base_delay=0.05, max_delay=1.0, paces=pool.pace)
        try:
            await executor.run_once()  # NA: WhoAmI spends the budget, its $batch learns the window's end from a 429
            case = service.designate_owner(keys[0], "contoso-na", actor="admin", reason="back to NA")
            promote = next(a for a in case.actions if a.org == "contoso-na")
            again = await executor.run_once()
            assert again.held >= 1
            held = next(a for a in service.ledger.pending_actions(100, now=END_OF_TIME) if a.id == promote.id)
            assert held.next_attempt_at is not None
            due_in = (held.next_attempt_at - service.clock()).total_seconds()
            assert held.attempts == 0
            sandbox.put("/_sandbox/settings", json={"org": "contoso-na", "budget": 100}).raise_for_status()
            report = await executor.drain(rounds=100, pause=0.2)
            assert report.failed == 0
            stored = service.ledger.case(case.id)
            assert stored is not None
            return due_in, [a.status for a in stored.actions if a.id == promote.id]
        finally:
            await pool.aclose()

    due_in, statuses = asyncio.run(go())
    assert 0 < due_in <= 4.5  # when NA's window ends, not the 30 s lease
    assert statuses == [ActionStatus.APPLIED]
