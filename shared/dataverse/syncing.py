"""Which mailboxes sync with an org, and which of its failing ones carry the "configured with another" alert.

The sweep's reads: a page at a time, three columns, every org in parallel; the alerts of
failing rows by id when they are few, else the org's alerts of that kind a page at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from shared.dataverse.port import MAX_PAGE_SIZE, OrgClient, odata_string
from shared.dataverse.schema import (
    ACT_METHOD,
    ACT_STATUS,
    ACTIVE,
    ADDRESS,
    MAILBOX_ID,
    MAILBOXES,
    MODIFIED_BY,
    MODIFIED_ON,
    MODIFIED_ON_BEHALF_OF,
    TEST_ENABLE,
    ActMethod,
)
from shared.domain.findings import Stamp
from shared.domain.model import InvalidAddress, MailboxKey

SYNCING = f"{ACTIVE} and {ACT_METHOD} eq {ActMethod.SERVER_SIDE_SYNC:d}"
COLUMNS = (MAILBOX_ID, ADDRESS, ACT_STATUS, TEST_ENABLE)  # a pending Test & Enable: its status is not known yet
ALERT_MARK = "configured with another"
ALERT_FILTER = f"contains(text,{odata_string(ALERT_MARK)})"
ALERTS_BY_ID = 50  # failing rows up to this many: ask for their alerts by id in one request
ADDRESSES_PER_QUERY = 40  # emailaddress eq ... or ...: keeps the URL well under the limits


async def read_alerts(client: OrgClient, failing: Sequence[str]) -> tuple[list[str], int, int]:
    """Ids of the failing rows whose alert says "configured with another"; (ids, alerts read, requests).

    A few failing rows: their alerts by id, in one request. Many: the org's alerts of that
    kind, a page at a time (cheaper than one request per mailbox). Either way only the
    failing rows' alerts count.
    """
    wanted = {m.lower() for m in failing}
    if len(wanted) <= ALERTS_BY_ID:
        ids = " or ".join(f"_regardingobjectid_value eq {m}" for m in sorted(wanted))
        query = f"({ids})"
    else:
        query = ALERT_FILTER
    found: set[str] = set()
    read = requests = 0
    async for page in client.query(
        "tracelogs", select=("_regardingobjectid_value", "text"), filter=query, page_size=MAX_PAGE_SIZE
    ):
        requests += 1
        read += len(page)
        for alert in page:
            regarding = str(alert.get("_regardingobjectid_value") or "").lower()
            if regarding in wanted and ALERT_MARK in str(alert.get("text") or "").casefold():
                found.add(regarding)
    return sorted(found), read, requests


async def active_rows(client: OrgClient, keys: Sequence[MailboxKey]) -> dict[str, str]:
    """Each address's active mailbox row id in one org, ``ADDRESSES_PER_QUERY`` addresses a request."""
    found: dict[str, str] = {}
    for start in range(0, len(keys), ADDRESSES_PER_QUERY):
        chunk = keys[start : start + ADDRESSES_PER_QUERY]
        wanted = {k.address for k in chunk}
        either = " or ".join(f"{ADDRESS} eq {odata_string(k.address)}" for k in chunk)
        async for page in client.query(MAILBOXES, select=(MAILBOX_ID, ADDRESS), filter=f"{ACTIVE} and ({either})"):
            for row in page:
                try:
                    key = MailboxKey.parse(row.get(ADDRESS))
                except InvalidAddress:
                    continue
                if key.address in wanted:
                    found.setdefault(key.address, str(row[MAILBOX_ID]))
    return found


STAMP_COLUMNS = (MAILBOX_ID, MODIFIED_ON, MODIFIED_BY, MODIFIED_ON_BEHALF_OF)


async def stamps(client: OrgClient, ids: Sequence[str]) -> dict[str, Stamp]:
    """Who last changed each row and when, by lower-case id, ``ALERTS_BY_ID`` rows a request."""
    found: dict[str, Stamp] = {}
    wanted = sorted({i.lower() for i in ids})
    for start in range(0, len(wanted), ALERTS_BY_ID):
        either = " or ".join(f"{MAILBOX_ID} eq {i}" for i in wanted[start : start + ALERTS_BY_ID])
        async for page in client.query(MAILBOXES, select=STAMP_COLUMNS, filter=either):
            for row in page:
                found[str(row.get(MAILBOX_ID) or "").lower()] = Stamp(
                    _when(row.get(MODIFIED_ON)),
                    _id(row.get(MODIFIED_BY)),
                    _id(row.get(MODIFIED_ON_BEHALF_OF)),
                )
    return found


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _id(value: object) -> str | None:
    return str(value) if value else None
