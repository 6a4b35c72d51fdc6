"""The policy engine: loading (every error, with its path) and deciding (first match wins).

Table-driven over small policies written the way admins write them, plus the
DESIGN.md example exactly as it is printed there and the sandbox example the
local host starts from.
"""

from __future__ import annotations

import json
import re
import string
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config.policy_file import load_policy
from shared.domain.model import ClaimKind, DomainError, Effect, MailboxKey, Origin
from shared.domain.policy import (
    NoUserDirectory,
    Policy,
    PolicyError,
    Situation,
    decide,
    default_policy,
    designated_primary,
    explain,
    parse_duration,
    parse_policy,
)

REPO = Path(__file__).resolve().parents[2]
DESIGN_MD = REPO.parent / "shared" / "DESIGN.md"
EXAMPLE = REPO / "examples" / "policy.yaml"
SANDBOX_ORGS = ("contoso-na", "contoso-jp", "contoso-eu")
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)

# Verbatim from DESIGN.md, "Policy" (test_design_copy_is_verbatim keeps it honest).
DESIGN_POLICY = """\
version: 3
mode: enforce            # or dry-run: decide and record, never act
default: hold            # effect when no rule matches
primary:                 # designations: which org should own a mailbox
  - when: {user.usageLocation: [JP]}          # Graph attribute
    org: contoso-jp
  - when: {mailbox.domain: [contoso.co.jp]}
    org: contoso-jp
  - when: {mailbox.address: [ceo@contoso.com]}
    org: contoso-na
rules:                   # first match wins
  - id: migration-2026-q4
    when: {claimant: contoso-eu, owner: contoso-na, during: [2026-11-01, 2026-12-31]}
    effect: override
  - id: designated-primary
    effect: prefer-primary   # claimant designated -> override; owner designated -> block
  - id: sandbox-orgs-never-win
    when: {claimant: [contoso-dev, contoso-test]}
    effect: block
approval:
  approvers: [group:OrgGuard Approvers]
  expires_after: P3D
  on_expiry: block
"""


def situation(
    claimant: str = "contoso-jp",
    owner: str | None = "contoso-na",
    *,
    address: str = "aiko.tanaka@contoso.com",
    origin: Origin = Origin.GATE,
    kind: ClaimKind = ClaimKind.TEST_ENABLE,
    user: dict[str, object] | None = None,
    now: datetime = NOW,
) -> Situation:
    return Situation(
        key=MailboxKey.parse(address),
        claimant=claimant,
        owner=owner,
        origin=origin,
        kind=kind,
        user=user or {},
        now=now,
    )


def one_rule(when: str, effect: str = "block", default: str = "audit") -> Policy:
    """A policy whose only rule is ``r`` with ``when`` (YAML flow mapping); anything else gets ``default``."""
    return load_policy(f"version: 1\ndefault: {default}\nrules:\n  - id: r\n    when: {when}\n    effect: {effect}\n")


def errors_of(text: str, **kwargs: Any) -> list[dict[str, str]]:
    with pytest.raises(PolicyError) as caught:
        load_policy(text, **kwargs)
    return caught.value.errors


# ---------------------------------------------------------------------------
# The normative example and the sandbox example


def test_design_example_loads_exactly_as_written():
    policy = load_policy(DESIGN_POLICY)

    assert (policy.version, policy.mode, policy.default) == (3, "enforce", Effect.HOLD)
    assert [d.org for d in policy.primary] == ["contoso-jp", "contoso-jp", "contoso-na"]
    assert [(r.id, r.effect) for r in policy.rules] == [
        ("migration-2026-q4", "override"),
        ("designated-primary", "prefer-primary"),
        ("sandbox-orgs-never-win", "block"),
    ]
    assert policy.rules[0].when.during == (date(2026, 11, 1), date(2026, 12, 31))
    assert policy.approval.approvers == ["group:OrgGuard Approvers"]
    assert policy.approval.expires_after == timedelta(days=3)
    assert policy.approval.on_expiry == "block"


@pytest.mark.skipif(not DESIGN_MD.exists(), reason="DESIGN.md is not beside the repository")
def test_design_copy_is_verbatim():
    block = re.search(r"## Policy.*?```yaml\n(.*?)```", DESIGN_MD.read_text(encoding="utf-8"), re.S)
    assert block is not None
    assert block.group(1) == DESIGN_POLICY


AIKO_NA = "aiko.tanaka@contoso.com"
IN_MIGRATION, AFTER_MIGRATION = datetime(2026, 11, 15, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("claimant", "owner", "address", "now", "effect", "rule"),
    [
        pytest.param("contoso-eu", "contoso-na", AIKO_NA, IN_MIGRATION, Effect.OVERRIDE, "migration-2026-q4",
                     id="S3-migration-window"),
        pytest.param("contoso-jp", "contoso-na", "kenji.sato@contoso.co.jp", NOW, Effect.OVERRIDE, "designated-primary",
                     id="S1-jp-designated-by-domain-takes-over"),
        pytest.param("contoso-jp", "contoso-na", "ceo@contoso.com", NOW, Effect.BLOCK, "designated-primary",
                     id="S1-na-designated-owner-keeps-ceo"),
        pytest.param("contoso-dev", "contoso-na", AIKO_NA, NOW, Effect.BLOCK, "sandbox-orgs-never-win",
                     id="sandbox-org-blocked"),
        pytest.param("contoso-jp", "contoso-na", AIKO_NA, NOW, Effect.HOLD, "default", id="S1-nobody-designated-holds"),
        pytest.param("contoso-eu", "contoso-na", AIKO_NA, AFTER_MIGRATION, Effect.HOLD, "default",
                     id="after-migration-window-holds"),
    ],
)  # fmt: skip
def test_design_example_decides(claimant, owner, address, now, effect, rule):
    decision = decide(load_policy(DESIGN_POLICY), situation(claimant, owner, address=address, now=now))
    assert (decision.effect, decision.rule, decision.dry_run) == (effect, rule, False)


def test_sandbox_example_loads_against_the_sandbox_orgs():
    policy = load_policy(EXAMPLE.read_text(encoding="utf-8"), known_orgs=SANDBOX_ORGS)
    assert policy.mode == "enforce" and policy.version >= 1
    assert {d.org for d in policy.primary} == set(SANDBOX_ORGS)


@pytest.mark.parametrize(
    ("claimant", "owner", "address", "kind", "user", "effect", "rule", "dry_run"),
    [
        pytest.param(
            "contoso-jp",
            "contoso-na",
            "aiko.tanaka@contoso.com",
            ClaimKind.TEST_ENABLE,
            {},
            Effect.HOLD,
            "default",
            False,
            id="aiko-without-graph-waits-for-approver",
        ),
        pytest.param(
            "contoso-jp",
            "contoso-na",
            "aiko.tanaka@contoso.com",
            ClaimKind.TEST_ENABLE,
            {"usageLocation": "JP"},
            Effect.OVERRIDE,
            "designated-primary",
            False,
            id="aiko-in-japan-moves",
        ),
        pytest.param(
            "contoso-jp",
            "contoso-eu",
            "lukas.weber@contoso.de",
            ClaimKind.TEST_ENABLE,
            {},
            Effect.BLOCK,
            "designated-primary",
            False,
            id="eu-domain-stays-in-eu",
        ),
        pytest.param(
            "contoso-jp",
            "contoso-na",
            "sofia.rossi@contoso.com",
            ClaimKind.PRIMARY_FLAG,
            {},
            Effect.HOLD,
            "checkbox-needs-approval",
            False,
            id="checkbox-held",
        ),
        pytest.param(
            "contoso-eu",
            "contoso-na",
            "sofia.rossi@contoso.com",
            ClaimKind.TEST_ENABLE,
            {},
            Effect.BLOCK,
            "eu-on-shared-domain-trial",
            True,
            id="trial-rule-is-dry-run",
        ),
        pytest.param(
            "contoso-eu",
            "contoso-jp",
            "mary.smith@fabrikam.com",
            ClaimKind.TEST_ENABLE,
            {},
            Effect.HOLD,
            "default",
            False,
            id="third-org-designated-falls-through",
        ),
    ],
)
def test_sandbox_example_decides(claimant, owner, address, kind, user, effect, rule, dry_run):
    policy = load_policy(EXAMPLE.read_text(encoding="utf-8"), known_orgs=SANDBOX_ORGS)
    decision = decide(policy, situation(claimant, owner, address=address, kind=kind, user=user))
    assert (decision.effect, decision.rule, decision.dry_run) == (effect, rule, dry_run)


@pytest.mark.parametrize("source", ["design", "example"])
def test_a_dumped_policy_loads_back_the_same(source):
    """GET /api/policy shows ``model_dump``; PUTting that back must mean the same policy."""
    text = DESIGN_POLICY if source == "design" else EXAMPLE.read_text(encoding="utf-8")
    policy = load_policy(text)
    assert load_policy(json.dumps(policy.model_dump(mode="json"))) == policy


def test_the_domain_checks_a_document_already_read():
    """No YAML in the domain: parse_policy takes the document; reading text is shared.config.policy_file's."""
    doc = {"version": 2, "rules": [{"id": "r", "when": {"claimant": "contoso-jp"}, "effect": "block"}]}
    assert parse_policy(doc).rules[0].when.claimant == ("contoso-jp",)
    with pytest.raises(PolicyError) as refused:
        parse_policy(doc, known_orgs=["contoso-na"])
    assert refused.value.errors == [
        {"path": "rules[0].when.claimant", "message": "'contoso-jp' is not a registered org (registered: contoso-na)"}
    ]
    with pytest.raises(PolicyError, match="the policy is empty"):
        parse_policy(None)


def test_json_text_is_a_policy_too():
    yaml_policy = load_policy(DESIGN_POLICY)
    as_json = json.dumps(
        {
            "version": 3,
            "mode": "enforce",
            "default": "hold",
            "primary": [
                {"when": {"user.usageLocation": ["JP"]}, "org": "contoso-jp"},
                {"when": {"mailbox.domain": ["contoso.co.jp"]}, "org": "contoso-jp"},
                {"when": {"mailbox.address": ["ceo@contoso.com"]}, "org": "contoso-na"},
            ],
            "rules": [
                {
                    "id": "migration-2026-q4",
                    "effect": "override",
                    "when": {"claimant": "contoso-eu", "owner": "contoso-na", "during": ["2026-11-01", "2026-12-31"]},
                },
                {"id": "designated-primary", "effect": "prefer-primary"},
                {
                    "id": "sandbox-orgs-never-win",
                    "when": {"claimant": ["contoso-dev", "contoso-test"]},
                    "effect": "block",
                },
            ],
            "approval": {"approvers": ["group:OrgGuard Approvers"], "expires_after": "P3D", "on_expiry": "block"},
        }
    )
    assert load_policy(as_json) == yaml_policy


def test_more_top_level_keys_may_be_added():
    policy = load_policy("version: 2\ndefault: block\nowner_contact: it-ops@contoso.com\nnotify: {teams: true}\n")
    assert policy.default is Effect.BLOCK


def test_default_policy_holds_every_competing_claim():
    policy = default_policy()
    assert (policy.version, policy.mode, policy.default, policy.rules) == (0, "enforce", Effect.HOLD, [])
    decision = decide(policy, situation())
    assert (decision.effect, decision.rule) == (Effect.HOLD, "default")


def test_the_sections_defaults_are_the_sections_as_validated():
    """The defaults are built without validation (so no validator is built at import): they must be exactly what
    validating an empty section gives."""
    from shared.domain.policy.schema import Approval, Designation, Notify, Rule, When

    for section, default in ((When, Designation.model_fields["when"].default),
                             (When, Rule.model_fields["when"].default),
                             (Approval, Policy.model_fields["approval"].default),
                             (Notify, Policy.model_fields["notify"].default)):  # fmt: skip
        validated = section()
        assert default == validated and default.__dict__ == validated.__dict__
        assert default.model_fields_set == validated.model_fields_set
        assert default.__pydantic_extra__ == validated.__pydantic_extra__


def test_optional_sections_have_defaults():
    policy = load_policy("version: 1\n")
    assert (policy.mode, policy.default, policy.primary, policy.rules) == ("enforce", Effect.HOLD, [], [])
    assert (policy.approval.approvers, policy.approval.expires_after, policy.approval.on_expiry) == (
        [],
        timedelta(days=3),
        "block",
    )


# ---------------------------------------------------------------------------
# Uncontested claims


@pytest.mark.parametrize("mode", ["enforce", "dry-run"])
@pytest.mark.parametrize(
    ("claimant", "owner"), [("contoso-jp", None), ("contoso-na", "contoso-na")], ids=["no-owner", "claimant-owns"]
)
def test_uncontested_claims_are_allowed_whatever_the_rules(mode, claimant, owner):
    policy = load_policy(f"version: 1\nmode: {mode}\ndefault: block\nrules: [{{id: all, effect: block}}]\n")
    decision = decide(policy, situation(claimant, owner))
    assert (decision.effect, decision.rule, decision.dry_run) == (Effect.ALLOW, "uncontested", mode == "dry-run")
    assert claimant in decision.explanation and "uncontested" in decision.explanation


# ---------------------------------------------------------------------------
# Conditions: one rule ``r`` (block) with the condition; a miss falls to the default (audit)

CONDITIONS = [
    # id, when, situation kwargs, matches
    ("claimant-text", "{claimant: contoso-jp}", {}, True),
    ("claimant-list", "{claimant: [contoso-eu, contoso-jp]}", {}, True),
    ("claimant-other", "{claimant: contoso-eu}", {}, False),
    ("owner", "{owner: contoso-na}", {}, True),
    ("owner-other", "{owner: [contoso-eu]}", {}, False),
    ("origin", "{origin: [servicebus, eventgrid]}", {"origin": Origin.EVENTGRID}, True),
    ("origin-other", "{origin: gate}", {"origin": Origin.SWEEP}, False),
    ("kind", "{kind: primary_flag}", {"kind": ClaimKind.PRIMARY_FLAG}, True),
    ("kind-other", "{kind: [sweep, admin]}", {"kind": ClaimKind.TEST_ENABLE}, False),
    ("address-exact", "{mailbox.address: ceo@contoso.com}", {"address": "CEO@Contoso.com"}, True),
    ("address-pattern-any-case", "{mailbox.address: [CEO@CONTOSO.COM]}", {"address": "ceo@contoso.com"}, True),
    ("address-glob", "{mailbox.address: ['*.tanaka@contoso.com']}", {}, True),
    ("address-glob-miss", "{mailbox.address: ['exec-*@contoso.com']}", {}, False),
    ("domain-exact", "{mailbox.domain: contoso.com}", {}, True),
    ("domain-any-case", "{mailbox.domain: Contoso.COM}", {}, True),
    ("domain-glob-subdomain", "{mailbox.domain: '*.contoso.com'}", {"address": "a@jp.contoso.com"}, True),
    ("domain-glob-not-apex", "{mailbox.domain: '*.contoso.com'}", {}, False),
    ("domain-idna-pattern", "{mailbox.domain: bücher.example}", {"address": "anna@BÜCHER.example"}, True),
    ("domain-idna-ascii-pattern", "{mailbox.domain: xn--bcher-kva.example}", {"address": "anna@bücher.example"}, True),
    ("domain-other", "{mailbox.domain: [contoso.co.jp, contoso.eu]}", {}, False),
    ("usage-location", "{user.usageLocation: [JP, KR]}", {"user": {"usageLocation": "JP"}}, True),
    ("usage-location-any-case", "{user.usageLocation: jp}", {"user": {"usageLocation": "JP"}}, True),
    ("usage-location-other", "{user.usageLocation: [US]}", {"user": {"usageLocation": "JP"}}, False),
    ("usage-location-not-supplied", "{user.usageLocation: [JP]}", {}, False),
    ("usage-location-not-text", "{user.usageLocation: [JP]}", {"user": {"usageLocation": 81}}, False),
    ("country", "{user.country: Japan}", {"user": {"country": "japan"}}, True),
    ("country-not-supplied", "{user.country: Japan}", {"user": {"usageLocation": "JP"}}, False),
    ("department", "{user.department: [Sales, Legal]}", {"user": {"department": "sales"}}, True),
    ("department-other", "{user.department: [Legal]}", {"user": {"department": "Sales"}}, False),
    ("member-of-any", "{user.memberOf: [Contoso JP, VIP]}", {"user": {"memberOf": ["All Employees", "vip"]}}, True),
    ("member-of-none", "{user.memberOf: [VIP]}", {"user": {"memberOf": ["All Employees"]}}, False),
    ("member-of-not-supplied", "{user.memberOf: [VIP]}", {}, False),
    ("member-of-garbage", "{user.memberOf: [VIP]}", {"user": {"memberOf": 7}}, False),
    ("during-first-day", "{during: [2026-06-15, 2026-06-30]}", {"now": datetime(2026, 6, 15, 0, 0, tzinfo=UTC)}, True),
    (
        "during-last-day",
        "{during: [2026-06-01, 2026-06-15]}",
        {"now": datetime(2026, 6, 15, 23, 59, 59, tzinfo=UTC)},
        True,
    ),
    (
        "during-day-before",
        "{during: [2026-06-16, 2026-06-30]}",
        {"now": datetime(2026, 6, 15, 23, 59, tzinfo=UTC)},
        False,
    ),
    ("during-day-after", "{during: [2026-06-01, 2026-06-14]}", {"now": datetime(2026, 6, 15, 0, 0, tzinfo=UTC)}, False),
    ("during-one-day", "{during: [2026-06-15, 2026-06-15]}", {}, True),
    (
        "during-by-utc-date-not-local",
        "{during: [2026-06-16, 2026-06-30]}",
        {"now": datetime(2026, 6, 15, 22, 30, tzinfo=timezone(timedelta(hours=-3)))},
        True,
    ),
    ("during-naive-time-is-utc", "{during: [2026-06-15, 2026-06-15]}", {"now": datetime(2026, 6, 15, 23, 0)}, True),
    ("all-conditions-match", "{claimant: contoso-jp, owner: contoso-na, mailbox.domain: contoso.com}", {}, True),
    ("one-condition-misses", "{claimant: contoso-jp, owner: contoso-eu, mailbox.domain: contoso.com}", {}, False),
    ("empty-when", "{}", {}, True),
    ("null-when", "null", {}, True),
]


@pytest.mark.parametrize(("when", "kwargs", "matches"), [c[1:] for c in CONDITIONS], ids=[c[0] for c in CONDITIONS])
def test_condition(when, kwargs, matches):
    decision = decide(one_rule(when), situation(**kwargs))
    assert (decision.effect, decision.rule) == ((Effect.BLOCK, "r") if matches else (Effect.AUDIT, "default"))


def test_a_rule_without_when_always_matches():
    policy = load_policy("version: 1\ndefault: audit\nrules: [{id: everything, effect: override}]\n")
    assert decide(policy, situation()).rule == "everything"


# ---------------------------------------------------------------------------
# Effects, ordering, default, dry run


@pytest.mark.parametrize("effect", [Effect.BLOCK, Effect.OVERRIDE, Effect.HOLD, Effect.AUDIT], ids=str)
def test_each_effect_is_the_decision(effect):
    decision = decide(one_rule("{claimant: contoso-jp}", effect.value), situation())
    assert (decision.effect, decision.rule) == (effect, "r")


@pytest.mark.parametrize("effect", [Effect.BLOCK, Effect.OVERRIDE, Effect.HOLD, Effect.AUDIT], ids=str)
def test_each_effect_can_be_the_default(effect):
    decision = decide(load_policy(f"version: 1\ndefault: {effect.value}\n"), situation())
    assert (decision.effect, decision.rule) == (effect, "default")


FIRST_MATCH = """
version: 1
default: audit
rules:
  - {id: eu-claims, when: {claimant: contoso-eu}, effect: override}
  - {id: na-owned, when: {owner: contoso-na}, effect: block}
  - {id: catch-all, effect: hold}
"""


@pytest.mark.parametrize(
    ("claimant", "owner", "rule", "effect"),
    [
        pytest.param("contoso-eu", "contoso-na", "eu-claims", Effect.OVERRIDE, id="first-of-two-matching-wins"),
        pytest.param("contoso-jp", "contoso-na", "na-owned", Effect.BLOCK, id="second-when-first-misses"),
        pytest.param("contoso-jp", "contoso-eu", "catch-all", Effect.HOLD, id="catch-all-last"),
    ],
)
def test_first_match_wins(claimant, owner, rule, effect):
    decision = decide(load_policy(FIRST_MATCH), situation(claimant, owner))
    assert (decision.rule, decision.effect) == (rule, effect)


PREFER_PRIMARY = """
version: 1
default: audit
primary:
  - {when: {mailbox.address: ['ceo@*']}, org: contoso-na}
  - {when: {mailbox.domain: contoso.co.jp}, org: contoso-jp}
  - {when: {user.usageLocation: [DE]}, org: contoso-eu}
rules:
  - {id: designated, effect: prefer-primary}
  - {id: sandbox-never-wins, when: {claimant: contoso-dev}, effect: block}
"""


@pytest.mark.parametrize(
    ("claimant", "owner", "address", "user", "effect", "rule"),
    [
        pytest.param(
            "contoso-jp",
            "contoso-na",
            "kenji@contoso.co.jp",
            {},
            Effect.OVERRIDE,
            "designated",
            id="claimant-designated-overrides",
        ),
        pytest.param(
            "contoso-jp", "contoso-na", "ceo@contoso.com", {}, Effect.BLOCK, "designated", id="owner-designated-blocks"
        ),
        pytest.param(
            "contoso-dev",
            "contoso-na",
            "emma@contoso.com",
            {"usageLocation": "DE"},
            Effect.BLOCK,
            "sandbox-never-wins",
            id="third-org-designated-falls-through-to-next-rule",
        ),
        pytest.param(
            "contoso-jp",
            "contoso-na",
            "emma@contoso.com",
            {"usageLocation": "DE"},
            Effect.AUDIT,
            "default",
            id="third-org-designated-falls-through-to-default",
        ),
        pytest.param(
            "contoso-jp",
            "contoso-na",
            "emma@contoso.com",
            {},
            Effect.AUDIT,
            "default",
            id="nobody-designated-falls-through",
        ),
        pytest.param(
            "contoso-na",
            "contoso-jp",
            "ceo@contoso.co.jp",
            {},
            Effect.OVERRIDE,
            "designated",
            id="first-designation-wins-over-later",
        ),
    ],
)
def test_prefer_primary(claimant, owner, address, user, effect, rule):
    decision = decide(load_policy(PREFER_PRIMARY), situation(claimant, owner, address=address, user=user))
    assert (decision.effect, decision.rule) == (effect, rule)


@pytest.mark.parametrize(
    ("address", "user", "org"),
    [
        pytest.param("ceo@contoso.co.jp", {}, "contoso-na", id="first-match"),
        pytest.param("kenji@contoso.co.jp", {"usageLocation": "DE"}, "contoso-jp", id="domain-before-user"),
        pytest.param("emma@contoso.com", {"usageLocation": "de"}, "contoso-eu", id="user-attribute"),
        pytest.param("emma@contoso.com", {}, None, id="none"),
    ],
)
def test_designated_primary(address, user, org):
    assert designated_primary(load_policy(PREFER_PRIMARY), situation(address=address, user=user)) == org


def test_prefer_primary_respects_its_own_conditions():
    policy = load_policy(
        PREFER_PRIMARY.replace(
            "{id: designated, effect: prefer-primary}",
            "{id: designated, when: {origin: sweep}, effect: prefer-primary}",
        )
    )
    assert decide(policy, situation(address="kenji@contoso.co.jp")).rule == "default"
    assert decide(policy, situation(address="kenji@contoso.co.jp", origin=Origin.SWEEP)).rule == "designated"


@pytest.mark.parametrize(
    ("claimant", "owner", "rule"),
    [
        pytest.param("contoso-jp", None, "uncontested", id="allow"),
        pytest.param("contoso-eu", "contoso-na", "eu-claims", id="rule"),
        pytest.param("contoso-jp", "contoso-eu", "catch-all", id="last-rule"),
    ],
)
def test_dry_run_mode_marks_every_decision(claimant, owner, rule):
    policy = load_policy(FIRST_MATCH.replace("default: audit", "mode: dry-run\ndefault: audit"))
    decision = decide(policy, situation(claimant, owner))
    assert (decision.rule, decision.dry_run, decision.acts, decision.stops_claim) == (rule, True, False, False)
    assert "dry run" in decision.explanation


def test_dry_run_mode_marks_the_default_decision():
    decision = decide(load_policy("version: 1\nmode: dry-run\ndefault: block\n"), situation())
    assert (decision.effect, decision.rule, decision.dry_run) == (Effect.BLOCK, "default", True)


@pytest.mark.parametrize(
    ("claimant", "rule", "dry_run"),
    [
        pytest.param("contoso-eu", "trial", True, id="the-dry-run-rule"),
        pytest.param("contoso-jp", "enforced", False, id="other-rules-still-act"),
        pytest.param("contoso-dev", "default", False, id="default-still-acts"),
    ],
)
def test_a_single_rule_can_run_dry(claimant, rule, dry_run):
    policy = load_policy("""
version: 1
default: block
rules:
  - {id: trial, when: {claimant: contoso-eu}, effect: override, dry_run: true}
  - {id: enforced, when: {claimant: contoso-jp}, effect: override}
""")
    decision = decide(policy, situation(claimant))
    assert (decision.rule, decision.dry_run) == (rule, dry_run)


# ---------------------------------------------------------------------------
# Explanations and the trace


@pytest.mark.parametrize(
    ("claimant", "owner", "address", "rule"),
    [
        pytest.param("contoso-dev", "contoso-na", "aiko.tanaka@contoso.com", "sandbox-orgs-never-win", id="block"),
        pytest.param("contoso-eu", "contoso-na", "aiko.tanaka@contoso.com", "migration-2026-q4", id="override"),
        pytest.param("contoso-jp", "contoso-na", "kenji@contoso.co.jp", "designated-primary", id="primary-claims"),
        pytest.param("contoso-eu", "contoso-jp", "kenji@contoso.co.jp", "designated-primary", id="primary-owns"),
        pytest.param("contoso-jp", "contoso-na", "aiko.tanaka@contoso.com", "default", id="default"),
        pytest.param("contoso-jp", None, "aiko.tanaka@contoso.com", "uncontested", id="uncontested"),
    ],
)
def test_explanation_is_one_sentence_naming_claimant_owner_and_rule(claimant, owner, address, rule):
    now = datetime(2026, 11, 2, tzinfo=UTC)
    decision = decide(load_policy(DESIGN_POLICY), situation(claimant, owner, address=address, now=now))
    text = decision.explanation
    assert decision.rule == rule
    assert claimant in text and rule in text and (owner is None or owner in text) and address in text
    assert text.endswith(".") and "\n" not in text
    assert not re.search(r"[.!?]\s", text[:-1]), "more than one sentence"


def test_block_explanation_reads_like_the_design():
    decision = decide(load_policy(DESIGN_POLICY), situation("contoso-dev", address="aiko.tanaka@contoso.com"))
    assert decision.explanation.startswith(
        "contoso-dev claimed aiko.tanaka@contoso.com, owned by contoso-na; "
        "rule sandbox-orgs-never-win blocks claims from contoso-dev, contoso-test"
    )


def test_block_explanation_names_every_condition_of_the_rule_in_order():
    policy = one_rule(
        "{claimant: contoso-jp, owner: contoso-na, origin: gate, kind: test_enable,"
        " mailbox.address: aiko.tanaka@contoso.com, mailbox.domain: contoso.com,"
        " user.country: Japan, user.memberOf: Sales, during: [2026-06-01, 2026-06-30]}"
    )
    decision = decide(policy, situation(user={"country": "Japan", "memberOf": ["Sales"]}))
    assert decision.explanation == (
        "contoso-jp claimed aiko.tanaka@contoso.com, owned by contoso-na; rule r blocks claims from contoso-jp"
        " against contoso-na arriving via gate of kind test_enable for aiko.tanaka@contoso.com in contoso.com"
        " where user.country is Japan where the user is in Sales between 2026-06-01 and 2026-06-30,"
        " so the mailbox stays with contoso-na."
    )


def test_explain_traces_rule_by_rule():
    trace = explain(load_policy(DESIGN_POLICY), situation("contoso-dev", address="aiko.tanaka@contoso.com"))
    assert trace == [
        "rule 1 migration-2026-q4 (override): no match, claimant contoso-dev is not contoso-eu",
        "rule 2 designated-primary (prefer-primary): no match, no primary designation matches aiko.tanaka@contoso.com",
        "rule 3 sandbox-orgs-never-win (block): matches, claimant contoso-dev is one of contoso-dev, contoso-test"
        " -> block",
    ]


def test_explain_says_which_rules_were_not_checked_and_why_prefer_primary_fell_through():
    trace = explain(load_policy(PREFER_PRIMARY), situation("contoso-jp", user={"usageLocation": "DE"}))
    assert trace[0].startswith("rule 1 designated (prefer-primary): no match, primary[2] designates contoso-eu")
    assert trace[1].startswith("rule 2 sandbox-never-wins (block): no match, claimant contoso-jp is not contoso-dev")
    assert trace[2] == "no rule matched: the default effect audit applies"
    first = explain(load_policy(FIRST_MATCH), situation("contoso-eu"))
    assert first[1:] == [
        "rule 2 na-owned (block): not checked, an earlier rule matched",
        "rule 3 catch-all (hold): not checked, an earlier rule matched",
    ]


def test_explain_an_uncontested_claim():
    trace = explain(load_policy(DESIGN_POLICY), situation(owner=None))
    assert len(trace) == 1 and trace[0].startswith("uncontested:")


# ---------------------------------------------------------------------------
# Validation: every error, each with its path

# Each: an id, the policy's text, the path of its one error, and a fragment of that error's message.
INVALID = json.loads((Path(__file__).parents[1] / "fixtures" / "invalid_policies.json").read_text())


@pytest.mark.parametrize(("text", "path", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_policy(text, path, fragment):
    errors = errors_of(text)
    assert [e["path"] for e in errors] == [path], errors
    assert fragment in errors[0]["message"]


KNOWN = """
version: 1
primary:
  - {when: {mailbox.domain: contoso.co.jp}, org: contoso-jp}
  - {when: {mailbox.domain: contoso.dev}, org: contoso-dev}
rules:
  - {id: a, when: {claimant: contoso-test}, effect: block}
  - {id: b, when: {claimant: contoso-eu, owner: [contoso-na, contoso-xx]}, effect: override}
"""


def test_orgs_must_be_registered_when_known():
    errors = errors_of(KNOWN, known_orgs=SANDBOX_ORGS)
    assert [e["path"] for e in errors] == ["primary[1].org", "rules[0].when.claimant", "rules[1].when.owner[1]"]
    assert (
        errors[0]["message"] == "'contoso-dev' is not a registered org (registered: contoso-eu, contoso-jp, contoso-na)"
    )


def test_orgs_are_not_checked_without_a_registry():
    assert len(load_policy(KNOWN).rules) == 2


EVERYTHING_WRONG = """
version: 0
mode: live
default: allow
primary:
  - {org: contoso-na, when: {mailbox.domain: 'x@y'}}
rules:
  - {id: a, effect: explode, when: {colour: blue, during: [2026-12-31, 2026-01-01]}}
  - {id: a, effect: block, dry_run: sometimes}
  - {effect: hold}
approval:
  expires_after: soon
  on_expiry: shrug
"""


def test_every_error_is_reported_at_once():
    with pytest.raises(PolicyError) as caught:
        load_policy(EVERYTHING_WRONG)
    paths = [e["path"] for e in caught.value.errors]
    assert paths == [
        "version",
        "mode",
        "default",
        "primary[0].when.mailbox.domain",
        "rules[0].effect",
        "rules[0].when.colour",
        "rules[0].when.during",
        "rules[1].dry_run",
        "rules[2].id",
        "rules[1].id",
        "approval.expires_after",
        "approval.on_expiry",
    ]
    assert all(e["message"] for e in caught.value.errors)


def test_errors_are_listed_in_the_order_the_document_is_written():
    text = "rules: [{effect: hold, id: 7, when: {owner: [], claimant: 3}}]\ndefault: allow\nversion: 0\n"
    assert [e["path"] for e in errors_of(text)] == [
        "rules[0].id",
        "rules[0].when.owner",
        "rules[0].when.claimant",
        "default",
        "version",
    ]


def test_null_means_as_by_default_for_sections_and_lists_not_for_values():
    policy = load_policy("version: 1\nprimary: null\nrules: [{id: a, effect: block, when: null}]\napproval: null\n")
    assert (policy.primary, policy.rules[0].when.model_dump(), policy.approval.expires_after) == ([], {}, timedelta(3))
    assert load_policy("version: 1\nnotify: {remind_before: null}\n").notify.remind_before is None
    assert [e["path"] for e in errors_of("version: 1\napproval: {expires_after: null, on_expiry: null}\n")] == [
        "approval.expires_after",
        "approval.on_expiry",
    ]


def test_policy_error_is_a_422_domain_error_naming_the_first_error():
    with pytest.raises(PolicyError) as caught:
        load_policy(EVERYTHING_WRONG)
    error = caught.value
    assert isinstance(error, DomainError)
    assert (error.status, error.title) == (422, "Invalid policy")
    assert error.detail.startswith("version: must be a positive whole number") and "(and 11 more)" in error.detail


def test_policy_error_built_by_hand_keeps_its_errors():
    error = PolicyError("the policy is not UTF-8 text", errors=[{"path": "", "message": "not UTF-8"}])
    assert error.errors == [{"path": "", "message": "not UTF-8"}]
    assert PolicyError("bad").errors == [{"path": "", "message": "bad"}]


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("P3D", timedelta(days=3)),
        ("PT12H", timedelta(hours=12)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("P2W", timedelta(weeks=2)),
        ("PT90M", timedelta(minutes=90)),
        ("PT1.5S", timedelta(seconds=1.5)),
        ("p1dt30m", timedelta(days=1, minutes=30)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_durations(text, length):
    assert parse_duration(text) == length


def test_no_user_directory_knows_nobody():
    assert NoUserDirectory().attributes(MailboxKey.parse("aiko.tanaka@contoso.com")) == {}


# ---------------------------------------------------------------------------
# Properties: decide() is total over valid policies, uncontested is always allowed

ORGS = ["contoso-na", "contoso-jp", "contoso-eu", "contoso-dev"]
DAYS = st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31))


def _values(options: list[str]) -> st.SearchStrategy[object]:
    return st.one_of(st.sampled_from(options), st.lists(st.sampled_from(options), min_size=1, max_size=3))


CONDITION_VALUES: dict[str, st.SearchStrategy[object]] = {
    "claimant": _values(ORGS),
    "owner": _values(ORGS),
    "origin": _values([o.value for o in Origin]),
    "kind": _values([k.value for k in ClaimKind]),
    "mailbox.address": _values(["*@contoso.com", "ceo@contoso.com", "*@*", "a?c@*.jp"]),
    "mailbox.domain": _values(["contoso.com", "*.jp", "contoso.co.jp", "bücher.example", "[ab]*.com"]),
    "user.usageLocation": _values(["JP", "US", "de"]),
    "user.country": _values(["Japan", "Germany"]),
    "user.department": _values(["Sales", "Legal"]),
    "user.memberOf": _values(["VIP", "All Employees"]),
    "during": st.tuples(DAYS, DAYS).map(lambda d: sorted(d.isoformat() for d in d)),
}


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, object]:
    """A few conditions (drawing a subset is much cheaper than an 11-key optional mapping)."""
    names = draw(st.lists(st.sampled_from(sorted(CONDITION_VALUES)), max_size=3, unique=True))
    return {name: draw(CONDITION_VALUES[name]) for name in names}


WHEN = conditions()


@st.composite
def valid_policies(draw: st.DrawFn) -> Policy:
    rules = [
        {"id": f"r{i}", "when": when, "effect": effect, "dry_run": dry}
        for i, (when, effect, dry) in enumerate(
            draw(
                st.lists(
                    st.tuples(
                        WHEN, st.sampled_from(["block", "override", "hold", "audit", "prefer-primary"]), st.booleans()
                    ),
                    max_size=4,
                )
            )
        )
    ]
    primary = draw(st.lists(st.fixed_dictionaries({"when": WHEN, "org": st.sampled_from(ORGS)}), max_size=4))
    doc = {
        "version": draw(st.integers(1, 10**6)),
        "mode": draw(st.sampled_from(["enforce", "dry-run"])),
        "default": draw(st.sampled_from(["block", "override", "hold", "audit"])),
        "primary": primary,
        "rules": rules,
    }
    return load_policy(json.dumps(doc))


ANY_TEXT = st.text(alphabet=string.printable + "üßжé\u00a0", max_size=30)
ATTRIBUTE_VALUES = st.one_of(
    st.none(),
    ANY_TEXT,
    st.sampled_from(["JP", "US", "Sales", "Japan"]),
    st.integers(),
    st.lists(st.one_of(ANY_TEXT, st.integers(), st.just("VIP")), max_size=3),
)
ZONES = st.sampled_from([None, UTC, timezone(timedelta(hours=-12)), timezone(timedelta(hours=14, minutes=59))])


@st.composite
def situations(draw: st.DrawFn, *, uncontested: bool = False) -> Situation:
    claimant = draw(st.one_of(st.sampled_from(ORGS), ANY_TEXT))
    owner_choices = [None, claimant] if uncontested else [None, *ORGS]
    owner = draw(
        st.one_of(st.sampled_from(owner_choices), ANY_TEXT) if not uncontested else st.sampled_from(owner_choices)
    )
    address = draw(
        st.one_of(
            st.sampled_from(["ceo@contoso.com", "kenji@contoso.co.jp", "anna@xn--bcher-kva.example", "a.c@x.jp"]),
            st.builds("{}@{}".format, ANY_TEXT, ANY_TEXT),
            ANY_TEXT,
        )
    )
    user = draw(
        st.dictionaries(
            st.sampled_from(["usageLocation", "country", "department", "memberOf", "other"]),
            ATTRIBUTE_VALUES,
            max_size=4,
        )
    )
    return Situation(
        key=MailboxKey(address),
        claimant=claimant,
        owner=owner,
        origin=draw(st.sampled_from(Origin)),
        kind=draw(st.sampled_from(ClaimKind)),
        user=user,
        now=draw(st.datetimes(timezones=ZONES)),
    )


FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(valid_policies(), situations())
def test_decide_is_total_and_explains_itself(policy, s):
    decision = decide(policy, s)
    assert (decision.effect is Effect.ALLOW) == (not s.contested)
    trace = explain(policy, s)
    rule_ids = {r.id for r in policy.rules}
    assert decision.rule in rule_ids | {"default", "uncontested"}
    assert s.claimant in decision.explanation and decision.rule in decision.explanation
    assert s.owner is None or s.owner in decision.explanation
    assert decision.dry_run or policy.mode == "enforce"
    assert trace and all(isinstance(line, str) for line in trace)
    if decision.rule in rule_ids:
        assert any(
            line.startswith("rule ") and f" {decision.rule} (" in line and ": matches," in line for line in trace
        )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_policies(), situations(uncontested=True))
def test_an_uncontested_claim_is_always_allowed(policy, s):
    decision = decide(policy, s)
    assert (decision.effect, decision.rule) == (Effect.ALLOW, "uncontested")


JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(max_size=10),
        st.sampled_from(["block", "prefer-primary", "2026-11-01", "P3D", "contoso-na", "claimant"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "mode",
                    "default",
                    "primary",
                    "rules",
                    "id",
                    "when",
                    "effect",
                    "org",
                    "during",
                    "approval",
                    "expires_after",
                    "claimant",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=25,
)


@settings(max_examples=100, deadline=None)
@given(st.one_of(JSONISH.map(json.dumps), st.text(max_size=200)))
def test_load_policy_fails_only_with_policy_errors(text):
    try:
        load_policy(text, known_orgs=ORGS)
    except PolicyError as exc:
        assert exc.errors and all(set(e) == {"path", "message"} and e["message"] for e in exc.errors)
