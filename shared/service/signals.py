"""Log lines Azure Monitor alerts read (infra/app/alerts.bicep).

The Functions host sends the app's log records to Application Insights as
`traces` rows whose `message` is the formatted text; the extra fields of a
record do not travel with it. An alert can therefore only rely on the text, so
a line an alert reads is written in exactly one place, with its format here,
and infra/README.md ("Telemetry the alerts read") lists it.
tests/infra/test_alerts.py renders these formats and runs each alert's filter
over them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from shared.domain.model import CaseQuery, CaseState
from shared.service.orgguard import OrgGuard

log = logging.getLogger("orgguard.signals")

#: alert "held cases": `parse message with "held cases: " held:long ", oldest " oldest_hours:real " h"`
HELD_CASES = "held cases: %d, oldest %.1f h"


@dataclass(frozen=True)
class HeldCases:
    count: int
    oldest_hours: float


def held_cases(service: OrgGuard, now: datetime) -> HeldCases:
    """How many cases wait for an approver, and how long the oldest has waited."""
    count, oldest = 0, now
    cursor = None
    while True:
        page = service.cases(CaseQuery(state=CaseState.HELD, limit=200, cursor=cursor))
        for case in page.items:
            count += 1
            oldest = min(oldest, case.created_at)
        if not page.next:
            return HeldCases(count, max(0.0, (now - oldest).total_seconds() / 3600))
        cursor = page.next


def report_held(service: OrgGuard) -> HeldCases:
    """Write the held-cases line when any case waits (nothing to alert on otherwise)."""
    held = held_cases(service, service.clock())
    if held.count:
        log.info(HELD_CASES, held.count, held.oldest_hours)
    return held
