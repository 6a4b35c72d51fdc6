"""Documents that explode: refused fast everywhere a policy or orgs file enters, and parsed once per version.

A policy under 1 KB with YAML merge keys used to take ~30 s and ~460 MiB to
load. Each hostile document below must be refused with a clear error before it
is expanded -- at ``load_policy`` (and so ``PUT /api/policy``), ``orgguard policy
validate``, startup from ``ORGGUARD_POLICY``, and the orgs file -- and a
policy already stored must never be parsed again on each call.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from functions.console import app
from shared import bootstrap
from shared.config import documents
from shared.config.documents import MAX_DEPTH, MAX_NODES, TooComplex, load_yaml
from shared.config.orgs import OrgsError, load_orgs
from shared.config.policy_file import load_policy
from shared.config.settings import Settings
from shared.domain.policy import PolicyError
from shared.ledger.sqlite import SqliteLedger
from shared.service.orgguard import OrgGuard, StoredPolicyUnusable
from tests.factories import BLOCKING_POLICY, claim, container, registry

NOT_HANGING_S = 2.0  # the old loader took ~30 s on the merge bomb; this only says "it did not explode"

LAUGHS = 'lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{i}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
# Each level merges the one before twice: PyYAML copies the merged pairs, 2**26 of them at the top (under 1 KB).
MERGE_BOMB = "version: 1\ndefault: block\nrules: []\nx0: &x0 {a: 1, b: 2}\n" + "".join(
    f"x{i}: &x{i} {{<<: [*x{i - 1}, *x{i - 1}]}}\n" for i in range(1, 26)
)
RULE_MERGE_BOMB = (
    "version: 1\ndefault: block\nbase: &r0 {id: r, effect: block, when: {claimant: [contoso-jp]}}\n"
    + "".join(f"b{i}: &r{i} [*r{i - 1}, *r{i - 1}, *r{i - 1}, *r{i - 1}]\n" for i in range(1, 10))
    + "rules: *r9\n"
)
HOSTILE = {
    "billion laughs": LAUGHS,
    "merge-key bomb": MERGE_BOMB,
    "aliases fanned into rules": RULE_MERGE_BOMB,
    "recursive alias": "version: 1\ndefault: block\nrules: &r [*r]\n",
    "recursive merge": "version: 1\ndefault: block\nrules: []\nx: &x {<<: *x}\n",
    "deep YAML": "version: 1\ndefault: block\nrules: []\nx: " + "[" * 200 + "]" * 200 + "\n",
    "deep block YAML": "version: 1\nx:\n" + "".join(" " * i + "- \n" for i in range(1, 60)),
    "deep JSON": '{"version": 1, "x": ' + "[" * 200 + "]" * 200 + "}",
    "alias chain deeper than the bound": "x0: &x0 [1]\n" + "".join(f"x{i}: &x{i} [*x{i - 1}]\n" for i in range(1, 60)),
    "too many nodes (JSON)": '{"version": 1, "x": [' + ",".join(["1"] * (MAX_NODES + 10)) + "]}",
    "too many nodes (YAML)": "version: 1\nx:\n" + "- 1\n" * (MAX_NODES + 10),
    "too many bytes": "version: 1\ndefault: block\nrules: []\n# " + "x" * (documents.MAX_BYTES + 1) + "\n",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_policy_is_refused_before_it_expands(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(PolicyError) as refused:
        load_policy(text, known_orgs=["contoso-na", "contoso-jp"])
    if len(text) < 4096:  # a big flat document costs the time its bytes take to read, which MAX_BYTES bounds
        assert time.monotonic() - started < NOT_HANGING_S
    message = refused.value.errors[0]["message"]
    assert any(word in message for word in ("nodes", "deeper", "recursive", "bytes")), message
    assert refused.value.status == 422


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_orgs_file_is_refused_with_its_name(tmp_path, text: str) -> None:
    path = tmp_path / "orgs.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(OrgsError, match=r"orgs\.yaml"):
        load_orgs(path, env={})
    if len(text) < 4096:
        assert time.monotonic() - started < NOT_HANGING_S


def test_a_normal_policy_still_loads_aliases_and_merges_included() -> None:
    text = """
version: 1
default: block
defaults: &jp {claimant: [contoso-jp]}
rules:
  - {id: a, effect: block, when: {<<: *jp, origin: [gate]}}
  - {id: b, effect: hold, when: *jp}
"""
    policy = load_policy(text, known_orgs=["contoso-jp"])
    assert [r.id for r in policy.rules] == ["a", "b"]


@settings(max_examples=60, deadline=None)
@given(levels=st.integers(1, 12), fanout=st.integers(1, 12))
def test_aliases_are_refused_exactly_when_their_expansion_passes_a_bound(levels: int, fanout: int) -> None:
    """A chain of anchors, each a list of ``fanout`` aliases of the one before: refused iff it is too big."""
    lines = [f"a0: &a0 [{', '.join(['x'] * fanout)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]" for i in range(1, levels)]
    sizes = [1 + fanout]  # a list node and its items, expanded
    for _ in range(1, levels):
        sizes.append(1 + fanout * sizes[-1])
    expanded = 1 + sum(1 + size for size in sizes)  # the top mapping, each key and each expanded list
    too_deep = levels + 2 > MAX_DEPTH
    if expanded > MAX_NODES or too_deep:
        with pytest.raises(TooComplex):
            load_yaml("\n".join(lines))
    else:
        loaded = load_yaml("\n".join(lines))
        assert _count(loaded) == expanded


def _count(value: object) -> int:
    if isinstance(value, dict):
        return 1 + sum(_count(k) + _count(v) for k, v in value.items())
    if isinstance(value, list):
        return 1 + sum(_count(item) for item in value)
    return 1


def test_policy_validate_exits_1_on_a_bomb(tmp_path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(MERGE_BOMB)
    c = container(tmp_path)  # validate checks org names against the registered orgs, so it needs them
    bootstrap.install(c)
    try:
        result = CliRunner().invoke(app, ["policy", "validate", str(bomb), "--json"])
    finally:
        bootstrap.install(None)
        c.close()
    assert result.exit_code == 1
    assert "nodes" in json.loads(result.stdout)["errors"][0]["message"]


def test_startup_from_an_exploding_policy_file_names_the_file(tmp_path) -> None:
    bomb = tmp_path / "policy.yaml"
    bomb.write_text(MERGE_BOMB)
    settings = Settings(ledger=f"sqlite:///{tmp_path / 'l.db'}", orgs="unused", policy=str(bomb))
    with pytest.raises(PolicyError, match=r"policy\.yaml \(ORGGUARD_POLICY\) is refused: .*nodes"):
        bootstrap.build(settings, orgs=registry())


def test_serve_refuses_to_start_from_an_exploding_policy_file(tmp_path) -> None:
    bomb, orgs = tmp_path / "policy.yaml", tmp_path / "orgs.yaml"
    bomb.write_text(LAUGHS)
    orgs.write_text("orgs: []\n")
    result = CliRunner().invoke(
        app, ["serve", "--policy", str(bomb), "--orgs", str(orgs), "--ledger", f"sqlite:///{tmp_path / 'l.db'}"]
    )
    assert result.exit_code == 1
    assert "ORGGUARD_POLICY" in result.output and "nodes" in result.output


def test_a_bomb_stored_before_the_bounds_decides_nothing_fast(tmp_path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    ledger.save_policy(MERGE_BOMB, "before-the-fix")  # as an older OrgGuard could have saved it
    service = OrgGuard(ledger, registry())
    started = time.monotonic()
    with pytest.raises(StoredPolicyUnusable, match="policy version 1"):
        service.handle_claim(claim("contoso-na"))
    assert time.monotonic() - started < NOT_HANGING_S
    assert ledger.verify_audit().entries == 1  # the policy's own entry; no decision recorded
    ledger.close()


def test_a_saved_policy_is_parsed_once_per_version_cold_start_included(tmp_path, monkeypatch) -> None:
    import shared.service.orgguard

    parsed: list[str] = []
    real = shared.service.orgguard.load_policy

    def counting(text: str, **kwargs: object) -> object:
        parsed.append(text)
        return real(text, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shared.service.orgguard, "load_policy", counting)
    ledger = SqliteLedger(tmp_path / "l.db")
    OrgGuard(ledger, registry()).save_policy(BLOCKING_POLICY, actor="test")
    assert len(parsed) == 1
    cold = OrgGuard(ledger, registry())  # a new instance: a cold start over the same ledger
    for i in range(20):
        cold.handle_claim(claim("contoso-na" if i % 2 else "contoso-jp", op=f"op-{i}"))
        cold.evaluate(claim("contoso-na").key, "contoso-jp")
    assert len(parsed) == 2  # once when saved, once on the cold start, never per call
    ledger.close()
