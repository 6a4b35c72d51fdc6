"""The outbox worker against the sandbox in its own process: actions per second, requests per case, CPU.

Each case moves one mailbox from contoso-na to contoso-jp (the overriding policy: the JP claim
wins), so it leaves two actions: a demote in NA and a promote in JP. Every run starts from a
freshly seeded sandbox world and a fresh SQLite ledger; the sandbox runs as ``python -m sandbox``
in its own process, so it does not share OrgGuard's GIL, and OrgGuard's CPU is this process's
(``time.process_time``: every thread, the ledger's included) over the drain alone.

* **unthrottled** (``REPEATS`` runs of today's and of the current executor, in turns; the median of each
  is shown): service protection off (no request, execution-time or concurrency limit);
  the executor as the local host wires it (a ``ClientPool`` whose paces size each ``$batch``).
* **under a budget**: each org allows ``BUDGET_S`` s of execution time per ``WINDOW_S`` s
  sliding window at ``COST_S`` s per operation (the facet a ``$batch`` is bound by: it counts
  once against the number of requests). What the budget allows: a window's worth of operations
  at once, then one more each time the window slides on, so the busier org (JP: a PATCH per case
  and a query per 50 promotes) can finish no sooner than ``(ceil(operations / per window) - 1)``
  windows after the start; the achieved rate is compared with the rate that finish would give.
  Pacing learns each window's end from a 429's ``Retry-After`` (whole seconds), so each window
  may cost one refused request and up to a second.

**Today** (the baseline, in the same run against the same sandbox): the executor as it was at
commit ``BASELINE_COMMIT`` (each action's result its own write transaction), its ``shared/``
taken from git into a temporary directory and run in a child process like every other run.

Counted per case: HTTP requests the orgs received (a ``$batch`` once) and service-protection
operations (each operation inside a ``$batch`` one, as execution time counts them), from the
sandbox's own counters.

``python -m bench executor`` (``BENCH_CASES``, ``BENCH_BUDGET_CASES`` and ``BENCH_REPEATS`` change the size).
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import knobs
from bench.report import goals, header, table
from bench.sandbox_process import REPO, Sandbox, sandbox_process

CASES = knobs.whole("BENCH_CASES", 1000, minimum=1)
BASELINE_COMMIT = "c9724cdc27c4304ca54e75e08ccbcf88496a2756"  # before one transaction per $batch
WINDOW_S = 30.0
BUDGET_S = 10.0
COST_S = 0.05  # so each org takes 200 operations per 30 s window
BUDGET_CASES = knobs.whole(  # 560: 572 operations in JP, three windows' worth
    "BENCH_BUDGET_CASES",
    560,
    minimum=200,
    why="more than one window of 200 operations, or the budget never binds",
)
REPEATS = knobs.whole("BENCH_REPEATS", 3, minimum=1)  # unthrottled runs of each, the median counts (a busy machine)
READ_CHUNK = 50  # promotes whose rows one query reads first (shared.service.org_writes.READ_CHUNK)
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
    transactions: int  # the ledger's write transactions during the drain (leases included)

    @property
    def actions(self) -> int:
        return 2 * self.cases

    @property
    def rate(self) -> float:
        return self.actions / self.seconds

    def least_operations(self) -> int:
        """What one case needs at the least: a PATCH in each org, and the promote's row read first (one query
        per ``READ_CHUNK`` promotes), over all cases."""
        return len(ORGS) * self.cases + math.ceil(self.cases / READ_CHUNK)

    def budget_seconds(self) -> float:
        """The soonest the budget lets the busier org (JP: its writes and reads) finish: a window's worth of
        operations at once, then one more each time the window slides on."""
        per_window = round(BUDGET_S / COST_S)
        return (math.ceil((self.cases + math.ceil(self.cases / READ_CHUNK)) / per_window) - 1) * WINDOW_S

    def row(self) -> list[object]:
        return [
            self.label, self.cases, self.actions, f"{self.seconds:.2f}", f"{self.rate:,.0f}",
            f"{self.http / self.cases:.3f}", f"{self.operations / self.cases:.3f}", self.throttled,
            f"{self.cpu_s / self.actions * 1e6:,.0f}", f"{self.sandbox_cpu_s / self.actions * 1e6:,.0f}",
            f"{self.transactions / self.actions:.3f}",
        ]  # fmt: skip


def _world(base: str, tmp: Path, cases: int) -> tuple[Any, int]:
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


async def _drain(service: Any) -> float:
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
            if report.applied + report.failed == 0:  # every org with due work was held: wait for the first to open
                waits = [w for w in (pool.pace(org).wait_s() for org in ORGS) if w > 0]
                await asyncio.sleep(min(waits, default=0.05))
        return time.perf_counter() - start
    finally:
        await pool.aclose()


def measure(sandbox: Sandbox, label: str, settings: dict[str, Any], cases: int, *, today: bool = False) -> Run:
    """One run in a child process of its own (with ``today``, on the baseline commit's ``shared/``)."""
    job = {"base": sandbox.base, "pid": sandbox.pid, "label": label, "settings": settings, "cases": cases}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = str(REPO)
        if today:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", "--format=tar", BASELINE_COMMIT, "shared"],
                capture_output=True, check=True,
            )  # fmt: skip
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(tmp, filter="data")
            cwd = job["shared_from"] = tmp
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys([cwd, str(REPO)]))}
        done = subprocess.run(
            [sys.executable, "-c", "from bench.executor import child; child()", json.dumps(job)],
            cwd=cwd, env=env, capture_output=True, text=True,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{label}: the run failed\n{done.stderr[-3000:]}")
    return Run(**json.loads(done.stdout.strip().splitlines()[-1]))


def _count_transactions() -> list[int]:
    """Count the SQLite ledger's write transactions from now on (in this child process only)."""
    from shared.ledger.sqlite import SqliteLedger

    count = [0]
    begin = SqliteLedger._tx

    def counted(self: SqliteLedger, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return begin(self, *args, **kwargs)

    SqliteLedger._tx = counted  # type: ignore[method-assign]
    return count


def child() -> None:
    """The measured run (``measure``'s child process): world, drain, counters; prints the ``Run`` as JSON."""
    import shared

    job = json.loads(sys.argv[1])
    if job.get("shared_from") and not str(Path(shared.__file__).resolve()).startswith(
        str(Path(job["shared_from"]).resolve())
    ):
        raise RuntimeError(f"the baseline run imported {shared.__file__}, not the baseline commit's shared/")
    sandbox, label, cases = Sandbox(job["base"], job["pid"]), job["label"], job["cases"]
    with httpx.Client(base_url=sandbox.base, timeout=120) as control, tempfile.TemporaryDirectory() as tmp:
        control.post("/_sandbox/seed", json={"mailboxes": round(cases * 2.2), "overlap": 0.8, "orgs": 3})
        control.put("/_sandbox/settings", json={"gate": False, "events": False, **job["settings"]}).raise_for_status()
        service, made = _world(sandbox.base, Path(tmp), cases)
        before = _counters(control)
        transactions = _count_transactions()
        cpu, sandbox_cpu = time.process_time(), sandbox.cpu_s()
        seconds = asyncio.run(_drain(service))
        cpu_s, sandbox_cpu_s = time.process_time() - cpu, sandbox.cpu_s() - sandbox_cpu
        after = _counters(control)
        if service.ledger.pending_actions(1):
            raise RuntimeError(f"{label}: actions still pending after the drain")
        service.ledger.close()

    def spent(name: str) -> int:
        return sum(after[org][name] - before[org][name] for org in ORGS)

    run = Run(label, made, seconds, cpu_s, sandbox_cpu_s, spent("http"), spent("requests"), spent("throttled"),
              transactions[0])  # fmt: skip
    print(json.dumps(asdict(run)))


def run(cases: int = CASES) -> tuple[Run, Run, Run]:
    """Today and now unthrottled ``REPEATS`` times each, in turns (the median run of each counts), then the budget."""
    with sandbox_process(mailboxes=round(cases * 2.2), overlap=0.8) as sandbox:
        todays: list[Run] = []
        nows: list[Run] = []
        for _ in range(REPEATS):
            todays.append(measure(sandbox, "today (one transaction per action), unthrottled", PROTECTION_OFF, cases,
                                  today=True))  # fmt: skip
            nows.append(measure(sandbox, "unthrottled", PROTECTION_OFF, cases))
        today, free = (sorted(runs, key=lambda r: r.seconds)[len(runs) // 2] for runs in (todays, nows))
        paced = measure(sandbox, f"{BUDGET_S:g} s of execution per {WINDOW_S:g} s, {COST_S:g} s per operation",
                        UNDER_BUDGET, BUDGET_CASES)  # fmt: skip
    return today, free, paced


def main() -> None:
    header(f"Executor against the sandbox in its own process ({CASES} override cases, 2 actions each)")
    today, free, paced = run()
    table(
        ["run", "cases", "actions", "seconds", "actions/s", "HTTP requests per case", "operations per case",
         "429s", "OrgGuard CPU µs per action", "sandbox CPU µs per action", "ledger transactions per action"],
        [today.row(), free.row(), paced.row()],
    )  # fmt: skip
    speedup = free.rate / today.rate
    allowed = paced.actions / paced.budget_seconds()
    cpu_now, cpu_then = (r.cpu_s / r.actions * 1e6 for r in (free, today))
    least = free.least_operations() / free.cases
    goals(
        [
            ("4. executor: ledger write transactions per action (leases included)",
             f"{free.transactions / free.actions:.4f} (today {today.transactions / today.actions:.3f})",
             "one per $batch", free.transactions <= today.transactions / 100),
            ("4. executor: actions/s unthrottled", f"{free.rate:,.0f} (today {today.rate:,.0f}, {speedup:.2f}x)",
             ">= 3x today", speedup >= 3),
            (f"4. executor: actions/s under {BUDGET_S:g} s of execution per {WINDOW_S:g} s window per org",
             f"{paced.rate:,.1f} (the budget allows {allowed:,.1f}, {paced.rate / allowed:.3f}x)",
             ">= 0.95x what the budget allows", paced.rate >= 0.95 * allowed),
            ("4. executor: HTTP requests per case (a $batch once)",
             f"{free.http / free.cases:.3f} (today {today.http / today.cases:.3f})", "reported", True),
            ("4. executor: service-protection operations per case",
             f"{free.operations / free.cases:.3f} (least {least:.3f}, {free.operations / free.cases / least:.3f}x; "
             f"today {today.operations / today.cases:.3f})",
             "<= 1.05x the least", free.operations <= 1.05 * free.least_operations()),
            ("4. executor: OrgGuard CPU µs per action",
             f"{cpu_now:,.0f} (today {cpu_then:,.0f}, {cpu_now / cpu_then:.2f}x)", "reported", True),
        ]
    )  # fmt: skip
