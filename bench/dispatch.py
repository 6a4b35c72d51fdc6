"""Decision to first attempt: how long a decided after-the-fact claim waits before its first write reaches the org.

Two ways, each against the sandbox's orgs with the local host as `orgguard serve` runs it:

* **queue**: the decision's commit hands its work to the mailbox's session on the local work queue;
  the host's consumer carries it out at once (what the Service Bus trigger does in Azure);
* **timer** (the baseline, as before the queue): the outbox round that runs once a minute (the
  housekeeping timer in Azure) carries it out at its next tick. Decisions come at random moments of
  a real period (``ORGGUARD_BENCH_TIMER_S``, 60 s by default, as the timer), so the wait is measured,
  not assumed.

Latency is the action's first attempt (its record's time) minus the case's decision time, both from
OrgGuard's clock: no polling in the measurement.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import knobs
from bench.report import header, percentile, table

DECISIONS = 30
TIMER_S = knobs.amount("ORGGUARD_BENCH_TIMER_S", 60.0, minimum=1.0, unit="seconds")


def _container(base: str, tmp: Path, *, bus: bool) -> Any:
    from shared import bootstrap
    from shared.config.settings import Settings
    from shared.ledger.sqlite import SqliteLedger
    from tests.factories import BLOCKING_POLICY, registry

    settings = Settings(
        ledger=f"sqlite:///{tmp}/l.db",
        orgs="-",
        policy=str(tmp / "none"),
        bus=f"sqlite:///{tmp}/bus.db" if bus else None,
    )
    c = bootstrap.build(settings, ledger=SqliteLedger(tmp / "l.db"), orgs=registry(base))
    c.service.save_policy(BLOCKING_POLICY, actor="bench")
    return c


def _rows(base: str) -> list[tuple[Any, str, str]]:
    """Mailboxes both contoso-na and contoso-jp have: (key, NA's row, JP's row)."""
    from shared.domain.model import MailboxKey

    found: dict[str, dict[Any, str]] = {}
    with httpx.Client(headers={"Authorization": "Bearer bench"}, timeout=60) as client:
        for org in ("contoso-na", "contoso-jp"):
            rows: dict[Any, str] = {}
            url: str | None = f"{base}/orgs/{org}/api/data/v9.2/mailboxes?$select=mailboxid,emailaddress"
            while url:
                page = client.get(url).json()
                rows.update({MailboxKey.parse(r["emailaddress"]): r["mailboxid"] for r in page["value"]})
                url = page.get("@odata.nextLink")
            found[org] = rows
    keys = sorted(set(found["contoso-na"]) & set(found["contoso-jp"]), key=lambda k: k.address)
    return [(k, found["contoso-na"][k], found["contoso-jp"][k]) for k in keys[:DECISIONS]]


def _decide(c: Any, rows: list[tuple[Any, str, str]], n: int) -> str:
    """NA owns mailbox ``n``; JP's after-the-fact claim is blocked: demote JP, promote NA (a repair)."""
    from shared.domain.model import Claim, ClaimKind, Origin

    key, na, jp = rows[n]
    c.service.handle_claim(Claim(key, "contoso-na", na, ClaimKind.TEST_ENABLE, Origin.WEBHOOK, {"operation": f"o{n}"}))
    outcome = c.service.handle_claim(
        Claim(key, "contoso-jp", jp, ClaimKind.TEST_ENABLE, Origin.WEBHOOK, {"operation": f"j{n}"})
    )
    assert outcome.case_id is not None
    return str(outcome.case_id)


def _latencies(c: Any, cases: list[str], timeout: float) -> list[float]:
    """Milliseconds from each case's decision to its first attempted write, waiting for all of them."""
    deadline = time.monotonic() + timeout
    out: list[float] = []
    for case_id in cases:
        while True:
            case = c.service.case(case_id)
            tried = [a.updated_at for a in case.actions if a.writes and a.attempts > 0]
            if tried:
                out.append((min(tried) - case.created_at).total_seconds() * 1000)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"case {case_id} not attempted within {timeout:g} s")
            time.sleep(0.02)
    return out


def _through_the_queue(base: str) -> list[float]:
    from functions.local_host import create_local_app
    from tests.serving import serve

    with tempfile.TemporaryDirectory() as tmp:
        c = _container(base, Path(tmp), bus=True)
        rows = _rows(base)
        with serve(create_local_app(c, background=True)):
            cases = []
            for n in range(len(rows)):
                cases.append(_decide(c, rows, n))
                time.sleep(random.uniform(0.05, 0.3))  # claims arrive apart, not in one burst
            latencies = _latencies(c, cases, timeout=60)
        c.close()
        return latencies


def _by_the_timer(base: str) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        c = _container(base, Path(tmp), bus=False)
        rows = _rows(base)
        asyncio.run(c.run_actions())  # a tick: the period starts now
        offsets = sorted(random.uniform(0, TIMER_S * 0.95) for _ in rows)
        start = time.monotonic()
        cases = []
        for n, at in enumerate(offsets):
            time.sleep(max(0.0, at - (time.monotonic() - start)))
            cases.append(_decide(c, rows, n))
        time.sleep(max(0.0, TIMER_S - (time.monotonic() - start)))
        asyncio.run(c.run_actions())  # the next tick carries them out
        latencies = _latencies(c, cases, timeout=60)
        c.close()
        return latencies


def run() -> list[list[object]]:
    from sandbox.server import running

    results = {}
    timer = f"timer (every {TIMER_S:g} s, baseline)"
    for label, way in ((timer, _by_the_timer), ("queue (local work queue)", _through_the_queue)):
        with running(mailboxes=200, overlap=0.8) as base:
            with httpx.Client(base_url=base) as control:
                control.put("/_sandbox/settings", json={"gate": False, "events": False})
            results[label] = way(base)
    baseline = percentile(results[timer], 50)
    rows: list[list[object]] = []
    for label, ms in results.items():
        p50 = percentile(ms, 50)
        rows.append([label, len(ms), p50, percentile(ms, 95), max(ms), f"{baseline / p50:,.0f}x" if p50 else "-"])
    return rows


def main() -> None:
    header(
        f"Decision to first attempt ({DECISIONS} blocked after-the-fact claims, a demote and a promote each; "
        f"timer period {TIMER_S:g} s)"
    )
    table(["how", "decisions", "p50 ms", "p95 ms", "max ms", "faster than the timer (p50)"], run())
