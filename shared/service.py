"""The service layer: OrgGuard's use cases, one function each, for every entry point.

The gate, the Service Bus and Event Grid triggers, the async webhook, the
sweep, the admin API and the CLI all come here. Each use case reads the
ledger, decides with the pure policy engine and case work, and commits one
``Change``; on a concurrency conflict it reads again and decides again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared import casework
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent, Ledger, LedgerError
from shared.model import (
    ActionKind,
    AuditEvent,
    Case,
    CaseQuery,
    CaseState,
    Claim,
    ClaimKind,
    ClaimRecord,
    Decision,
    DomainError,
    Effect,
    MailboxKey,
    NotFound,
    Origin,
    Ownership,
    Page,
    new_id,
    utcnow,
)
from shared.orgs import OrgRegistry
from shared.overrides import Move, plan_move
from shared.policy import (
    NoUserDirectory,
    Policy,
    PolicyError,
    Situation,
    UserDirectory,
    decide,
    default_policy,
    designated_primary,
    load_policy,
)

log = logging.getLogger("orgguard.service")

MAX_ATTEMPTS = 8


def backoff(attempt: int) -> None:
    """A short jittered pause before deciding again, so writers racing on one mailbox spread out."""
    time.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))


class LedgerBusy(LedgerError):
    """The mailbox kept changing under us; the caller may retry later."""


class StoredPolicyUnusable(LedgerError):
    """The ledger's current policy does not load (saved before a bound existed): decide nothing from it."""


@dataclass(frozen=True)
class Outcome:
    """What a claim came to: the decision, its case, and whether it was seen before."""

    decision: Decision
    case_id: str | None
    duplicate: bool = False
    recorded: bool = True
    event: str | None = None  # the source event's idempotency key

    @property
    def effect(self) -> Effect:
        return self.decision.effect


@dataclass(frozen=True)
class MailboxReport:
    key: MailboxKey
    ownership: Ownership | None
    claims: tuple[ClaimRecord, ...]
    cases: tuple[Case, ...]


@dataclass
class OrgGuard:
    """The use cases, wired to their adapters by ``shared.bootstrap``."""

    ledger: Ledger
    orgs: OrgRegistry
    users: UserDirectory = field(default_factory=NoUserDirectory)
    clock: Callable[[], datetime] = utcnow
    _policy: tuple[int, Policy] | None = None

    # --- policy ---------------------------------------------------------------------

    def policy(self) -> Policy:
        """The current policy, parsed once per saved version."""
        saved = self.ledger.policy()
        version = saved.version if saved else 0
        if self._policy is None or self._policy[0] != version:
            # Org names were checked when it was saved; an org removed since must not stop every decision.
            try:
                parsed = load_policy(saved.text) if saved else default_policy()
            except PolicyError as exc:  # stored before today's bounds: no decision can be made from it
                raise StoredPolicyUnusable(f"policy version {version} in the ledger cannot be used: {exc}") from None
            self._policy = (version, parsed)
        return self._policy[1]

    def save_policy(self, text: str, *, actor: str) -> Policy:
        """Validate and store a new policy version; an invalid one changes nothing."""
        parsed = load_policy(text, known_orgs=self.orgs.names)
        saved = self.ledger.save_policy(text, actor)
        self._policy = (saved.version, parsed)
        return parsed

    def policy_text(self) -> tuple[int, str | None]:
        saved = self.ledger.policy()
        return (saved.version, saved.text) if saved else (0, None)

    # --- claims -----------------------------------------------------------------------

    def handle_claim(self, claim: Claim) -> Outcome:
        """Record and decide one claim; the same source event takes effect once."""
        self.orgs.get(claim.org)
        if self._is_own_write(claim):
            return Outcome(
                Decision(Effect.ALLOW, "own-write", "OrgGuard's own write carrying out a case"), None, recorded=False
            )
        policy = self.policy()

        def plan() -> casework.Planned:
            view = self.ledger.mailbox(claim.key)
            now = self.clock()
            decision = decide(policy, self._situation(claim, view.ownership, now))
            return casework.plan_claim(claim, view, decision, now=now, expires_after=policy.approval.expires_after)

        planned = self._commit(claim.event_key, plan, f"the mailbox {claim.key.redacted}")
        if isinstance(planned, Outcome):
            return planned
        self._log_decision(claim, planned)
        return Outcome(planned.decision, planned.case.id if planned.case else None, event=claim.event_key)

    def _commit(self, event_key: str, plan: Callable[[], casework.Planned], what: str) -> casework.Planned | Outcome:
        """Plan against a fresh view and commit it; on a conflict, plan again; a seen event answers as before."""
        for attempt in range(MAX_ATTEMPTS):
            planned = plan()
            try:
                self.ledger.commit(planned.change)
            except DuplicateEvent as dup:
                return self._duplicate_event(event_key, dup.outcome.effect, dup.outcome.case_id)
            except ConcurrencyConflict:
                backoff(attempt)
                continue
            return planned
        raise LedgerBusy(f"{what} kept changing; try again")

    def _situation(self, claim: Claim, owner: Ownership | None, now: datetime) -> Situation:
        contested = owner is not None and owner.owner != claim.org
        user: Mapping[str, object] = self.users.attributes(claim.key) if contested else {}
        return Situation(
            key=claim.key,
            claimant=claim.org,
            owner=owner.owner if owner else None,
            origin=claim.origin,
            kind=claim.kind,
            user=user,
            now=now,
        )

    def _is_own_write(self, claim: Claim) -> bool:
        """OrgGuard's own user carrying out a promote of a decided case (the loop guard)."""
        org = self.orgs.get(claim.org)
        if not org.app_user_id or claim.user_id != org.app_user_id:
            return False
        for case in self.ledger.cases(CaseQuery(mailbox=claim.key, limit=5)).items:
            if any(a.kind is ActionKind.PROMOTE and a.org == claim.org for a in case.actions):
                return True
        return False

    def _log_decision(self, claim: Claim, planned: casework.Planned) -> None:
        log.info(
            "claim decided",
            extra={
                "mailbox": claim.key.redacted,
                "org": claim.org,
                "origin": claim.origin.value,
                "effect": planned.decision.effect.value,
                "rule": planned.decision.rule,
                "case": planned.case.id if planned.case else None,
            },
        )

    def evaluate(
        self,
        key: MailboxKey,
        claimant: str,
        owner: str | None = None,
        kind: ClaimKind = ClaimKind.TEST_ENABLE,
        origin: Origin = Origin.ADMIN,
    ) -> Decision:
        """What would happen to this claim; records nothing."""
        self.orgs.get(claimant)
        if owner is not None:
            self.orgs.get(owner)
        else:
            current = self.ledger.mailbox(key).ownership
            owner = current.owner if current else None
        user = self.users.attributes(key) if owner and owner != claimant else {}
        return decide(
            self.policy(),
            Situation(key=key, claimant=claimant, owner=owner, origin=origin, kind=kind, user=user, now=self.clock()),
        )

    # --- cases ------------------------------------------------------------------------

    def case(self, case_id: str) -> Case:
        case = self.ledger.case(case_id)
        if case is None:
            raise NotFound(f"no case {case_id}", field="id")
        return case

    def cases(self, query: CaseQuery) -> Page:
        if query.org:
            self.orgs.get(query.org)
        return self.ledger.cases(query)

    def approve(self, case_id: str, *, actor: str, reason: str) -> Case:
        """The claimant wins: it becomes the owner, the old owner is demoted."""
        return self._resolve(case_id, Effect.OVERRIDE, CaseState.DECIDED, actor, reason, "approval")

    def deny(self, case_id: str, *, actor: str, reason: str) -> Case:
        """The owner keeps the mailbox; the claimant is demoted."""
        return self._resolve(case_id, Effect.BLOCK, CaseState.DENIED, actor, reason, "denial")

    def expire_held(self) -> list[Case]:
        """Resolve every held case past its expiry per ``approval.on_expiry``."""
        policy, now, done = self.policy(), self.clock(), []
        effect = Effect.OVERRIDE if policy.approval.on_expiry == "override" else Effect.BLOCK
        cursor = None
        while True:
            page = self.ledger.cases(CaseQuery(state=CaseState.HELD, limit=200, cursor=cursor))
            for case in page.items:
                if case.expires_at and case.expires_at <= now:
                    note = f"no approver decided within {policy.approval.expires_after}; on_expiry {effect.value}"
                    done.append(self._resolve(case.id, effect, CaseState.EXPIRED, "orgguard", note, "expiry"))
            if not page.next:
                return done
            cursor = page.next

    def _resolve(self, case_id: str, effect: Effect, state: CaseState, actor: str, reason: str, rule: str) -> Case:
        if not reason.strip():
            raise DomainError("a reason is required", field="reason")
        for attempt in range(MAX_ATTEMPTS):
            case = self.case(case_id)
            view = self.ledger.mailbox(case.key)
            change = casework.plan_resolution(
                case, view, effect=effect, state=state, actor=actor, reason=reason.strip(), rule=rule, now=self.clock()
            )
            try:
                self.ledger.commit(change)
            except ConcurrencyConflict:
                backoff(attempt)
                continue
            return self.case(case_id)
        raise LedgerBusy(f"case {case_id} kept changing; try again")

    def designate_owner(self, key: MailboxKey, org: str, *, actor: str, reason: str) -> Case:
        """An admin makes ``org`` the owner of ``key`` (demote the old owner, promote ``org``)."""
        if not reason.strip():
            raise DomainError("a reason is required", field="reason")
        move = Move(
            key=key,
            to=org,
            to_mailbox_id=None,
            demote={},
            kind=ClaimKind.ADMIN,
            origin=Origin.ADMIN,
            rule="admin",
            reason=f"{actor} made {org} the owner of {key}: {reason.strip()}",
            actor=actor,
            event_key=f"admin:{new_id()}",
            how="admin",
        )
        outcome = self.move_owner(move)
        assert outcome.case_id is not None
        return self.case(outcome.case_id)

    def retry_action(self, action_id: str, *, actor: str) -> None:
        self.ledger.reset_action(action_id)
        self.ledger.append_audit(AuditEvent("action.retry.asked", action_id, actor))

    # --- mailboxes and audit --------------------------------------------------------------

    def mailbox(self, key: MailboxKey) -> MailboxReport:
        view = self.ledger.mailbox(key)
        claims = tuple(self.ledger.claims(key, limit=50))
        cases = self.ledger.cases(CaseQuery(mailbox=key, limit=50)).items
        return MailboxReport(key, view.ownership, claims, cases)

    def verify_audit(self) -> tuple[bool, int, str | None]:
        report = self.ledger.verify_audit()
        return report.ok, report.entries, report.reason

    # --- planned overrides (migrations, sweep repairs) --------------------------------------

    def move_owner(self, move: Move) -> Outcome:
        """Record ``move`` as one override case with its actions; the same ``event_key`` takes effect once."""
        self.orgs.get(move.to)
        for org in move.demote:
            self.orgs.get(org)
        planned = self._commit(
            move.event_key,
            lambda: plan_move(self.ledger.mailbox(move.key), move, now=self.clock()),
            f"the mailbox {move.key.redacted}",
        )
        if isinstance(planned, Outcome):
            return planned
        case_id = planned.case.id if planned.case else None
        log.info(
            "owner moved", extra={"mailbox": move.key.redacted, "org": move.to, "rule": move.rule, "case": case_id}
        )
        return Outcome(planned.decision, case_id, event=move.event_key)

    def _duplicate_event(self, event_key: str, effect: Effect, case_id: str | None) -> Outcome:
        case = self.ledger.case(case_id) if case_id else None
        decision = case.decision if case else Decision(effect, "duplicate", "this event was already processed")
        return Outcome(decision, case_id, duplicate=True, event=event_key)

    def designated(self, key: MailboxKey, *, owner: str | None = None) -> str | None:
        """The org the policy's ``primary`` designations name for ``key``, if any (records nothing)."""
        user = self.users.attributes(key) if self.policy().primary else {}
        situation = Situation(
            key=key,
            claimant=owner or "",
            owner=owner,
            origin=Origin.SWEEP,
            kind=ClaimKind.SWEEP,
            user=user,
            now=self.clock(),
        )
        return designated_primary(self.policy(), situation)
