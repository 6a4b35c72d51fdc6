"""Queries read at once in a ``$batch``: whole answers, in order, and a failed one said so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest

from shared.dataverse.port import BatchOperation, BatchResult, DataverseError
from shared.dataverse.reads import Query, read_at_once

ROWS = {"steps": [{"id": n} for n in range(7)], "filters": [{"id": "f"}]}


class Org:
    """Answers a ``$batch`` of queries with their first three rows (and a next link when there are more)."""

    def __init__(self, failing: str | None = None) -> None:
        self.failing = failing
        self.batches: list[list[str]] = []
        self.queries: list[str] = []

    async def batch(self, operations: Sequence[BatchOperation], **_: Any) -> list[BatchResult]:
        self.batches.append([op.url for op in operations])
        results = []
        for op in operations:
            entity_set = op.url.split("?")[0]
            if entity_set == self.failing:
                results.append(BatchResult(403, error=DataverseError("not allowed", status=403)))
                continue
            rows = ROWS[entity_set]
            body: dict[str, Any] = {"value": rows[:3]}
            if len(rows) > 3:
                body["@odata.nextLink"] = f"{entity_set}?$skiptoken=3"
            results.append(BatchResult(200, body=body))
        return results

    async def query(self, entity_set: str, **_: Any) -> AsyncGenerator[list[dict[str, Any]], None]:
        self.queries.append(entity_set)
        rows = ROWS[entity_set]
        for start in range(0, len(rows), 3):
            yield rows[start : start + 3]


QUERIES = [Query("steps", ["id"], "name eq 'a b'"), Query("filters", ["id"], "x eq 1")]


def test_every_query_in_one_batch_and_an_answer_with_more_pages_read_again_whole():
    org = Org()
    steps, filters = asyncio.run(read_at_once(org, QUERIES))  # type: ignore[arg-type]
    assert (steps, filters) == (ROWS["steps"], ROWS["filters"])
    assert org.batches == [["steps?$select=id&$filter=name%20eq%20'a%20b'", "filters?$select=id&$filter=x%20eq%201"]]
    assert org.queries == ["steps"]


def test_a_query_refused_inside_the_batch_raises_its_error():
    with pytest.raises(DataverseError, match="not allowed"):
        asyncio.run(read_at_once(Org(failing="filters"), QUERIES))  # type: ignore[arg-type]
