"""The policy's governance keys: effects per entry point, ``warn``, and org types in conditions."""

from __future__ import annotations

import pytest

from shared.config.policy_file import load_policy
from shared.domain.model import Origin
from shared.domain.policy import ByOrigin, PolicyError
from tests.unit.test_policy import DESIGN_POLICY

GOOD = """
version: 4
default: warn
rules:
  - id: np
    when: {claimant.type: [sandbox, trial], owner.type: production}
    effect: {gate: block, after: audit, sweep: hold}
  - id: w
    effect: warn
"""


def test_effects_per_entry_point_and_org_types_load_and_dump_as_written():
    policy = load_policy(GOOD)
    rule = policy.rules[0]
    assert isinstance(rule.effect, ByOrigin)
    assert {o: rule.effect_for(Origin(o)) for o in ("gate", "servicebus", "sweep", "admin")} == {
        "gate": "block",
        "servicebus": "audit",
        "sweep": "hold",
        "admin": "audit",
    }
    dumped = policy.model_dump(mode="json")
    assert dumped["rules"][0]["effect"] == {"gate": "block", "after": "audit", "sweep": "hold"}
    assert dumped["rules"][0]["when"] == {"claimant.type": ["sandbox", "trial"], "owner.type": ["production"]}
    assert dumped["default"] == "warn" and dumped["rules"][1]["effect"] == "warn"
    assert load_policy(__import__("json").dumps(dumped)).model_dump(mode="json") == dumped  # JSON round trip


def test_the_design_example_still_loads_exactly_as_written():
    policy = load_policy(DESIGN_POLICY)
    assert [r.effect for r in policy.rules] == ["override", "prefer-primary", "block"]


REFUSED = [
    ("effect: {gate: block}", "rules[0].effect", "says nothing for servicebus, eventgrid, webhook, sweep, admin"),
    ("effect: {after: audit}", "rules[0].effect", "says nothing for gate"),
    ("effect: {gate: block, later: audit}", "rules[0].effect", "unknown entry point 'later'"),
    ("effect: {gate: stop, after: audit}", "rules[0].effect", "gate: unknown effect 'stop'"),
    ("effect: {gate: 3, after: audit}", "rules[0].effect", "gate: unknown effect the number 3"),
    ("effect: 7", "rules[0].effect", "not the number 7"),
    ("effect: allow", "rules[0].effect", "unknown effect 'allow'"),
    ("effect: block\n    when: {claimant.type: prod}", "rules[0].when.claimant.type", "unknown value 'prod'"),
    ("effect: block\n    when: {owner.type: []}", "rules[0].when.owner.type", "at least one value"),
    ("effect: block\n    when: {claimant.kind: sandbox}", "rules[0].when.claimant.kind", "unknown condition"),
]


@pytest.mark.parametrize(("rule", "path", "fragment"), REFUSED)
def test_a_bad_effect_or_org_type_is_refused_with_its_path(rule: str, path: str, fragment: str):
    with pytest.raises(PolicyError) as refused:
        load_policy(f"version: 1\nrules:\n  - id: a\n    {rule}\n")
    first = refused.value.errors[0]
    assert (first["path"], fragment in first["message"]) == (path, True), first


def test_every_mistake_in_a_policy_is_listed_at_once():
    text = "version: 1\nrules:\n  - {id: a, effect: {gate: block}}\n  - {id: b, effect: warn, when: {owner.type: x}}\n"
    with pytest.raises(PolicyError) as refused:
        load_policy(text)
    assert [e["path"] for e in refused.value.errors] == ["rules[0].effect", "rules[1].when.owner.type"]
