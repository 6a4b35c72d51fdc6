"""The impact of a candidate policy over a large ledger: SQLite with 20,000 owned mailboxes, 200 held cases and
the competing claims of the last days, the candidate moving a tenth of the mailboxes by designation.

Baselines in the same run: reading every ownership alone (the floor: the impact reads them all), and deciding
the same situations once with the policy engine, nothing read (what the impact decides twice per moved mailbox).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from bench.report import header, median, table

OWNED = 20_000
HELD = 200
POLICIES = Path(__file__).parent / "policies"
CURRENT = (POLICIES / "impact-current.yaml").read_text()
CANDIDATE = (POLICIES / "impact-candidate.yaml").read_text()


def _seed(service: object, owned: int, held: int) -> None:
    from shared.domain.model import Claim, ClaimKind, MailboxKey, Origin

    for i in range(owned):
        domain = "contoso.co.jp" if i % 10 == 0 else "contoso.com"
        key = MailboxKey(f"user{i}@{domain}")
        service.handle_claim(  # type: ignore[attr-defined]
            Claim(key, "contoso-na", str(uuid.uuid4()), ClaimKind.TEST_ENABLE, Origin.GATE, {"operation": f"o{i}"})
        )
        if i < held:
            service.handle_claim(  # type: ignore[attr-defined]
                Claim(key, "contoso-jp", str(uuid.uuid4()), ClaimKind.TEST_ENABLE, Origin.GATE, {"operation": f"c{i}"})
            )


def run() -> list[list[object]]:
    from shared.domain.model import ClaimKind, MailboxKey, Origin
    from shared.domain.policy import decide
    from shared.ledger.sqlite import SqliteLedger
    from shared.service.impact import policy_impact
    from shared.service.orgguard import OrgGuard, check_policy
    from tests.factories import registry

    with tempfile.TemporaryDirectory() as tmp:
        ledger = SqliteLedger(Path(tmp) / "ledger.db")
        service = OrgGuard(ledger, registry())
        service.save_policy(CURRENT, actor="bench")
        _seed(service, OWNED, HELD)

        start = time.perf_counter()
        after, read = "", 0
        while page := ledger.ownerships(after=after, limit=1000):
            read += len(page)
            after = page[-1].key.address
        floor = time.perf_counter() - start

        candidate = check_policy(CANDIDATE, service.orgs)
        now = service.clock()
        situations = [
            service.situation(
                MailboxKey(f"user{i}@contoso.co.jp"),
                "contoso-jp",
                "contoso-na",
                Origin.SWEEP,
                ClaimKind.SWEEP,
                now=now,
                policies=(candidate,),
                exemptions=(),
            )
            for i in range(0, OWNED, 10)
        ]
        start = time.perf_counter()
        for s in situations:
            decide(candidate, s)
        engine = time.perf_counter() - start

        start = time.perf_counter()
        doc = policy_impact(service, CANDIDATE, days=30)
        seconds = time.perf_counter() - start
        ledger.close()
    moved = doc["ownerships"]["changed"]
    return [
        ["policy impact (all three questions)", f"{read:,}", f"{seconds:.2f}", f"{seconds / read * 1e6:.0f}",
         f"{moved:,} would move, {doc['held']['changed']} held decided otherwise", f"{seconds / floor:.1f}x the floor"],
        ["floor: read every ownership", f"{read:,}", f"{floor:.2f}", f"{floor / read * 1e6:.0f}", "-", "1.0x"],
        ["engine: decide each moved mailbox once", f"{len(situations):,}", f"{engine:.3f}",
         f"{engine / len(situations) * 1e6:.0f}", "-", "-"],
    ]  # fmt: skip


CONTESTED = 1500
ROUNDS = 5


def _contested_us(*, read_exemptions: bool, active: int) -> float:
    """µs per competing claim decided and recorded on SQLite, ``active`` exemptions in force (none covering it)."""
    from shared.domain.model import Claim, ClaimKind, MailboxKey, Origin
    from shared.ledger.sqlite import SqliteLedger
    from shared.service.exemptions import Exemptions
    from shared.service.orgguard import OrgGuard
    from tests.factories import BLOCKING_POLICY, registry

    with tempfile.TemporaryDirectory() as tmp:
        ledger = SqliteLedger(Path(tmp) / "ledger.db")
        service = OrgGuard(ledger, registry())
        service.save_policy(BLOCKING_POLICY, actor="bench")
        for i in range(active):
            Exemptions(service).add("domain", f"other{i}.example.com", reason="bench", ticket=f"T-{i}",
                                    expires=service.clock().date().isoformat(), actor="bench")  # fmt: skip
        if not read_exemptions:
            service.exemptions_in_force = lambda now: []  # type: ignore[method-assign]
        keys = [MailboxKey(f"user{i}@contoso.com") for i in range(CONTESTED)]
        for k in keys:
            service.handle_claim(Claim(k, "contoso-na", str(uuid.uuid4()), ClaimKind.TEST_ENABLE, Origin.GATE,
                                       {"operation": f"own-{k}"}))  # fmt: skip
        start = time.perf_counter()
        for k in keys:
            service.handle_claim(Claim(k, "contoso-jp", str(uuid.uuid4()), ClaimKind.TEST_ENABLE, Origin.GATE,
                                       {"operation": f"claim-{k}"}))  # fmt: skip
        seconds = time.perf_counter() - start
        ledger.close()
    return seconds / CONTESTED * 1e6


def main() -> None:
    header(f"The impact of a candidate policy: SQLite, {OWNED:,} owned mailboxes, {HELD} held cases")
    table(["measure", "items", "seconds", "µs each", "found", "ratio"], run())
    header(f"A competing claim decided and recorded on SQLite ({CONTESTED:,} claims), reading the exemptions or not")
    configs = {"baseline: no exemptions read": (False, 0)}
    configs |= {f"the exemptions read ({n} in force, none covering it)": (True, n) for n in (0, 50)}
    runs: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(ROUNDS):  # interleaved, the median of each: these machines are noisy
        for name, (read, active) in configs.items():
            runs[name].append(_contested_us(read_exemptions=read, active=active))
    base = median(runs["baseline: no exemptions read"])
    rows = [[name, f"{median(us):.0f}", f"{median(us) / base:.2f}x"] for name, us in runs.items()]
    table(["decision", f"µs each (median of {ROUNDS})", "ratio"], rows)
