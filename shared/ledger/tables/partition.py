"""The mailbox partition's transaction: snapshot the rows a write depends on, seal it within the limits, submit it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Final

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode

from shared.domain.model import AuditEvent, utcnow
from shared.ledger import codec, deadline
from shared.ledger.deadline import DeadlineExceeded
from shared.ledger.port import LedgerError
from shared.ledger.tables.audit import audit_entity
from shared.ledger.tables.backlog import logged
from shared.ledger.tables.entities import Entity, Operation, check_entity, etag, get_text, if_match, put_text
from shared.ledger.tables.journal import Journal, Journals
from shared.ledger.tables.keys import MARKERS, ROOT, case_rk, clock, event_rk, journal_rk, literal, prefix_range
from shared.ledger.tables.storage import brief, pause
from shared.ledger.tables.timeouts import PastDeadline

log = logging.getLogger(__name__)

MAX_BATCH_OPS: Final = 100
MAX_BATCH_BYTES: Final = 2_000_000


@dataclass
class Snapshot:
    """The rows of one mailbox partition as read before a write."""

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

    def place(self, row: TableEntity) -> None:
        """File one row of the partition under what it is."""
        rk = str(row["RowKey"])
        if rk == ROOT:
            self.root = row
        elif rk.startswith("event|"):
            self.guard = row
        elif rk.startswith("journal|"):
            self.journals.append(row)
        elif "|action|" in rk:
            self.actions.setdefault(str(row["CaseId"]), {})[str(row["ActionId"])] = row
        elif rk.startswith("case|"):
            self.cases[str(row["CaseId"])] = row


@dataclass
class Write:
    """One transaction on a mailbox partition and the journal it leaves."""

    ops: list[Operation]
    journal: Journal


class Retry(Exception):
    """The partition moved under a transaction; read it again."""


def write_op(entity: Entity, existing: TableEntity | None) -> Operation:
    """Create a new row; replace an existing one only if nobody changed it since it was read."""
    clean = {k: v for k, v in entity.items() if v is not None}
    if existing is None:
        return ("create", clean, {})
    return ("update", clean, {"mode": UpdateMode.REPLACE, **if_match(etag(existing))})


class Partition(Journals):
    def _snapshot(
        self, pk: str, *, event_key: str | None = None, case_ids: Sequence[str] = (), journals: bool = True
    ) -> Snapshot:
        """The rows of one mailbox partition a write depends on, in as few queries as the filter limit allows."""
        clauses = [f"RowKey eq {literal(ROOT)}"]
        if event_key:
            clauses.append(f"RowKey eq {literal(event_rk(event_key))}")
        if journals:
            clauses.append(prefix_range("journal|"))
        ranges = [prefix_range(case_rk(case_id)) for case_id in dict.fromkeys(case_ids)]
        groups = [clauses + ranges[:4]] + [ranges[i : i + 6] for i in range(4, len(ranges), 6)]
        snap = Snapshot()
        for group in groups:
            query = f"PartitionKey eq {literal(pk)} and ({' or '.join(group)})"
            for row in self._tables["mailboxes"].query_entities(query):
                snap.place(row)
        snap.journals.sort(key=lambda r: str(r["RowKey"]))
        return snap

    def _landed_before(self, snap: Snapshot, journal_id: str) -> bool:
        """Whether our transaction landed though its answer was lost; if so, its journal is rolled forward."""
        ours = [row for row in snap.journals if row.get("JournalId") == journal_id]
        for row in ours:
            self._roll_forward(json.loads(get_text(row, "Journal")))
        return bool(ours)

    def _submit(self, pk: str, write: Write, attempt: int, *, later: bool = False) -> bool:
        """Submit ``write`` and roll its journal forward (``later``: on the backlog's threads, after this returns);
        False (after a pause) when the partition moved."""
        try:
            self._transact(pk, write)
        except Retry:
            pause(attempt)
            return False
        if later:
            self._finish_later(pk, write.journal)
        else:
            self._finish(pk, write.journal)
        return True

    def _finish_later(self, pk: str, journal: Journal) -> None:
        """``_finish`` on the backlog; here and now when the backlog is full, its failure logged as on the backlog
        (past the deadline a storage call gets one try: the transaction landed, so the commit must not fail)."""
        if not self._backlog.submit(lambda: self._finish(pk, journal)):
            logged(lambda: self._finish(pk, journal))

    def _seal(
        self, pk: str, seq: int, journal_id: str, ops: list[Operation], journal: Journal, audit: list[AuditEvent]
    ) -> Write:
        """Add the journal row, then check the whole transaction against the service's limits."""
        journal |= {"id": journal_id, "seq": seq, "audit": [codec.audit_event_doc(e) for e in audit]}
        for event in audit:  # an entry that could never be appended must stop the decision now
            check_entity(audit_entity(codec.chain_entry(None, event), journal_id))
        row: Entity = {"PartitionKey": pk, "RowKey": journal_rk(seq), "JournalId": journal_id, "Seq": seq}
        row["At"] = clock(utcnow())
        put_text(row, "Journal", codec.dumps(journal))
        ops.append(("create", row, {}))
        if len(ops) > MAX_BATCH_OPS:
            raise LedgerError(f"one change would take {len(ops)} writes; a transaction holds at most {MAX_BATCH_OPS}")
        for op in ops:
            check_entity(op[1])
        wire = sum(len(json.dumps(op[1], default=str)) for op in ops)
        if wire > MAX_BATCH_BYTES:
            raise LedgerError(f"one change would send about {wire} bytes; a transaction holds at most 2 MB")
        return Write(ops, journal)

    def _transact(self, pk: str, write: Write) -> None:
        """Submit the transaction; ``Retry`` when the partition moved.

        Nothing else is written first: the recovery marker comes after, with the roll-forward (``_finish``), and
        a journal whose writer died before its marker is found by ``recover``'s scan for old journal rows.
        """
        work = deadline.current()
        if work is not None and not work.claim_commit():  # a late decision is never recorded
            raise DeadlineExceeded(f"the decision missed its {work.seconds:g} s deadline; nothing recorded")
        try:
            self._tables["mailboxes"].submit_transaction(write.ops)
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):
                raise Retry from None
            raise
        except (ServiceRequestError, ServiceResponseError, PastDeadline):
            if not self._landed(pk, write):
                raise Retry from None

    def _landed(self, pk: str, write: Write) -> bool:
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

    def _finish(self, pk: str, journal: Journal) -> None:
        """Mark the mailbox as having work in flight (so any instance's index reads roll it forward meanwhile),
        roll the journal forward, then remove the marker unless a newer write re-marked the mailbox.

        The transaction has landed: a marker that cannot be written does not undo it (``recover``'s scan finds the
        journal), so it is logged, not raised."""
        marker: Entity = {"PartitionKey": MARKERS, "RowKey": pk, "Address": journal["address"], "At": clock(utcnow())}
        try:
            marked: str | None = str(self._tables["mailboxes"].upsert_entity(marker, mode=UpdateMode.REPLACE)["etag"])
        except (AzureError, PastDeadline) as exc:
            log.warning("ledger recovery marker not written", extra={"journal": journal["id"], "error": brief(exc)})
            marked = None
        if self._roll_forward(journal) and marked is not None:
            with suppress(ResourceModifiedError, ResourceNotFoundError):
                self._tables["mailboxes"].delete_entity(MARKERS, pk, **if_match(marked))

    def _take_over(self, snap: Snapshot) -> None:
        """Roll forward journals their writer left behind (older than ``takeover_after``)."""
        cutoff = clock(utcnow() - self.takeover_after)
        for row in snap.journals:
            if str(row.get("At", "")) <= cutoff:
                self._roll_forward(json.loads(get_text(row, "Journal")))
