"""What each notice says: a subject, plain text, and simple accessible HTML, as one MIME message.

Pure. Every letter names the case, the mailbox, the rule and the decision's
explanation, says what to do next, and links to the case on OrgGuard's page
(``ORGGUARD_PUBLIC_URL`` + ``#/cases/<id>``) when that address is set. It never
carries a secret, a key or a token. The mailbox address appears in full only in
letters to the people a case concerns (the admin who claimed it, its approvers,
its owner's contact); the operations digest shows it redacted, and the page
shows the rest to whoever may sign in.

The HTML is plain on purpose: a ``lang`` attribute, one heading, paragraphs, a
definition list for the facts, link text that says where it goes, no images,
no layout tables, no colour that carries meaning. The plain-text part says the
same, so a reader that shows text only misses nothing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from shared.domain.model import Case, CaseState, Effect, NoticeKind
from shared.domain.policy import Policy


@dataclass(frozen=True)
class Letter:
    subject: str
    lead: str  # the first paragraph: what happened
    facts: tuple[tuple[str, str], ...]
    next_steps: tuple[str, ...]
    link: str | None  # the case on the page

    def text(self) -> str:
        lines = [self.lead, ""]
        width = max(len(name) for name, _ in self.facts) if self.facts else 0
        lines += [f"{name + ':':<{width + 1}} {value}" for name, value in self.facts]
        if self.next_steps:
            lines += ["", "What to do next:"]
            lines += [f"- {step}" for step in self.next_steps]
        if self.link:
            lines += ["", f"The case on OrgGuard's page: {self.link}"]
        lines += ["", "-- ", "OrgGuard, which guards which Dynamics 365 org synchronizes each Exchange mailbox."]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        e = html.escape
        facts = "".join(f"<dt>{e(name)}</dt><dd>{e(value)}</dd>" for name, value in self.facts)
        steps = "".join(f"<li>{e(step)}</li>" for step in self.next_steps)
        parts = [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(self.subject)}</title></head><body>",
            f"<h1>{e(self.subject)}</h1>",
            f"<p>{e(self.lead)}</p>",
            f"<dl>{facts}</dl>" if facts else "",
            f"<h2>What to do next</h2><ul>{steps}</ul>" if steps else "",
        ]
        if self.link:
            parts.append(f'<p><a href="{e(self.link, quote=True)}">Open the case on OrgGuard\'s page</a></p>')
        parts.append("<p>OrgGuard, which guards which Dynamics 365 org synchronizes each Exchange mailbox.</p>")
        parts.append("</body></html>")
        return "".join(parts)


def case_link(public_url: str | None, case_id: str) -> str | None:
    return f"{public_url.rstrip('/')}/#/cases/{case_id}" if public_url else None


def write(kind: NoticeKind, case: Case, policy: Policy, *, public_url: str | None, now: datetime) -> Letter:
    """The letter for a notice of ``kind`` about ``case``, as the case stands when it is sent."""
    short = case.id[:8]
    facts = (
        ("Case", case.id),
        ("Mailbox", case.key.address),
        ("Claimed by", case.claimant),
        ("Owner", case.owner or "none"),
        ("Rule", case.decision.rule),
        ("Decision", f"{case.decision.effect.value}: {case.decision.explanation}"),
    )
    link = case_link(public_url, case.id)
    approval = policy.approval
    if kind is NoticeKind.STOPPED:
        return _stopped(case, facts, link, approval.on_expiry)
    if kind is NoticeKind.APPROVAL:
        return Letter(
            f"Approval needed: {case.claimant} claims {case.key.address} (case {short})",
            f"{case.claimant} claimed the mailbox {case.key.address}, which {case.owner} owns. The policy holds the "
            "claim until an approver decides.",
            (*facts, ("Expires", _when(case.expires_at))),
            (
                f"Approve (the mailbox moves to {case.claimant}) or deny (it stays with {case.owner}) on the page, "
                f"or with: orgguard cases approve {short} --reason ... / orgguard cases deny {short} --reason ...",
                f"Nobody deciding by {_when(case.expires_at)} means {approval.on_expiry}.",
            ),
            link,
        )
    if kind is NoticeKind.REMINDER:
        left = _left(case.expires_at, now)
        return Letter(
            f"Reminder: case {short} expires in {left}",
            f"The claim of {case.claimant} on {case.key.address} still waits for an approver. It expires in {left}, "
            f"and then the policy applies {approval.on_expiry}.",
            (*facts, ("Expires", _when(case.expires_at))),
            (f"Approve or deny it before {_when(case.expires_at)}.",),
            link,
        )
    if kind is NoticeKind.EXPIRED:
        stays = _outcome(case)
        return Letter(
            f"Case {short} expired: {stays}",
            f"No approver decided on the claim of {case.claimant} on {case.key.address} in time, so the policy "
            f"applied {case.decision.effect.value}: {stays}.",
            facts,
            ("Nothing is needed unless the outcome is wrong; then an admin can designate the right owner.",),
            link,
        )
    if kind is NoticeKind.WARNED:
        return _warned(case, facts, link)
    if kind is NoticeKind.RESOLVED:
        approved = case.state is not CaseState.DENIED
        return Letter(
            f"Your claim on {case.key.address} was {'approved' if approved else 'denied'} (case {short})",
            f"An approver {'approved' if approved else 'denied'} the claim of {case.claimant} on {case.key.address}: "
            f"{_outcome(case)}. Their reason: {case.history[-1].note if case.history else 'none given'}.",
            facts,
            () if approved else ("Do not run Test & Enable on it again from this org: OrgGuard would stop it again.",),
            link,
        )
    return Letter(  # CARRIED_OUT, to the owner org's contact
        f"OrgGuard {_verb(case)} a claim on {case.key.address} (case {short})",
        f"{case.claimant} claimed {case.key.address}; OrgGuard decided {case.decision.effect.value} and its writes are "
        f"{_progress(case)}: {_outcome(case)}.",
        facts,
        ("Nothing is needed; the case on the page has every action and its result.",),
        link,
    )


def digest(failures: list[dict[str, str]], *, more: int, since: str, public_url: str | None) -> Letter:
    """The operations digest: actions that failed since the last one (mailboxes redacted: it may go wide)."""
    facts = tuple(
        (f"{f['kind']} in {f['org']}", f"case {f['case'][:8]} ({f['mailbox']}): {f['error']}") for f in failures
    )
    steps = [
        "Open each case on the page: a failed action can be retried there, or with orgguard actions retry ID.",
    ]
    if more:
        steps.append(f"{more} more failed actions are not listed here; the page lists every failed case.")
    return Letter(
        f"OrgGuard: {len(failures) + more} action{'s' if len(failures) + more != 1 else ''} failed since {since}",
        f"These actions failed since {since} and wait for someone to look at them.",
        facts,
        tuple(steps),
        f"{public_url.rstrip('/')}/#/cases?state=failed" if public_url else None,
    )


def _stopped(case: Case, facts: tuple[tuple[str, str], ...], link: str | None, on_expiry: str) -> Letter:
    short = case.id[:8]
    if case.decision.effect is Effect.HOLD:
        return Letter(
            f"Your change to {case.key.address} waits for an approver (case {short})",
            f"You ran Test & Enable (or set the sync check box) on the mailbox {case.key.address} in {case.claimant}, "
            f"but {case.owner} owns it. OrgGuard stopped the save and holds the claim for an approver; Dynamics 365 "
            "only showed you a generic error.",
            (*facts, ("Expires", _when(case.expires_at))),
            (
                "Wait for the approvers' decision; you will get a mail either way.",
                "Do not run Test & Enable again meanwhile: it would be stopped the same way.",
                f"If nobody decides by {_when(case.expires_at)}, the policy applies {on_expiry}.",
            ),
            link,
        )
    after = case.origin.after_the_fact
    return Letter(
        f"Your change to {case.key.address} was {'undone' if after else 'stopped'} (case {short})",
        f"You claimed the mailbox {case.key.address} for {case.claimant}, but {case.owner} owns it and the policy "
        f"blocks the claim. OrgGuard {'set it back' if after else 'stopped the save'}; Dynamics 365 "
        f"{'did not tell you' if after else 'only showed you a generic error'}.",
        facts,
        (
            f"The mailbox stays with {case.owner}; {case.claimant} is set to sync it with None.",
            f"If {case.claimant} should own it, ask an OrgGuard admin to designate it (or an approver, under a "
            "hold rule); running Test & Enable again will be stopped again.",
        ),
        link,
    )


def _warned(case: Case, facts: tuple[tuple[str, str], ...], link: str | None) -> Letter:
    """To the admin whose claim went through under a warn rule, and to the owner org's contact."""
    return Letter(
        f"A claim on {case.key.address} went through with a warning (case {case.id[:8]})",
        f"{case.claimant} claimed the mailbox {case.key.address}, which {case.owner} owns. The policy lets such a "
        f"claim through but warns: Exchange may now synchronize it with {case.claimant}, and {case.owner} stop "
        "synchronizing it. Dynamics 365 tells nobody about this.",
        facts,
        (
            f"If {case.claimant} should own it, ask an OrgGuard admin to designate it, so {case.owner} is set to None.",
            f"If not, set its synchronization method to None in {case.claimant} and run Test & Enable in "
            f"{case.owner} again.",
        ),
        link,
    )


def _outcome(case: Case) -> str:
    if case.decision.effect is Effect.OVERRIDE:
        return f"the mailbox moves to {case.claimant}"
    if case.decision.effect is Effect.BLOCK:
        return f"the mailbox stays with {case.owner}"
    return "nothing changes"


def _verb(case: Case) -> str:
    return "overrode" if case.decision.effect is Effect.OVERRIDE else "blocked"


def _progress(case: Case) -> str:
    return {CaseState.APPLIED: "done", CaseState.FAILED: "not all done (see the case)"}.get(case.state, "under way")


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "never"


def _left(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "no time"
    rest = max(at - now, timedelta(0))
    hours = int(rest.total_seconds() // 3600)
    return f"{hours} hours" if hours >= 2 else f"{max(1, int(rest.total_seconds() // 60))} minutes"


def mime(letter: Letter, *, sender: str, to: list[str], bcc: list[str], message_id: str, now: datetime) -> bytes:
    """The letter as a MIME message: multipart/alternative, plain text first, then HTML."""
    message = EmailMessage()
    message["From"] = Address("OrgGuard", addr_spec=sender)
    message["To"] = ", ".join(to)
    if bcc:
        message["Bcc"] = ", ".join(bcc)
    message["Subject"] = letter.subject
    message["Message-ID"] = message_id
    message["Date"] = format_datetime(now)
    message["Content-Language"] = "en"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to a robot
    message.set_content(letter.text())
    message.add_alternative(letter.html(), subtype="html")
    return message.as_bytes()
