"""Exemptions on Table Storage: one partition of the ``policies`` table, changed in entity-group transactions.

``policies`` -- PartitionKey ``exemptions``: RowKey ``head`` (Version: the set's version; Pending and
PendingOrigin: the audit entries of the last change until they are in the chain) and one row per exemption,
RowKey ``x|<esc(id)>`` (its document in Doc).

A change reads the whole partition, asks the domain's plan what to write, and submits one transaction that
updates the head on its ETag (or creates it) and creates or updates, each on its ETag, the exemptions the plan
changes. Two instances changing the set at once: one transaction wins, the other gets 412 (or 409), reads again
and plans again, so a duplicate added at the same moment is refused by the domain's rule, and a removal done
twice is done once. The audit chain is another partition, so the change carries its audit entries in the head
(``Pending``) and they are appended right after, idempotently (the chain's origin marker); the next change, or
``recover`` (a marker in ``~journals`` written before the transaction), appends them when an instance died in
between. A transaction whose answer was lost is looked for (the head names its origin) before it is tried again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from contextlib import suppress
from typing import Final

from azure.core.exceptions import ResourceModifiedError, ServiceRequestError, ServiceResponseError
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode

from shared.domain.exemptions import Book, Plan
from shared.domain.model import utcnow
from shared.ledger import codec
from shared.ledger.port import ExemptionPlanner, LedgerError
from shared.ledger.tables.audit import AuditChain
from shared.ledger.tables.entities import Entity, Operation, check_entity, etag, get_doc, get_text, if_match, put_text
from shared.ledger.tables.keys import MARKERS, clock, escape, literal
from shared.ledger.tables.storage import WRITE_TRIES, pause
from shared.ledger.tables.versions import HEAD, PARTITION, Versions

EXEMPTIONS_MARKER: Final = "~exemptions"
MAX_PER_CHANGE: Final = 98  # one transaction: the head and up to 99 operations more (an expiry report marks many)


def _rk(exemption_id: str) -> str:
    return f"x|{escape(exemption_id)}"


class ExemptionRows(AuditChain, Versions):
    def _exemption_rows(self) -> tuple[TableEntity | None, list[TableEntity]]:
        rows = list(self._rows("policies", f"PartitionKey eq {literal(PARTITION)}"))  # the policy pointer too
        head = next((r for r in rows if r["RowKey"] == HEAD), None)
        return head, [r for r in rows if str(r["RowKey"]).startswith("x|")]

    @staticmethod
    def _book_of(head: TableEntity | None, rows: Sequence[TableEntity]) -> Book:
        items = sorted((codec.exemption_from(get_doc(r)) for r in rows), key=lambda e: (e.created_at, e.id))
        return Book(int(head["Version"]) if head else 0, tuple(items))

    _exemptions_read: tuple[str, Book] | None = None  # the set as last read, by its head's ETag

    def exemptions(self) -> Book:
        """The set; its head's ETag (read with the policy's version, or one point read) when nothing changed since
        the last read (every competing claim asks for it), the whole partition otherwise."""
        with self._storage("read the exemptions"):
            tag = self._fresh_head()  # read with the policy's version at this decision's start (``versions.py``)
            if tag is None:
                head = self._get("policies", PARTITION, HEAD)
                tag = etag(head) if head is not None else ""
            cached = self._exemptions_read
            if cached is not None and cached[0] == tag:
                return cached[1]  # no head is no exemption: the first change creates it with its rows
            head, rows = self._exemption_rows()
        book = self._book_of(head, rows)
        self._exemptions_read = (etag(head) if head is not None else "", book)
        return book

    def change_exemptions(self, planner: ExemptionPlanner) -> tuple[Book, Plan]:
        self._forget_head()  # a head read with the policy before this change must not answer the next read
        with self._storage("change the exemptions"):
            for attempt in range(WRITE_TRIES):
                head, rows = self._exemption_rows()
                if head is not None and get_text(head, "Pending"):
                    self._finish_exemption_audit(head)  # a change whose entries are not in the chain yet
                    continue
                book = self._book_of(head, rows)
                plan = planner(book)
                if plan.empty:
                    return book, plan
                if len(plan.changed) > MAX_PER_CHANGE:
                    plan = Plan(plan.changed[:MAX_PER_CHANGE], plan.audit[:MAX_PER_CHANGE])  # the rest next time
                origin = f"exemptions.{book.version + 1}.{uuid.uuid4().hex[:12]}"
                ops = self._operations(head, {str(r["RowKey"]): r for r in rows}, book.version + 1, plan, origin)
                marker: Entity = {"PartitionKey": MARKERS, "RowKey": EXEMPTIONS_MARKER, "At": clock(utcnow())}
                self._tables["mailboxes"].upsert_entity(marker, mode=UpdateMode.REPLACE)
                try:
                    self._tables["policies"].submit_transaction(ops)
                except TableTransactionError as exc:
                    if exc.status_code not in (404, 409, 412):
                        raise
                    pause(attempt)
                    continue
                except (ServiceRequestError, ServiceResponseError):
                    if not self._change_landed(origin):  # the head's ETag fences a late copy of it
                        pause(attempt)
                        continue
                head, rows = self._exemption_rows()
                if head is not None:
                    self._finish_exemption_audit(head)
                return self._book_of(head, rows), plan
        raise LedgerError("the exemptions kept changing; try again")

    def _operations(
        self, head: TableEntity | None, existing: dict[str, TableEntity], version: int, plan: Plan, origin: str
    ) -> list[Operation]:
        new_head: Entity = {"PartitionKey": PARTITION, "RowKey": HEAD, "Version": version, "PendingOrigin": origin}
        put_text(new_head, "Pending", json.dumps([codec.audit_event_doc(e) for e in plan.audit]))
        check_entity(new_head)
        ops: list[Operation] = [("update", new_head, {"mode": UpdateMode.REPLACE, **if_match(etag(head))}) if head
                                else ("create", new_head, {})]  # fmt: skip
        for exemption in plan.changed:
            row: Entity = {"PartitionKey": PARTITION, "RowKey": _rk(exemption.id), "Version": version}
            put_text(row, "Doc", json.dumps(codec.exemption_doc(exemption)))
            check_entity(row)
            stored = existing.get(_rk(exemption.id))
            ops.append(("update", row, {"mode": UpdateMode.REPLACE, **if_match(etag(stored))}) if stored
                       else ("create", row, {}))  # fmt: skip
        return ops

    def _change_landed(self, origin: str) -> bool:
        head, _ = self._exemption_rows()
        return head is not None and head.get("PendingOrigin") == origin

    def _finish_exemption_audit(self, head: TableEntity) -> None:
        """Append the head's pending audit entries (once: the chain's origin marker) and clear them."""
        pending = get_text(head, "Pending")
        if pending:
            events = [codec.audit_event_from(doc) for doc in json.loads(pending)]
            self._append(events, str(head.get("PendingOrigin") or f"exemptions.{head['Version']}"))
        cleared: Entity = {"PartitionKey": PARTITION, "RowKey": HEAD, "Version": int(head["Version"])}
        with suppress(ResourceModifiedError):  # another instance finished it (or a later change did first)
            self._tables["policies"].update_entity(cleared, mode=UpdateMode.REPLACE, **if_match(etag(head)))

    def _recover_exemptions(self) -> None:
        head, _ = self._exemption_rows()
        if head is not None and get_text(head, "Pending"):
            self._finish_exemption_audit(head)
