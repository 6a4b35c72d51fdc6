"""From a parsed context to the claim it makes for the org that sent it, or to none.

A change claims a mailbox when it leaves the row on server-side sync and sets the
check box, schedules Test & Enable or sets the ACT method (``rows.target_kind``);
what the payload lacks comes from a read-back row, and without one this refuses
rather than let a claim go unheard.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.dataverse.payloads.context import Context, effective_row, missing_field
from shared.dataverse.payloads.dotnet import EntityRef
from shared.dataverse.payloads.rows import MailboxRow
from shared.dataverse.schema import ADDRESS, MAILBOX, MAILBOX_ID
from shared.domain.model import Claim, InvalidPayload, MailboxKey, Org, Origin, normalize_guid, utcnow


def to_claim(
    ctx: Context,
    org: Org,
    origin: Origin,
    *,
    row: MailboxRow | None = None,
    message_id: str | None = None,
    observed_at: datetime | None = None,
) -> Claim | None:
    """The claim the context makes for ``org``, or ``None`` when it makes none.

    ``org`` is the org the caller authenticated (the webhook key's org); a
    context from another org is refused. When the payload does not carry what a
    claim needs (trimmed, or no address or ACT method) and no read-back ``row``
    is given, this raises rather than let a claim go unheard.
    ``Claim.org`` is the org's name, as policies and cases name orgs;
    ``source_ids["org"]`` keeps its id.
    """
    if normalize_guid(org.id, field="OrganizationId") != ctx.org_id:
        raise InvalidPayload("the context comes from another org than the caller's key", field="OrganizationId")
    if ctx.entity != MAILBOX:
        raise InvalidPayload("OrgGuard only reads mailbox messages", field="PrimaryEntityName")
    if row is not None and normalize_guid(row.mailbox_id, field=MAILBOX_ID) != ctx.mailbox_id:
        raise InvalidPayload("the read-back row is another mailbox than the context's", field=MAILBOX_ID)
    if row is None and ctx.needs_readback():
        missing = missing_field(ctx) or "InputParameters"
        raise InvalidPayload("the payload lacks the mailbox state; read the mailbox back from the org", field=missing)
    kind = ctx.claim_kind(row)
    if kind is None:
        return None
    address = effective_row(ctx, row).address
    if address is None:
        raise InvalidPayload("the mailbox address is unknown; read the mailbox back from the org", field=ADDRESS)
    return Claim(
        key=MailboxKey.parse(address, field=ADDRESS),
        org=org.name,
        mailbox_id=ctx.mailbox_id,
        kind=kind,
        origin=origin,
        source_ids=ctx.source_ids(message_id=message_id),
        observed_at=observed_at or ctx.created_on or utcnow(),
        user_id=ctx.initiating_user_id or ctx.user_id,
        **_stamps(ctx.target),
    )


def _stamps(target: Mapping[str, object]) -> dict[str, Any]:
    """Who saved and when, as an asynchronous context's Target states it (``modifiedby``, ``modifiedonbehalfby``,
    ``modifiedon``: use-webhooks.md's example); absent ones stay None."""
    by, behalf, on = (target.get(column) for column in ("modifiedby", "modifiedonbehalfby", "modifiedon"))
    return {
        "modified_by": by.id if isinstance(by, EntityRef) else None,
        "modified_on_behalf_of": behalf.id if isinstance(behalf, EntityRef) else None,
        "modified_on": on if isinstance(on, datetime) else None,
    }
