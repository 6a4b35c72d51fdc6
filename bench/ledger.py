"""Ledger decisions per second: SQLite and Table Storage (Azurite), with 1, 4 and 16 writers.

Each writer thread runs the service's handle_claim on its own stream of first
claims (distinct mailboxes, so writers rarely collide on one partition) through
one shared ledger object, the way one OrgGuard instance's thread pool does.
The ratio column compares each row with SQLite at one writer, run in the same
process.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from bench.report import header, table

if TYPE_CHECKING:
    from shared.ledger.port import Ledger

PER_RUN = {"sqlite": 2400, "tables": 480}


def _claims(n: int, tag: str) -> list:  # type: ignore[type-arg]
    from shared.domain.model import Claim, ClaimKind, MailboxKey, Origin

    return [
        Claim(
            MailboxKey(f"{tag}-{i}@contoso.com"),
            "contoso-jp",
            str(uuid.uuid4()),
            ClaimKind.TEST_ENABLE,
            Origin.GATE,
            {"operation": f"{tag}-{i}"},
        )
        for i in range(n)
    ]


def _rate(ledger: Ledger, writers: int, total: int) -> float:
    from shared.service.orgguard import OrgGuard
    from tests.factories import registry

    service = OrgGuard(ledger, registry())
    streams = [_claims(total // writers, f"w{w}-{uuid.uuid4().hex[:6]}") for w in range(writers)]

    def work(stream: list) -> None:  # type: ignore[type-arg]
        for claim in stream:
            service.handle_claim(claim)

    threads = [threading.Thread(target=work, args=(s,)) for s in streams]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    getattr(ledger, "settle_backlog", lambda: None)()  # Table Storage: the roll-forwards the decisions left
    return (total // writers * writers) / (time.perf_counter() - start)


def run() -> list[list[object]]:
    from shared.ledger.sqlite import SqliteLedger
    from shared.ledger.tables import TableLedger
    from tests.azurite import Azurite

    rows: list[list[object]] = []
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        azurite = Azurite(Path(tmp))
        azurite.start()
        try:
            for kind in ("sqlite", "tables"):
                for writers in (1, 4, 16):
                    ledger: Ledger
                    if kind == "sqlite":
                        ledger = SqliteLedger(Path(tmp) / f"l{writers}.db")
                    else:
                        ledger = TableLedger.from_url(f"tables:{azurite.connection_string};TablePrefix=bench{writers}")
                    try:
                        rate = _rate(ledger, writers, PER_RUN[kind])
                    finally:
                        ledger.close()
                    base = base or rate
                    rows.append([kind, writers, PER_RUN[kind], rate, f"{rate / base:.2f}"])
        finally:
            azurite.stop()
    return rows


def main() -> None:
    header("Ledger decisions per second (first claims through OrgGuard.handle_claim; threads share one ledger)")
    table(["ledger", "writers", "decisions", "per second", "x SQLite@1"], run())
