"""The service layer: OrgGuard's use cases, one function each, for every entry point.

The gate, the Service Bus and Event Grid triggers, the async webhook, the
sweep, the admin API and the CLI all come here. Each use case reads the
ledger, decides with the pure policy engine and case work, and commits one
``Change``; on a concurrency conflict it reads again and decides again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from shared import telemetry
from shared.config.policy_file import load_policy
from shared.domain import casework, notices
from shared.domain.backoff import delay
from shared.domain.exemptions import Exemption, covering, reads_users, utc_day
from shared.domain.model import (
    Action,
    ActionKind,
    AuditEvent,
    Case,
    CaseQuery,
    CaseState,
    Change,
    Claim,
    ClaimKind,
    ClaimRecord,
    Decision,
    DomainError,
    Effect,
    InvalidTransition,
    MailboxKey,
    NotFound,
    Origin,
    Overview,
    Ownership,
    Page,
    Unheard,
    UnknownOrg,
    new_id,
    utcnow,
)
from shared.domain.orgs import OrgRegistry
from shared.domain.overrides import Move, plan_move
from shared.domain.policy import (
    NoUserDirectory,
    Policy,
    PolicyError,
    Situation,
    UserDirectory,
    UserUnknown,
    decide,
    default_policy,
    designated_primary,
    explain,
    policy_warnings,
    reads_groups,
    user_conditions,
)
from shared.ledger.deadline import may_wait
from shared.ledger.port import ConcurrencyConflict, DuplicateEvent, Ledger, LedgerError
from shared.service.dispatch import Dispatch
from shared.service.registrations import Registrations
from shared.service.unheard import UndecidedSaves, reconcile

log = logging.getLogger("orgguard.service")

MAX_ATTEMPTS = 8
_Done = TypeVar("_Done")  # what a committed attempt answers


def backoff(attempt: int) -> None:
    """A short jittered pause before deciding again, so writers racing on one mailbox spread out."""
    time.sleep(delay(attempt + 1, base=0.002, cap=0.2, jitter=1.0))


class LedgerBusy(LedgerError):
    """The mailbox kept changing under us; the caller may retry later."""


def check_policy(text: str, orgs: OrgRegistry) -> Policy:
    """Every check a policy must pass to be saved, in one place: ``PUT /api/policy`` and
    ``orgguard policy validate`` both call it, so a file that validates is one the API takes."""
    return load_policy(text, known_orgs=orgs.names)


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


@dataclass
class BulkReport:
    """What a bulk approval or denial did: the cases decided, and those skipped with their state and why."""

    decided: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    more: bool = False  # the filter matches more held cases than one request decides


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
    mail: bool = False  # notices can be sent (Graph and a sender mailbox): decisions add notify actions
    dispatch: Dispatch = field(default_factory=Dispatch)  # what a commit leaves: work on the queue, decision events
    registrations: Registrations = field(default_factory=Registrations)  # OrgGuard's steps in each org, as last checked
    undecided: UndecidedSaves = field(default_factory=UndecidedSaves)  # saves the gate let through undecided
    _policy: tuple[int, Policy] | None = None
    _needs: tuple[Policy, bool, bool] | None = None  # (policy, reads the user, reads groups)

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
        parsed = check_policy(text, self.orgs)
        saved = self.ledger.save_policy(text, actor)
        self._policy = (saved.version, parsed)
        return parsed

    def policy_warnings(self, policy: Policy | None = None) -> list[str]:
        """What ``policy`` (the current one by default) will not do as written here (no Graph, no mail)."""
        return policy_warnings(policy or self.policy(), directory=self.users.configured, mail=self.mail)

    def policy_text(self) -> tuple[int, str | None]:
        saved = self.ledger.policy()
        return (saved.version, saved.text) if saved else (0, None)

    # --- claims -----------------------------------------------------------------------

    def handle_claim(self, claim: Claim) -> Outcome:
        """Record and decide one claim; the same source event takes effect once."""
        watch = telemetry.Stopwatch()
        with telemetry.span("orgguard.decide", origin=claim.origin, kind=claim.kind, org=claim.org) as span:
            outcome = self._handle_claim(claim)
            d = outcome.decision
            telemetry.note(span, effect=d.effect, rule=d.rule, case=outcome.case_id, duplicate=outcome.duplicate)
        labels: dict[str, object] = {"effect": d.effect, "origin": claim.origin, "org": claim.org}
        telemetry.count(telemetry.DECISIONS, 1, duplicate=outcome.duplicate, **labels)
        telemetry.count(telemetry.DECISION_TIME, watch.ms, **labels)
        return outcome

    def _handle_claim(self, claim: Claim) -> Outcome:
        self.orgs.get(claim.org)
        if self._is_own_write(claim):
            return Outcome(
                Decision(Effect.ALLOW, "own-write", "OrgGuard's own write carrying out a case"), None, recorded=False
            )
        policy = self.policy()
        unheard = self.unheard(claim)

        def plan() -> casework.Planned:
            view = self.ledger.mailbox(claim.key)
            now = self.clock()
            decision = decide(policy, self._situation(claim, view.ownership, now, policy))
            planned = casework.plan_claim(
                claim, view, decision, now=now, expires_after=policy.approval.expires_after, fence=policy.fence,
                unheard=unheard,
            )  # fmt: skip
            if not self.mail or planned.case is None:
                return planned
            told = notices.on_claim(planned.case, decision, policy, user_id=claim.user_id, now=now)
            return notices.with_notices(planned, told)

        planned = self._commit(claim.event_key, plan, f"the mailbox {claim.key.redacted}")
        if isinstance(planned, Outcome):
            return planned
        self._log_decision(claim, planned)
        return Outcome(planned.decision, planned.case.id if planned.case else None, event=claim.event_key)

    def unheard(self, claim: Claim) -> Unheard | None:
        """How ``claim``'s save skipped the gate (a bypass, a disabled step, an undecided answer), if it did."""
        return reconcile(
            claim, self.ledger, registrations=self.registrations, undecided=self.undecided, now=self.clock()
        )

    def _commit(self, event_key: str, plan: Callable[[], casework.Planned], what: str) -> casework.Planned | Outcome:
        """Plan against a fresh view and commit it; on a conflict, plan again; a seen event answers as before."""

        def attempt() -> casework.Planned | None:
            planned = plan()
            return planned if self._committed(planned.change, planned.decision) else None

        try:
            return self._retried(attempt, what)
        except DuplicateEvent as dup:
            return self._duplicate_event(event_key, dup.outcome.effect, dup.outcome.case_id)

    def _retried(self, attempt: Callable[[], _Done | None], what: str) -> _Done:
        """The one commit-and-retry loop: ``attempt`` plans against a fresh view and commits, answering None when
        a concurrent writer moved the mailbox first; then it backs off and plans again, at most MAX_ATTEMPTS times."""
        for n in range(MAX_ATTEMPTS):
            done = attempt()
            if done is not None:
                return done
            may_wait("back off and decide again")
            backoff(n)
        raise LedgerBusy(f"{what} kept changing; try again")

    def _committed(self, change: Change, decision: Decision | None = None) -> bool:
        """Commit ``change`` and hand it to the dispatch; False when a concurrent writer moved the mailbox first."""
        try:
            self.ledger.commit(change)
        except ConcurrencyConflict:
            return False
        self.dispatch.committed(change, decision)
        return True

    def _situation(self, claim: Claim, owner: Ownership | None, now: datetime, policy: Policy) -> Situation:
        return self.situation(
            claim.key, claim.org, owner.owner if owner else None, claim.origin, claim.kind, now=now, policies=(policy,)
        )

    def situation(
        self,
        key: MailboxKey,
        claimant: str,
        owner: str | None,
        origin: Origin,
        kind: ClaimKind,
        *,
        now: datetime,
        policies: Sequence[Policy],
        exemptions: Sequence[Exemption] | None = None,
        owner_recorded: bool = True,
    ) -> Situation:
        """What a decision on this claim reads, for each of ``policies`` (a policy impact compares two): the orgs'
        types, and for a competing claim the exemptions in force (``exemptions``, or the ledger's) and the user
        when a policy or an exemption reads it."""
        contested = owner is not None and owner != claimant
        exempt = tuple(self.exemptions_in_force(now) if exemptions is None else exemptions) if contested else ()
        user, note = self._user(key, *policies, also=reads_users(exempt, utc_day(now))) if contested else ({}, None)
        return Situation(key, claimant, owner, origin, kind, user, now, note, owner_recorded,
                         self.org_type(claimant), self.org_type(owner), exempt)  # fmt: skip

    def exemption_covering(self, key: MailboxKey, claimant: str, owner: str | None) -> Exemption | None:
        """The exemption in force that covers ``claimant`` taking ``key`` from ``owner`` (a sweep's repair)."""
        now = self.clock()
        found = self.exemptions_in_force(now)
        user, _ = self._user(key, also=reads_users(found, utc_day(now))) if found else ({}, None)
        return covering(found, key=key, claimant=claimant, owner=owner, user=user, today=utc_day(now))

    def exemptions_in_force(self, now: datetime) -> list[Exemption]:
        """The exemptions that apply today (one ledger read; a decision on an uncontested claim never makes it)."""
        return self.ledger.exemptions().active(utc_day(now))

    def org_type(self, name: str | None) -> str | None:
        """A registered org's environment type (an org no longer registered has none)."""
        try:
            return self.orgs.get(name).type if name else None
        except UnknownOrg:
            return None

    def _user(self, key: MailboxKey, *policies: Policy, also: bool = False) -> tuple[Mapping[str, object], str | None]:
        """The user's attributes when a policy (or, ``also``, an exemption) reads them (never otherwise: no Graph on
        that path), and why not.

        Graph failing, no user, or two users for the address: no attributes and a reason,
        which the decision's explanation repeats; the decision is made all the same.
        """
        needs = [self._reads_user(p) for p in policies]
        reads, groups = any(r for r, _ in needs) or also, any(g for _, g in needs)
        if not reads:
            return {}, None
        if self.users.configured:
            may_wait("ask the user directory")
        try:
            return self.users.attributes(key, groups=groups), None
        except UserUnknown as exc:
            return {}, exc.reason

    def _reads_user(self, policy: Policy) -> tuple[bool, bool]:
        if self._needs is None or self._needs[0] is not policy:
            self._needs = (policy, bool(user_conditions(policy)), reads_groups(policy))
        return self._needs[1], self._needs[2]

    def know_users(self, keys: Sequence[MailboxKey]) -> None:
        """Look many users up at once (a sweep's next findings), when the policy reads them."""
        reads, groups = self._reads_user(self.policy())
        if reads and keys:
            self.users.prefetch(keys, groups=groups)

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
        *,
        owner_recorded: bool = True,
    ) -> Decision:
        """What would happen to this claim; records nothing.

        ``owner_recorded=False`` says ``owner`` is not the ledger's but the org a dry-run
        sweep lets claim first, so the explanation does not call it the owner.
        """
        policy, situation = self._what_if(key, claimant, owner, kind, origin, owner_recorded=owner_recorded)
        return decide(policy, situation)

    def explain(
        self, key: MailboxKey, claimant: str, owner: str | None = None, kind: ClaimKind = ClaimKind.TEST_ENABLE
    ) -> tuple[Decision, list[str]]:
        """``evaluate`` with the rule-by-rule trace behind it (the user's attributes included); records nothing."""
        policy, situation = self._what_if(key, claimant, owner, kind, Origin.ADMIN)
        return decide(policy, situation), explain(policy, situation)

    def _what_if(
        self,
        key: MailboxKey,
        claimant: str,
        owner: str | None,
        kind: ClaimKind,
        origin: Origin,
        *,
        owner_recorded: bool = True,
    ) -> tuple[Policy, Situation]:
        self.orgs.get(claimant)
        if owner is not None:
            self.orgs.get(owner)
        else:
            current = self.ledger.mailbox(key).ownership
            owner = current.owner if current else None
        policy = self.policy()
        now = self.clock()
        return policy, self.situation(
            key, claimant, owner, origin, kind, now=now, policies=(policy,), owner_recorded=owner_recorded
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

    def count_cases(self, query: CaseQuery) -> int:
        if query.org:
            self.orgs.get(query.org)
        return self.ledger.count_cases(query)

    def overview(self) -> Overview:
        return self.ledger.overview()

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
                    try:
                        done.append(self._resolve(case.id, effect, CaseState.EXPIRED, "orgguard", note, "expiry"))
                    except InvalidTransition:
                        continue  # an approver (or another instance) decided it meanwhile
            if not page.next:
                return done
            cursor = page.next

    def decide_many(self, query: CaseQuery, *, approve: bool, actor: str, reason: str, limit: int = 500) -> BulkReport:
        """Approve or deny every held case ``query`` matches (at most ``limit``), each exactly once.

        A case someone else decided meanwhile is skipped with its state, not decided again.
        """
        if not reason.strip():
            raise DomainError("a reason is required", field="reason")
        if query.state not in (None, CaseState.HELD):
            raise DomainError("only held cases can be approved or denied", field="filter.state")
        held = replace(query, state=CaseState.HELD, open=False, cursor=None, limit=min(limit, 500))
        report = BulkReport()
        cursor = None
        while len(report.decided) + len(report.skipped) < limit:
            page = self.cases(replace(held, cursor=cursor))
            for case in page.items:
                try:
                    resolve = self.approve if approve else self.deny
                    report.decided.append(resolve(case.id, actor=actor, reason=reason).id)
                except InvalidTransition as exc:
                    report.skipped.append((case.id, exc.state, exc.detail))
            if not page.next:
                return report
            cursor = page.next
        report.more = True
        return report

    def _resolve(self, case_id: str, effect: Effect, state: CaseState, actor: str, reason: str, rule: str) -> Case:
        if not reason.strip():
            raise DomainError("a reason is required", field="reason")

        def attempt() -> Case | None:
            key = self.case(case_id).key
            # The mailbox first, then the case: a decision committed in between moves the version,
            # and the ledger checks the case is still held (Change.expect) whatever the order.
            view = self.ledger.mailbox(key)
            case = self.case(case_id)
            now = self.clock()
            change = casework.plan_resolution(
                case, view, effect=effect, state=state, actor=actor, reason=reason.strip(), rule=rule, now=now,
                fence=self.policy().fence,
            )  # fmt: skip
            change = self._resolution_notices(change, case, effect, now)
            return self.case(case_id) if self._committed(change) else None

        return self._retried(attempt, f"case {case_id}")

    def _resolution_notices(self, change: Change, case: Case, effect: Effect, now: datetime) -> Change:
        resolved = next((c for c in change.cases if c.id == case.id), None)
        if not self.mail or resolved is None:
            return change
        whole = replace(resolved, actions=(*case.actions, *resolved.actions))  # who was told before, too
        return notices.added(change, case.id, notices.on_resolution(whole, effect, self.policy(), now=now))

    def remind_held(self) -> list[str]:
        """Add the approvers' reminder to every held case whose expiry is near; the case ids reminded."""
        if not self.mail:
            return []
        policy, done, cursor = self.policy(), [], None
        while True:
            page = self.ledger.cases(CaseQuery(state=CaseState.HELD, limit=200, cursor=cursor))
            for case in page.items:
                if notices.reminder(case, policy, now=self.clock()) is not None and self._remind(case.id, policy):
                    done.append(case.id)
            if not page.next:
                return done
            cursor = page.next

    def _remind(self, case_id: str, policy: Policy) -> bool:
        """Add one reminder in a commit of its own; a second worker racing here finds it added and stops."""

        def attempt() -> bool | None:
            case = self.case(case_id)
            now = self.clock()
            action = notices.reminder(case, policy, now=now)
            if action is None:
                return False
            view = self.ledger.mailbox(case.key)
            reminded = replace(case, actions=(*case.actions, action))
            audit = AuditEvent("case.reminded", case.key.address, "orgguard", {"case": case.id}, now)
            change = Change(case.key, view.version, cases=(reminded,), audit=(audit,))
            return True if self._committed(change) else None

        return self._retried(attempt, f"case {case_id}")

    def reevaluate(self, case_id: str, *, actor: str) -> Case:
        """Decide a held case again with today's policy and directory (after a Graph outage, say).

        Still a hold: nothing changes. Block or override: the case is resolved that way,
        as an approver would, with the new decision's explanation as the reason.
        """
        case = self.case(case_id)
        if case.state is not CaseState.HELD:
            raise InvalidTransition(
                f"case {case.id} is {case.state.value}; only held cases are decided again", state=case.state.value
            )
        policy = self.policy()
        owner = self.ledger.mailbox(case.key).ownership
        claim = Claim(case.key, case.claimant, case.claimant_mailbox_id, case.kind, case.origin)
        decision = decide(policy, self._situation(claim, owner, self.clock(), policy))
        if decision.dry_run or decision.effect is Effect.HOLD:
            return case
        state = CaseState.DENIED if decision.effect is Effect.BLOCK else CaseState.DECIDED
        return self._resolve(case_id, decision.effect, state, actor, decision.explanation, decision.rule)

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

    def retry_action(self, action_id: str, *, actor: str) -> Action:
        """Put a failed action back in the outbox (409 when it is not failed: two retries, one wins)."""
        action = self.ledger.reset_action(action_id, actor=actor)
        if self.dispatch.work is not None:
            self.dispatch.retried(action, self.case(action.case_id).key)
        return action

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
            lambda: plan_move(self.ledger.mailbox(move.key), move, now=self.clock(), fence=self.policy().fence),
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
        policy = self.policy()
        user, note = self._user(key, policy) if policy.primary else ({}, None)
        situation = Situation(
            key=key,
            claimant=owner or "",
            owner=owner,
            origin=Origin.SWEEP,
            kind=ClaimKind.SWEEP,
            user=user,
            now=self.clock(),
            user_note=note,
        )
        return designated_primary(policy, situation)
