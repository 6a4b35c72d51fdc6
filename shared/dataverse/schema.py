"""The Dataverse ``mailbox`` table as OrgGuard reads and writes it: names, option values, the two writes.

One place for what FACTS.md ("Dataverse mailbox table") says, so a column or an
option value is spelled once: the claims parser, the executor's writes and their
read-backs, sweeps, migrations and registration all take them from here. Pure
constants; the values are plain ``int`` (``IntEnum``), as the Web API sends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from shared.domain.model import ACT_ONLY, ActionKind, Fence

MAILBOX = "mailbox"  # the table's logical name (contexts, images)
MAILBOXES = "mailboxes"  # its entity set (Web API URLs)

# Columns
MAILBOX_ID = "mailboxid"
ADDRESS = "emailaddress"
ACT_METHOD = "actdeliverymethod"
INCOMING_EMAIL = "incomingemaildeliverymethod"
OUTGOING_EMAIL = "outgoingemaildeliverymethod"
PRIMARY_FLAG = "orgmarkedasprimaryforexchangesync"  # "Sync items with Exchange from this org only"
TEST_ENABLE = "testemailconfigurationscheduled"  # true queues Test & Enable
TEST_COUNT = "testemailconfigurationretrycount"  # the number of tests run
TESTED_ON = "testmailboxaccesscompletedon"  # the last test
ACT_STATUS = "actstatus"
MAILBOX_STATUS = "mailboxstatus"
STATE = "statecode"
REGARDING = "regardingobjectid"  # the user or queue the mailbox belongs to
REGARDING_VALUE = "_regardingobjectid_value"  # the same lookup's id as the Web API returns it
MODIFIED_ON = "modifiedon"
MODIFIED_BY = "_modifiedby_value"  # the user who last changed the row
MODIFIED_ON_BEHALF_OF = "_modifiedonbehalfby_value"  # the user an impersonating caller acted for


class ActMethod(IntEnum):
    """``actdeliverymethod``: how appointments, contacts and tasks synchronize."""

    OUTLOOK = 0  # Dynamics 365 for Outlook
    SERVER_SIDE_SYNC = 1
    NONE = 2


class IncomingEmail(IntEnum):
    """``incomingemaildeliverymethod``: how incoming email is processed."""

    NONE = 0
    OUTLOOK = 1
    SERVER_SIDE_SYNC = 2
    FORWARD_MAILBOX = 3


class OutgoingEmail(IntEnum):
    """``outgoingemaildeliverymethod``: how outgoing email is sent."""

    NONE = 0
    OUTLOOK = 1
    SERVER_SIDE_SYNC = 2


class SyncStatus(IntEnum):
    """``actstatus``, ``incomingemailstatus``, ``outgoingemailstatus``, ``mailboxstatus``."""

    NOT_RUN = 0
    SUCCESS = 1
    FAILURE = 2


class State(IntEnum):
    """``statecode`` of a mailbox."""

    ACTIVE = 0
    INACTIVE = 1


WRITES: Mapping[ActionKind, Mapping[str, Any]] = MappingProxyType(
    {
        # ACT method None and the check box off: this org stops claiming the mailbox.
        ActionKind.DEMOTE: MappingProxyType({ACT_METHOD: ActMethod.NONE, PRIMARY_FLAG: False}),
        # The check box on, server-side sync, and Test & Enable scheduled: Exchange follows this org.
        ActionKind.PROMOTE: MappingProxyType(
            {PRIMARY_FLAG: True, ACT_METHOD: ActMethod.SERVER_SIDE_SYNC, TEST_ENABLE: True}
        ),
    }
)
"""The columns a demote and a promote set (``service.org_writes`` sends them, ``rollout`` checks them)."""

FENCES: Mapping[ActionKind, Mapping[Fence, Mapping[str, Any]]] = MappingProxyType(
    {
        ActionKind.DEMOTE: MappingProxyType(
            {
                Fence.ACT: WRITES[ActionKind.DEMOTE],
                # Email None both ways: the losing org stops processing the mailbox at all.
                Fence.EMAIL: MappingProxyType({INCOMING_EMAIL: IncomingEmail.NONE, OUTGOING_EMAIL: OutgoingEmail.NONE}),
            }
        ),
        ActionKind.PROMOTE: MappingProxyType(
            {
                Fence.ACT: WRITES[ActionKind.PROMOTE],
                # The winning org processes email again, through server-side sync (it may have been fenced before).
                Fence.EMAIL: MappingProxyType(
                    {INCOMING_EMAIL: IncomingEmail.SERVER_SIDE_SYNC, OUTGOING_EMAIL: OutgoingEmail.SERVER_SIDE_SYNC}
                ),
            }
        ),
    }
)
"""What each lever of the policy's ``fence`` sets, in the org that loses a mailbox and in the one that wins it."""

ACTIVE = f"{STATE} eq {State.ACTIVE:d}"  # the OData filter for active rows


def columns_set(kind: ActionKind, fence: tuple[Fence, ...] = ACT_ONLY) -> dict[str, Any]:
    """The columns an action of ``kind`` sets, for every lever of its ``fence`` (ACT always)."""
    levers = FENCES.get(kind)
    if levers is None:
        return dict(WRITES[kind])
    values: dict[str, Any] = {}
    for lever in (Fence.ACT, *fence):
        values.update(levers[lever])
    return values
