"""The policy's and the exemptions' versions, read together: one query of one partition per decision.

Every decision asks for the policy's newest version, and a competing claim also for the exemptions' (the head of
their set). Both live in the ``exemptions`` partition of ``policies``: the set's ``head`` and ``policy``, a
pointer to the newest policy version (``Version``), which ``save_policy`` moves forward after creating the
version's row. So ``policy()`` reads both rows in one query, and the exemptions' head it saw answers the same
thread's next ``exemptions()`` -- once, within the decision (``FRESH_S``, and never past a ``commit``): a snapshot
taken at the decision's start, not a cache, so another instance's change is seen by the next decision.

The pointer only moves forward (conditional writes, read again on a race). A writer that dies between creating a
version's row and moving the pointer leaves the ``~policy`` marker, so ``recover`` (and the next save) moves it.
An instance still on the code from before the pointer (a rolling upgrade) saves a version without moving it:
``recover`` also checks for a version beyond the pointer, at most once per ``takeover_after`` (``journal.py``),
so the gate's read stays one query and decides on the version before it until then.
Tables written before the pointer existed have none: the first read finds the newest version the old way and
writes it.
"""

from __future__ import annotations

import threading
import time
from typing import Final

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity, UpdateMode

from shared.ledger.port import LedgerError
from shared.ledger.tables.entities import Entity, etag, if_match
from shared.ledger.tables.keys import literal
from shared.ledger.tables.storage import WRITE_TRIES, TableStore, pause

PARTITION: Final = "exemptions"
HEAD: Final = "head"
POINTER: Final = "policy"
FRESH_S: Final = 1.0  # the longest a head read with the policy's version answers ``exemptions()`` (one decision)

_QUERY: Final = f"PartitionKey eq {literal(PARTITION)} and (RowKey eq {literal(HEAD)} or RowKey eq {literal(POINTER)})"


class Versions(TableStore):
    _fresh: threading.local | None = None  # per thread: (the exemptions head's ETag, when it was read)

    def _versions(self) -> int | None:
        """The newest policy version (None: no policy yet), noting the exemptions' head read with it."""
        rows = {str(r["RowKey"]): r for r in self._rows("policies", _QUERY, select=["Version"])}
        head, pointer = rows.get(HEAD), rows.get(POINTER)
        self._note_head("" if head is None else etag(head))
        if pointer is not None:
            return int(pointer["Version"]) or None
        newest = self._newest_policy(["Version"])  # a ledger from before the pointer (or without a policy)
        self._advance_policy_pointer(int(newest["Version"]) if newest is not None else 0)
        return int(newest["Version"]) if newest is not None else None

    def _newest_policy(self, select: list[str] | None = None) -> TableEntity | None:
        """The newest version's row, found by its key (the pointer may lag behind a writer that died)."""
        return next(self._rows("policies", "PartitionKey eq 'policy'", page=1, select=select), None)

    def _advance_policy_pointer(self, version: int) -> None:
        """Move the pointer to ``version`` unless it is there or beyond (two savers, a reader migrating)."""
        table = self._tables["policies"]
        for attempt in range(WRITE_TRIES):
            pointer: TableEntity | None = self._get("policies", PARTITION, POINTER)
            if pointer is not None and int(pointer["Version"]) >= version:
                return
            row: Entity = {"PartitionKey": PARTITION, "RowKey": POINTER, "Version": version}
            try:
                if pointer is None:
                    table.create_entity(row)
                else:
                    table.update_entity(row, mode=UpdateMode.REPLACE, **if_match(etag(pointer)))
                return
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                pause(attempt)
        raise LedgerError("the policy's version kept changing; try again")

    def _note_head(self, tag: str) -> None:
        if self._fresh is None:
            with self._lock:
                if self._fresh is None:
                    self._fresh = threading.local()
        self._fresh.head = (tag, time.monotonic())

    def _fresh_head(self) -> str | None:
        """The exemptions head's ETag this thread's ``policy()`` just read (taken: it answers once), if fresh."""
        fresh = self._fresh
        noted = getattr(fresh, "head", None) if fresh is not None else None
        if noted is None:
            return None
        fresh.head = None  # type: ignore[union-attr]
        tag, at = noted
        return str(tag) if time.monotonic() - at <= FRESH_S else None

    def _forget_head(self) -> None:
        """A decision ends with its commit: a head read for it answers no later one."""
        if self._fresh is not None:
            self._fresh.head = None
