"""Jobs and the ownership index (sweeps and migrations).

``jobs`` -- PartitionKey ``job``, RowKey ``esc(job id)``: the job document,
Kind, Created and Version (a save is conditional on it, and If-Match on the
ETag). The ownership index is the mailbox roots, walked in key order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.domain.jobs import Job, JobConflict, JobKind
from shared.domain.model import MailboxKey, Ownership
from shared.ledger import codec
from shared.ledger.tables.entities import Entity, check_entity, etag, get_doc, if_match, opt, put_text
from shared.ledger.tables.keys import ROOT, escape, literal
from shared.ledger.tables.storage import TableStore


class JobRows(TableStore):
    def _jobs(self) -> TableClient:
        self._ensure()
        return self._tables["jobs"]

    def save_job(self, job: Job) -> Job:
        saved = replace(job, version=job.version + 1)
        row: Entity = {"PartitionKey": "job", "RowKey": escape(job.id), "Kind": job.kind.value}
        row |= {"Created": codec.ts(job.created_at), "Version": saved.version}
        put_text(row, "Doc", json.dumps(codec.job_doc(saved)))
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
                table.update_entity(row, mode=UpdateMode.REPLACE, **if_match(etag(current)))
            except (ResourceModifiedError, ResourceNotFoundError):
                raise conflict from None
        return saved

    def job(self, job_id: str) -> Job | None:
        with self._storage("read a job"):
            try:
                row = self._jobs().get_entity("job", escape(job_id))
            except ResourceNotFoundError:
                return None
        return codec.job_from(get_doc(row))

    def jobs(self, kind: JobKind, limit: int = 50) -> Sequence[Job]:
        with self._storage("list jobs"):
            rows = list(self._jobs().query_entities(f"PartitionKey eq 'job' and Kind eq {literal(kind.value)}"))
        rows.sort(key=lambda r: (str(r.get("Created") or ""), str(r["RowKey"])), reverse=True)
        return [codec.job_from(get_doc(r)) for r in rows[: max(1, limit)]]

    def ownerships(self, after: str = "", limit: int = 1000) -> Sequence[Ownership]:
        """Owned mailboxes ordered by their (escaped) key, which is the address's order for plain addresses."""
        query = f"RowKey eq {literal(ROOT)}" + (f" and PartitionKey gt {literal(escape(after))}" if after else "")
        found: list[Ownership] = []
        with self._storage("list owners"):
            for row in self._rows("mailboxes", query, page=min(1000, max(1, limit))):
                doc = opt(row.get("Ownership"))
                if not doc or str(row["PartitionKey"]).startswith("~"):
                    continue
                found.append(codec.ownership_from(MailboxKey(str(row["Address"])), json.loads(doc)))
                if len(found) >= limit:
                    break
        return found
