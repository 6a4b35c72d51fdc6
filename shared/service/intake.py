"""From a delivered Dataverse payload to a decided claim: one path for every channel.

The gate, the asynchronous webhook, Service Bus and Event Grid differ only in
how the payload arrives and who vouches for it; here they become the same
``Claim`` and go to the same use case.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from shared.dataverse.payloads import Context, MailboxRow, check_size, loads_context, parse_context, to_claim
from shared.domain.model import Decision, DomainError, Effect, InvalidPayload, Org, Origin
from shared.domain.orgs import OrgRegistry
from shared.ledger.deadline import DeadlineExceeded, may_wait
from shared.ledger.port import LedgerError
from shared.service.orgguard import OrgGuard, Outcome
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.intake"))

MailboxReader = Callable[[Org, str], MailboxRow | None]
"""Reads a mailbox row back from its org (for trimmed payloads); None when it is gone."""


class MissingKey(DomainError, status=401, title="Webhook key required"):
    """A webhook call without the org's key: Dataverse sends it on every call, so this is not Dataverse."""


class WrongKey(DomainError, status=403, title="Webhook key refused"):
    """A webhook call with a key that is not the org's."""


class CannotDecide(LedgerError):
    """Something OrgGuard needs to decide is unavailable (ledger, read-back)."""


class OrgUnavailable(CannotDecide):
    """The org could not be read from; the text names the org and the kind of failure, never its details.

    A Dataverse or azure-identity error can quote a token, a credential chain or an org's own error
    text; that goes to no caller (HTTP answers are built from this text).
    """


def failure_kind(exc: BaseException) -> str:
    """What went wrong, in words safe to show anyone: an HTTP status, "no answer", or the error's type."""
    status, code = getattr(exc, "status", None), getattr(exc, "code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    if code == "token":
        return "OrgGuard could not get a token for the org"
    if code == "transport" or isinstance(exc, (TimeoutError, OSError, DeadlineExceeded)):
        return "no answer in time"
    return type(exc).__name__


@dataclass
class Intake:
    service: OrgGuard
    orgs: OrgRegistry
    read_back: MailboxReader | None = None

    def org_for_key(self, key: str | None) -> Org:
        if not key:
            raise MissingKey("send the org's webhook key in the x-orgguard-key header")
        org = self.orgs.org_for_key(key)
        if org is None:
            raise WrongKey("the webhook key belongs to no registered org")
        return org

    def receive_webhook(self, body: bytes, *, key: str | None, origin: Origin, size_exceeded: bool = False) -> Outcome:
        """A payload posted by an org's service endpoint, vouched for by its key."""
        org = self.org_for_key(key)
        check_size(len(body))
        ctx = loads_context(body, size_exceeded=size_exceeded)
        if ctx.org_id != org.id:
            raise WrongKey("the payload's OrganizationId is not the org this key belongs to")
        return self.decide(ctx, org, origin)

    def note_undecided(self, body: bytes, *, key: str | None) -> None:
        """The gate let this save through without a decision (``gate.on_error: allow``): remember it for a while,
        so the claim its asynchronous event brings says ``gate_degraded``. A body that does not parse is left alone."""
        try:
            org = self.org_for_key(key)
            ctx = loads_context(body)
        except DomainError:
            return
        if ctx.org_id == org.id:
            self.service.undecided.note(org.name, ctx.mailbox_id, ctx.created_on or self.service.clock())

    def receive_trusted(
        self, payload: object, *, origin: Origin, message_id: str | None = None, size_exceeded: bool = False
    ) -> Outcome:
        """A payload (raw bytes or parsed JSON) from a channel Azure authenticates (Service Bus, Event Grid)."""
        if isinstance(payload, (bytes, str)):
            ctx = loads_context(payload, size_exceeded=size_exceeded)
        else:
            ctx = parse_context(payload, size_exceeded=size_exceeded)
        org = self.orgs.by_id(ctx.org_id)
        if org is None:
            raise InvalidPayload(f"organization {ctx.org_id} is not registered", field="OrganizationId")
        return self.decide(ctx, org, origin, message_id=message_id)

    def decide(self, ctx: Context, org: Org, origin: Origin, *, message_id: str | None = None) -> Outcome:
        row = self._read_back(ctx, org) if ctx.needs_readback() else None
        claim = to_claim(ctx, org, origin, row=row, message_id=message_id)
        if claim is None:
            return Outcome(_not_a_claim(), None, recorded=False)
        return self.service.handle_claim(claim)

    def _read_back(self, ctx: Context, org: Org) -> MailboxRow:
        if self.read_back is None:
            raise OrgUnavailable(
                "the payload was trimmed and no Dataverse client is configured to read the mailbox back"
            )
        may_wait("read the mailbox back from its org")
        try:
            row = self.read_back(org, ctx.mailbox_id)
        except Exception as exc:
            log.warning("read-back from %s failed: %s", org.name, failure_kind(exc), extra={"rate_key": org.name})
            raise OrgUnavailable(
                f"reading the mailbox back from {org.name} failed ({failure_kind(exc)}); the trimmed payload "
                "cannot be decided without it, try again"
            ) from exc
        if row is None:
            raise InvalidPayload(f"mailbox {ctx.mailbox_id} does not exist in {org.name}", field="PrimaryEntityId")
        return row


def _not_a_claim() -> Decision:
    return Decision(Effect.ALLOW, "not-a-claim", "the change does not claim ACT synchronization")
