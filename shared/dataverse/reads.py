"""Several independent queries in one ``$batch``: one request for service protection instead of one each.

Dataverse counts a ``$batch`` once against the number of requests in its service-protection
window (api-limits.md, "Batch operations"); each query inside it is still one operation. A
query whose answer does not fit one page (an ``@odata.nextLink``) is read again on its own,
page by page, so the answer is always whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.dataverse.port import BatchOperation, DataverseError, OrgClient, encoded_filter


@dataclass(frozen=True)
class Query:
    entity_set: str
    select: Sequence[str]
    filter: str

    @property
    def url(self) -> str:
        """Relative to the Web API root, as ``$batch`` takes it."""
        return f"{self.entity_set}?$select={','.join(self.select)}&$filter={encoded_filter(self.filter)}"


async def read_at_once(client: OrgClient, queries: Sequence[Query]) -> list[list[dict[str, Any]]]:
    """Every row each query matches, in the queries' order, the first pages all in one request."""
    answers = await client.batch([BatchOperation("GET", q.url) for q in queries])
    rows: list[list[dict[str, Any]]] = []
    for query, answer in zip(queries, answers, strict=True):
        if answer.error is not None:
            raise answer.error
        if not answer.ok or answer.body is None:
            raise DataverseError(f"$batch did not answer the {query.entity_set} query", status=answer.status)
        if answer.body.get("@odata.nextLink"):
            pages = client.query(query.entity_set, select=query.select, filter=query.filter)
            rows.append([row async for page in pages for row in page])
        else:
            rows.append(list(answer.body.get("value", [])))
    return rows
