"""A Dataverse ``RemoteExecutionContext`` of a mailbox message, parsed and checked.

Dataverse posts it as JSON to a webhook, in a Service Bus message body, or as an
Event Grid event's ``data`` (``envelopes`` unwraps those). Every place that names
the mailbox must agree, images are found by their registered names, and what the
context states about the row is read by ``rows``. Bad input is refused with
:class:`~shared.domain.model.InvalidPayload` naming the field, so an entry point
can answer 400 without having changed anything (invariant 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from shared.dataverse.payloads import dotnet, rows
from shared.dataverse.payloads.body import loads
from shared.dataverse.payloads.rows import MailboxRow
from shared.dataverse.schema import ACT_METHOD, ADDRESS, MAILBOX, MAILBOX_ID, ActMethod
from shared.domain.model import ClaimKind, InvalidPayload

MAX_PARENT_DEPTH = 8  # ParentContext levels accepted; real plugin chains stay far below
_PRE_NAMES = ("pre", "preimage")
_POST_NAMES = ("post", "postimage")


@dataclass(frozen=True)
class Context:
    """A parsed ``RemoteExecutionContext`` of a mailbox message."""

    org_id: str
    org_name: str | None
    message: str
    entity: str
    mailbox_id: str
    stage: int
    mode: int
    depth: int
    user_id: str | None
    initiating_user_id: str | None
    correlation_id: str | None
    operation_id: str | None
    request_id: str | None
    created_on: datetime | None
    target: Mapping[str, object]
    pre: Mapping[str, object] | None
    post: Mapping[str, object] | None
    trimmed: bool

    def row(self) -> MailboxRow:
        """The mailbox as the payload shows it: pre-image < target < post-image (worked out once; a decision asks
        several times).

        Cached by hand, not with ``functools.cached_property``: on Python 3.11 (the Functions runtime) that takes
        one lock shared by every instance for each first computation, which serializes the gate's threads here
        and measured slower per context (6.1 against 6.7 us for a new context and three reads).
        """
        stated: MailboxRow | None = self.__dict__.get("_row")
        if stated is None:
            fields: rows.RowFields = {}
            for attrs in (self.pre, self.target, self.post):
                if attrs is not None:
                    fields.update(rows.row_fields(attrs))
            stated = MailboxRow(mailbox_id=self.mailbox_id, **fields)
            object.__setattr__(self, "_row", stated)  # frozen: derived from the fields, never changed
        return stated

    def needs_readback(self) -> bool:
        """Whether the mailbox must be read from the org before deciding.

        True for a trimmed context, and when the address or the ACT method is
        missing from the payload of a change that could be a claim. A change that
        cannot be a claim whatever the row holds (ACT set to None, an unrelated
        column) needs no read-back: the gate answers without a round trip.
        """
        if self.trimmed:
            return True
        if self.message.lower() not in rows.CLAIM_MESSAGES or rows.target_kind(self.target) is None:
            return False
        return missing_field(self) is not None

    def claim_kind(self, row: MailboxRow | None = None) -> ClaimKind | None:
        """The kind of claim this change makes, or ``None`` when it makes none.

        ``row`` is the mailbox read back from the org; the target is laid over it
        because a pre-operation read-back does not hold the change yet.
        """
        if self.message.lower() not in rows.CLAIM_MESSAGES:
            return None
        effective = effective_row(self, row)
        if effective.active is False or effective.act_method != ActMethod.SERVER_SIDE_SYNC:
            return None
        kind = rows.target_kind(self.target)
        untold = not any(column in self.target for column in rows.CLAIM_COLUMNS)
        if kind is None and self.trimmed and row is not None and untold:
            # The step's filtering attributes are the claim columns, so a trimmed
            # message still means one of them changed; Test & Enable is the one
            # that moves Exchange's OrgID.
            return ClaimKind.TEST_ENABLE
        return kind

    def source_ids(self, *, message_id: str | None = None) -> dict[str, str]:
        """The ids an event is known by, for the idempotency key (invariant 2)."""
        candidates = {
            "org": self.org_id,
            "operation": self.operation_id,
            "request": self.request_id,
            "correlation": self.correlation_id,
            "message": message_id.strip() if message_id else None,
        }
        return {name: value for name, value in candidates.items() if value}


def loads_context(body: bytes | str, *, size_exceeded: bool = False) -> Context:
    """Decode a JSON body and parse the context in it."""
    return parse_context(loads(body, field="body"), size_exceeded=size_exceeded)


def parse_context(doc: object, *, size_exceeded: bool = False) -> Context:
    """Parse a decoded ``RemoteExecutionContext``.

    ``size_exceeded`` comes from the transport (header
    ``x-ms-dynamics-msg-size-exceeded``, property ``MessageMaxSizeExceeded``); a
    context without Target and images is read as trimmed either way.
    """
    if not isinstance(doc, dotnet.OBJECT):
        raise InvalidPayload("the context must be a JSON object", field="body")
    org_id = dotnet.guid(doc.get("OrganizationId"), "OrganizationId", required=True) or ""
    entity = _required_text(doc, "PrimaryEntityName").lower()
    if entity != MAILBOX:
        raise InvalidPayload("OrgGuard only reads mailbox messages", field="PrimaryEntityName")
    message = _required_text(doc, "MessageName")
    _check_parents(doc.get("ParentContext"))
    parameters = dotnet.pairs(doc.get("InputParameters"), "InputParameters")
    target, target_id = _target(parameters.get("Target"))
    pre, pre_id = _image(doc.get("PreEntityImages"), "PreEntityImages", _PRE_NAMES)
    post, post_id = _image(doc.get("PostEntityImages"), "PostEntityImages", _POST_NAMES)
    mailbox_id = _mailbox_id(
        [
            ("PrimaryEntityId", _optional_guid(doc, "PrimaryEntityId")),
            *target_id,
            *pre_id,
            *post_id,
        ]
    )
    return Context(
        org_id=org_id,
        org_name=_optional_text(doc, "OrganizationName"),
        message=message,
        entity=entity,
        mailbox_id=mailbox_id,
        stage=_number(doc, "Stage", 0),
        mode=_number(doc, "Mode", 0),
        depth=_number(doc, "Depth", 1),
        user_id=_optional_guid(doc, "UserId"),
        initiating_user_id=_optional_guid(doc, "InitiatingUserId"),
        correlation_id=_optional_guid(doc, "CorrelationId"),
        operation_id=_optional_guid(doc, "OperationId"),
        request_id=_optional_guid(doc, "RequestId"),
        created_on=_created_on(doc.get("OperationCreatedOn")),
        target=MappingProxyType(target or {}),
        pre=None if pre is None else MappingProxyType(pre),
        post=None if post is None else MappingProxyType(post),
        trimmed=size_exceeded or (target is None and pre is None and post is None),
    )


def _required_text(doc: Mapping[str, object], name: str) -> str:
    value = doc.get(name)
    if value is None:
        raise InvalidPayload(f"{name} is missing", field=name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidPayload(f"{name} must be a non-empty string", field=name)
    return value.strip()


def _optional_text(doc: Mapping[str, object], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidPayload(f"{name} must be a string", field=name)
    return value or None


def _number(doc: Mapping[str, object], name: str, default: int) -> int:
    """Stage, Mode and Depth; Dataverse always sends them, other producers may not."""
    value = doc.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidPayload(f"{name} must be an integer", field=name)
    return value


def _optional_guid(doc: Mapping[str, object], name: str) -> str | None:
    return dotnet.guid(doc.get(name), name)


def _created_on(value: object) -> datetime | None:
    field = "OperationCreatedOn"
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"{field} must be a date string", field=field)
    if dotnet.is_dotnet_date(value):
        return dotnet.parse_dotnet_date(value, field=field)
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidPayload(f"{field} is not a date", field=field) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _check_parents(parent: object) -> None:
    """Accept and ignore ``ParentContext`` chains, but only so deep."""
    path = "ParentContext"
    level = 0
    while parent is not None:
        if not isinstance(parent, dotnet.OBJECT):
            raise InvalidPayload(f"{path} must be an object or null", field=path)
        level += 1
        if level > MAX_PARENT_DEPTH:
            raise InvalidPayload(
                f"ParentContext is nested more than {MAX_PARENT_DEPTH} levels deep", field="ParentContext"
            )
        parent = parent.get("ParentContext")
        path += ".ParentContext"


def _mailbox_id(candidates: list[tuple[str, str | None]]) -> str:
    """The one mailbox the context is about; every place that names it must agree."""
    known = [(field, guid) for field, guid in candidates if guid is not None]
    if not known:
        raise InvalidPayload("PrimaryEntityId is missing (and Target has no id)", field="PrimaryEntityId")
    _, mailbox_id = known[0]
    for field, guid in known[1:]:
        if guid != mailbox_id:
            raise InvalidPayload(f"{field} names another record than {known[0][0]}", field=field)
    return mailbox_id


def _target(raw: object) -> tuple[dict[str, object] | None, list[tuple[str, str | None]]]:
    """Target's changed columns and the ids it names (an EntityReference for Delete and the like)."""
    field = "InputParameters[Target]"
    if raw is None:
        return None, []
    if not isinstance(raw, dotnet.OBJECT):
        raise InvalidPayload(f"{field} must be an entity", field=field)
    kind = dotnet.kind(raw, field)
    if kind == "EntityReference":
        ref = dotnet.reference(raw, field)
        _check_logical_name(ref.logical_name, field)
        return {}, [(f"{field}.Id", ref.id)]
    if kind != "Entity":
        raise InvalidPayload(f"{field} must be an entity", field=field)
    return _entity(raw, field)


def _image(
    raw: object, field: str, preferred: tuple[str, ...]
) -> tuple[dict[str, object] | None, list[tuple[str, str | None]]]:
    """The image registered under a preferred name, else the first one.

    Every image is checked, so a bad one is refused wherever it stands.
    """
    images: list[tuple[str, tuple[dict[str, object], list[tuple[str, str | None]]]]] = []
    for name, value in dotnet.pairs(raw, field).items():
        if value is None:
            continue
        path = f"{field}[{name}]"
        if not isinstance(value, dotnet.OBJECT) or dotnet.kind(value, path) != "Entity":
            raise InvalidPayload(f"{path} must be an entity", field=path)
        images.append((name, _entity(value, path)))
    for name, image in images:
        if name.lower() in preferred:
            return image
    return images[0][1] if images else (None, [])


def _entity(raw: Mapping[str, object], field: str) -> tuple[dict[str, object], list[tuple[str, str | None]]]:
    logical_name = raw.get("LogicalName")
    if logical_name is not None and not isinstance(logical_name, str):
        raise InvalidPayload(f"{field}.LogicalName must be a string", field=f"{field}.LogicalName")
    _check_logical_name(logical_name, field)
    attributes = dotnet.attributes(raw, field, 0, rows.check_column, rows.CHECKED_COLUMNS)
    ids: list[tuple[str, str | None]] = [(f"{field}.Id", dotnet.guid(raw.get("Id"), f"{field}.Id"))]
    mailbox_id = attributes.get(MAILBOX_ID)
    if isinstance(mailbox_id, str):
        ids.append((f"{field}.Attributes[{MAILBOX_ID}]", mailbox_id))
    return attributes, ids


def _check_logical_name(logical_name: str | None, field: str) -> None:
    if logical_name is not None and logical_name.lower() != MAILBOX:
        raise InvalidPayload(f"{field} is not a mailbox", field=f"{field}.LogicalName")


def decode_value(value: object) -> object:
    """Plain Python for a typed Dataverse value.

    ``OptionSetValue`` -> int; ``EntityReference`` -> :class:`EntityRef`;
    ``Money`` -> Decimal; ``/Date(ms)/`` -> aware UTC datetime; ``Entity`` -> a
    dict of its decoded attributes; lists element by element; anything else
    as is. A typed value of the wrong shape raises InvalidPayload.
    """
    return dotnet.decode(value, "value", 0, rows.check_column, rows.CHECKED_COLUMNS)


def missing_field(ctx: Context) -> str | None:
    """The field whose absence makes a read-back necessary, if any."""
    if ctx.trimmed:
        return "InputParameters"
    known = ctx.row()
    if known.address is None:
        return ADDRESS
    if known.act_method is None:
        return ACT_METHOD
    return None


def effective_row(ctx: Context, row: MailboxRow | None) -> MailboxRow:
    """The mailbox a claim is judged on: pre < post < read-back < target."""
    if row is None:
        return ctx.row()
    fields: rows.RowFields = {}
    for attrs in (ctx.pre, ctx.post):
        if attrs is not None:
            fields.update(rows.row_fields(attrs))
    fields.update(rows.known_fields(row))
    fields.update(rows.row_fields(ctx.target))
    return MailboxRow(mailbox_id=ctx.mailbox_id, **fields)
