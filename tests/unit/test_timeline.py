"""A mailbox's owner over time, as the page shows it, agrees with what the ledger held after each step."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import bootstrap
from shared.config.settings import Settings
from shared.domain.model import CaseState, Decision, Effect
from shared.ledger.sqlite import SqliteLedger
from shared.service.orgguard import MailboxReport
from shared.service.timeline import owner_spans, timeline_doc
from tests.factories import AIKO, claim, registry

POLICY = """
version: 1
mode: enforce
default: block
rules:
  - id: eu-wins
    when: {claimant: contoso-eu}
    effect: override
  - id: jp-asks
    when: {claimant: contoso-jp}
    effect: hold
  - id: na-trial
    when: {claimant: contoso-na}
    effect: override
    dry_run: true
approval:
  approvers: [group:OrgGuard Approvers]
  expires_after: P3D
  on_expiry: override
"""
ORGS = ["contoso-na", "contoso-jp", "contoso-eu"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def world(path: Path) -> tuple[bootstrap.Container, Clock]:
    settings = Settings(ledger=f"sqlite:///{path / 'l.db'}", orgs="-", policy=str(path / "none"), admin_token="t")
    c = bootstrap.build(settings, ledger=SqliteLedger(path / "l.db"), orgs=registry())
    clock = Clock()
    c.service.clock = clock
    c.service.save_policy(POLICY, actor="test")
    return c, clock


steps = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.sampled_from(ORGS)),
        st.tuples(st.just("approve"), st.just("")),
        st.tuples(st.just("deny"), st.just("")),
        st.tuples(st.just("designate"), st.sampled_from(ORGS)),
        st.tuples(st.just("expire"), st.just("")),
    ),
    min_size=1,
    max_size=12,
)


def run(c: bootstrap.Container, clock: Clock, program: list[tuple[str, str]]) -> list[str]:
    """Carry out ``program``; the owners the ledger held, each time it changed."""
    seen: list[str] = []
    for n, (op, org) in enumerate(program):
        held = [k for k in c.service.mailbox(AIKO).cases if k.state is CaseState.HELD]
        if op == "claim":
            c.service.handle_claim(claim(org, op=f"op-{n}"))
        elif op == "approve" and held:
            c.service.approve(held[0].id, actor="approver@contoso.com", reason="yes")
        elif op == "deny" and held:
            c.service.deny(held[0].id, actor="approver@contoso.com", reason="no")
        elif op == "designate":
            c.service.designate_owner(AIKO, org, actor="admin@contoso.com", reason="planned")
        elif op == "expire":
            clock.now += timedelta(days=4)
            c.service.expire_held()
        owner = c.ledger.mailbox(AIKO).ownership
        if owner is not None and (not seen or seen[-1] != owner.owner):
            seen.append(owner.owner)
    return seen


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=steps)
def test_the_owner_spans_are_the_owners_the_ledger_held(tmp_path_factory, program):
    c, clock = world(tmp_path_factory.mktemp("timeline"))
    try:
        seen = run(c, clock, program)
        report = c.service.mailbox(AIKO)
        spans = owner_spans(report)
        owners = [s.owner for s in spans]
        assert owners == _collapsed(owners), "two spans in a row with one owner"
        assert owners == seen
        for before, after in itertools.pairwise(spans):
            assert before.until == after.since and before.until is not None
        if spans:
            # A re-designation of the owner restarts the ledger's ``since``; the span began at the change.
            assert spans[-1].until is None and spans[-1].since <= report.ownership.since
        doc = timeline_doc(report)
        assert [e["at"] for e in doc["events"]] == sorted(e["at"] for e in doc["events"])
    finally:
        c.close()


def _collapsed(owners: list[str]) -> list[str]:
    return [o for i, o in enumerate(owners) if i == 0 or owners[i - 1] != o]


def test_a_dry_run_override_and_a_denial_change_no_owner(tmp_path):
    c, clock = world(tmp_path)
    run(c, clock, [("claim", "contoso-jp"), ("claim", "contoso-na"), ("claim", "contoso-jp"), ("deny", "")])
    spans = owner_spans(c.service.mailbox(AIKO))
    assert [(s.owner, s.how) for s in spans] == [("contoso-jp", "first-claim")]
    c.close()


def test_an_expiry_that_overrides_hands_the_mailbox_over_when_it_expired(tmp_path):
    c, clock = world(tmp_path)
    run(c, clock, [("claim", "contoso-na"), ("claim", "contoso-jp"), ("expire", "")])
    report = c.service.mailbox(AIKO)
    spans = owner_spans(report)
    assert [(s.owner, s.how) for s in spans] == [("contoso-na", "first-claim"), ("contoso-jp", "rule:expiry")]
    (case,) = [k for k in report.cases if k.state is CaseState.EXPIRED]
    assert spans[1].since == case.history[-1].at and spans[1].case == case.id
    c.close()


def test_when_the_first_claim_is_no_longer_shown_the_first_span_starts_unknown(tmp_path):
    c, clock = world(tmp_path)
    run(c, clock, [("claim", "contoso-na"), ("claim", "contoso-eu")])
    report = c.service.mailbox(AIKO)
    older_claims_gone = MailboxReport(report.key, report.ownership, report.claims[:1], report.cases)
    spans = owner_spans(older_claims_gone)
    assert [(s.owner, s.since is None) for s in spans] == [("contoso-na", True), ("contoso-eu", False)]
    c.close()


def test_the_current_owner_closes_the_story_even_when_the_records_miss_the_change(tmp_path):
    c, clock = world(tmp_path)
    run(c, clock, [("claim", "contoso-na"), ("designate", "contoso-eu")])
    report = c.service.mailbox(AIKO)
    no_cases = MailboxReport(report.key, report.ownership, report.claims, ())
    spans = owner_spans(no_cases)
    assert [s.owner for s in spans] == ["contoso-na", "contoso-eu"]
    assert spans[0].until == report.ownership.since and spans[1].until is None
    c.close()


def test_a_mailbox_nobody_claimed_has_no_story(tmp_path):
    c, _ = world(tmp_path)
    doc = timeline_doc(c.service.mailbox(AIKO))
    assert doc["owners"] == [] and doc["events"] == [] and doc["owner"] is None
    c.close()


def test_an_override_recorded_as_dry_run_is_no_change():
    from shared.service.timeline import override_change

    c_doc = _case(Decision(Effect.OVERRIDE, "eu-wins", "x", dry_run=True))
    assert override_change(c_doc) is None
    assert override_change(replace(c_doc, decision=Decision(Effect.OVERRIDE, "eu-wins", "x"))) is not None


def _case(decision: Decision):
    from shared.domain.model import Case, ClaimKind, Origin, Ownership

    now = datetime(2026, 12, 1, tzinfo=UTC)
    owner = Ownership(AIKO, "contoso-na", now, "first-claim", 1, None)
    return Case.opened(
        AIKO,
        owner,
        "contoso-eu",
        "m",
        ClaimKind.TEST_ENABLE,
        Origin.GATE,
        decision,
        state=CaseState.DECIDED,
        actor="policy",
        at=now,
    )
