"""Policy versions."""

from __future__ import annotations

from shared.ledger.port import Ledger


def test_policy_versions_count_up_and_the_newest_is_current(ledger: Ledger) -> None:
    assert ledger.policy() is None
    first = ledger.save_policy("version: 1\nmode: enforce\n", "admin@contoso")
    second = ledger.save_policy("version: 2\nmode: dry-run\n", "admin@contoso")
    assert (first.version, second.version) == (1, 2)
    current = ledger.policy()
    assert current == second
    kinds = [(e.event.kind, e.event.subject) for e in ledger.audit_entries()]
    assert kinds == [("policy.saved", "policy:1"), ("policy.saved", "policy:2")]
    assert ledger.verify_audit().ok


def test_a_large_policy_with_any_characters_reads_back_unchanged(ledger: Ledger) -> None:
    text = "version: 9\n# ポリシー ✓ \U0001d518\n" + "".join(
        f"  - id: rule-{i}\n    effect: block\n" for i in range(4000)
    )
    assert len(text) > 100_000
    saved = ledger.save_policy(text, "admin@contoso")
    assert ledger.policy() == saved and saved.text == text
