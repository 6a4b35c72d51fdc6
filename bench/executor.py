"""The outbox worker against the sandbox in its own process: actions per second, requests per case, CPU.

Each case moves one mailbox from contoso-na to contoso-jp (the overriding policy: the JP claim
wins), so it leaves two actions: a demote in NA and a promote in JP. Every run starts from a
freshly seeded sandbox world and a fresh SQLite ledger; the sandbox runs as ``python -m sandbox``
in its own process, so it does not share OrgGuard's GIL, and OrgGuard's CPU is this process's
(``time.process_time``: every thread, the ledger's included) over the drain alone.

* **unthrottled**: service protection off (no request, execution-time or concurrency limit);
  the executor as the local host wires it (a ``ClientPool`` whose paces size each ``$batch``).
* **under a budget**: each org allows ``BUDGET_S`` s of execution time per ``WINDOW_S`` s
  sliding window at ``COST_S`` s per operation (the facet a ``$batch`` is bound by: it counts
  once against the number of requests). The most a sliding window lets in over a run of
  ``T`` s is ``ceil(T / WINDOW_S)`` windows' worth, which is what the budget allows.

Counted per case: HTTP requests the orgs received (a ``$batch`` once) and service-protection
operations (each operation inside a ``$batch`` one, as execution time counts them), from the
sandbox's own counters.

``python -m bench executor`` (``BENCH_CASES`` changes the number of cases).
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.report import header, table
from bench.sandbox_process import Sandbox, sandbox_process

CASES = int(os.environ.get("BENCH_CASES", "1000"))
WINDOW_S = 2.0
BUDGET_S = 2.0
COST_S = 0.01  # so each org takes 200 operations per 2 s window
ORGS = ("contoso-na", "contoso-jp")
PROTECTION_OFF = {"budget": None, "execution_budget_s": None, "concurrency": None}
UNDER_BUDGET = {"budget": None, "window_s": WINDOW_S, "execution_budget_s": BUDGET_S, "execution_cost_s": COST_S}


@dataclass
class Run:
    label: str
    cases: int
    seconds: float
    cpu_s: float
    sandbox_cpu_s: float
    http: int
    operations: int
    throttled: int

    @property
    def actions(self) -> int:
        return 2 * self.cases

    @property
    def rate(self) -> float:
        return self.actions / self.seconds

    def allowed_operations(self) -> int:
        """What a sliding window of ``BUDGET_S / COST_S`` operations per org lets in over this run."""
        return len(ORGS) * round(BUDGET_S / COST_S) * math.ceil(self.seconds / WINDOW_S)

    def row(self) -> list[object]:
        return [
            self.label, self.cases, self.actions, f"{self.seconds:.2f}", f"{self.rate:,.0f}",
            f"{self.http / self.cases:.3f}", f"{self.operations / self.cases:.3f}", self.throttled,
            f"{self.cpu_s / self.actions * 1e6:,.0f}", f"{self.sandbox_cpu_s / self.actions * 1e6:,.0f}",
        ]  # fmt: skip


def _world(base: str, tmp: Path, cases: int):  # type: ignore[no-untyped-def]
    from shared.domain.model import Claim, ClaimKind, MailboxKey, Origin
    from shared.ledger.sqlite import SqliteLedger
    from shared.service.orgguard import OrgGuard
    from tests.factories import OVERRIDING_POLICY, registry

    service = OrgGuard(SqliteLedger(tmp / "l.db"), registry(base))
    service.save_policy(OVERRIDING_POLICY, actor="bench")  # JP's claim wins: demote NA, promote JP
    rows: dict[str, dict[MailboxKey, str]] = {}
    with httpx.Client(headers={"Authorization": "Bearer bench"}, timeout=60) as client:
        for org in ORGS:
            found: dict[MailboxKey, str] = {}
            url = f"{base}/orgs/{org}/api/data/v9.2/mailboxes?$select=mailboxid,emailaddress&$filter=statecode eq 0"
            while url:
                page = client.get(url).json()
                for row in page["value"]:
                    found[MailboxKey.parse(row["emailaddress"])] = row["mailboxid"]
                url = page.get("@odata.nextLink")
            rows[org] = found
    keys = sorted(set(rows["contoso-na"]) & set(rows["contoso-jp"]))[:cases]
    for i, key in enumerate(keys):
        for org in ORGS:
            event = {"operation": f"bench-{org}-{i}"}
            service.handle_claim(Claim(key, org, rows[org][key], ClaimKind.SWEEP, Origin.SWEEP, event))
    return service, len(keys)


def _counters(control: httpx.Client) -> dict[str, Any]:
    data: dict[str, Any] = control.get("/_sandbox/requests").json()
    return data


async def _drain(service) -> float:  # type: ignore[no-untyped-def]
    """Run the executor as the local host wires it until nothing is pending; wait out an org's budget between rounds."""
    from shared.dataverse.clients import ClientPool
    from shared.dataverse.port import RetryPolicy
    from shared.service.outbox import Executor, has_pending

    pool = ClientPool(RetryPolicy(attempts=8, base_delay=0.1, max_delay=5.0), client_id=None)
    executor = Executor(
        service.ledger, service.orgs, pool, base_delay=0.1, max_delay=5.0, max_attempts=100, paces=pool.pace
    )
    await executor.learn_own_users()
    start = time.perf_counter()
    try:
        while await asyncio.to_thread(has_pending, service.ledger):
            report = await executor.run_once(limit=2000)
            if report.applied + report.failed == 0:
                waits = [pool.pace(org).wait_s() for org in ORGS]
                await asyncio.sleep(max(0.005, min(waits)))
        return time.perf_counter() - start
    finally:
        await pool.aclose()


def measure(sandbox: Sandbox, label: str, settings: dict[str, Any], cases: int) -> Run:
    base = sandbox.base
    with httpx.Client(base_url=base, timeout=120) as control, tempfile.TemporaryDirectory() as tmp:
        control.post("/_sandbox/seed", json={"mailboxes": round(cases * 2.2), "overlap": 0.8, "orgs": 3})
        control.put("/_sandbox/settings", json={"gate": False, "events": False, **settings}).raise_for_status()
        service, made = _world(base, Path(tmp), cases)
        before = _counters(control)
        cpu, sandbox_cpu = time.process_time(), sandbox.cpu_s()
        seconds = asyncio.run(_drain(service))
        cpu_s, sandbox_cpu_s = time.process_time() - cpu, sandbox.cpu_s() - sandbox_cpu
        after = _counters(control)
        pending = service.ledger.pending_actions(1)
        if pending:
            raise RuntimeError(f"{label}: actions still pending after the drain")
        service.ledger.close()

    def spent(name: str) -> int:
        return sum(after[org][name] - before[org][name] for org in ORGS)

    return Run(label, made, seconds, cpu_s, sandbox_cpu_s, spent("http"), spent("requests"), spent("throttled"))


def run(cases: int = CASES) -> tuple[Run, Run]:
    with sandbox_process(mailboxes=round(cases * 2.2), overlap=0.8) as sandbox:
        free = measure(sandbox, "unthrottled", PROTECTION_OFF, cases)
        paced = measure(sandbox, f"{BUDGET_S:g} s of execution per {WINDOW_S:g} s, {COST_S:g} s per operation",
                        UNDER_BUDGET, cases)  # fmt: skip
    return free, paced


def main() -> None:
    header(f"Executor against the sandbox in its own process ({CASES} override cases, 2 actions each)")
    free, paced = run()
    table(
        ["run", "cases", "actions", "seconds", "actions/s", "HTTP requests per case", "operations per case",
         "429s", "OrgGuard CPU µs per action", "sandbox CPU µs per action"],
        [free.row(), paced.row()],
    )  # fmt: skip
