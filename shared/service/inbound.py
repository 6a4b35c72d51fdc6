"""Dataverse's messages on its Service Bus queue: decided, or settled with a reason.

Every message ends one of three ways (a ``Verdict``), whichever host received it:

* **complete**: decided (or recorded as a duplicate, or not a claim at all);
* **dead-letter at once** with a reason and the error, when it can never be decided: it is
  malformed (``malformed``), names an org OrgGuard does not know (``unknown-org``), or is not
  about a mailbox (``not-a-mailbox``). Retrying would only fail again;
* **abandon**, for a failure that may pass (the ledger, a read-back from the org, a deadline):
  Service Bus delivers it again, and dead-letters it after ``maxDeliveryCount`` deliveries.

Dataverse sets no SessionId, so this queue has no sessions (a session queue refuses such a
message); OrgGuard's own work goes on a queue of its own (``shared.service.work``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.bus.port import Received, Verdict
from shared.dataverse.payloads import servicebus_size_exceeded
from shared.domain.model import DomainError, InvalidPayload, Origin
from shared.ledger.port import LedgerError
from shared.service.intake import Intake
from shared.service.orgguard import Outcome
from shared.telemetry.lograte import rate_limited

log = rate_limited(logging.getLogger("orgguard.bus"))


def reason_for(exc: DomainError) -> str:
    """The dead-letter reason for a message that can never be decided."""
    field = exc.field or ""
    if isinstance(exc, InvalidPayload) and field == "OrganizationId":
        return "unknown-org"
    if isinstance(exc, InvalidPayload) and (field == "PrimaryEntityName" or field.endswith("LogicalName")):
        return "not-a-mailbox"
    return "malformed"


@dataclass
class DataverseMessages:
    intake: Intake

    def decide(self, received: Received) -> tuple[Verdict, Outcome | None]:
        """Decide one message; how to settle it, and the outcome when it was decided."""
        trimmed = servicebus_size_exceeded(received.properties)
        try:
            outcome = self.intake.receive_trusted(
                received.body, origin=Origin.SERVICEBUS, message_id=received.message_id, size_exceeded=trimmed
            )
        except LedgerError as exc:  # the ledger, a read-back, a deadline: it may pass
            log.warning("Dataverse message %s given back: %s", received.message_id, exc)
            return Verdict.abandon(str(exc)), None
        except DomainError as exc:
            if exc.status >= 500:  # OrgGuard's own configuration, not the message
                return Verdict.abandon(exc.detail), None
            return Verdict.dead_letter(reason_for(exc), exc.detail[:1000]), None
        return Verdict.complete(), outcome
