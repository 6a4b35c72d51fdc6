"""Each registered org's mailbox row for one address, read live through the Dataverse Web API.

The ledger says what OrgGuard decided; these rows say what each org holds now
(its ACT method, the "sync from this org only" check box, the ACT status), so an
approver can see whether the orgs agree with the ledger. Orgs are read at once,
each with its own short deadline: a slow or unreachable org is reported as such
and never holds up or fails the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.dataverse.mailboxes import find_mailbox
from shared.dataverse.port import ClientFor, DataverseError, RetryPolicy
from shared.dataverse.schema import (
    ACT_METHOD,
    ACT_STATUS,
    ADDRESS,
    MAILBOX_ID,
    MAILBOX_STATUS,
    MODIFIED_ON,
    PRIMARY_FLAG,
    STATE,
    TEST_ENABLE,
)
from shared.domain.model import MailboxKey, Org

log = logging.getLogger("orgguard.orgrows")

COLUMNS = (MAILBOX_ID, ADDRESS, ACT_METHOD, PRIMARY_FLAG, ACT_STATUS, MAILBOX_STATUS, TEST_ENABLE, STATE, MODIFIED_ON)
# One quick retry, a few seconds per try: a person is waiting for the page.
RETRY = RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0, timeout=5.0)
DEADLINE_S = 12.0


@dataclass(frozen=True)
class OrgRow:
    """What one org holds for the address: its row, no row, or why it could not be read."""

    org: str
    row: dict[str, Any] | None = None
    error: str | None = None

    def doc(self) -> dict[str, Any]:
        if self.error is not None:
            return {"org": self.org, "found": None, "error": self.error}
        if self.row is None:
            return {"org": self.org, "found": False}
        return {"org": self.org, "found": True, **{c: self.row.get(c) for c in COLUMNS}}


async def read_row(org: Org, client_for: ClientFor, key: MailboxKey, *, deadline: float = DEADLINE_S) -> OrgRow:
    try:
        row = await asyncio.wait_for(find_mailbox(client_for(org), key, select=COLUMNS), deadline)
    except TimeoutError:
        return OrgRow(org.name, error=f"no answer within {deadline:g} s")
    except DataverseError as exc:
        return OrgRow(org.name, error=str(exc))
    except Exception as exc:  # a token or network failure for one org must not fail the page
        log.warning("reading a mailbox row failed", extra={"org": org.name, "mailbox": key.redacted})
        return OrgRow(org.name, error=f"{type(exc).__name__}: {exc}")
    return OrgRow(org.name, row=row)


async def read_rows(
    orgs: Sequence[Org], key: MailboxKey, client_for: ClientFor, *, deadline: float = DEADLINE_S
) -> list[OrgRow]:
    """The row of ``key`` in every org of ``orgs``, in their order."""
    return list(await asyncio.gather(*(read_row(org, client_for, key, deadline=deadline) for org in orgs)))
