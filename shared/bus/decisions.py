"""Decision events out: each decision OrgGuard records, as a CloudEvent for other systems (a SIEM, a ticketing system).

Off by default (``ORGGUARD_DECISION_EVENTS``). The port takes CloudEvents 1.0 in their JSON form;
the adapters are a Service Bus topic (``shared.bus.servicebus.ServiceBusTopic``, structured mode)
and, locally, a file of one event per line (``shared.bus.decisions_file``). The schema of ``data``
is in the README ("Decision events").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

SPEC_VERSION = "1.0"
DECISION_TYPE = "com.orgguard.decision.v1"
SOURCE = "/orgguard"


@dataclass(frozen=True)
class CloudEvent:
    """One CloudEvents 1.0 event (required attributes, ``time``, ``subject``, and JSON ``data``)."""

    id: str
    type: str
    subject: str
    time: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    source: str = SOURCE

    def document(self) -> dict[str, Any]:
        """The event in the CloudEvents JSON format (structured mode)."""
        return {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": dict(self.data),
        }


class DecisionEvents(Protocol):
    """Where decision events go. ``publish`` raises on failure; the caller decides what a lost event costs."""

    def publish(self, events: Sequence[CloudEvent]) -> None: ...

    def close(self) -> None: ...
