"""The impact of a policy change before it is saved: what the candidate would decide differently. Pure.

Three questions, each answered by deciding the same situations with the policy in force and with the candidate
(the same ``decide`` every entry point uses, so the answer is what would really happen):

* **held cases**: how each case waiting for an approver would be decided if it were decided again under the
  candidate (``POST /api/cases/{id}/reevaluate`` does exactly that once the candidate is saved; saving alone
  leaves held cases to their approvers and their expiry);
* **recent claims**: for each competing claim of the last days (each case opened), whether the candidate
  decides it otherwise (another effect, another rule, or an exemption);
* **ownerships**: for each mailbox the ledger records an owner for, whether the candidate would move it (its
  designated primary is another org, and that org's claim would now override) or would no longer move it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.domain.model import Case, Decision, Effect, MailboxKey
from shared.domain.policy import Policy, Situation, decide, designated_primary


@dataclass(frozen=True)
class Judged:
    """One thing the candidate would decide differently, and what would become of it."""

    key: MailboxKey
    claimant: str
    owner: str | None
    before: Decision  # under the policy in force (a held case: the hold it is waiting under)
    after: Decision  # under the candidate
    outcome: str
    case: Case | None = None

    @property
    def moves_to(self) -> str | None:
        """The org the mailbox would move to, when the candidate moves it."""
        return self.claimant if self.after.effect is Effect.OVERRIDE and not self.after.dry_run else None


def _same(a: Decision, b: Decision) -> bool:
    return (a.effect, a.rule, a.dry_run, a.exemption) == (b.effect, b.rule, b.dry_run, b.exemption)


def _result(d: Decision, claimant: str, owner: str | None) -> str:
    """What a decision does, in a few words."""
    if d.dry_run:
        return f"{d.effect.value} in dry run: nothing is written to the orgs"
    if d.exemption:
        return "only recorded: an exemption covers it"
    return {
        Effect.ALLOW: "allowed",
        Effect.BLOCK: f"blocked: the mailbox stays with {owner}",
        Effect.OVERRIDE: f"the mailbox moves to {claimant}",
        Effect.HOLD: "held for an approver",
        Effect.AUDIT: "only recorded",
        Effect.WARN: "let through with a warning",
    }[d.effect]


def held_case(candidate: Policy, case: Case, situation: Situation) -> Judged | None:
    """How a held case would be decided under ``candidate``; None when it would stay held."""
    after = decide(candidate, situation)
    if after.effect is Effect.HOLD and not after.dry_run:
        return None
    if after.dry_run:
        outcome = f"stays held: the candidate decides {after.effect.value} in dry run, which resolves nothing"
        return Judged(case.key, case.claimant, situation.owner, case.decision, after, outcome, case)
    verb = {Effect.OVERRIDE: "approved", Effect.BLOCK: "denied"}.get(after.effect, "resolved")
    outcome = f"{verb} when decided again: {_result(after, case.claimant, situation.owner)}"
    return Judged(case.key, case.claimant, situation.owner, case.decision, after, outcome, case)


def recent_claim(current: Policy, candidate: Policy, case: Case, situation: Situation) -> Judged | None:
    """A competing claim decided again by both policies; None when they agree."""
    before, after = decide(current, situation), decide(candidate, situation)
    if _same(before, after):
        return None
    outcome = (
        f"now {_result(before, case.claimant, situation.owner)} (rule {before.rule}); with the candidate "
        f"{_result(after, case.claimant, situation.owner)} (rule {after.rule})"
    )
    return Judged(case.key, case.claimant, situation.owner, before, after, outcome, case)


def ownership(
    current: Policy, candidate: Policy, key: MailboxKey, owner: str, situation: Callable[[str], Situation]
) -> Judged | None:
    """Whether the candidate would move a recorded owner's mailbox, or no longer move it.

    ``situation(org)`` is that org claiming the mailbox from ``owner`` (as a sweep finding it syncing there
    would). The orgs asked are the ones either policy designates as the mailbox's primary.
    """
    base = situation(owner)
    targets = dict.fromkeys(o for o in (designated_primary(candidate, base), designated_primary(current, base)) if o)
    for org in targets:
        if org == owner:
            continue
        s = situation(org)
        before, after = decide(current, s), decide(candidate, s)
        moves_now = before.effect is Effect.OVERRIDE and not before.dry_run
        moves_then = after.effect is Effect.OVERRIDE and not after.dry_run
        if moves_then and not moves_now:
            outcome = f"would move from {owner} to {org} once {org} claims it or a sweep finds it syncing there"
            return Judged(key, org, owner, before, after, outcome)
        if moves_now and not moves_then:
            outcome = f"would no longer move to {org}: {_result(after, org, owner)} (rule {after.rule})"
            return Judged(key, org, owner, before, after, outcome)
    return None
