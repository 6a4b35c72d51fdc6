"""Compliance: a sweep's tally per org, per rule and in total, and the report with the cases waiting now."""

from __future__ import annotations

from shared.domain.compliance import STATUSES, Snapshot, SweepCompliance, finding_status, report, rows


def test_a_finding_is_exempt_settled_or_left_in_conflict():
    assert finding_status("block", "ex-1", apply=True) == "exempt"
    assert finding_status("override", None, apply=True) == "compliant"
    assert finding_status("hold", None, apply=True) == "compliant"  # the ledger's held cases count it as held
    assert finding_status("override", None, apply=False) == "conflict"  # a dry run repairs nothing
    assert finding_status("audit", None, apply=True) == "conflict"
    assert finding_status("warn", None, apply=True) == "conflict"


def dry_sweep() -> dict[str, object]:
    tally = SweepCompliance(apply=False)
    tally.add(["contoso-na", "contoso-jp", "contoso-na"], "designated-primary", "override", None)
    tally.add(["contoso-na", "contoso-eu", None], "default", "block", None)
    tally.add(["contoso-jp", "contoso-na"], "default", "audit", "ex-1")
    return tally.doc(
        {"contoso-na": 50, "contoso-jp": 30, "contoso-eu": 0},
        mailboxes=70,
        cases_by_org={"contoso-na": {"held": 2, "failed": 1, "open": 3}},
        cases={"held": 2, "failed": 1},
    )


def test_a_sweep_counts_each_org_once_per_mailbox_and_each_mailbox_once_in_total():
    doc = dry_sweep()
    assert doc["orgs"]["contoso-na"] == {"mailboxes": 50, "compliant": 47, "conflict": 2, "exempt": 1, "held": 2,
                                         "failed": 1}  # fmt: skip
    assert doc["orgs"]["contoso-jp"] == {"mailboxes": 30, "compliant": 28, "conflict": 1, "exempt": 1, "held": 0,
                                         "failed": 0}  # fmt: skip
    assert doc["orgs"]["contoso-eu"]["compliant"] == 0  # never negative
    assert doc["totals"] == {"mailboxes": 70, "compliant": 67, "conflict": 2, "exempt": 1, "held": 2, "failed": 1}
    assert doc["rules"]["default"] == {"compliant": 0, "conflict": 1, "exempt": 1}


def test_the_report_joins_the_newest_snapshot_with_the_cases_waiting_now_and_the_trend():
    older = dict(dry_sweep())
    older["totals"] = {**older["totals"], "conflict": 9, "compliant": 60}
    newest = Snapshot("s2", "2026-11-02T12:00:00+00:00", dry_sweep())
    doc = report(
        [newest, Snapshot("s1", "2026-11-02T06:00:00+00:00", older)],
        cases_by_org={"contoso-na": {"held": 5, "failed": 0}, "contoso-dev": {"held": 1, "failed": 0}},
        cases_by_rule={"default": {"held": 4, "failed": 0}, "gate-only": {"held": 2, "failed": 1}},
        cases={"held": 6, "failed": 1},
        orgs=["contoso-na", "contoso-jp", "contoso-eu"],
        exemptions={"active": 1},
    )
    assert doc["last_sweep"] == {"sweep": "s2", "at": "2026-11-02T12:00:00+00:00", "apply": False}
    na = next(r for r in doc["orgs"] if r["org"] == "contoso-na")
    assert (na["conflict"], na["held"]) == (2, 5)  # the sweep's conflicts, the cases held now
    dev = next(r for r in doc["orgs"] if r["org"] == "contoso-dev")
    assert dev["mailboxes"] is None and dev["held"] == 1  # an org the sweep did not read
    assert [r["rule"] for r in doc["rules"]] == ["default", "designated-primary", "gate-only"]
    assert next(r for r in doc["rules"] if r["rule"] == "gate-only")["failed"] == 1
    assert [p["sweep"] for p in doc["trend"]] == ["s1", "s2"]  # oldest first
    assert doc["trend"][0]["conflict"] == 9 and set(doc["trend"][0]) >= set(STATUSES)
    assert doc["totals"]["held"] == 6
    flat = rows(doc)
    assert flat[-1]["scope"] == "total" and {r["scope"] for r in flat} == {"org", "rule", "total"}


def test_a_report_before_any_sweep_still_shows_the_cases_waiting():
    doc = report([], cases_by_org={"contoso-na": {"held": 1, "failed": 0}}, cases_by_rule={}, cases={"held": 1},
                 orgs=["contoso-na"], exemptions={})  # fmt: skip
    assert doc["last_sweep"] is None and doc["trend"] == []
    assert doc["orgs"] == [{"org": "contoso-na", "mailboxes": None, "compliant": None, "conflict": None,
                            "exempt": None, "held": 1, "failed": 0}]  # fmt: skip
