"""The mailbox reads OrgGuard makes through an ``OrgClient``: one row by id, one row by address.

Queries only, over the port: the executor, the page's org rows and the gate's
read-back use them with whatever client they are given (a pool's, a pacer's, a
fake org's), and nothing here builds one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from shared.dataverse.payloads import MailboxRow
from shared.dataverse.port import Connect, OrgClient, RetryPolicy, odata_string
from shared.dataverse.schema import (
    ACT_METHOD,
    ACTIVE,
    ADDRESS,
    MAILBOX_ID,
    MAILBOXES,
    PRIMARY_FLAG,
    REGARDING_VALUE,
    STATE,
    TEST_ENABLE,
    State,
)
from shared.domain.model import DomainError, MailboxKey, Org
from shared.ledger import deadline

READ_BACK_S = 30.0  # the longest a read-back takes outside the gate

READ_BACK_COLUMNS = (MAILBOX_ID, ADDRESS, ACT_METHOD, PRIMARY_FLAG, TEST_ENABLE, STATE, REGARDING_VALUE)


def mailbox_row(row: dict[str, Any]) -> MailboxRow:
    state = row.get(STATE)
    return MailboxRow(
        mailbox_id=str(row[MAILBOX_ID]),
        address=row.get(ADDRESS),
        act_method=row.get(ACT_METHOD),
        primary_flag=row.get(PRIMARY_FLAG),
        test_enable=row.get(TEST_ENABLE),
        active=None if state is None else state == State.ACTIVE,
        regarding_id=row.get(REGARDING_VALUE),
    )


async def read_mailbox(client: OrgClient, mailbox_id: str) -> MailboxRow | None:
    row = await client.get(MAILBOXES, mailbox_id, select=READ_BACK_COLUMNS)
    return mailbox_row(row) if row else None


def read_back(org: Org, mailbox_id: str, *, connect: Connect) -> MailboxRow | None:
    """Read a mailbox row from its org, from synchronous code (trimmed payloads are rare).

    Within the current deadline (the gate's): retries and timeouts stop when it does.
    ``connect`` builds the client, which is closed before this returns.
    """
    budget = deadline.wait_budget(READ_BACK_S)

    async def go() -> MailboxRow | None:
        retry = RetryPolicy(attempts=3, base_delay=0.2, timeout=min(10.0, max(budget, 0.1)))
        client = connect(org, retry)
        try:
            return await asyncio.wait_for(read_mailbox(client, mailbox_id), timeout=budget)
        finally:
            await client.aclose()

    if budget <= 0:
        raise deadline.DeadlineExceeded(f"no time left to read the mailbox back from {org.name}")
    try:
        return asyncio.run(go())
    except TimeoutError:
        raise deadline.DeadlineExceeded(f"{org.name} did not answer the read-back within {budget:.1f} s") from None


async def find_mailbox(
    client: OrgClient, key: MailboxKey, *, select: Sequence[str] = (MAILBOX_ID, ADDRESS, STATE)
) -> dict[str, Any] | None:
    """The active mailbox row whose address normalizes to ``key`` (addresses vary in case and spaces)."""
    async for page in client.query(
        MAILBOXES,
        select=select,
        filter=f"contains({ADDRESS},{odata_string(key.address)}) and {ACTIVE}",
    ):
        for row in page:
            try:
                if MailboxKey.parse(row.get(ADDRESS)) == key:
                    return row
            except DomainError:
                continue
    return None
