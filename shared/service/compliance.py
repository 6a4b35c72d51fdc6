"""The compliance report: each sweep's snapshot, the cases waiting now, the trend, and the metrics for the telemetry.

Every sweep (the timer's, the CLI's, the API's) leaves its snapshot in its job record (``take_snapshot``) and sets
the ``orgguard.compliance`` gauge per org and status, so Azure Monitor charts and alerts on it without OrgGuard's
page. ``compliance_report`` answers ``GET /api/reports/compliance`` and ``orgguard report``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared import telemetry
from shared.domain import compliance
from shared.domain.jobs import JobKind, JobState
from shared.domain.model import CaseQuery, CaseState, DomainError
from shared.ledger.port import JobRecords, job_ledger
from shared.service.exemptions import Exemptions, expiring_within
from shared.service.orgguard import OrgGuard

MAX_SWEEPS = 100
EXPIRING_DAYS = 14  # the report warns of exemptions ending within this many days
CASES_READ = 10_000  # held and failed cases read per report (each state); more are counted, not split by rule


def take_snapshot(
    service: OrgGuard, tally: compliance.SweepCompliance, rows_by_org: Mapping[str, int], *, mailboxes: int
) -> dict[str, Any]:
    """A sweep's compliance, with the open cases at its end, and the gauges set from it."""
    overview = service.overview()
    doc = tally.doc(rows_by_org, mailboxes=mailboxes, cases_by_org=overview.by_org, cases=overview.counts)
    for org, row in doc["orgs"].items():
        for status in compliance.STATUSES:
            telemetry.gauge(telemetry.COMPLIANCE, row[status], org=org, status=status)
    return doc


def cases_by_rule(service: OrgGuard, limit: int = CASES_READ) -> dict[str, dict[str, int]]:
    """Held and failed cases now, by the rule that decided them."""
    found: dict[str, dict[str, int]] = {}
    for state in (CaseState.HELD, CaseState.FAILED):
        cursor, seen = None, 0
        while seen < limit:
            page = service.ledger.cases(CaseQuery(state=state, limit=500, cursor=cursor))
            for case in page.items:
                tally = found.setdefault(case.decision.rule, {"held": 0, "failed": 0})
                tally[state.value] += 1
            seen += len(page.items)
            if not page.next:
                break
            cursor = page.next
    return found


def compliance_report(service: OrgGuard, *, sweeps: int = 10, jobs: JobRecords | None = None) -> dict[str, Any]:
    """Per org and per rule, the newest sweep's snapshot with the cases waiting now, and the last ``sweeps``."""
    if isinstance(sweeps, bool) or not 1 <= sweeps <= MAX_SWEEPS:
        raise DomainError(f"sweeps must be a whole number from 1 to {MAX_SWEEPS}", field="sweeps")
    records = jobs or job_ledger(service.ledger)
    snapshots = [
        compliance.Snapshot(job.id, job.updated_at.isoformat(), job.result["compliance"])
        for job in records.jobs(JobKind.SWEEP, limit=MAX_SWEEPS * 3)
        if job.state is JobState.DONE and isinstance(job.result.get("compliance"), dict)
    ][:sweeps]
    overview = service.overview()
    desk = Exemptions(service)
    book = desk.book()
    today = desk.today()
    counts = desk.measure(book)
    soon = expiring_within(book, today, EXPIRING_DAYS)
    unreported = [e for e in book.items if e.state(today).value == "expired" and e.expired_at is None]
    exemptions = {
        "version": book.version,
        **counts,
        "expiring_soon": [{"id": e.id, "what": e.what, "expires": e.expires.isoformat()} for e in soon],
        "expired_unreported": len(unreported),
    }
    return compliance.report(
        snapshots,
        cases_by_org=overview.by_org,
        cases_by_rule=cases_by_rule(service),
        cases=overview.counts,
        orgs=service.orgs.names,
        exemptions=exemptions,
    )
