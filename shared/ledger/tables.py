"""The ledger on Azure Table Storage (and Cosmos DB for Table, through the same SDK).

Table Storage has no transaction across partitions or tables, so the design
follows the port's own words: *the mailbox is the aggregate*. Everything a
decision must write atomically lives in the mailbox's partition and goes in
one entity-group transaction; everything else is a derived index, written
after that transaction from a journal row that the transaction also wrote.

Tables (each name is ``<prefix><name>``; one account can host several
environments with different prefixes) and their keys. ``esc(x)`` keeps
``[A-Za-z0-9@._+=:-]`` and writes any other character as ``!XX`` per UTF-8
byte, so ``/ \\ # ?``, control characters, ``'``, ``|`` and ``~`` never reach a
key; a value whose escaped form is too long (120 characters, 200 for event keys)
becomes ``!!<sha256>``.
``inv(n)`` is ``10**19 - 1 - n`` zero-padded to 19 digits (newest sorts first).

``mailboxes`` -- the aggregate, PartitionKey ``esc(address)``:

=================================== ==========================================
RowKey                              row
=================================== ==========================================
``mailbox``                         root: Version (decisions), Seq (every
                                    transaction), Ownership; ETag-conditional
``event|<esc(event key)>``          idempotency guard, created if absent
``claim|<inv(version)>``            claim record (claims per mailbox, newest
                                    first, is one range query)
``case|<esc(case id)>|``            case document (history trimmed to fit)
``case|<esc(id)>|action|<esc(id)>`` action (case + actions: one range query)
``journal|<seq>``                   derived work still to do (see below)
=================================== ==========================================

PartitionKey ``~journals``, RowKey ``esc(address)`` or ``~policy``: recovery
markers, written before a journal, so a sweep finds work a crashed instance
left behind.

``events`` -- PartitionKey ``esc(event key)``, RowKey ``event``: the processed
event's outcome, for ``event()`` look-ups without knowing the mailbox.

``cases`` -- PartitionKey ``id|<esc(case id)>`` (RowKey ``case``) points a case
id at its mailbox; listing partitions ``all``, ``state|<state>``,
``org|<esc(org)>`` (claimant and owner) and ``mailbox|<esc(address)>`` hold
one row per case, RowKey ``inv(created µs)|inv(version)|esc(id)``: newest
first; the cursor is the last RowKey returned.

``actions`` -- PartitionKey ``id|<esc(action id)>`` (RowKey ``action``) points
an action at its mailbox and case; PartitionKey ``queue``, RowKey
``created µs|esc(case id)|n``, holds one row per pending action with its
NextAt: the executor's outbox.

``audit`` -- PartitionKey ``chain``: RowKey ``head`` (Seq, Hash), entries
``e<seq:016>``, and ``origin|<id>`` markers that make each append idempotent.

``policies`` -- PartitionKey ``policy``, RowKey ``inv(version)``.

Concurrency without a lock. Every write to a mailbox's partition is one
transaction whose first operation updates the root with ``If-Match`` (or
creates it): two instances that read the same root cannot both write, the
loser gets 412 and reads again. ``commit`` raises ``ConcurrencyConflict`` when
the Version moved (the service layer decides again) and retries by itself when
only Seq moved (an action attempt on the same mailbox). The event guard is
created in the same transaction: 409 means the event was processed, and the
stored outcome comes back in ``DuplicateEvent``. New cases and actions are
created (409 if they exist), existing ones updated ``If-Match``. (The guard
lives with its mailbox: an event key names the org's own mailbox row, so it
belongs to one mailbox; the ``events`` look-up catches a key seen on another
mailbox before, but not one committed there at the very same moment.)

Derived records (the ``events`` look-up, case and outbox indexes, audit) are
written from the journal by whoever committed it, then the journal row is
deleted. Each step is idempotent, and index rows carry the mailbox Seq that
wrote them (``Stamp``): an index row is only overwritten or deleted by a newer
journal, so journals may be rolled forward in any order or twice. A journal
older than ``takeover_after`` is someone else's unfinished work: the next
writer of that mailbox, or the sweep in ``pending_actions``, rolls it forward.
Reads that go through an index (``cases``, ``pending_actions``) re-check every
hit against the mailbox partition, so a stale index row costs a read, never a
wrong answer; reads are eventually consistent only for an instance that died
between its transaction and its roll-forward.

The audit chain with several writers: one partition, ordered by the head
entity. An append reads the head (Seq, Hash, ETag), chains its entries from
it, and submits one transaction: update the head ``If-Match``, create the
entries, create the ``origin`` marker. Two instances appending at once: one
transaction wins, the other gets 412, re-reads the head and chains after the
winner (jittered backoff). The marker makes a repeated append (a retry after
a lost response, a journal rolled forward twice) a no-op. ``verify_audit``
reads the head first and checks every entry up to it: an edited entry fails
its hash, a deleted one leaves a gap, a truncated newest one no longer
matches the head.

Limits are checked here before anything is sent (Azurite does not enforce all
of them): keys (no ``/ \\ # ?`` or control characters, at most 255 bytes --
Cosmos DB's RowKey limit, Table Storage allows 1 KiB), 252 properties, 64 KiB
per string property (long texts are split over ``Name``, ``Name1``, ...),
1 MiB per entity, 100 operations and 2 MB per transaction (Cosmos DB; Table
Storage allows 4 MiB). A case whose history would not fit keeps its first and
newest entries with a note saying how many were trimmed; an action's error
text keeps its first 32,000 characters. Anything else too large raises
``LedgerError`` before the transaction, so nothing is half-written.

Cosmos DB for Table returns query results unsorted: against it, ordered reads
fetch the whole filtered partition and sort it here.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import logging
import os
import random
import re
import string
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableEntity, TableServiceClient, TableTransactionError, UpdateMode

from shared.domain import casework
from shared.domain.model import (
    OPEN_STATES,
    Action,
    ActionStatus,
    AuditEntry,
    AuditEvent,
    AuditReport,
    Case,
    CaseQuery,
    CaseState,
    Change,
    ClaimKind,
    ClaimRecord,
    DomainError,
    Effect,
    EventOutcome,
    MailboxKey,
    MailboxView,
    NotFound,
    Notice,
    Origin,
    Overview,
    Page,
    PolicyVersion,
    utcnow,
)
from shared.ledger import codec, deadline
from shared.ledger.cursors import CursorCodec, new_secret
from shared.ledger.deadline import DeadlineExceeded
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent, LedgerError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline import PipelineRequest

    from shared.domain.jobs import Job, JobKind
    from shared.domain.model import Ownership

log = logging.getLogger(__name__)

Entity = dict[str, Any]
Operation = tuple[str, Entity, dict[str, Any]]
T = TypeVar("T")

DEFAULT_PREFIX: Final = "orgguard"
TABLE_NAMES: Final = ("mailboxes", "events", "cases", "actions", "audit", "policies", "jobs")

MAX_ENTITY_BYTES: Final = 1024 * 1024
MAX_PROPERTY_BYTES: Final = 64 * 1024
MAX_PROPERTIES: Final = 252
MAX_KEY_BYTES: Final = 255
MAX_BATCH_OPS: Final = 100
MAX_BATCH_BYTES: Final = 2_000_000
CHUNK_UNITS: Final = 32_000  # UTF-16 code units per string property (64 KiB)
CASE_DOC_CHARS: Final = 400_000  # a case document (ASCII JSON) beyond this has its history trimmed
ERROR_CHARS: Final = 32_000
AUDIT_PER_BATCH: Final = 90

ROOT: Final = "mailbox"
MARKERS: Final = "~journals"
POLICY_MARKER: Final = "~policy"
CHAIN: Final = "chain"
HEAD: Final = "head"
QUEUE: Final = "queue"
DUE_NOW: Final = "0"  # NextAt of an action due at once; sorts before every timestamp

_SAFE: Final = frozenset(string.ascii_letters + string.digits + "@._+=:-")
_FORBIDDEN_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_INV: Final = 10**19 - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TRIM_NOTE = re.compile(r"^(\d+) older history entries were trimmed")
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,39}")

COMMIT_TRIES: Final = 40
OUTBOX_TRIES: Final = 60
AUDIT_TRIES: Final = 300
MIN_TRY_S: Final = 0.2  # the shortest timeout one HTTP try gets under a deadline


# --- keys ----------------------------------------------------------------------------


def escape(value: str, limit: int = 120) -> str:
    """A key-safe, injective form of ``value`` (see the module docstring).

    ``limit`` keeps keys built from two escaped parts under 255 bytes; single-part keys allow 200.
    """
    out = "".join(ch if ch in _SAFE else "".join(f"!{b:02X}" for b in ch.encode("utf-8")) for ch in value)
    if not out or len(out) > limit:
        return "!!" + hashlib.sha256(value.encode("utf-8")).hexdigest()
    return out


def _inv(n: int) -> str:
    return f"{_INV - n:019d}"


def _micros(at: datetime) -> int:
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _clock(at: datetime | None) -> str:
    """A fixed-width UTC time that compares correctly as a string."""
    if at is None:
        return DUE_NOW
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _q(value: str) -> str:
    """An OData string literal."""
    return "'" + value.replace("'", "''") + "'"


def _prefix_range(prefix: str) -> str:
    """``RowKey`` in [prefix, prefix-with-last-char-bumped): every key starting with ``prefix``."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return f"(RowKey ge {_q(prefix)} and RowKey lt {_q(upper)})"


def _case_rk(case_id: str) -> str:
    return f"case|{escape(case_id)}|"


def _action_rk(case_id: str, action_id: str) -> str:
    return f"{_case_rk(case_id)}action|{escape(action_id)}"


def _event_rk(event_key: str) -> str:
    return f"event|{escape(event_key, 200)}"


def _journal_rk(seq: int) -> str:
    return f"journal|{seq:019d}"


def _case_sort(case: Case, version: int) -> str:
    return f"{_inv(_micros(case.created_at))}|{_inv(version)}|{escape(case.id)}"


def _action_sort(action: Action, index: int) -> str:
    return f"{_micros(action.created_at):019d}|{escape(action.case_id)}|{index:04d}"


# --- entity limits ---------------------------------------------------------------------


def _units(text: str) -> int:
    """UTF-16 code units: what Table Storage counts."""
    return len(text.encode("utf-16-le")) // 2


def _value_bytes(value: object) -> int:
    if isinstance(value, str):
        return 4 + 2 * _units(value)
    if isinstance(value, bool):
        return 1
    if isinstance(value, bytes):
        return 4 + len(value)
    return 8


def _check_key(what: str, key: object) -> None:
    if not isinstance(key, str):
        raise LedgerError(f"{what} must be a string")
    if _FORBIDDEN_KEY.search(key):
        raise LedgerError(f"{what} {key[:80]!r} holds a character Table Storage refuses in keys (/ \\ # ? or control)")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise LedgerError(f"{what} is longer than {MAX_KEY_BYTES} bytes")


def check_entity(entity: Mapping[str, Any]) -> int:
    """Validate ``entity`` against Table Storage's limits; return its size in bytes."""
    _check_key("PartitionKey", entity.get("PartitionKey"))
    _check_key("RowKey", entity.get("RowKey"))
    props = {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey") and v is not None}
    where = f"{entity['PartitionKey'][:60]}/{entity['RowKey'][:60]}"
    if len(props) > MAX_PROPERTIES:
        raise LedgerError(f"entity {where} has {len(props)} properties; Table Storage allows {MAX_PROPERTIES}")
    size = 4 + 2 * (_units(entity["PartitionKey"]) + _units(entity["RowKey"]))
    for name, value in props.items():
        value_size = _value_bytes(value)
        if value_size > MAX_PROPERTY_BYTES:
            raise LedgerError(f"property {name} of {where} is {value_size} bytes; Table Storage allows 64 KiB")
        size += 8 + 2 * len(name) + value_size
    if size > MAX_ENTITY_BYTES:
        raise LedgerError(f"entity {where} is {size} bytes; Table Storage entities hold at most 1 MiB")
    return size


def put_text(entity: Entity, name: str, text: str) -> Entity:
    """Store ``text`` under ``name`` split into properties of at most 64 KiB each."""
    parts: list[str] = []
    start, units = 0, 0
    for i, ch in enumerate(text):
        width = 2 if ord(ch) > 0xFFFF else 1
        if units + width > CHUNK_UNITS:
            parts.append(text[start:i])
            start, units = i, 0
        units += width
    parts.append(text[start:])
    entity[name] = parts[0]
    for i, part in enumerate(parts[1:], 1):
        entity[f"{name}{i}"] = part
    if len(parts) > 1:
        entity[f"{name}Parts"] = len(parts)
    return entity


def get_text(entity: Mapping[str, Any], name: str) -> str:
    count = int(entity.get(f"{name}Parts") or 1)
    return "".join(str(entity.get(name if i == 0 else f"{name}{i}") or "") for i in range(count))


def _doc(entity: Mapping[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(get_text(entity, "Doc"))
    return doc


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _etag(entity: TableEntity) -> str:
    return str(entity.metadata["etag"])


def _if_match(etag: str) -> dict[str, Any]:
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.25, 0.004 * 2 ** min(attempt, 8))))


# --- documents -------------------------------------------------------------------------


def fit_case(case: Case) -> str:
    """The case as stored: JSON, with its history trimmed (and a note) if it would not fit."""
    doc = codec.case_doc(case)
    text = json.dumps(doc)
    if len(text) <= CASE_DOC_CHARS:
        return text
    history: list[dict[str, Any]] = doc["history"]
    trimmed = 0
    if len(history) > 1 and (m := _TRIM_NOTE.match(str(history[1].get("note", "")))):
        trimmed = int(m.group(1))
        history = [history[0], *history[2:]]
    base = len(json.dumps({**doc, "history": history[:1]})) + 400
    keep: list[dict[str, Any]] = []
    for entry in reversed(history[1:]):
        cost = len(json.dumps(entry)) + 2
        if base + cost > CASE_DOC_CHARS:
            break
        base += cost
        keep.append(entry)
    keep.reverse()
    dropped = history[1 : len(history) - len(keep)]
    if dropped:
        note = {
            "at": dropped[-1]["at"],
            "state": dropped[-1]["state"],
            "actor": "orgguard",
            "note": f"{trimmed + len(dropped)} older history entries were trimmed to keep the case within "
            "Table Storage's 1 MiB entity limit",
        }
        doc["history"] = [history[0], note, *keep]
    text = json.dumps(doc)
    if len(text) > CASE_DOC_CHARS:
        raise LedgerError(
            f"case {case.id} takes {len(text)} characters even with its history trimmed; "
            f"a Table Storage entity holds at most 1 MiB"
        )
    return text


def _clip_error(error: str | None) -> str | None:
    """At most ``ERROR_CHARS`` characters, saying how many were dropped (clipping twice changes nothing)."""
    if error is None or len(error) <= ERROR_CHARS:
        return error
    keep = ERROR_CHARS - 80
    return error[:keep] + f" ... [{len(error) - keep} more characters not kept]"


def _outcome_from(row: Mapping[str, Any]) -> EventOutcome:
    return EventOutcome(row["EventKey"], Effect(row["Effect"]), _opt(row.get("CaseId")), codec.must_ts(row["At"]))


def _claim_from(address: str, row: Mapping[str, Any]) -> ClaimRecord:
    return ClaimRecord(
        MailboxKey(address),
        row["Org"],
        ClaimKind(row["Kind"]),
        Origin(row["Origin"]),
        row["EventKey"],
        Effect(row["Effect"]),
        _opt(row.get("CaseId")),
        codec.must_ts(row["At"]),
    )


def _audit_doc(event: AuditEvent) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "subject": event.subject,
        "actor": event.actor,
        "data": event.data,
        "at": codec.ts(event.at),
    }


def _audit_entity(entry: AuditEntry, origin: str) -> Entity:
    e = entry.event
    entity: Entity = {
        "PartitionKey": CHAIN,
        "RowKey": f"e{entry.seq:016d}",
        "Seq": entry.seq,
        "At": codec.ts(e.at),
        "Kind": e.kind,
        "Subject": e.subject,
        "Actor": e.actor,
        "PrevHash": entry.prev_hash,
        "Hash": entry.hash,
        "Origin": origin,
    }
    return put_text(entity, "Data", codec.dumps(e.data))


def _audit_from(row: Mapping[str, Any]) -> AuditEntry:
    event = AuditEvent(
        row["Kind"], row["Subject"], row["Actor"], json.loads(get_text(row, "Data")), codec.must_ts(row["At"])
    )
    return AuditEntry(int(row["Seq"]), event, row["PrevHash"], row["Hash"])


def _encode_cursor(row_key: str) -> str:
    return base64.urlsafe_b64encode(f"rk:{row_key}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "rk" or not value or _FORBIDDEN_KEY.search(value) or len(value) > MAX_KEY_BYTES:
            raise ValueError(kind)
        return value
    except (ValueError, UnicodeDecodeError):
        raise DomainError("the cursor is not one this API gave out", field="cursor") from None


# --- the mailbox partition as read before a write ----------------------------------------


@dataclass
class _Snapshot:
    root: TableEntity | None = None
    guard: TableEntity | None = None
    cases: dict[str, TableEntity] = field(default_factory=dict)
    actions: dict[str, dict[str, TableEntity]] = field(default_factory=dict)
    journals: list[TableEntity] = field(default_factory=list)

    @property
    def version(self) -> int:
        return int(self.root["Version"]) if self.root else 0

    @property
    def seq(self) -> int:
        return int(self.root["Seq"]) if self.root else 0


@dataclass
class _Write:
    """One transaction on a mailbox partition and the journal it leaves."""

    ops: list[Operation]
    journal: dict[str, Any]


_Step = tuple[Action, Case | None, AuditEvent | None]  # an outbox change: action, case, audit (casework.Step)


class _Retry(Exception):
    """The partition moved under a transaction; read it again."""


# --- credentials and URLs ----------------------------------------------------------------

_credentials: dict[str | None, TokenCredential] = {}
_credentials_lock = threading.Lock()


def default_credential() -> TokenCredential:
    """One credential per process (it caches tokens): managed identity when AZURE_CLIENT_ID is set."""
    client_id = os.environ.get("AZURE_CLIENT_ID") or None
    with _credentials_lock:
        if client_id not in _credentials:
            from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

            _credentials[client_id] = (
                ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
            )
        return _credentials[client_id]


@dataclass(frozen=True)
class Target:
    """Where a ``tables:`` URL points: a connection string or an account URL, and the table prefix."""

    connection_string: str | None
    account_url: str | None
    prefix: str


def parse_target(url: str) -> Target:
    """``tables:<connection string>[;TablePrefix=p]`` or ``tables:https://<account>...[?prefix=p]``."""
    rest = url.removeprefix("tables:").strip()
    if not rest:
        raise LedgerError("the tables: ledger URL names no account (tables:UseDevelopmentStorage=true, ...)")
    if rest.lower().startswith(("https://", "http://")):
        parts = urlsplit(rest)
        prefix = (parse_qs(parts.query).get("prefix") or [DEFAULT_PREFIX])[0]
        if not parts.netloc:
            raise LedgerError("the tables: account URL names no host")
        return Target(None, f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}", prefix)
    kept: list[str] = []
    prefix = DEFAULT_PREFIX
    for segment in rest.split(";"):
        name, sep, value = segment.partition("=")
        if name.strip().lower() == "tableprefix" and sep:
            prefix = value.strip()
        elif segment.strip():
            kept.append(segment.strip())
    if not kept:
        raise LedgerError("the tables: connection string is empty")
    return Target(";".join(kept), None, prefix)


def _is_cosmos(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return ".table.cosmos." in host or ".table.cosmosdb." in host


# --- the ledger ------------------------------------------------------------------------


class TableLedger:
    """Ledger on Azure Table Storage / Cosmos DB for Table; safe across threads, processes and instances."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        takeover_after: timedelta = timedelta(seconds=15),
        sorted_results: bool | None = None,
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise LedgerError(f"the table prefix {prefix!r} must be a letter then up to 39 letters or digits")
        self.prefix = prefix
        self.takeover_after = takeover_after
        self._service = service
        self._sorted = not _is_cosmos(service.url) if sorted_results is None else sorted_results
        self._tables = {name: service.get_table_client(prefix + name) for name in TABLE_NAMES}
        self._ready = False
        self._lock = threading.Lock()
        self._head: tuple[int, str, str] | None = None  # audit head as last seen: seq, hash, etag
        self._pool: ThreadPoolExecutor | None = None
        self._cursors: CursorCodec | None = None

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> TableLedger:
        """``tables:`` + a connection string (Azurite, keys) or an account URL (Entra ID)."""
        target = parse_target(url)
        if target.account_url:
            return cls.from_account_url(target.account_url, prefix=target.prefix, **kwargs)
        assert target.connection_string is not None
        return cls.from_connection_string(target.connection_string, prefix=target.prefix, **kwargs)

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        client_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> TableLedger:
        """``client_options`` go to the SDK client (``retry_total``, ``connection_timeout``, ...)."""
        try:
            service = TableServiceClient.from_connection_string(connection_string, **_with_deadline(client_options))
        except ValueError as exc:
            raise LedgerError(f"the Table Storage connection string is not usable: {exc}") from None
        return cls(service, prefix=prefix, **kwargs)

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        credential: TokenCredential | None = None,
        client_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> TableLedger:
        """Entra ID: ``credential``, or the process's managed identity / DefaultAzureCredential."""
        if not account_url.lower().startswith("https://"):
            raise LedgerError("an account URL with Entra ID needs https:// (use a connection string for Azurite)")
        service = TableServiceClient(
            endpoint=account_url, credential=credential or default_credential(), **_with_deadline(client_options)
        )
        return cls(service, prefix=prefix, **kwargs)

    def table(self, name: str) -> TableClient:
        """The client of one of this ledger's tables (tests and operators tamper and inspect through it)."""
        return self._tables[name]

    @contextmanager
    def _storage(self, what: str) -> Iterator[None]:
        try:
            self._ensure()
            yield
        except (LedgerError, DomainError):
            raise
        except AzureError as exc:
            raise LedgerError(f"the Table Storage ledger could not {what}: {_brief(exc)}") from exc

    def _ensure(self) -> None:
        """Create the tables once per process (lazily: a storage outage must not stop the app loading)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            for client in self._tables.values():
                try:
                    client.create_table()
                except ResourceExistsError:
                    pass
                except HttpResponseError as exc:
                    if exc.status_code != 403:
                        raise
                    try:  # created by the infrastructure; this identity may only use it
                        self._first(client, "PartitionKey eq 'probe'")
                    except ResourceNotFoundError:
                        raise LedgerError(
                            f"table {client.table_name} does not exist and this identity may not create it: "
                            "create the ledger's tables with the infrastructure"
                        ) from None
            self._ready = True

    # --- queries -----------------------------------------------------------------------

    def _rows(self, table: str, query: str, *, page: int = 200) -> Iterator[TableEntity]:
        """Rows in key order (sorted here when the service does not sort, as Cosmos DB)."""
        found = self._tables[table].query_entities(query, results_per_page=page)
        if self._sorted:
            yield from found
        else:
            yield from sorted(found, key=lambda e: (e["PartitionKey"], e["RowKey"]))

    def _first(self, client: TableClient, query: str) -> TableEntity | None:
        for row in client.query_entities(query, results_per_page=1):
            return row
        return None

    def _get(self, table: str, pk: str, rk: str) -> TableEntity | None:
        try:
            return self._tables[table].get_entity(pk, rk)
        except ResourceNotFoundError:
            return None

    def _parallel(self, fn: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="orgguard-ledger")
            pool = self._pool
        return list(pool.map(fn, items))

    def _snapshot(
        self, pk: str, *, event_key: str | None = None, case_ids: Sequence[str] = (), journals: bool = True
    ) -> _Snapshot:
        """The rows of one mailbox partition a write depends on, in as few queries as the filter limit allows."""
        clauses = [f"RowKey eq {_q(ROOT)}"]
        if event_key:
            clauses.append(f"RowKey eq {_q(_event_rk(event_key))}")
        if journals:
            clauses.append(_prefix_range("journal|"))
        ranges = [_prefix_range(_case_rk(case_id)) for case_id in dict.fromkeys(case_ids)]
        groups = [clauses + ranges[:4]] + [ranges[i : i + 6] for i in range(4, len(ranges), 6)]
        snap = _Snapshot()
        for group in groups:
            query = f"PartitionKey eq {_q(pk)} and ({' or '.join(group)})"
            for row in self._tables["mailboxes"].query_entities(query):
                self._place(snap, row)
        snap.journals.sort(key=lambda r: str(r["RowKey"]))
        return snap

    @staticmethod
    def _place(snap: _Snapshot, row: TableEntity) -> None:
        rk = str(row["RowKey"])
        if rk == ROOT:
            snap.root = row
        elif rk.startswith("event|"):
            snap.guard = row
        elif rk.startswith("journal|"):
            snap.journals.append(row)
        elif "|action|" in rk:
            snap.actions.setdefault(str(row["CaseId"]), {})[str(row["ActionId"])] = row
        elif rk.startswith("case|"):
            snap.cases[str(row["CaseId"])] = row

    # --- the mailbox aggregate ---------------------------------------------------------

    def mailbox(self, key: MailboxKey) -> MailboxView:
        with self._storage("read a mailbox"):
            root = self._get("mailboxes", escape(key.address), ROOT)
        if root is None:
            return MailboxView(key, None, 0)
        doc = _opt(root.get("Ownership"))
        ownership = codec.ownership_from(key, json.loads(doc)) if doc else None
        return MailboxView(key, ownership, int(root["Version"]))

    def event(self, event_key: str) -> EventOutcome | None:
        with self._storage("read an event"):
            row = self._get("events", escape(event_key, 200), "event")
        return _outcome_from(row) if row else None

    def commit(self, change: Change) -> None:
        pk = escape(change.key.address)
        event_key = change.event.event_key if change.event else None
        journal_id = str(uuid.uuid4())
        with self._storage("record a decision"):
            for attempt in range(COMMIT_TRIES):
                case_ids = [c.id for c in change.cases] + [case_id for case_id, _ in change.expect]
                snap = self._snapshot(pk, event_key=event_key, case_ids=case_ids)
                if any(j.get("JournalId") == journal_id for j in snap.journals):
                    return self._settle(pk, snap, journal_id)  # our transaction did land (a lost response)
                if snap.guard is not None:
                    raise DuplicateEvent(_outcome_from(snap.guard))
                if snap.version != change.expected_version:
                    raise ConcurrencyConflict(
                        f"mailbox version is {snap.version}, the decision was made at {change.expected_version}"
                    )
                for case_id, state in change.expect:
                    stored = snap.cases.get(case_id)
                    if stored is None or stored.get("State") != state.value:
                        raise ConcurrencyConflict(f"case {case_id} is no longer {state.value}")
                self._take_over(snap)
                write = self._plan_commit(change, snap, journal_id)
                try:
                    marked = self._transact(pk, write)
                except _Retry:
                    _pause(attempt)
                    continue
                self._finish(pk, write.journal, marked)
                return None
        raise ConcurrencyConflict("the mailbox kept changing; decide again")

    def _settle(self, pk: str, snap: _Snapshot, journal_id: str) -> None:
        for row in snap.journals:
            if row.get("JournalId") == journal_id:
                self._roll_forward(json.loads(get_text(row, "Journal")))

    def _plan_commit(self, change: Change, snap: _Snapshot, journal_id: str) -> _Write:
        pk = escape(change.key.address)
        version, seq = snap.version + 1, snap.seq + 1
        ownership = (
            json.dumps(codec.ownership_doc(change.ownership))
            if change.ownership
            else _opt(snap.root.get("Ownership") if snap.root else None)
        )
        ops = [_write_op(_root_entity(pk, change.key.address, version, seq, ownership), snap.root)]
        journal = _journal(change.key.address)
        if change.event:
            e = change.event
            guard: Entity = {"PartitionKey": pk, "RowKey": _event_rk(e.event_key), "EventKey": e.event_key}
            guard |= {"Effect": e.effect.value, "CaseId": e.case_id, "At": codec.ts(e.at)}
            ops.append(_write_op(guard, None))
            journal["event"] = {"event_key": e.event_key, "effect": e.effect.value, "case_id": e.case_id,
                                "at": codec.ts(e.at)}  # fmt: skip
        if change.claim:
            c = change.claim
            claim: Entity = {"PartitionKey": pk, "RowKey": f"claim|{_inv(version)}", "Org": c.org}
            claim |= {"Kind": c.kind.value, "Origin": c.origin.value, "EventKey": c.event_key}
            claim |= {"Effect": c.effect.value, "CaseId": c.case_id, "At": codec.ts(c.at)}
            ops.append(_write_op(claim, None))
        for case in change.cases:
            existing = snap.cases.get(case.id)
            known = snap.actions.get(case.id, {})
            sort = str(existing["Sort"]) if existing else _case_sort(case, version)
            ids: list[str] = json.loads(existing["ActionIds"]) if existing else []
            for action in case.actions:  # as in SQLite: new actions are added, recorded ones kept
                if action.id in known or action.id in ids:
                    continue
                ids.append(action.id)
                action_sort = _action_sort(action, len(ids) - 1)
                ops.append(_write_op(_action_entity(pk, action, action_sort), None))
                journal["actions"].append(_action_entry(action, action_sort, new=True))
            ops.append(_write_op(_case_entity(pk, case, sort, ids), existing))
            if entry := _case_entry(case, sort, existing):
                journal["cases"].append(entry)
        return self._seal(pk, seq, journal_id, ops, journal, list(change.audit))

    def _seal(
        self, pk: str, seq: int, journal_id: str, ops: list[Operation], journal: dict[str, Any], audit: list[AuditEvent]
    ) -> _Write:
        """Add the journal row, then check the whole transaction against the service's limits."""
        journal |= {"id": journal_id, "seq": seq, "audit": [_audit_doc(e) for e in audit]}
        for event in audit:  # an entry that could never be appended must stop the decision now
            check_entity(_audit_entity(codec.chain_entry(None, event), journal_id))
        row: Entity = {"PartitionKey": pk, "RowKey": _journal_rk(seq), "JournalId": journal_id, "Seq": seq}
        row["At"] = _clock(utcnow())
        put_text(row, "Journal", codec.dumps(journal))
        ops.append(("create", row, {}))
        if len(ops) > MAX_BATCH_OPS:
            raise LedgerError(f"one change would take {len(ops)} writes; a transaction holds at most {MAX_BATCH_OPS}")
        for op in ops:
            check_entity(op[1])
        wire = sum(len(json.dumps(op[1], default=str)) for op in ops)
        if wire > MAX_BATCH_BYTES:
            raise LedgerError(f"one change would send about {wire} bytes; a transaction holds at most 2 MB")
        return _Write(ops, journal)

    def _transact(self, pk: str, write: _Write) -> str:
        """Mark the mailbox as having work in flight, then submit; ``_Retry`` when the partition moved.

        Returns the marker's ETag, for ``_finish`` to remove it once the journal is rolled forward.
        """
        work = deadline.current()
        if work is not None and not work.claim_commit():  # a late decision is never recorded
            raise DeadlineExceeded(f"the decision missed its {work.seconds:g} s deadline; nothing recorded")
        marker: Entity = {"PartitionKey": MARKERS, "RowKey": pk, "Address": write.journal["address"]}
        marker["At"] = _clock(utcnow())
        marked = self._tables["mailboxes"].upsert_entity(marker, mode=UpdateMode.REPLACE)
        try:
            self._tables["mailboxes"].submit_transaction(write.ops)
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):
                raise _Retry from None
            raise
        except (ServiceRequestError, ServiceResponseError):
            if self._landed(pk, write):
                return str(marked["etag"])
            raise _Retry from None
        return str(marked["etag"])

    def _landed(self, pk: str, write: _Write) -> bool:
        """After a lost answer: whether the transaction landed; if not, fence it so it never lands late.

        Its journal row says it landed. Otherwise the root is touched under the ETag the transaction
        was conditioned on (or created, when the transaction would create it), so a copy of the
        transaction still on its way fails with 412/409 instead of recording a decision late.
        """
        journal = write.ops[-1][1]
        table = self._tables["mailboxes"]

        def ours() -> bool:
            found = self._get("mailboxes", pk, str(journal["RowKey"]))
            return found is not None and found.get("JournalId") == journal["JournalId"]

        if ours():
            return True
        verb, root, options = write.ops[0]
        try:
            if verb == "create":
                table.create_entity({k: v for k, v in root.items() if k in ("PartitionKey", "RowKey", "Address")}
                                    | {"Version": 0, "Seq": 0})  # fmt: skip
            else:
                keys = {"PartitionKey": root["PartitionKey"], "RowKey": root["RowKey"]}
                table.update_entity(keys, mode=UpdateMode.MERGE, **{k: v for k, v in options.items() if k != "mode"})
        except (ResourceExistsError, ResourceModifiedError):
            return ours()  # the root moved first: our transaction, or another writer's (which fences ours too)
        return False

    def _finish(self, pk: str, journal: dict[str, Any], marker_etag: str) -> None:
        """Roll the journal forward; then the marker goes, unless a newer write re-marked the mailbox."""
        if self._roll_forward(journal):
            with suppress(ResourceModifiedError, ResourceNotFoundError):
                self._tables["mailboxes"].delete_entity(MARKERS, pk, **_if_match(marker_etag))

    def _take_over(self, snap: _Snapshot) -> None:
        """Roll forward journals their writer left behind (older than ``takeover_after``)."""
        cutoff = _clock(utcnow() - self.takeover_after)
        for row in snap.journals:
            if str(row.get("At", "")) <= cutoff:
                self._roll_forward(json.loads(get_text(row, "Journal")))

    # --- rolling journals forward ------------------------------------------------------

    def _roll_forward(self, journal: dict[str, Any]) -> bool:
        """Write what a committed journal derives; idempotent and safe in any order. True when done."""
        address, seq = str(journal["address"]), int(journal["seq"])
        pk = escape(address)
        try:
            if journal.get("event"):
                self._index_event(address, journal["event"])
            for case in journal["cases"]:
                self._index_case(address, seq, case)
            for action in journal["actions"]:
                self._index_action(address, seq, action)
            if journal["audit"]:
                events = [codec.audit_event_from(doc) for doc in journal["audit"]]
                self._append(events, str(journal["id"]))
            self._tables["mailboxes"].delete_entity(pk, _journal_rk(seq))
        except (AzureError, LedgerError) as exc:
            # The decision is committed; the journal stays and is finished by the next writer or the sweep.
            log.warning("ledger journal not rolled forward yet", extra={"journal": journal["id"], "error": _brief(exc)})
            return False
        return True

    def _index_event(self, address: str, event: Mapping[str, Any]) -> None:
        row: Entity = {
            "PartitionKey": escape(event["event_key"], 200),
            "RowKey": "event",
            "EventKey": event["event_key"],
        }
        row |= {"Effect": event["effect"], "CaseId": event["case_id"], "At": event["at"], "Address": address}
        with suppress(ResourceExistsError):
            self._tables["events"].create_entity(row)

    def _index_case(self, address: str, seq: int, case: Mapping[str, Any]) -> None:
        sort, claimant, owner = str(case["sort"]), str(case["claimant"]), _opt(case["owner"])
        cases = self._tables["cases"]
        body = {"CaseId": case["id"], "Address": address, "Stamp": seq}
        if case["new"]:
            pointer: Entity = {"PartitionKey": f"id|{escape(case['id'])}", "RowKey": "case", **body, "Sort": sort}
            cases.upsert_entity(pointer, mode=UpdateMode.REPLACE)
            for pk in ("all", f"mailbox|{escape(address)}", f"org|{escape(claimant)}"):
                self._put_index("cases", {"PartitionKey": pk, "RowKey": sort, **body}, seq)
        if case["new"] or case["state"] != case["old_state"]:
            self._put_index("cases", {"PartitionKey": f"state|{case['state']}", "RowKey": sort, **body}, seq)
        if case["old_state"] and case["old_state"] != case["state"]:
            self._delete_if_older("cases", f"state|{case['old_state']}", sort, seq)
        if owner and owner != claimant and (case["new"] or owner != case["old_owner"]):
            self._put_index("cases", {"PartitionKey": f"org|{escape(owner)}", "RowKey": sort, **body}, seq)
        old_owner = _opt(case["old_owner"])
        if old_owner and old_owner not in (owner, claimant):
            self._delete_if_older("cases", f"org|{escape(old_owner)}", sort, seq)

    def _index_action(self, address: str, seq: int, action: Mapping[str, Any]) -> None:
        if action["new"]:
            pointer: Entity = {"PartitionKey": f"id|{escape(action['id'])}", "RowKey": "action"}
            pointer |= {"ActionId": action["id"], "CaseId": action["case_id"], "Address": address}
            self._tables["actions"].upsert_entity(pointer, mode=UpdateMode.REPLACE)
        if action["pending"]:
            row: Entity = {"PartitionKey": QUEUE, "RowKey": action["sort"], "ActionId": action["id"]}
            row |= {"CaseId": action["case_id"], "Address": address, "NextAt": action["next_at"], "Stamp": seq}
            self._put_index("actions", row, seq)
        else:
            self._delete_if_older("actions", QUEUE, str(action["sort"]), seq)

    def _put_index(self, table: str, row: Entity, seq: int) -> None:
        """Create or refresh an index row unless a newer journal already wrote it."""
        client = self._tables[table]
        for attempt in range(OUTBOX_TRIES):
            try:
                client.create_entity(row)
                return
            except ResourceExistsError:
                pass
            found = self._get(table, row["PartitionKey"], row["RowKey"])
            if found is None:
                continue
            if int(found.get("Stamp") or 0) > seq:
                return
            try:
                client.update_entity(row, mode=UpdateMode.REPLACE, **_if_match(_etag(found)))
                return
            except (ResourceModifiedError, ResourceNotFoundError):
                _pause(attempt)
        raise LedgerError(f"the index row {row['PartitionKey']}/{row['RowKey']} kept changing")

    def _delete_if_older(self, table: str, pk: str, rk: str, seq: int) -> None:
        for attempt in range(OUTBOX_TRIES):
            found = self._get(table, pk, rk)
            if found is None or int(found.get("Stamp") or 0) > seq:
                return
            try:
                self._tables[table].delete_entity(pk, rk, **_if_match(_etag(found)))
                return
            except ResourceModifiedError:
                _pause(attempt)
        raise LedgerError(f"the index row {pk}/{rk} kept changing")

    def recover(self, limit: int = 50) -> int:
        """Finish work instances left behind (journals older than ``takeover_after``); return how many marks."""
        cutoff = _clock(utcnow() - self.takeover_after)
        query = f"PartitionKey eq {_q(MARKERS)} and At le {_q(cutoff)}"
        done = 0
        with self._storage("recover unfinished work"):
            found = self._tables["mailboxes"].query_entities(query, results_per_page=max(1, limit))
            for _, marker in zip(range(max(1, limit)), found, strict=False):
                if marker["RowKey"] == POLICY_MARKER:
                    newest = self._newest_policy()
                    if newest is not None and not newest.get("Audited"):
                        self._audit_policy(newest)
                elif not self._recover_mailbox(str(marker["RowKey"]), cutoff):
                    continue
                try:
                    self._tables["mailboxes"].delete_entity(MARKERS, marker["RowKey"], **_if_match(_etag(marker)))
                except ResourceModifiedError:
                    continue
                done += 1
        return done

    def _recover_mailbox(self, pk: str, cutoff: str) -> bool:
        """Roll forward the mailbox's old journals; True when none is left."""
        query = f"PartitionKey eq {_q(pk)} and {_prefix_range('journal|')}"
        left = False
        for row in self._rows("mailboxes", query):
            if str(row.get("At", "")) > cutoff or not self._roll_forward(json.loads(get_text(row, "Journal"))):
                left = True
        return not left

    # --- reads -------------------------------------------------------------------------

    def case(self, case_id: str) -> Case | None:
        with self._storage("read a case"):
            pointer = self._get("cases", f"id|{escape(case_id)}", "case")
            return self._load_case(str(pointer["Address"]), case_id) if pointer else None

    def _load_case(self, address: str, case_id: str) -> Case | None:
        query = f"PartitionKey eq {_q(escape(address))} and {_prefix_range(_case_rk(case_id))}"
        snap = _Snapshot()
        for row in self._tables["mailboxes"].query_entities(query):
            self._place(snap, row)
        found = snap.cases.get(case_id)
        return self._case_from(found, snap.actions.get(case_id, {})) if found else None

    @staticmethod
    def _case_from(row: Mapping[str, Any], actions: Mapping[str, Mapping[str, Any]]) -> Case:
        ids: list[str] = json.loads(row["ActionIds"])
        docs = tuple(codec.action_from(_doc(actions[i])) for i in ids if i in actions)
        return codec.case_from(_doc(row), docs)

    def _listing(self, query: CaseQuery, after: str | None) -> Iterator[TableEntity]:
        """Index rows that may answer ``query``, newest first, from the narrowest listing partition.

        ``open`` without a state merges the open states' partitions (their RowKeys share one order).
        Rows are only candidates: each is re-checked against its mailbox partition by the caller.
        """
        if query.mailbox:
            partitions = [f"mailbox|{escape(query.mailbox.address)}"]
        elif query.state:
            partitions = [f"state|{query.state.value}"]
        elif query.open:
            partitions = [f"state|{state.value}" for state in sorted(OPEN_STATES)]
        elif query.org:
            partitions = [f"org|{escape(query.org)}"]
        else:
            partitions = ["all"]
        streams = [
            self._rows(
                "cases", f"PartitionKey eq {_q(pk)}" + (f" and RowKey gt {_q(after)}" if after else ""), page=1000
            )
            for pk in partitions
        ]
        rows = heapq.merge(*streams, key=lambda r: str(r["RowKey"])) if len(streams) > 1 else streams[0]
        needle = query.search.casefold() if query.search else None
        for row in rows:
            if needle is None or needle in str(row.get("Address", "")):
                yield row

    def _matching(self, query: CaseQuery, rows: Iterator[TableEntity], want: int) -> list[tuple[str, Case]]:
        """Up to ``want`` cases behind ``rows`` that really match ``query`` (stale index rows are skipped)."""
        found: list[tuple[str, Case]] = []
        while len(found) < want:
            batch = [row for _, row in zip(range(min(500, want - len(found))), rows, strict=False)]
            if not batch:
                break
            loaded = self._parallel(lambda r: self._load_case(str(r["Address"]), str(r["CaseId"])), batch)
            found += [(str(r["RowKey"]), c) for r, c in zip(batch, loaded, strict=True) if c and query.matches(c)]
        return found

    def cases(self, query: CaseQuery) -> Page:
        limit = max(1, min(query.limit, 500))
        after = _decode_cursor(self.cursors.verify(query.cursor)) if query.cursor else None
        with self._storage("list cases"):
            found = self._matching(query, self._listing(query, after), limit + 1)
        items = tuple(case for _, case in found[:limit])
        return Page(items, self.cursors.sign(_encode_cursor(found[limit - 1][0])) if len(found) > limit else None)

    def count_cases(self, query: CaseQuery) -> int:
        """How many cases match: index rows counted where one partition is the answer, re-checked otherwise."""
        partition_filters = (query.mailbox, query.state, query.open or None, query.org)
        with self._storage("count cases"):
            rows = self._listing(query, None)
            if sum(f is not None for f in partition_filters) <= 1:
                return sum(1 for _ in rows)
            return len(self._matching(query, rows, sys.maxsize))

    def overview(self) -> Overview:
        with self._storage("summarize cases"):
            counts = {state.value: self.count_cases(CaseQuery(state=state)) for state in CaseState}
            waiting = CaseQuery(open=True)
            attention = [case for _, case in self._matching(waiting, self._listing(waiting, None), sys.maxsize)]
        return Overview.of(counts, attention)

    def claims(self, key: MailboxKey, limit: int = 50) -> Sequence[ClaimRecord]:
        query = f"PartitionKey eq {_q(escape(key.address))} and {_prefix_range('claim|')}"
        with self._storage("read claims"):
            rows = self._rows("mailboxes", query, page=max(1, min(limit, 1000)))
            return [_claim_from(key.address, row) for _, row in zip(range(max(0, limit)), rows, strict=False)]

    # --- the outbox --------------------------------------------------------------------

    def pending_actions(self, limit: int = 100, *, now: datetime | None = None) -> Sequence[Action]:
        moment = now or utcnow()
        self.recover()
        with self._storage("read the outbox"):
            return self._due(limit, moment)

    def _due(self, limit: int, moment: datetime) -> list[Action]:
        """Pending actions due at ``moment``, oldest first, each checked against its mailbox partition."""
        query = f"PartitionKey eq {_q(QUEUE)} and NextAt le {_q(_clock(moment))}"
        out: list[Action] = []
        rows = self._rows("actions", query, page=min(1000, max(1, limit)))
        while len(out) < limit:
            batch = [row for _, row in zip(range(limit - len(out)), rows, strict=False)]
            if not batch:
                break
            for queued, action in zip(batch, self._parallel(self._queued_action, batch), strict=True):
                if action is None:
                    self._drop_stale(queued)
                elif action.next_attempt_at is None or action.next_attempt_at <= moment:
                    out.append(action)
        return out[:limit]

    def _queued_action(self, queued: Mapping[str, Any]) -> Action | None:
        """The action a queue row names, if it is still pending (the mailbox partition is the truth)."""
        row = self._get("mailboxes", escape(str(queued["Address"])), _action_rk(queued["CaseId"], queued["ActionId"]))
        if row is None or row.get("Status") != ActionStatus.PENDING.value:
            return None
        return codec.action_from(_doc(row))

    def _drop_stale(self, queued: TableEntity) -> None:
        with suppress(ResourceModifiedError, ResourceNotFoundError):
            self._tables["actions"].delete_entity(QUEUE, queued["RowKey"], **_if_match(_etag(queued)))

    def lease_actions(self, limit: int, *, now: datetime, until: datetime) -> Sequence[Action]:
        """Take due actions one mailbox transaction each: of two workers racing for one, one gets it."""

        def lease(old: Action, case: Case | None, _: datetime) -> _Step | None:
            if old.status is not ActionStatus.PENDING or (old.next_attempt_at and old.next_attempt_at > now):
                return None  # another worker took it, or it was done meanwhile
            return replace(old, next_attempt_at=until), case, None

        self.recover()
        taken: list[Action] = []
        with self._storage("lease actions"):
            for action in self._due(max(1, limit), now):
                if self._outbox_write(action.id, lease)[1]:
                    taken.append(action)
        return taken

    def record_attempt(
        self,
        action_id: str,
        status: ActionStatus,
        error: str | None = None,
        *,
        retry_at: datetime | None = None,
        notice: Notice | None = None,
    ) -> Action:
        def step(old: Action, case: Case | None, now: datetime) -> _Step | None:
            return casework.attempt(
                old, case, status=status, error=_clip_error(error), retry_at=retry_at, notice=notice, now=now
            )

        with self._storage("record an action attempt"):
            return self._outbox_write(action_id, step)[0]

    def reset_action(self, action_id: str, *, actor: str) -> Action:
        def step(old: Action, case: Case | None, now: datetime) -> _Step:
            return casework.retry(old, case, actor=actor, now=now)

        with self._storage("reset an action"):
            return self._outbox_write(action_id, step)[0]

    def _outbox_write(
        self, action_id: str, step: Callable[[Action, Case | None, datetime], _Step | None]
    ) -> tuple[Action, bool]:
        """Change one action (and its case) in one transaction on its mailbox, the way ``commit`` does.

        ``step`` maps the stored action and case to the new ones and the audit event, or to None to leave
        them; returns the action as it now is and whether this call changed it.
        """
        journal_id = str(uuid.uuid4())
        pointer = self._get("actions", f"id|{escape(action_id)}", "action")
        if pointer is None:
            raise NotFound(f"no action {action_id}", field="action")
        address, case_id = str(pointer["Address"]), str(pointer["CaseId"])
        pk = escape(address)
        for attempt in range(OUTBOX_TRIES):
            snap = self._snapshot(pk, case_ids=[case_id])
            if any(j.get("JournalId") == journal_id for j in snap.journals):  # our transaction did land
                self._settle(pk, snap, journal_id)
                return codec.action_from(_doc(snap.actions[case_id][action_id])), True
            row = snap.actions.get(case_id, {}).get(action_id)
            if snap.root is None or row is None:
                raise NotFound(f"no action {action_id}", field="action")
            self._take_over(snap)
            case_row = snap.cases.get(case_id)
            case = self._case_from(case_row, snap.actions[case_id]) if case_row else None
            old = codec.action_from(_doc(row))
            planned = step(old, case, utcnow())
            if planned is None:
                return old, False
            new, changed, audit = planned
            write = self._plan_outbox(pk, snap, new, case, changed, audit, journal_id)
            try:
                marked = self._transact(pk, write)
            except _Retry:
                _pause(attempt)
                continue
            self._finish(pk, write.journal, marked)
            return new, True
        raise LedgerError(f"action {action_id} kept changing; try again")

    def _plan_outbox(
        self, pk: str, snap: _Snapshot, action: Action, case: Case | None, changed: Case | None,
        audit: AuditEvent | None, journal_id: str,
    ) -> _Write:  # fmt: skip
        """The action replaced, its case rewritten if it moved, the root's Seq bumped (its Version is not)."""
        assert snap.root is not None
        seq = snap.seq + 1
        address = str(snap.root["Address"])
        root = _root_entity(pk, address, snap.version, seq, _opt(snap.root.get("Ownership")))
        ops = [_write_op(root, snap.root)]
        journal = _journal(address)
        row = snap.actions[action.case_id][action.id]
        ops.append(_write_op(_action_entity(pk, action, str(row["Sort"])), row))
        journal["actions"].append(_action_entry(action, str(row["Sort"]), new=False))
        case_row = snap.cases.get(action.case_id)
        if changed is not None and case is not None and changed.history != case.history and case_row is not None:
            sort = str(case_row["Sort"])
            ops.append(_write_op(_case_entity(pk, changed, sort, json.loads(case_row["ActionIds"])), case_row))
            if entry := _case_entry(changed, sort, case_row):
                journal["cases"].append(entry)
        return self._seal(pk, seq, journal_id, ops, journal, [audit] if audit else [])

    # --- audit -------------------------------------------------------------------------

    def append_audit(self, event: AuditEvent) -> AuditEntry:
        with self._storage("append to the audit log"):
            return self._append([event], f"direct.{uuid.uuid4()}")[0]

    def _append(self, events: Sequence[AuditEvent], origin: str) -> list[AuditEntry]:
        out: list[AuditEntry] = []
        for i in range(0, len(events), AUDIT_PER_BATCH):
            out += self._append_batch(events[i : i + AUDIT_PER_BATCH], f"{origin}.{i // AUDIT_PER_BATCH}")
        return out

    def _append_batch(self, events: Sequence[AuditEvent], origin: str) -> list[AuditEntry]:
        """Chain ``events`` after the head in one transaction; a no-op if ``origin`` was appended before."""
        audit = self._tables["audit"]
        marker_rk = f"origin|{escape(origin)}"
        for attempt in range(AUDIT_TRIES):
            fresh = self._head is None
            head = self._head or self._read_head()
            prev = AuditEntry(head[0], AuditEvent("", "", ""), "", head[1]) if head[0] else None
            entries: list[AuditEntry] = []
            for event in events:
                entries.append(codec.chain_entry(prev, event))
                prev = entries[-1]
            last = entries[-1]
            head_row: Entity = {"PartitionKey": CHAIN, "RowKey": HEAD, "Seq": last.seq, "Hash": last.hash}
            ops: list[Operation] = [("update", head_row, {"mode": UpdateMode.REPLACE, **_if_match(head[2])})
                                    if head[2] else ("create", head_row, {})]  # fmt: skip
            ops += [("create", _audit_entity(entry, origin), {}) for entry in entries]
            marker: Entity = {"PartitionKey": CHAIN, "RowKey": marker_rk, "FirstSeq": entries[0].seq}
            ops.append(("create", marker | {"Count": len(entries)}, {}))
            try:
                result = audit.submit_transaction(ops)
            except TableTransactionError as exc:
                if exc.status_code not in (404, 409, 412):
                    raise
                self._head = None
                done = self._get("audit", CHAIN, marker_rk)
                if done is not None:
                    return self._entries_of(done)
                if fresh and exc.status_code == 409 and 0 < exc.index < len(ops) - 1:
                    raise LedgerError(
                        f"the audit log holds entry {entries[exc.index - 1].seq} beyond its head; run audit verify"
                    ) from None
                _pause(attempt)
                continue
            self._head = (last.seq, last.hash, str(result[0]["etag"]))
            return entries
        raise LedgerError("the audit log is too busy to append to; try again")

    def _read_head(self) -> tuple[int, str, str]:
        row = self._get("audit", CHAIN, HEAD)
        return (int(row["Seq"]), str(row["Hash"]), _etag(row)) if row else (0, codec.GENESIS, "")

    def _entries_of(self, marker: Mapping[str, Any]) -> list[AuditEntry]:
        first, count = int(marker["FirstSeq"]), int(marker["Count"])
        return list(self.audit_entries(first - 1, count))

    def audit_entries(self, after: int = 0, limit: int = 1000) -> Sequence[AuditEntry]:
        query = f"PartitionKey eq {_q(CHAIN)} and RowKey gt {_q(f'e{max(after, 0):016d}')} and RowKey lt 'f'"
        with self._storage("read the audit log"):
            rows = self._rows("audit", query, page=max(1, min(limit, 1000)))
            return [_audit_from(row) for _, row in zip(range(max(0, limit)), rows, strict=False)]

    def verify_audit(self) -> AuditReport:
        with self._storage("verify the audit log"):
            head = self._get("audit", CHAIN, HEAD)
            top = int(head["Seq"]) if head else 0
            query = f"PartitionKey eq {_q(CHAIN)} and RowKey ge 'e' and RowKey le {_q(f'e{top:016d}')}"
            entries = [_audit_from(row) for row in self._rows("audit", query, page=1000)] if head else []
            if head is None and self._first(self._tables["audit"], f"PartitionKey eq {_q(CHAIN)} and RowKey lt 'f'"):
                return AuditReport(False, 0, 1, "the audit head is missing")
        ok, bad, reason = codec.verify_chain(entries)
        if ok and head is not None and (not entries or entries[-1].seq != top or entries[-1].hash != head["Hash"]):
            ok, bad, reason = False, len(entries) + 1, "the newest entries were removed"
        return AuditReport(ok, len(entries), bad, reason)

    # --- policy versions ---------------------------------------------------------------

    def _newest_policy(self) -> TableEntity | None:
        return next(self._rows("policies", "PartitionKey eq 'policy'", page=1), None)

    def policy(self) -> PolicyVersion | None:
        with self._storage("read the policy"):
            row = self._newest_policy()
        if row is None:
            return None
        return PolicyVersion(int(row["Version"]), get_text(row, "Text"), str(row["Actor"]), codec.must_ts(row["At"]))

    def save_policy(self, text: str, actor: str) -> PolicyVersion:
        with self._storage("save the policy"):
            for attempt in range(OUTBOX_TRIES):
                newest = self._newest_policy()
                if newest is not None and not newest.get("Audited"):
                    self._audit_policy(newest)
                version = int(newest["Version"]) + 1 if newest else 1
                saved = PolicyVersion(version, text, actor, utcnow())
                row: Entity = {"PartitionKey": "policy", "RowKey": _inv(version), "Version": version, "Actor": actor}
                row |= {"At": codec.ts(saved.at), "Audited": False}
                put_text(row, "Text", text)
                check_entity(row)
                marker: Entity = {"PartitionKey": MARKERS, "RowKey": POLICY_MARKER, "At": _clock(saved.at)}
                self._tables["mailboxes"].upsert_entity(marker, mode=UpdateMode.REPLACE)
                try:
                    self._tables["policies"].create_entity(row)
                except ResourceExistsError:
                    _pause(attempt)
                    continue
                self._audit_policy(self._tables["policies"].get_entity("policy", _inv(version)))
                return saved
        raise LedgerError("the policy kept changing; try again")

    def _audit_policy(self, row: TableEntity) -> None:
        version = int(row["Version"])
        event = AuditEvent("policy.saved", f"policy:{version}", str(row["Actor"]), {"version": version},
                           codec.must_ts(row["At"]))  # fmt: skip
        self._append([event], f"policy.{version}")
        try:
            done: Entity = {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], "Audited": True}
            self._tables["policies"].update_entity(done, mode=UpdateMode.MERGE, **_if_match(_etag(row)))
        except ResourceModifiedError:
            pass

    @property
    def cursors(self) -> CursorCodec:
        """The deployment's cursor signer; its secret is created once, by whichever instance comes first."""
        if self._cursors is None:
            with self._storage("read the cursor key"):
                row = self._get("policies", "~meta", "cursor-key")
                if row is None:
                    with suppress(ResourceExistsError):
                        self._tables["policies"].create_entity(
                            {"PartitionKey": "~meta", "RowKey": "cursor-key", "Secret": new_secret()}
                        )
                    row = self._tables["policies"].get_entity("~meta", "cursor-key")
            self._cursors = CursorCodec(str(row["Secret"]))
        return self._cursors

    # --- life cycle --------------------------------------------------------------------

    def ping(self) -> None:
        with self._storage("reach the storage account"):
            self._first(self._tables["mailboxes"], f"PartitionKey eq {_q(MARKERS)}")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._service.close()

    def drop_tables(self) -> None:
        """Delete this prefix's tables (tests, and retiring an environment); the data is gone."""
        for client in self._tables.values():
            with suppress(ResourceNotFoundError):
                self._service.delete_table(client.table_name)
        self._ready = False

    # --- jobs and the ownership index (sweeps and migrations; appended) -----------------
    # ``jobs`` -- PartitionKey ``job``, RowKey ``esc(job id)``: the job document, Kind,
    # Created and Version (a save is conditional on it, and If-Match on the ETag).

    def _jobs(self) -> TableClient:
        self._ensure()
        return self._tables["jobs"]

    def save_job(self, job: Job) -> Job:
        from shared.domain.jobs import JobConflict, job_doc

        saved = replace(job, version=job.version + 1)
        row: Entity = {"PartitionKey": "job", "RowKey": escape(job.id), "Kind": job.kind.value}
        row |= {"Created": codec.ts(job.created_at), "Version": saved.version}
        put_text(row, "Doc", json.dumps(job_doc(saved)))
        check_entity(row)
        conflict = JobConflict(f"job {job.id} changed since version {job.version}; read it again")
        with self._storage("save a job"):
            table = self._jobs()
            if job.version == 0:
                try:
                    table.create_entity(row)
                except ResourceExistsError:
                    raise conflict from None
                return saved
            try:
                current = table.get_entity("job", escape(job.id))
            except ResourceNotFoundError:
                raise conflict from None
            if int(current.get("Version") or 0) != job.version:
                raise conflict
            try:
                table.update_entity(row, mode=UpdateMode.REPLACE, **_if_match(_etag(current)))
            except (ResourceModifiedError, ResourceNotFoundError):
                raise conflict from None
        return saved

    def job(self, job_id: str) -> Job | None:
        from shared.domain.jobs import job_from

        with self._storage("read a job"):
            try:
                row = self._jobs().get_entity("job", escape(job_id))
            except ResourceNotFoundError:
                return None
        return job_from(_doc(row))

    def jobs(self, kind: JobKind, limit: int = 50) -> Sequence[Job]:
        from shared.domain.jobs import job_from

        with self._storage("list jobs"):
            rows = list(self._jobs().query_entities(f"PartitionKey eq 'job' and Kind eq {_q(kind.value)}"))
        rows.sort(key=lambda r: (str(r.get("Created") or ""), str(r["RowKey"])), reverse=True)
        return [job_from(_doc(r)) for r in rows[: max(1, limit)]]

    def ownerships(self, after: str = "", limit: int = 1000) -> Sequence[Ownership]:
        """Owned mailboxes ordered by their (escaped) key, which is the address's order for plain addresses."""
        query = f"RowKey eq {_q(ROOT)}" + (f" and PartitionKey gt {_q(escape(after))}" if after else "")
        found: list[Ownership] = []
        with self._storage("list owners"):
            for row in self._rows("mailboxes", query, page=min(1000, max(1, limit))):
                doc = _opt(row.get("Ownership"))
                if not doc or str(row["PartitionKey"]).startswith("~"):
                    continue
                found.append(codec.ownership_from(MailboxKey(str(row["Address"])), json.loads(doc)))
                if len(found) >= limit:
                    break
        return found


def _root_entity(pk: str, address: str, version: int, seq: int, ownership: str | None) -> Entity:
    return {"PartitionKey": pk, "RowKey": ROOT, "Address": address, "Version": version, "Seq": seq,
            "Ownership": ownership}  # fmt: skip


def _action_entity(pk: str, action: Action, sort: str) -> Entity:
    action = replace(action, last_error=_clip_error(action.last_error))
    entity: Entity = {"PartitionKey": pk, "RowKey": _action_rk(action.case_id, action.id), "ActionId": action.id}
    entity |= {"CaseId": action.case_id, "Status": action.status.value, "Sort": sort}
    return put_text(entity, "Doc", json.dumps(codec.action_doc(action)))


def _case_entity(pk: str, case: Case, sort: str, action_ids: list[str]) -> Entity:
    entity: Entity = {"PartitionKey": pk, "RowKey": _case_rk(case.id), "CaseId": case.id, "Address": case.key.address}
    entity |= {"State": case.state.value, "Owner": case.owner, "Claimant": case.claimant, "Sort": sort}
    entity |= {"ActionIds": json.dumps(action_ids)}
    return put_text(entity, "Doc", fit_case(case))


def _write_op(entity: Entity, existing: TableEntity | None) -> Operation:
    """Create a new row; replace an existing one only if nobody changed it since it was read."""
    clean = {k: v for k, v in entity.items() if v is not None}
    if existing is None:
        return ("create", clean, {})
    return ("update", clean, {"mode": UpdateMode.REPLACE, **_if_match(_etag(existing))})


def _journal(address: str) -> dict[str, Any]:
    return {"address": address, "event": None, "cases": [], "actions": []}


def _action_entry(action: Action, sort: str, *, new: bool) -> dict[str, Any]:
    return {"id": action.id, "case_id": action.case_id, "sort": sort, "new": new,
            "pending": action.status is ActionStatus.PENDING, "next_at": _clock(action.next_attempt_at)}  # fmt: skip


def _case_entry(case: Case, sort: str, existing: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the case indexes must learn, or None when neither the state nor the owner moved."""
    old_state = _opt(existing.get("State")) if existing else None
    old_owner = _opt(existing.get("Owner")) if existing else None
    if existing is not None and old_state == case.state.value and old_owner == case.owner:
        return None
    return {"id": case.id, "sort": sort, "new": existing is None, "state": case.state.value, "owner": case.owner,
            "claimant": case.claimant, "old_state": old_state, "old_owner": old_owner}  # fmt: skip


def _with_deadline(client_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The SDK client's options with ``cut_to_deadline`` run before every try of every call."""
    return {"raw_request_hook": cut_to_deadline, **(client_options or {})}


def cut_to_deadline(request: PipelineRequest[Any]) -> None:
    """Fit one HTTP try to the current work's deadline (the gate's), or refuse it when none is left.

    Runs inside the SDK's retry loop, so its retries stop at the deadline too. Once the commit is
    claimed, the calls that finish it (the transaction, reading back whether a lost answer landed)
    still go out, each cut to what is left.
    """
    work = deadline.current()
    if work is None:
        return
    if not work.committing:
        work.check("reach Table Storage")
    left = max(work.remaining(), MIN_TRY_S)
    request.context.options["connection_timeout"] = left
    request.context.options["read_timeout"] = left


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
