"""Dataverse clients for registered orgs, and the mailbox reads OrgGuard makes through them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from shared.dataverse.client import DataverseClient, RetryPolicy, token_provider_for
from shared.dataverse.payloads import MailboxRow
from shared.domain.model import DomainError, MailboxKey, Org
from shared.ledger import deadline

READ_BACK_S = 30.0  # the longest a read-back takes outside the gate

READ_BACK_COLUMNS = (
    "mailboxid",
    "emailaddress",
    "actdeliverymethod",
    "orgmarkedasprimaryforexchangesync",
    "testemailconfigurationscheduled",
    "statecode",
    "_regardingobjectid_value",
)


def make_client(org: Org, retry: RetryPolicy | None = None) -> DataverseClient:
    """A client for ``org``: a local development token on loopback, azure-identity elsewhere."""
    # TODO(lead): from Settings.azure_client_id
    tokens = token_provider_for(org.url, client_id=os.environ.get("AZURE_CLIENT_ID") or None)
    return DataverseClient(org.url, tokens, retry=retry or RetryPolicy(), org=org.name)


class ClientPool:
    """One client per org, for the life of one event loop."""

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        self._clients: dict[str, DataverseClient] = {}
        self._retry = retry

    def __call__(self, org: Org) -> DataverseClient:
        client = self._clients.get(org.name)
        if client is None:
            client = self._clients[org.name] = make_client(org, self._retry)
        return client

    @property
    def requests_sent(self) -> int:
        return sum(c.requests_sent for c in self._clients.values())

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def mailbox_row(row: dict[str, Any]) -> MailboxRow:
    state = row.get("statecode")
    return MailboxRow(
        mailbox_id=str(row["mailboxid"]),
        address=row.get("emailaddress"),
        act_method=row.get("actdeliverymethod"),
        primary_flag=row.get("orgmarkedasprimaryforexchangesync"),
        test_enable=row.get("testemailconfigurationscheduled"),
        active=None if state is None else state == 0,
        regarding_id=row.get("_regardingobjectid_value"),
    )


async def read_mailbox(client: DataverseClient, mailbox_id: str) -> MailboxRow | None:
    row = await client.get("mailboxes", mailbox_id, select=READ_BACK_COLUMNS)
    return mailbox_row(row) if row else None


def read_back(org: Org, mailbox_id: str) -> MailboxRow | None:
    """Read a mailbox row from its org, from synchronous code (trimmed payloads are rare).

    Within the current deadline (the gate's): retries and timeouts stop when it does.
    """
    budget = deadline.wait_budget(READ_BACK_S)

    async def go() -> MailboxRow | None:
        retry = RetryPolicy(attempts=3, base_delay=0.2, timeout=min(10.0, max(budget, 0.1)))
        async with make_client(org, retry) as client:
            return await asyncio.wait_for(read_mailbox(client, mailbox_id), timeout=budget)

    if budget <= 0:
        raise deadline.DeadlineExceeded(f"no time left to read the mailbox back from {org.name}")
    try:
        return asyncio.run(go())
    except TimeoutError:
        raise deadline.DeadlineExceeded(f"{org.name} did not answer the read-back within {budget:.1f} s") from None


async def find_mailbox(
    client: DataverseClient, key: MailboxKey, *, select: Sequence[str] = ("mailboxid", "emailaddress", "statecode")
) -> dict[str, Any] | None:
    """The active mailbox row whose address normalizes to ``key`` (addresses vary in case and spaces)."""
    needle = key.address.replace("'", "''")
    async for page in client.query(
        "mailboxes",
        select=select,
        filter=f"contains(emailaddress,'{needle}') and statecode eq 0",
    ):
        for row in page:
            try:
                if MailboxKey.parse(row.get("emailaddress")) == key:
                    return row
            except DomainError:
                continue
    return None
