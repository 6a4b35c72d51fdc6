"""The mailbox row as a payload states it, and which changes to it claim the mailbox.

A context carries the row in pieces (the pre-image, the change, the post-image)
and a trimmed one carries none; these functions read what each piece states and
which claim a change makes once the row syncs ACT through server-side sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict, cast

from shared.dataverse.payloads import dotnet
from shared.dataverse.schema import (
    ACT_METHOD,
    ADDRESS,
    MAILBOX_ID,
    PRIMARY_FLAG,
    REGARDING,
    STATE,
    TEST_ENABLE,
    ActMethod,
    State,
)
from shared.domain.model import ClaimKind, InvalidPayload, normalize_guid

CLAIM_COLUMNS = (PRIMARY_FLAG, TEST_ENABLE, ACT_METHOD)  # the step's filtering attributes
CLAIM_MESSAGES = frozenset({"update", "create"})


@dataclass(frozen=True)
class MailboxRow:
    """What is known of the mailbox row after the update (``None``: not known)."""

    mailbox_id: str
    address: str | None = None
    act_method: int | None = None  # 0 Outlook, 1 server-side sync, 2 None
    primary_flag: bool | None = None  # orgmarkedasprimaryforexchangesync
    test_enable: bool | None = None  # testemailconfigurationscheduled
    active: bool | None = None  # statecode 0
    regarding_id: str | None = None


class RowFields(TypedDict, total=False):
    address: str | None
    act_method: int | None
    primary_flag: bool | None
    test_enable: bool | None
    active: bool | None
    regarding_id: str | None


def check_column(name: str, value: object, field: str) -> object:  # the columns are CHECKED_COLUMNS
    """Known mailbox columns must have their type, so reading a row never fails later."""
    if value is None:
        return None
    if name in (PRIMARY_FLAG, TEST_ENABLE):
        if not isinstance(value, bool):
            raise InvalidPayload(f"{field} must be true or false", field=field)
    elif name in (ACT_METHOD, STATE):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidPayload(f"{field} must be an option set value", field=field)
    elif name == ADDRESS:
        if not isinstance(value, str):
            raise InvalidPayload(f"{field} must be a string", field=field)
    elif name == REGARDING:
        if isinstance(value, str):
            return dotnet.EntityRef(id=normalize_guid(value, field=field))
        if not isinstance(value, dotnet.EntityRef):
            raise InvalidPayload(f"{field} must be an entity reference", field=field)
    elif name == MAILBOX_ID:
        return dotnet.guid(value, field)
    return value


CHECKED_COLUMNS = frozenset({PRIMARY_FLAG, TEST_ENABLE, ACT_METHOD, STATE, ADDRESS, REGARDING, MAILBOX_ID})
"""The columns ``check_column`` holds to a type; any other column is taken as decoded."""


def row_fields(attrs: Mapping[str, object]) -> RowFields:
    """The row fields an attribute map states (a present null states 'empty')."""
    fields: RowFields = {}
    if ADDRESS in attrs:
        address = attrs[ADDRESS]
        fields["address"] = address if isinstance(address, str) else None
    if ACT_METHOD in attrs:
        method = attrs[ACT_METHOD]
        fields["act_method"] = dotnet.as_int(method)
    if PRIMARY_FLAG in attrs:
        flag = attrs[PRIMARY_FLAG]
        fields["primary_flag"] = flag if isinstance(flag, bool) else None
    if TEST_ENABLE in attrs:
        scheduled = attrs[TEST_ENABLE]
        fields["test_enable"] = scheduled if isinstance(scheduled, bool) else None
    if STATE in attrs:
        state = attrs[STATE]
        fields["active"] = None if dotnet.as_int(state) is None else state == State.ACTIVE
    if REGARDING in attrs:
        regarding = attrs[REGARDING]
        fields["regarding_id"] = regarding.id if isinstance(regarding, dotnet.EntityRef) else None
    return fields


def known_fields(row: MailboxRow) -> RowFields:
    """A read-back row's fields, leaving out what it does not know."""
    values = {name: getattr(row, name) for name in RowFields.__optional_keys__}
    return cast(RowFields, {name: value for name, value in values.items() if value is not None})


def target_kind(target: Mapping[str, object]) -> ClaimKind | None:
    """The claim a change makes if the mailbox syncs ACT through server-side sync."""
    if target.get(PRIMARY_FLAG) is True:
        return ClaimKind.PRIMARY_FLAG
    if target.get(TEST_ENABLE) is True:
        return ClaimKind.TEST_ENABLE
    if dotnet.is_int(target.get(ACT_METHOD), ActMethod.SERVER_SIDE_SYNC):
        return ClaimKind.ACT_METHOD
    return None
