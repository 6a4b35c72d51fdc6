"""Storage round trips a gate decision makes on Table Storage, counted on the wire against Azurite.

``CountingTransport`` is the SDK's own HTTP transport with a tally: every request that leaves the process (each
try of each call, a ``$batch`` counted once) is noted as ``<verb> <table>`` with the thread that sent it, so the
gate's path (the deciding thread, up to its answer) is told apart from what runs after it on other threads.

``gate_round_trips`` runs each kind of claim the gate sees through the service layer with the example policy
(``examples/policy.yaml``) and returns the requests each decision made on its path. The test
(``tests/integration/test_table_round_trips.py``) holds them to the issue's target; ``python -m bench tables``
prints them beside it.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core.pipeline.transport import RequestsTransport

from shared.domain.model import Claim, ClaimKind, MailboxKey, Origin
from shared.ledger.tables import TableLedger
from shared.ledger.tables.storage import TABLE_NAMES
from shared.service.orgguard import OrgGuard, Outcome
from tests.factories import ORG_IDS, registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_POLICY = (REPO / "examples" / "policy.yaml").read_text()
TARGET = 3  # issue 15, goal 5: storage round trips on the gate's path per decision


@dataclass(frozen=True)
class Trip:
    """One HTTP request to the storage account: what it did, on which table, from which thread."""

    verb: str
    table: str
    thread: int

    def __str__(self) -> str:
        return f"{self.verb} {self.table}".strip()


def describe(method: str, url: str) -> tuple[str, str]:
    """``(verb, table)`` for one Table Storage request: get, query, insert, upsert, update, delete or batch."""
    parts = urlsplit(url)
    path = unquote(parts.path).rstrip("/").split("/")[-1]
    if path == "$batch":
        return "transaction", ""
    table, _, keys = path.partition("(")
    if table == "Tables":
        return "tables", ""
    table = next((name for name in TABLE_NAMES if table.endswith(name)), table)  # without the prefix
    point = "PartitionKey=" in keys and "RowKey=" in keys
    verbs = {"GET": "get" if point else "query", "POST": "insert", "PUT": "upsert", "MERGE": "merge",
             "PATCH": "merge", "DELETE": "delete"}  # fmt: skip
    return verbs.get(method, method.lower()), table


class CountingTransport(RequestsTransport):  # type: ignore[misc]
    """The SDK's HTTP transport, noting every request it sends (``trips``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trips: list[Trip] = []
        self._lock = threading.Lock()

    def send(self, request: Any, **kwargs: Any) -> Any:
        verb, table = describe(request.method, request.url)
        if verb == "transaction":  # the table its operations name (one transaction is one table's)
            request.prepare_multipart_body()
            body = bytes(request.body or b"").decode("utf-8", "replace")
            table = next((name for name in TABLE_NAMES if re.search(rf"/\w*{name}[(\s]", body)), "")
        with self._lock:
            self.trips.append(Trip(verb, table, threading.get_ident()))
        return super().send(request, **kwargs)

    @contextmanager
    def counting(self) -> Iterator[list[Trip]]:
        """The requests sent while the block runs (from any thread)."""
        with self._lock:
            start = len(self.trips)
        found: list[Trip] = []
        try:
            yield found
        finally:
            with self._lock:
                found.extend(self.trips[start:])


def counted_ledger(connection_string: str, prefix: str | None = None) -> tuple[TableLedger, CountingTransport]:
    """A Table Storage ledger whose requests are counted (a fresh prefix of tables unless ``prefix``)."""
    transport = CountingTransport()
    name = prefix or f"t{uuid.uuid4().hex[:16]}"
    url = f"tables:{connection_string.rstrip(';')};TablePrefix={name}"
    return TableLedger.from_url(url, client_options={"transport": transport}), transport


def gate_claim(org: str, key: MailboxKey, op: str | None = None, kind: ClaimKind = ClaimKind.TEST_ENABLE) -> Claim:
    """What the gate hears when ``org`` saves ``key``'s mailbox row (operation ``op``: its event)."""
    source = {"org": ORG_IDS[org], "operation": op or str(uuid.uuid4())}
    return Claim(key, org, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{org}/{key.address}")), kind, Origin.GATE, source)


@dataclass
class Decided:
    """One gate decision: its outcome and the requests on its path (on the deciding thread)."""

    kind: str
    outcome: Outcome
    trips: list[Trip] = field(default_factory=list)
    after: list[Trip] = field(default_factory=list)  # requests other threads made meanwhile (off the path)


def decide(service: OrgGuard, transport: CountingTransport, kind: str, claim: Claim,
           settle: Callable[[], None]) -> Decided:  # fmt: skip
    """``claim`` decided; the requests its thread made, and those made elsewhere until ``settle`` returned."""
    me = threading.get_ident()
    with transport.counting() as trips:
        outcome = service.handle_claim(claim)
        settle()
    return Decided(kind, outcome, [t for t in trips if t.thread == me], [t for t in trips if t.thread != me])


# Mailboxes whose owner and claimant make the example policy decide each way (its primary designations).
SCENARIOS: dict[str, tuple[str, str | None]] = {
    # kind: (address, the org that owns it first or None)
    "first claim (allow)": ("first-{n}@contoso.com", None),
    "competing claim (block)": ("block-{n}@fabrikam.com", "contoso-na"),
    "competing claim (override)": ("override-{n}@contoso.co.jp", "contoso-na"),
    "competing claim (held case)": ("held-{n}@contoso.com", "contoso-na"),
    "repeated claim (owner again)": ("again-{n}@contoso.com", "contoso-jp"),
    "duplicate event (a retry)": ("dup-{n}@contoso.com", None),
}


def gate_round_trips(service: OrgGuard, transport: CountingTransport, *, rounds: int = 3,
                     settle: Callable[[], None] = lambda: None) -> dict[str, list[Decided]]:  # fmt: skip
    """Each scenario ``rounds`` times on fresh mailboxes (after a warm-up); the decisions, by kind.

    ``settle`` waits for the work a decision left off its path (the ledger's backlog), so it is counted
    with that decision (as ``after``) and not on another's way.
    """
    warm = MailboxKey(f"warm-{uuid.uuid4().hex[:8]}@contoso.com")  # an instance's first decisions read the
    service.handle_claim(gate_claim("contoso-na", warm))  # policy and the exemptions whole; later ones check
    service.handle_claim(gate_claim("contoso-jp", warm))  # their versions
    out: dict[str, list[Decided]] = {kind: [] for kind in SCENARIOS}
    for n in range(rounds):
        tag = f"{n}-{uuid.uuid4().hex[:6]}"
        for kind, (pattern, owner) in SCENARIOS.items():
            key = MailboxKey(pattern.format(n=tag))
            claim = gate_claim("contoso-jp", key)
            if owner is not None:
                service.handle_claim(gate_claim(owner, key))
            if kind.startswith("duplicate"):
                service.handle_claim(claim)
            settle()
            out[kind].append(decide(service, transport, kind, claim, settle))
    return out


def example_service(ledger: TableLedger) -> OrgGuard:
    """OrgGuard deciding with the example policy on ``ledger`` (no Graph: the mailbox's domain designates)."""
    service = OrgGuard(ledger, registry())
    service.save_policy(EXAMPLE_POLICY, actor="bench")
    return service
