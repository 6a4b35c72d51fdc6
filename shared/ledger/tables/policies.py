"""Policy versions, newest first; a saved version is put in force (``versions.py``) and audited after it is created.

The policy row and the audit chain are in two tables, so no transaction holds
both: the ``~policy`` marker (written first) and the row's ``Audited`` flag let
the next save, or ``recover``, append the entry a crashed writer did not.
"""

from __future__ import annotations

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.data.tables import TableEntity, UpdateMode

from shared.domain.model import AuditEvent, PolicyVersion, utcnow
from shared.ledger import codec
from shared.ledger.port import LedgerError
from shared.ledger.tables.audit import AuditChain
from shared.ledger.tables.entities import Entity, check_entity, etag, get_text, if_match, put_text
from shared.ledger.tables.keys import MARKERS, POLICY_MARKER, clock, inv
from shared.ledger.tables.storage import WRITE_TRIES, pause
from shared.ledger.tables.versions import Versions


class PolicyRows(AuditChain, Versions):
    _policy_read: PolicyVersion | None = None  # the newest version as last read whole

    def policy(self) -> PolicyVersion | None:
        """The newest version: its number read on every call (every decision asks), its text when it is new."""
        with self._storage("read the policy"):
            version = self._versions()  # with the exemptions' head, in one query (``versions.py``)
            if version is None:
                return None
            known = self._policy_read
            if known is not None and known.version == version:
                return known
            row = self._tables["policies"].get_entity("policy", inv(version))
        read = PolicyVersion(int(row["Version"]), get_text(row, "Text"), str(row["Actor"]), codec.must_ts(row["At"]))
        self._policy_read = read
        return read

    def save_policy(self, text: str, actor: str) -> PolicyVersion:
        with self._storage("save the policy"):
            for attempt in range(WRITE_TRIES):
                newest = self._audit_newest_policy()
                version = int(newest["Version"]) + 1 if newest else 1
                saved = PolicyVersion(version, text, actor, utcnow())
                row: Entity = {"PartitionKey": "policy", "RowKey": inv(version), "Version": version, "Actor": actor}
                row |= {"At": codec.ts(saved.at), "Audited": False}
                put_text(row, "Text", text)
                check_entity(row)
                marker: Entity = {"PartitionKey": MARKERS, "RowKey": POLICY_MARKER, "At": clock(saved.at)}
                self._tables["mailboxes"].upsert_entity(marker, mode=UpdateMode.REPLACE)
                try:
                    self._tables["policies"].create_entity(row)
                except ResourceExistsError:
                    pause(attempt)
                    continue
                self._advance_policy_pointer(version)
                self._audit_policy(self._tables["policies"].get_entity("policy", inv(version)))
                return saved
        raise LedgerError("the policy kept changing; try again")

    def _audit_newest_policy(self) -> TableEntity | None:
        """The newest version, in force (the pointer moved) and audited first if its writer did not get that far."""
        newest = self._newest_policy()
        if newest is not None:
            self._advance_policy_pointer(int(newest["Version"]))
            if not newest.get("Audited"):
                self._audit_policy(newest)
        return newest

    def _audit_policy(self, row: TableEntity) -> None:
        version = int(row["Version"])
        event = AuditEvent("policy.saved", f"policy:{version}", str(row["Actor"]), {"version": version},
                           codec.must_ts(row["At"]))  # fmt: skip
        self._append([event], f"policy.{version}")
        try:
            done: Entity = {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], "Audited": True}
            self._tables["policies"].update_entity(done, mode=UpdateMode.MERGE, **if_match(etag(row)))
        except ResourceModifiedError:
            pass
