"""The audit chain's partition: appends chained after the head entity by any instance, and its verification."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from azure.data.tables import TableTransactionError, UpdateMode

from shared.domain.model import AuditEntry, AuditEvent, AuditReport
from shared.ledger import codec
from shared.ledger.port import LedgerError
from shared.ledger.tables.entities import Entity, Operation, etag, get_text, if_match, put_text
from shared.ledger.tables.keys import CHAIN, HEAD, escape, literal
from shared.ledger.tables.storage import TableStore, pause

AUDIT_PER_BATCH: Final = 90
AUDIT_TRIES: Final = 300


def audit_entity(entry: AuditEntry, origin: str) -> Entity:
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


def audit_from(row: Mapping[str, Any]) -> AuditEntry:
    event = AuditEvent(
        row["Kind"], row["Subject"], row["Actor"], json.loads(get_text(row, "Data")), codec.must_ts(row["At"])
    )
    return AuditEntry(int(row["Seq"]), event, row["PrevHash"], row["Hash"])


class AuditChain(TableStore):
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
            ops: list[Operation] = [("update", head_row, {"mode": UpdateMode.REPLACE, **if_match(head[2])})
                                    if head[2] else ("create", head_row, {})]  # fmt: skip
            ops += [("create", audit_entity(entry, origin), {}) for entry in entries]
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
                pause(attempt)
                continue
            self._head = (last.seq, last.hash, str(result[0]["etag"]))
            return entries
        raise LedgerError("the audit log is too busy to append to; try again")

    def _read_head(self) -> tuple[int, str, str]:
        row = self._get("audit", CHAIN, HEAD)
        return (int(row["Seq"]), str(row["Hash"]), etag(row)) if row else (0, codec.GENESIS, "")

    def _entries_of(self, marker: Mapping[str, Any]) -> list[AuditEntry]:
        first, count = int(marker["FirstSeq"]), int(marker["Count"])
        return self._entries(first - 1, count)  # not audit_entries: a roll-forward must not wait to catch up

    def audit_entries(self, after: int = 0, limit: int = 1000) -> Sequence[AuditEntry]:
        with self._storage("read the audit log"):
            self._catch_up()
            return self._entries(after, limit)

    def _entries(self, after: int, limit: int) -> list[AuditEntry]:
        query = f"PartitionKey eq {literal(CHAIN)} and RowKey gt {literal(f'e{max(after, 0):016d}')} and RowKey lt 'f'"
        rows = self._rows("audit", query, page=max(1, min(limit, 1000)))
        return [audit_from(row) for _, row in zip(range(max(0, limit)), rows, strict=False)]

    def verify_audit(self) -> AuditReport:
        with self._storage("verify the audit log"):
            self._catch_up()
            head = self._get("audit", CHAIN, HEAD)
            top = int(head["Seq"]) if head else 0
            query = f"PartitionKey eq {literal(CHAIN)} and RowKey ge 'e' and RowKey le {literal(f'e{top:016d}')}"
            entries = [audit_from(row) for row in self._rows("audit", query, page=1000)] if head else []
            anything = f"PartitionKey eq {literal(CHAIN)} and RowKey lt 'f'"
            if head is None and self._first(self._tables["audit"], anything):
                return AuditReport(False, 0, 1, "the audit head is missing")
        ok, bad, reason = codec.verify_chain(entries)
        if ok and head is not None and (not entries or entries[-1].seq != top or entries[-1].hash != head["Hash"]):
            ok, bad, reason = False, len(entries) + 1, "the newest entries were removed"
        return AuditReport(ok, len(entries), bad, reason)
