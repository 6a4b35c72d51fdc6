"""Who is told what (pure planning) and what the letters say (pure rendering)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.config.policy_file import load_policy
from shared.domain import letters, notices
from shared.domain.model import (
    Case,
    CaseState,
    ClaimKind,
    Decision,
    Effect,
    MailboxKey,
    NoticeKind,
    Origin,
)
from shared.domain.policy import policy_warnings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
AIKO = MailboxKey("aiko.tanaka@contoso.com")
POLICY = load_policy(
    """
version: 1
approval: {approvers: ["group:OrgGuard Approvers", approver@contoso.com], expires_after: P3D}
notify:
  owners: {contoso-na: [crm-admins@contoso.com]}
"""
)


def case(effect: Effect, *, state: CaseState | None = None, origin: Origin = Origin.GATE) -> Case:
    decision = Decision(effect, "default", f"contoso-jp claimed {AIKO}, owned by contoso-na; <b>{effect.value}</b>.")
    held = effect is Effect.HOLD
    return Case(
        id="1a2b3c4d-0000-4000-8000-000000000000", key=AIKO, owner="contoso-na", claimant="contoso-jp",
        claimant_mailbox_id="m-jp", kind=ClaimKind.TEST_ENABLE, origin=origin, decision=decision,
        state=state or (CaseState.HELD if held else CaseState.DECIDED), created_at=T0, updated_at=T0,
        expires_at=T0 + timedelta(days=3) if held else None,
    )  # fmt: skip


def kinds(actions) -> dict[NoticeKind, tuple[str, ...]]:
    return {a.notice.kind: a.notice.to for a in actions}


def test_a_held_claim_tells_the_stopped_admin_and_the_approvers() -> None:
    told = kinds(notices.on_claim(case(Effect.HOLD), case(Effect.HOLD).decision, POLICY, user_id="u1", now=T0))
    assert told == {
        NoticeKind.STOPPED: ("admin:contoso-jp/u1",),
        NoticeKind.APPROVAL: ("group:OrgGuard Approvers", "approver@contoso.com"),
    }


@pytest.mark.parametrize(
    ("effect", "user", "expected"),
    [
        (Effect.BLOCK, "u1", {NoticeKind.STOPPED, NoticeKind.CARRIED_OUT}),
        (Effect.BLOCK, None, {NoticeKind.CARRIED_OUT}),  # a sweep's claim has no admin to tell
        (Effect.OVERRIDE, "u1", {NoticeKind.CARRIED_OUT}),  # nobody was stopped
        (Effect.AUDIT, "u1", set()),
    ],
)
def test_who_is_told_follows_the_effect(effect: Effect, user: str | None, expected: set[NoticeKind]) -> None:
    c = case(effect)
    assert set(kinds(notices.on_claim(c, c.decision, POLICY, user_id=user, now=T0))) == expected


def test_a_dry_run_tells_nobody_and_switches_turn_each_notice_off() -> None:
    c = case(Effect.HOLD)
    assert notices.on_claim(c, replace(c.decision, dry_run=True), POLICY, user_id="u1", now=T0) == ()
    quiet = load_policy(
        "version: 1\napproval: {approvers: [a@b.com]}\nnotify: {stopped_admin: false, approvers: false}"
    )
    assert notices.on_claim(c, c.decision, quiet, user_id="u1", now=T0) == ()


def test_expiry_tells_the_approvers_and_the_admin_who_was_stopped() -> None:
    held = case(Effect.HOLD)
    held = replace(held, actions=notices.on_claim(held, held.decision, POLICY, user_id="u1", now=T0))
    expired = replace(held, state=CaseState.EXPIRED, decision=Decision(Effect.BLOCK, "expiry", "nobody decided"))
    told = kinds(notices.on_resolution(expired, Effect.BLOCK, POLICY, now=T0))
    assert told[NoticeKind.EXPIRED] == ("group:OrgGuard Approvers", "approver@contoso.com", "admin:contoso-jp/u1")
    approved = replace(held, state=CaseState.DECIDED, decision=Decision(Effect.OVERRIDE, "approval", "moved"))
    assert kinds(notices.on_resolution(approved, Effect.OVERRIDE, POLICY, now=T0))[NoticeKind.RESOLVED] == (
        "admin:contoso-jp/u1",
    )


def test_the_reminder_is_due_before_expiry_once() -> None:
    held = case(Effect.HOLD)
    assert notices.reminder(held, POLICY, now=T0 + timedelta(days=1)) is None  # too early (P1D before expiry)
    due = notices.reminder(held, POLICY, now=T0 + timedelta(days=2, minutes=1))
    assert due is not None and due.notice is not None and due.notice.kind is NoticeKind.REMINDER
    reminded = replace(held, actions=(due,))
    assert notices.reminder(reminded, POLICY, now=T0 + timedelta(days=2, hours=1)) is None  # only once
    assert notices.reminder(held, POLICY, now=T0 + timedelta(days=3)) is None  # expired: no reminder


def test_a_short_expiry_reminds_at_half_time() -> None:
    short = replace(case(Effect.HOLD), expires_at=T0 + timedelta(hours=4))
    assert notices.reminder(short, POLICY, now=T0 + timedelta(hours=1)) is None
    assert notices.reminder(short, POLICY, now=T0 + timedelta(hours=2)) is not None


def test_a_letter_escapes_what_it_quotes_and_links_to_the_case() -> None:
    c = case(Effect.HOLD)
    letter = letters.write(NoticeKind.APPROVAL, c, POLICY, public_url="https://orgguard.contoso.com/", now=T0)
    page = letter.html()
    assert page.startswith('<!DOCTYPE html><html lang="en">')
    assert "<b>hold</b>" not in page and "&lt;b&gt;hold&lt;/b&gt;" in page
    assert 'href="https://orgguard.contoso.com/#/cases/1a2b3c4d-0000-4000-8000-000000000000"' in page
    assert "<dl>" in page and "<table" not in page and "<img" not in page
    text = letter.text()
    assert "https://orgguard.contoso.com/#/cases/1a2b3c4d" in text and "<b>hold</b>" in text  # text is not HTML
    assert "2026-12-04 09:00 UTC" in text  # the expiry, in words people read


def test_a_letter_without_a_public_url_names_the_case_and_has_no_link() -> None:
    letter = letters.write(NoticeKind.STOPPED, case(Effect.BLOCK), POLICY, public_url=None, now=T0)
    assert letter.link is None and "href" not in letter.html()
    assert "1a2b3c4d-0000-4000-8000-000000000000" in letter.text()
    assert "Test & Enable again will be stopped again" in letter.text()


def test_the_mime_message_has_plain_text_then_html_and_our_message_id() -> None:
    letter = letters.write(NoticeKind.REMINDER, case(Effect.HOLD), POLICY, public_url=None, now=T0)
    raw = letters.mime(letter, sender="orgguard@contoso.com", to=["orgguard@contoso.com"], bcc=["a@b.com"],
                       message_id="<x.0@contoso.com>", now=T0)  # fmt: skip
    text = raw.decode()
    assert "multipart/alternative" in text and text.index("text/plain") < text.index("text/html")
    assert "Message-ID: <x.0@contoso.com>" in text and "Auto-Submitted: auto-generated" in text


def test_the_operations_digest_shows_mailboxes_redacted() -> None:
    failures = [{"case": "1a2b3c4d-x", "mailbox": AIKO.redacted, "kind": "demote", "org": "contoso-jp",
                 "error": "403: not allowed"}]  # fmt: skip
    letter = letters.digest(failures, more=2, since="2026-12-01 09:00 UTC", public_url=None)
    assert AIKO.address not in letter.text() and AIKO.redacted in letter.text()
    assert letter.subject.startswith("OrgGuard: 3 actions failed")


def test_warnings_name_user_conditions_without_graph_and_notify_without_mail() -> None:
    design = load_policy((__import__("tests.unit.test_policy", fromlist=["DESIGN_POLICY"])).DESIGN_POLICY)
    (warning,) = policy_warnings(design, directory=False, mail=False)
    assert warning.startswith("primary[0].when.user.usageLocation") and "ORGGUARD_GRAPH_URL" in warning
    assert policy_warnings(design, directory=True, mail=False) == []  # no notify section: nothing to warn
    assert any("ORGGUARD_MAIL_FROM" in w for w in policy_warnings(POLICY, directory=True, mail=False))
    assert policy_warnings(POLICY, directory=True, mail=True) == []
