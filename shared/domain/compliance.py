"""Compliance: how many mailboxes each org keeps as the policy wants, per org and per rule, sweep after sweep.

Pure. A sweep is the moment OrgGuard looks at every org, so each sweep leaves a snapshot in its job record
(``SweepCompliance.doc``), and the report (``report``) is the newest snapshot, the cases waiting now, and the
trend over the snapshots before it. The words, per org:

* ``mailboxes``: the org's active mailboxes on server-side synchronization the sweep read;
* ``conflict``: mailboxes in a conflict the sweep found (synced by another org too, the alert, ledger drift)
  and left in conflict (a dry run leaves every one; with ``apply`` those the policy only records or warns of);
* ``exempt``: conflicts an exemption covers (decided ``audit``, named in the decision);
* ``compliant``: the rest of its mailboxes, those the sweep repaired or held for an approver included;
* ``held``: cases involving the org waiting for an approver (a claim the gate stopped shows up only here);
* ``failed``: cases involving the org whose writes could not be carried out.

Per rule the same words count the conflicts each rule settled (``compliant``), left (``conflict``) or saw
exempted, and the held and failed cases it decided. A mailbox in conflict between two orgs counts for each
of them; the totals count each mailbox once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STATUSES: tuple[str, ...] = ("compliant", "conflict", "exempt", "held", "failed")
SETTLING = frozenset({"allow", "block", "override", "hold"})  # what a sweep with apply settles (or holds) itself


def finding_status(effect: str, exemption: str | None, *, apply: bool) -> str:
    """Where one finding leaves its mailbox: exempt, settled by this sweep (compliant), or still in conflict."""
    if exemption:
        return "exempt"
    if apply and effect in SETTLING:
        return "compliant"
    return "conflict"


def _zero() -> dict[str, int]:
    return {status: 0 for status in STATUSES}


@dataclass
class SweepCompliance:
    """What one sweep found, tallied as it settles each finding (``add``), written into its record (``doc``)."""

    apply: bool
    orgs: dict[str, dict[str, int]] = field(default_factory=dict)
    rules: dict[str, dict[str, int]] = field(default_factory=dict)
    findings: dict[str, int] = field(default_factory=_zero)

    def add(self, orgs: Iterable[str | None], rule: str, effect: str, exemption: str | None) -> str:
        status = finding_status(effect, exemption, apply=self.apply)
        for org in {o for o in orgs if o}:
            self.orgs.setdefault(org, _zero())[status] += 1
        self.rules.setdefault(rule, _zero())[status] += 1
        self.findings[status] += 1
        return status

    def doc(
        self,
        rows_by_org: Mapping[str, int],
        *,
        mailboxes: int,
        cases_by_org: Mapping[str, Mapping[str, int]],
        cases: Mapping[str, int],
    ) -> dict[str, Any]:
        """The snapshot: per org, per rule and in total. ``cases_by_org`` and ``cases`` are the open cases at the
        sweep's end (held and failed, per org and in all, as the ledger's overview counts them)."""
        orgs: dict[str, dict[str, int]] = {}
        for org in sorted(set(rows_by_org) | set(self.orgs)):
            found = self.orgs.get(org, _zero())
            rows = int(rows_by_org.get(org, 0))
            open_cases = cases_by_org.get(org, {})
            orgs[org] = {
                "mailboxes": rows,
                "compliant": max(0, rows - found["conflict"] - found["exempt"]),
                "conflict": found["conflict"],
                "exempt": found["exempt"],
                "held": int(open_cases.get("held", 0)),
                "failed": int(open_cases.get("failed", 0)),
            }
        totals = {
            "mailboxes": mailboxes,
            "compliant": max(0, mailboxes - self.findings["conflict"] - self.findings["exempt"]),
            "conflict": self.findings["conflict"],
            "exempt": self.findings["exempt"],
            "held": int(cases.get("held", 0)),
            "failed": int(cases.get("failed", 0)),
        }
        rules = {rule: {s: n for s, n in tally.items() if s not in ("held", "failed")}
                 for rule, tally in sorted(self.rules.items())}  # fmt: skip
        return {"apply": self.apply, "orgs": orgs, "rules": rules, "totals": totals}


@dataclass(frozen=True)
class Snapshot:
    """One sweep's compliance as its job record keeps it."""

    sweep: str
    at: str  # when it finished (ISO 8601)
    doc: Mapping[str, Any]


def report(
    snapshots: Sequence[Snapshot],
    *,
    cases_by_org: Mapping[str, Mapping[str, int]],
    cases_by_rule: Mapping[str, Mapping[str, int]],
    cases: Mapping[str, int],
    orgs: Sequence[str],
    exemptions: Mapping[str, Any],
) -> dict[str, Any]:
    """The report: the newest snapshot per org and per rule with the cases waiting now, and the trend (oldest first).

    ``snapshots`` are newest first; ``cases_*`` count the held and failed cases now.
    """
    last = snapshots[0] if snapshots else None
    swept = dict(last.doc.get("orgs", {})) if last else {}
    by_org = []
    for org in sorted(set(orgs) | set(swept) | set(cases_by_org)):
        row = {"org": org, "mailboxes": None, **dict.fromkeys(STATUSES)}
        if org in swept:
            row |= {k: swept[org].get(k) for k in ("mailboxes", "compliant", "conflict", "exempt")}
        row |= {"held": int(cases_by_org.get(org, {}).get("held", 0)),
                "failed": int(cases_by_org.get(org, {}).get("failed", 0))}  # fmt: skip
        by_org.append(row)
    swept_rules = dict(last.doc.get("rules", {})) if last else {}
    by_rule = []
    for rule in sorted(set(swept_rules) | set(cases_by_rule)):
        found = swept_rules.get(rule, {})
        by_rule.append(
            {
                "rule": rule,
                "compliant": found.get("compliant", 0),
                "conflict": found.get("conflict", 0),
                "exempt": found.get("exempt", 0),
                "held": int(cases_by_rule.get(rule, {}).get("held", 0)),
                "failed": int(cases_by_rule.get(rule, {}).get("failed", 0)),
            }
        )
    totals = {"mailboxes": None, **dict.fromkeys(STATUSES)}
    if last:
        totals |= {k: last.doc.get("totals", {}).get(k) for k in ("mailboxes", "compliant", "conflict", "exempt")}
    totals |= {"held": int(cases.get("held", 0)), "failed": int(cases.get("failed", 0))}
    trend = [
        {"sweep": s.sweep, "at": s.at, "apply": bool(s.doc.get("apply")), **_totals(s.doc)} for s in reversed(snapshots)
    ]
    return {
        "last_sweep": {"sweep": last.sweep, "at": last.at, "apply": bool(last.doc.get("apply"))} if last else None,
        "totals": totals,
        "orgs": by_org,
        "rules": by_rule,
        "trend": trend,
        "exemptions": dict(exemptions),
    }


def _totals(doc: Mapping[str, Any]) -> dict[str, int]:
    found = doc.get("totals", {})
    return {k: int(found.get(k) or 0) for k in ("mailboxes", *STATUSES)}


CSV_COLUMNS = ("scope", "name", "mailboxes", *STATUSES)


def rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report as flat rows (one per org, one per rule, one for the total): the CLI's table and CSV."""
    out: list[dict[str, Any]] = [{"scope": "org", "name": r["org"], **r} for r in doc["orgs"]]
    out += [{"scope": "rule", "name": r["rule"], "mailboxes": None, **r} for r in doc["rules"]]
    out.append({"scope": "total", "name": "all", **doc["totals"]})
    return [{c: row.get(c) for c in CSV_COLUMNS} for row in out]
