"""The outbox worker against the sandbox: actions per second and Dataverse requests per case.

Each case is an admin designation that moves one mailbox from contoso-na to contoso-jp:
two actions (demote in NA, promote in JP). The baseline in the same run is the naive
way: one PATCH per action, sent one after the other, with no $batch.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from bench.report import header, table

CASES = 400


def _world(base: str, tmp: Path):  # type: ignore[no-untyped-def]
    from shared.domain.model import Claim, ClaimKind, MailboxKey, Origin
    from shared.ledger.sqlite import SqliteLedger
    from shared.service.orgguard import OrgGuard
    from tests.factories import OVERRIDING_POLICY, registry

    service = OrgGuard(SqliteLedger(tmp / "l.db"), registry(base))
    service.save_policy(OVERRIDING_POLICY, actor="bench")  # JP's claim wins: demote NA, promote JP
    rows: dict[str, dict[MailboxKey, str]] = {}
    with httpx.Client(headers={"Authorization": "Bearer bench"}, timeout=60) as client:
        for org in ("contoso-na", "contoso-jp"):
            found: dict[MailboxKey, str] = {}
            url = f"{base}/orgs/{org}/api/data/v9.2/mailboxes?$select=mailboxid,emailaddress&$filter=statecode eq 0"
            while url:
                page = client.get(url).json()
                for row in page["value"]:
                    found[MailboxKey.parse(row["emailaddress"])] = row["mailboxid"]
                url = page.get("@odata.nextLink")
            rows[org] = found
    keys = sorted(set(rows["contoso-na"]) & set(rows["contoso-jp"]))[:CASES]
    for i, key in enumerate(keys):
        service.handle_claim(
            Claim(
                key, "contoso-na", rows["contoso-na"][key], ClaimKind.SWEEP, Origin.SWEEP, {"operation": f"bench-{i}"}
            )
        )
        service.handle_claim(
            Claim(
                key,
                "contoso-jp",
                rows["contoso-jp"][key],
                ClaimKind.SWEEP,
                Origin.SWEEP,
                {"operation": f"bench-jp-{i}"},
            )
        )
    return service, len(keys)


async def _drain(service) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from shared.dataverse.clients import ClientPool
    from shared.dataverse.port import RetryPolicy
    from shared.service.outbox import Executor, has_pending

    pool = ClientPool(RetryPolicy(attempts=8, base_delay=0.1, max_delay=5.0), client_id=None)
    executor = Executor(service.ledger, service.orgs, pool, base_delay=0.1, max_delay=5.0, max_attempts=100)
    start = time.perf_counter()
    try:
        while has_pending(service.ledger):
            await executor.run_once(limit=2000)
            await asyncio.sleep(0.01)
        return time.perf_counter() - start, pool.requests_sent
    finally:
        await pool.aclose()


async def _naive(service) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """One PATCH per action, in order, the way a hand-written admin script does it."""
    from shared.dataverse.schema import WRITES

    actions = service.ledger.pending_actions(100_000)
    start = time.perf_counter()
    sent = 0
    async with httpx.AsyncClient(headers={"Authorization": "Bearer naive"}, timeout=60) as client:
        for action in actions:
            org = service.orgs.get(action.org)
            while True:
                r = await client.patch(
                    f"{org.url}/api/data/v9.2/mailboxes({action.mailbox_id})",
                    json=dict(WRITES[action.kind]),
                    headers={"If-Match": "*"},
                )
                sent += 1
                if r.status_code != 429:
                    break
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
    return time.perf_counter() - start, sent


def run() -> list[list[object]]:
    from sandbox.server import running

    rows: list[list[object]] = []
    for label, budget in (("no throttling", None), ("budget 300 requests / 2 s per user", 300)):
        for how in ("executor ($batch per org)", "naive (one PATCH each)"):
            with tempfile.TemporaryDirectory() as tmp, running(mailboxes=1200, overlap=0.8) as base:
                service, cases = _world(base, Path(tmp))
                with httpx.Client(base_url=base) as control:
                    control.put(
                        "/_sandbox/settings", json={"gate": False, "events": False, "budget": budget, "window_s": 2}
                    )
                runner = _drain if how.startswith("executor") else _naive
                elapsed, requests = asyncio.run(runner(service))
                actions = 2 * cases
                rows.append(
                    [label, how, cases, actions, elapsed, actions / elapsed, requests, f"{requests / cases:.3f}"]
                )
    return rows


def main() -> None:
    header(f"Executor against the sandbox ({CASES} override cases, 2 actions each; gate and events off)")
    table(["throttling", "how", "cases", "actions", "seconds", "actions/s", "Dataverse requests", "per case"], run())
