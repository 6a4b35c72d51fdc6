"""Cases and claims: read from the mailbox partition, listed through the ``cases`` indexes with signed cursors."""

from __future__ import annotations

import heapq
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableEntity

from shared.domain.model import (
    OPEN_STATES,
    Case,
    CaseQuery,
    CaseState,
    ClaimRecord,
    DomainError,
    MailboxKey,
    Overview,
    Page,
)
from shared.ledger import codec
from shared.ledger.cursors import CursorCodec, new_secret
from shared.ledger.tables.documents import claim_from
from shared.ledger.tables.entities import get_doc
from shared.ledger.tables.keys import FORBIDDEN_KEY, MAX_KEY_BYTES, case_rk, escape, literal, prefix_range
from shared.ledger.tables.partition import Snapshot
from shared.ledger.tables.storage import TableStore


class CaseListings(TableStore):
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

    def case(self, case_id: str) -> Case | None:
        with self._storage("read a case"):
            self._catch_up()
            pointer = self._get("cases", f"id|{escape(case_id)}", "case")
            return self._load_case(str(pointer["Address"]), case_id) if pointer else None

    def _load_case(self, address: str, case_id: str) -> Case | None:
        query = f"PartitionKey eq {literal(escape(address))} and {prefix_range(case_rk(case_id))}"
        snap = Snapshot()
        for row in self._tables["mailboxes"].query_entities(query):
            snap.place(row)
        found = snap.cases.get(case_id)
        return self._case_from(found, snap.actions.get(case_id, {})) if found else None

    @staticmethod
    def _case_from(row: Mapping[str, Any], actions: Mapping[str, Mapping[str, Any]]) -> Case:
        ids: list[str] = json.loads(row["ActionIds"])
        docs = tuple(codec.action_from(get_doc(actions[i])) for i in ids if i in actions)
        return codec.case_from(get_doc(row), docs)

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
        after_clause = f" and RowKey gt {literal(after)}" if after else ""
        streams = [self._rows("cases", f"PartitionKey eq {literal(pk)}{after_clause}", page=1000) for pk in partitions]
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

    def _after(self, signed: str) -> str:
        """The RowKey a listing cursor holds."""
        row_key = self.cursors.position("rk", signed)
        if FORBIDDEN_KEY.search(row_key) or len(row_key) > MAX_KEY_BYTES:
            raise DomainError("the cursor is not one this API gave out", field="cursor")
        return row_key

    def cases(self, query: CaseQuery) -> Page:
        limit = max(1, min(query.limit, 500))
        after = self._after(query.cursor) if query.cursor else None
        with self._storage("list cases"):
            self._catch_up()
            found = self._matching(query, self._listing(query, after), limit + 1)
        items = tuple(case for _, case in found[:limit])
        return Page(items, self.cursors.issue("rk", found[limit - 1][0]) if len(found) > limit else None)

    def count_cases(self, query: CaseQuery) -> int:
        """How many cases match: index rows counted where one partition is the answer, re-checked otherwise."""
        partition_filters = (query.mailbox, query.state, query.open or None, query.org)
        with self._storage("count cases"):
            self._catch_up()
            rows = self._listing(query, None)
            if sum(f is not None for f in partition_filters) <= 1:
                return sum(1 for _ in rows)
            return len(self._matching(query, rows, sys.maxsize))

    def overview(self) -> Overview:
        with self._storage("summarize cases"):
            self._catch_up()
            counts = {state.value: self.count_cases(CaseQuery(state=state)) for state in CaseState}
            waiting = CaseQuery(open=True)
            attention = [case for _, case in self._matching(waiting, self._listing(waiting, None), sys.maxsize)]
        return Overview.of(counts, attention)

    def claims(self, key: MailboxKey, limit: int = 50) -> Sequence[ClaimRecord]:
        query = f"PartitionKey eq {literal(escape(key.address))} and {prefix_range('claim|')}"
        with self._storage("read claims"):
            rows = self._rows("mailboxes", query, page=max(1, min(limit, 1000)))
            return [claim_from(key.address, row) for _, row in zip(range(max(0, limit)), rows, strict=False)]
