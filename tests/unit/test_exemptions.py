"""Exemptions: what an Admin may ask for, what each covers, and what a covered claim comes to (audit, named)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain import model
from shared.domain.exemptions import (
    Book,
    DuplicateExemption,
    Exemption,
    Scope,
    State,
    covering,
    plan_add,
    plan_expired,
    plan_remove,
    resolve,
)
from shared.domain.policy import UserUnknown
from shared.service.exemptions import Exemptions
from tests.factories import AIKO, BLOCKING_POLICY, EXEMPTIONS_NOW, HOLDING_POLICY, claim, container, exemption

NOW = EXEMPTIONS_NOW


# --- what an Admin may ask for ------------------------------------------------------------------------

REFUSED = [
    # scope, value, other fields, field, fragment
    (Scope.MAILBOX, "not-an-address", {}, "mailbox", "exactly one '@'"),
    (Scope.MAILBOX, "aiko\u200b@contoso.com", {}, "mailbox", "invisible"),
    (Scope.MAILBOX, 42, {}, "mailbox", "required"),
    (Scope.DOMAIN, "aiko@contoso.com", {}, "domain", "not a domain"),
    (Scope.DOMAIN, "*.contoso.com", {}, "domain", "not a domain"),
    (Scope.DOMAIN, "localhost", {}, "domain", "not a domain"),
    (Scope.DOMAIN, "bad..domain.com", {}, "domain", "not a valid domain"),
    (Scope.USER, "Aiko Tanaka", {}, "user", "'@'"),
    (Scope.ORGS, ["contoso-na"], {}, "orgs", "exactly two"),
    (Scope.ORGS, "contoso-na,contoso-jp", {}, "orgs", "exactly two"),
    (Scope.ORGS, ["contoso-na", "contoso-xx"], {}, "orgs", "not a registered org"),
    (Scope.ORGS, ["contoso-na", "contoso-na"], {}, "orgs", "two different"),
    (Scope.MAILBOX, "aiko@contoso.com", {"reason": "  "}, "reason", "required"),
    (Scope.MAILBOX, "aiko@contoso.com", {"reason": "x" * 1001}, "reason", "longer than 1000"),
    (Scope.MAILBOX, "aiko@contoso.com", {"reason": "bad\x07"}, "reason", "control"),
    (Scope.MAILBOX, "aiko@contoso.com", {"ticket": ""}, "ticket", "required"),
    (Scope.MAILBOX, "aiko@contoso.com", {"ticket": "CHG\n1"}, "ticket", "control"),
    (Scope.MAILBOX, "aiko@contoso.com", {"ticket": "T" * 101}, "ticket", "longer than 100"),
    (Scope.MAILBOX, "aiko@contoso.com", {"expires": "2026-11-01"}, "expires", "in the past"),
    (Scope.MAILBOX, "aiko@contoso.com", {"expires": "2027-11-04"}, "expires", "more than 366 days"),
    (Scope.MAILBOX, "aiko@contoso.com", {"expires": "2026-02-30"}, "expires", "not a date"),
    (Scope.MAILBOX, "aiko@contoso.com", {"expires": "2026-12-01T00:00:00Z"}, "expires", "like 2026-12-31"),
    (Scope.MAILBOX, "aiko@contoso.com", {"expires": datetime(2026, 12, 1, tzinfo=UTC)}, "expires", "time of day"),
    (Scope.MAILBOX, "aiko@contoso.com", {"expires": None}, "expires", "like 2026-12-31"),
]


@pytest.mark.parametrize(("scope", "value", "other", "field", "fragment"), REFUSED)
def test_a_bad_exemption_is_refused_naming_its_field(scope, value, other, field, fragment):
    with pytest.raises(model.DomainError) as refused:
        exemption(scope, value, **other)
    assert refused.value.field == field and fragment in refused.value.detail


def test_subjects_are_normalized_so_the_same_thing_is_the_same_exemption():
    assert exemption(Scope.MAILBOX, "  Aiko.Tanaka@Contoso.COM ").subject == ("aiko.tanaka@contoso.com",)
    assert exemption(Scope.DOMAIN, "Bücher.DE.").subject == ("xn--bcher-kva.de",)
    assert exemption(Scope.USER, "9A8B7C6D-5E4F-4A3B-2C1D-0E9F8A7B6C5D").subject == (
        "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
    )
    assert exemption(Scope.USER, "Aiko.Tanaka@Contoso.com").subject == ("aiko.tanaka@contoso.com",)
    assert exemption(Scope.ORGS, ["contoso-na", "contoso-eu"]).subject == ("contoso-eu", "contoso-na")
    assert exemption(Scope.MAILBOX, "aiko@contoso.com", expires="2026-11-02").expires == date(2026, 11, 2)  # today


# --- what each one covers -------------------------------------------------------------------------------


def covers(e: Exemption, *, key: str = "aiko.tanaka@contoso.com", claimant: str = "contoso-jp",
           owner: str | None = "contoso-na", user: Mapping[str, object] | None = None,
           today: date = date(2026, 11, 10)) -> bool:  # fmt: skip
    found = covering([e], key=model.MailboxKey.parse(key), claimant=claimant, owner=owner, user=user or {}, today=today)
    return found is e


def test_each_scope_covers_what_it_names_and_nothing_else():
    mailbox = exemption(Scope.MAILBOX, "aiko.tanaka@contoso.com")
    assert covers(mailbox) and not covers(mailbox, key="other@contoso.com")
    domain = exemption(Scope.DOMAIN, "contoso.com")
    assert covers(domain) and not covers(domain, key="aiko@contoso.co.jp") and not covers(domain, key="a@x.contoso.com")
    pair = exemption(Scope.ORGS, ["contoso-na", "contoso-jp"])
    assert covers(pair) and covers(pair, claimant="contoso-na", owner="contoso-jp")  # either way round
    assert not covers(pair, claimant="contoso-eu") and not covers(pair, owner=None)
    upn = exemption(Scope.USER, "aiko@contoso.onmicrosoft.com")
    assert covers(upn, user={"userPrincipalName": "Aiko@Contoso.onmicrosoft.com", "id": "x"})
    by_id = exemption(Scope.USER, "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d")
    assert covers(by_id, user={"id": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"})
    assert not covers(upn, user={}) and not covers(by_id, user={"id": ""})  # the user not known: no match


def test_an_exemption_applies_through_its_last_day_in_utc_and_stops_by_itself():
    e = exemption(Scope.MAILBOX, "aiko.tanaka@contoso.com", expires="2026-11-30")
    assert covers(e, today=date(2026, 11, 30)) and not covers(e, today=date(2026, 12, 1))
    assert e.state(date(2026, 12, 1)) is State.EXPIRED
    tokyo = timezone(timedelta(hours=9))  # 08:00 on 1 December in Tokyo is still 30 November in UTC
    e2 = exemption(Scope.DOMAIN, "contoso.com", expires="2026-11-30", now=datetime(2026, 11, 2, tzinfo=tokyo))
    assert e2.expires == date(2026, 11, 30)
    assert replace(e, removed_at=NOW).state(date(2026, 11, 5)) is State.REMOVED
    assert not covers(replace(e, removed_at=NOW))


def test_the_oldest_of_several_covering_exemptions_is_named():
    older = exemption(Scope.DOMAIN, "contoso.com", now=NOW)
    newer = exemption(Scope.MAILBOX, "aiko.tanaka@contoso.com", now=NOW + timedelta(hours=1))
    key = model.MailboxKey.parse("aiko.tanaka@contoso.com")
    found = covering([newer, older], key=key, claimant="contoso-jp", owner="contoso-na", user={},
                     today=date(2026, 11, 3))  # fmt: skip
    assert found is older


@given(days=st.integers(min_value=0, max_value=366), offset=st.integers(min_value=-3, max_value=3))
def test_an_exemption_covers_exactly_the_days_up_to_its_end(days: int, offset: int):
    e = exemption(Scope.MAILBOX, "aiko.tanaka@contoso.com", expires=(NOW.date() + timedelta(days=days)).isoformat())
    day = e.expires + timedelta(days=offset)
    assert covers(e, today=day) == (offset <= 0)


# --- changes to the set --------------------------------------------------------------------------------


def test_the_same_thing_cannot_be_exempt_twice_but_may_be_again_once_the_first_ended():
    first = exemption(Scope.MAILBOX, "aiko.tanaka@contoso.com", expires="2026-11-05")
    book = Book(1, (replace(first, added_in=1),))
    with pytest.raises(DuplicateExemption) as dup:
        plan_add(book, exemption(Scope.MAILBOX, "AIKO.Tanaka@contoso.com", ticket="CHG-2"))
    assert dup.value.existing == first.id and dup.value.status == 409
    later = exemption(Scope.MAILBOX, "aiko.tanaka@contoso.com", now=datetime(2026, 11, 6, tzinfo=UTC))
    assert plan_add(book, later).changed[0].added_in == 2  # the first one has expired
    removed = replace(first, removed_at=NOW, removed_by="x")
    assert not plan_add(Book(2, (removed,)), exemption(Scope.MAILBOX, "aiko.tanaka@contoso.com")).empty


def test_removing_twice_or_removing_nothing_is_refused():
    e = replace(exemption(Scope.DOMAIN, "contoso.com"), added_in=1)
    plan = plan_remove(Book(1, (e,)), e.id, actor="a", reason="done", now=NOW)
    gone = plan.changed[0]
    with pytest.raises(model.InvalidTransition) as again:
        plan_remove(Book(2, (gone,)), e.id, actor="b", reason=None, now=NOW)
    assert again.value.state == "removed"
    with pytest.raises(model.NotFound):
        plan_remove(Book(2, (gone,)), "nope", actor="b", reason=None, now=NOW)
    with pytest.raises(model.DomainError, match="reason"):
        plan_remove(Book(1, (e,)), e.id, actor="a", reason="\x00", now=NOW)


def test_only_expired_unreported_exemptions_are_reported():
    ended = exemption(Scope.DOMAIN, "contoso.com", expires="2026-11-03")
    running = exemption(Scope.DOMAIN, "contoso.eu", expires="2026-11-30")
    reported = replace(exemption(Scope.DOMAIN, "contoso.de", expires="2026-11-03"), expired_at=NOW)
    gone = replace(exemption(Scope.DOMAIN, "contoso.fr", expires="2026-11-03"), removed_at=NOW)
    plan = plan_expired(Book(4, (ended, running, reported, gone)), datetime(2026, 11, 4, tzinfo=UTC))
    assert [e.id for e in plan.changed] == [ended.id] and plan.audit[0].kind == "exemption.expired"


def test_an_exemption_is_found_by_a_unique_prefix():
    a, b = exemption(Scope.DOMAIN, "contoso.com"), exemption(Scope.DOMAIN, "contoso.eu")
    a, b = replace(a, id="aaaa1111-0000"), replace(b, id="aaaa2222-0000")
    book = Book(2, (a, b))
    assert resolve(book, "aaaa1") is a and resolve(book, b.id) is b
    with pytest.raises(model.DomainError, match="give more"):
        resolve(book, "aaaa")
    with pytest.raises(model.NotFound):
        resolve(book, "bbbb")


# --- a covered claim, through the service ----------------------------------------------------------------


def test_a_covered_claim_is_only_recorded_and_its_decision_names_the_exemption(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    c.service.clock = lambda: NOW
    desk = Exemptions(c.service)
    added = desk.add("mailbox", "Aiko.Tanaka@contoso.com", reason="Tokyo move", ticket="CHG-7", expires="2026-11-20",
                     actor="admin@contoso.com")  # fmt: skip
    c.service.handle_claim(claim("contoso-na", op="1"))
    outcome = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert outcome.effect is model.Effect.AUDIT and not outcome.decision.stops_claim
    assert outcome.decision.exemption == added.id and outcome.decision.rule == "default"
    assert f"exemption {added.id[:8]} (CHG-7, until 2026-11-20: Tokyo move)" in outcome.decision.explanation
    assert "would block it" in outcome.decision.explanation
    case = c.service.case(outcome.case_id)
    assert case.actions == () and case.state is model.CaseState.DECIDED
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-na"
    decided = [e.event for e in c.ledger.audit_entries() if e.event.kind == "claim.decided"][-1]
    assert decided.data["exemption"] == added.id


def test_an_expired_exemption_stops_applying_and_is_reported_once(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    clock = [NOW]
    c.service.clock = lambda: clock[0]
    desk = Exemptions(c.service)
    added = desk.add("orgs", ["contoso-jp", "contoso-na"], reason="pilot", ticket="T-1", expires="2026-11-03",
                     actor="admin")  # fmt: skip
    c.service.handle_claim(claim("contoso-na", op="1"))
    assert c.service.handle_claim(claim("contoso-jp", op="2")).effect is model.Effect.AUDIT
    assert desk.report_expired() == []
    clock[0] = datetime(2026, 11, 4, 0, 0, 1, tzinfo=UTC)  # nothing ran in between
    assert c.service.handle_claim(claim("contoso-jp", op="3")).effect is model.Effect.BLOCK
    reported = desk.report_expired()
    assert [e.id for e in reported] == [added.id] and desk.report_expired() == []
    kinds = [e.event.kind for e in c.ledger.audit_entries() if e.event.kind.startswith("exemption")]
    assert kinds == ["exemption.added", "exemption.expired"]
    assert desk.book().get(added.id).state(clock[0].date()) is State.EXPIRED


def test_a_removed_exemption_no_longer_applies(tmp_path):
    c = container(tmp_path, HOLDING_POLICY, in_memory=True)
    c.service.clock = lambda: NOW
    desk = Exemptions(c.service)
    added = desk.add("domain", "contoso.com", reason="r", ticket="t", expires="2026-11-30", actor="a")
    removed = desk.remove(added.id[:8], actor="b", reason="not needed")
    assert removed.removed_by == "b" and removed.removed_reason == "not needed"
    c.service.handle_claim(claim("contoso-na", op="1"))
    assert c.service.handle_claim(claim("contoso-jp", op="2")).effect is model.Effect.HOLD
    with pytest.raises(model.InvalidTransition):
        desk.remove(added.id, actor="c")
    with pytest.raises(model.DomainError, match="one of mailbox, domain, user, orgs"):
        desk.add("tenant", "x", reason="r", ticket="t", expires="2026-11-30", actor="a")


class Directory:
    """The user behind each mailbox as Graph would name it, or unknown."""

    configured = True

    def __init__(self, users: Mapping[str, Mapping[str, object]]) -> None:
        self.users = users
        self.asked: list[str] = []

    def attributes(self, key: model.MailboxKey, *, groups: bool = True) -> Mapping[str, object]:
        self.asked.append(key.address)
        if key.address not in self.users:
            raise UserUnknown("Microsoft Graph has no user with this address", outage=False)
        return self.users[key.address]

    def prefetch(self, keys: Sequence[model.MailboxKey], *, groups: bool = True) -> None:
        return None


def test_a_user_exemption_reads_the_user_even_when_the_policy_does_not(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    c.service.clock = lambda: NOW
    directory = Directory({AIKO.address: {"userPrincipalName": "aiko@contoso.onmicrosoft.com", "id": "u-1"}})
    c.service.users = directory
    c.service.handle_claim(claim("contoso-na", op="1"))
    assert c.service.handle_claim(claim("contoso-jp", op="2")).effect is model.Effect.BLOCK
    assert directory.asked == []  # nothing reads the user yet: no Graph on the path
    Exemptions(c.service).add("user", "aiko@contoso.onmicrosoft.com", reason="r", ticket="t", expires="2026-11-30",
                              actor="a")  # fmt: skip
    assert c.service.handle_claim(claim("contoso-jp", op="3")).effect is model.Effect.AUDIT
    assert directory.asked == [AIKO.address]
    c.service.users = Directory({})  # Graph does not know the user: the exemption cannot match
    outcome = c.service.handle_claim(claim("contoso-jp", op="4"))
    assert outcome.effect is model.Effect.BLOCK and "no user with this address" in outcome.decision.explanation


def test_what_if_and_explain_see_the_exemptions_too(tmp_path):
    c = container(tmp_path, BLOCKING_POLICY, in_memory=True)
    c.service.clock = lambda: NOW
    c.service.handle_claim(claim("contoso-na", op="1"))
    Exemptions(c.service).add("mailbox", AIKO.address, reason="r", ticket="T-9", expires="2026-11-30", actor="a")
    decision, trace = c.service.explain(AIKO, "contoso-jp")
    assert decision.effect is model.Effect.AUDIT and any("T-9" in line for line in trace)
    assert c.service.evaluate(AIKO, "contoso-jp", origin=model.Origin.GATE).exemption is not None
    assert c.ledger.cases(model.CaseQuery()).items == ()


def test_a_warned_claim_goes_through_and_tells_the_admin_and_the_owner(tmp_path):
    policy = """
version: 1
default: warn
notify:
  owners: {contoso-na: [crm-admins@contoso.com]}
"""
    c = container(tmp_path, policy, in_memory=True, graph_url="http://127.0.0.1:9/graph/v1.0",
                  mail_from="orgguard@contoso.com")  # fmt: skip
    c.service.handle_claim(claim("contoso-na", op="1"))
    outcome = c.service.handle_claim(claim("contoso-jp", op="2", user_id="u-jp"))
    assert outcome.effect is model.Effect.WARN and not outcome.decision.stops_claim and not outcome.decision.acts
    case = c.service.case(outcome.case_id)
    (notice,) = [a for a in case.actions if a.kind is model.ActionKind.NOTIFY]
    assert notice.notice is not None and notice.notice.kind.value == "warned"
    assert set(notice.notice.to) == {"admin:contoso-jp/u-jp", "crm-admins@contoso.com"}
    assert c.ledger.mailbox(AIKO).ownership.owner == "contoso-na"
    assert c.service.policy_warnings() == []


def test_a_warn_rule_without_mail_says_it_only_records(tmp_path):
    c = container(tmp_path, "version: 1\ndefault: warn\n", in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    outcome = c.service.handle_claim(claim("contoso-jp", op="2", user_id="u-jp"))
    assert outcome.effect is model.Effect.WARN and c.service.case(outcome.case_id).actions == ()
    assert any("warns, but no mail can be sent" in w for w in c.service.policy_warnings())


def test_a_rule_enforces_at_the_gate_and_only_records_after_the_fact(tmp_path):
    policy = """
version: 1
default: hold
rules:
  - id: gate-only
    effect: {gate: block, after: audit, sweep: hold}
"""
    c = container(tmp_path, policy, in_memory=True)
    c.service.handle_claim(claim("contoso-na", op="1"))
    gate = c.service.handle_claim(claim("contoso-jp", op="2", origin=model.Origin.GATE))
    assert gate.effect is model.Effect.BLOCK and "(its effect at the gate)" in gate.decision.explanation
    later = c.service.handle_claim(claim("contoso-jp", op="3", origin=model.Origin.SERVICEBUS))
    assert later.effect is model.Effect.AUDIT and "via servicebus" in later.decision.explanation
    swept = c.service.handle_claim(claim("contoso-jp", op="4", origin=model.Origin.SWEEP))
    assert swept.effect is model.Effect.HOLD


def test_org_types_from_the_registry_decide_non_production_claims(tmp_path):
    from shared.config.orgs import parse_orgs
    from tests.factories import KEYS, ORG_IDS

    policy = """
version: 1
default: override
rules:
  - id: non-production-never-takes-from-production
    when: {claimant.type: [sandbox, trial, developer], owner.type: production}
    effect: block
"""
    c = container(tmp_path, policy, in_memory=True)
    types = {"contoso-na": "production", "contoso-jp": "sandbox"}  # contoso-eu has none
    c.service.orgs = parse_orgs({"orgs": [
        {"name": n, "id": i, "url": f"http://127.0.0.1:8072/orgs/{n}", "webhook_key": KEYS[n], **(
            {"type": types[n]} if n in types else {})} for n, i in ORG_IDS.items()]}, env={})  # fmt: skip
    c.service.handle_claim(claim("contoso-na", op="1"))
    blocked = c.service.handle_claim(claim("contoso-jp", op="2"))
    assert (
        blocked.effect is model.Effect.BLOCK and blocked.decision.rule == "non-production-never-takes-from-production"
    )
    untyped = c.service.handle_claim(claim("contoso-eu", op="3"))
    assert untyped.effect is model.Effect.OVERRIDE  # an org without a type never matches a type condition
    _, trace = c.service.explain(AIKO, "contoso-jp", owner="contoso-eu")
    assert "owner.type of contoso-eu is not known" in trace[0]
