"""Deciding: which org keeps a mailbox when a second org claims it.

Pure on purpose: it decides from a ``Situation`` that already holds everything a
decision reads (the claim, the ledger's owner, the user's Graph attributes, the
time). The gate, the queue, the sweep, ``POST /api/policy/evaluate`` and
``orgguard policy explain`` all call the same ``decide``, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase

from shared.domain.exemptions import Exemption, covering
from shared.domain.model import ClaimKind, Decision, Effect, MailboxKey, Origin
from shared.domain.policy.effects import label, where
from shared.domain.policy.schema import Designation, Policy, Rule, When

UNCONTESTED = "uncontested"
DEFAULT_RULE = "default"


@dataclass(frozen=True)
class Situation:
    """Everything a decision reads; built by the service layer from the claim and the ledger."""

    key: MailboxKey
    claimant: str
    owner: str | None
    origin: Origin
    kind: ClaimKind
    user: Mapping[str, object]
    now: datetime
    user_note: str | None = None  # why the user's attributes are unknown (Graph unavailable, no such user, ...)
    # False when ``owner`` is not the ledger's but the org a dry-run sweep lets claim first
    owner_recorded: bool = True
    claimant_type: str | None = None  # the orgs' environment types (production, sandbox, ...), when registered
    owner_type: str | None = None
    exemptions: tuple[Exemption, ...] = ()  # the exemptions in force; one covering the claim makes it audit

    @property
    def contested(self) -> bool:
        return self.owner is not None and self.owner != self.claimant


@dataclass(frozen=True, slots=True)
class _Check:
    """Whether one condition of a rule holds, and the words the explanation gives for it."""

    ok: bool
    why: str


@dataclass(frozen=True, slots=True)
class _Outcome:
    decision: Decision
    trace: list[str]


def decide(policy: Policy, s: Situation) -> Decision:
    """The decision on one claim: uncontested ones are allowed, competing ones go through the rules."""
    return _evaluate(policy, s).decision


def explain(policy: Policy, s: Situation) -> list[str]:
    """The rule-by-rule trace behind ``decide``: what was checked and why it did or did not match."""
    return _evaluate(policy, s).trace


def designated_primary(policy: Policy, s: Situation) -> str | None:
    """The org the first matching ``primary`` designation names, if any."""
    found = _designation(policy, s)
    return found[1].org if found else None


def _designation(policy: Policy, s: Situation) -> tuple[int, Designation] | None:
    for i, designation in enumerate(policy.primary):
        if _failed(designation.when, s) is None:
            return i, designation
    return None


def _evaluate(policy: Policy, s: Situation) -> _Outcome:
    dry_run = policy.mode == "dry-run"
    if not s.contested:
        why = "which no org owns yet" if s.owner is None else "which it already owns"
        sentence = f"{s.claimant} claimed {s.key}, {why}; rule {UNCONTESTED} allows it{_dry(dry_run)}."
        return _Outcome(
            Decision(Effect.ALLOW, UNCONTESTED, sentence, dry_run),
            [f"{UNCONTESTED}: {s.claimant} claimed {s.key}, {why}; rules decide competing claims only"],
        )
    trace: list[str] = []
    for n, rule in enumerate(policy.rules, start=1):
        head = f"rule {n} {rule.id} ({label(rule.effect)})"
        failed = _failed(rule.when, s)
        if failed is not None:
            trace.append(f"{head}: no match, {failed.why}")
            continue
        applied = _apply(policy, rule, s, dry_run or rule.dry_run)
        if isinstance(applied, str):
            trace.append(f"{head}: no match, {applied}")
            continue
        decision, why = applied
        trace.append(f"{head}: matches, {why} -> {decision.effect.value}")
        decision = _noted(_exempted(decision, s, trace), s)
        trace.extend(
            f"rule {m} {later.id} ({later.effect}): not checked, an earlier rule matched"
            for m, later in enumerate(policy.rules[n:], start=n + 1)
        )
        return _Outcome(decision, trace)
    trace.append(f"no rule matched: the {DEFAULT_RULE} effect {policy.default.value} applies")
    verb = _verb(policy.default, s, "it")
    sentence = f"{_contest(s)}; no rule matched and the {DEFAULT_RULE} rule {verb}{_dry(dry_run)}."
    decision = _exempted(Decision(policy.default, DEFAULT_RULE, sentence, dry_run), s, trace)
    return _Outcome(_noted(decision, s), trace)


_WOULD = {
    Effect.BLOCK: "block it",
    Effect.OVERRIDE: "let it take over",
    Effect.HOLD: "hold it for an approver",
    Effect.WARN: "let it through with a warning",
}


def _exempted(decision: Decision, s: Situation, trace: list[str]) -> Decision:
    """The decision, or ``audit`` naming the exemption that covers the claim when the rule would enforce."""
    if decision.effect not in _WOULD or not s.exemptions:
        return decision
    found = covering(s.exemptions, key=s.key, claimant=s.claimant, owner=s.owner, user=s.user, today=_utc_date(s.now))
    if found is None:
        return decision
    trace.append(f"{found.sentence()} covers {found.what}: audit instead of {decision.effect.value}")
    sentence = (
        f"{_contest(s)}; rule {decision.rule} would {_WOULD[decision.effect]}, but {found.sentence()} exempts "
        f"{found.what}, so the claim is only recorded{_dry(decision.dry_run)}."
    )
    return Decision(Effect.AUDIT, decision.rule, sentence, decision.dry_run, exemption=found.id)


def _noted(decision: Decision, s: Situation) -> Decision:
    """The decision with the reason user conditions could not match, when the directory could not say."""
    if not s.user_note:
        return decision
    return replace(decision, explanation=f"{decision.explanation} Conditions on the user did not match: {s.user_note}.")


def _apply(policy: Policy, rule: Rule, s: Situation, dry_run: bool) -> tuple[Decision, str] | str:
    """A matching rule's decision and why, or why prefer-primary falls through to the next rule."""
    why = "; ".join(c.why for c in _checks(rule.when, s)) or "it has no conditions"
    named = rule.effect_for(s.origin)
    if named != "prefer-primary":
        effect = Effect(named)
        scope = _scope(rule.when)
        subject = f"claims {scope}" if scope else "every competing claim"
        sentence = f"{_contest(s)}; rule {rule.id} {_verb(effect, s, subject)}{where(rule.effect, s.origin)}"
        return Decision(effect, rule.id, f"{sentence}{_dry(dry_run)}.", dry_run), why
    found = _designation(policy, s)
    if found is None:
        return f"no primary designation matches {s.key}"
    i, designation = found
    terms = _terms(designation.when)
    basis = f"primary[{i}] designates {designation.org} for {terms or 'every mailbox'}"
    if designation.org == s.claimant:
        effect, verb = Effect.OVERRIDE, f"lets {s.claimant} take over"
    elif designation.org == s.owner:
        effect, verb = Effect.BLOCK, f"blocks it and the mailbox stays with {s.owner}"
    else:
        return f"{basis}, neither the claimant nor the owner"
    sentence = f"{_contest(s)}; rule {rule.id} {verb}, as {basis}{where(rule.effect, s.origin)}{_dry(dry_run)}."
    return Decision(effect, rule.id, sentence, dry_run), f"{why}; {basis}"


def _contest(s: Situation) -> str:
    if not s.owner_recorded:
        unrecorded = "the ledger names no registered owner"
        return f"{s.claimant} claimed {s.key}, which {s.owner} also syncs and would own first ({unrecorded})"
    return f"{s.claimant} claimed {s.key}, owned by {s.owner}"


def _dry(dry_run: bool) -> str:
    return " (dry run: nothing is written to the orgs)" if dry_run else ""


def _verb(effect: Effect, s: Situation, subject: str) -> str:
    if effect is Effect.BLOCK:
        return f"blocks {subject}, so the mailbox stays with {s.owner}"
    if effect is Effect.OVERRIDE:
        return f"lets {subject} take over, so the mailbox moves to {s.claimant}"
    if effect is Effect.HOLD:
        return f"holds {subject} for an approver"
    if effect is Effect.AUDIT:
        return f"only records {subject}, changing nothing"
    if effect is Effect.WARN:
        return f"lets {subject} through with a warning to the people concerned; the ledger keeps {s.owner} as owner"
    return f"decides {effect.value} for {subject}"


# --- conditions --------------------------------------------------------------------------


def _failed(when: When, s: Situation) -> _Check | None:
    """The first condition that does not match, or None when all do (no conditions: always)."""
    return next((c for c in _checks(when, s) if not c.ok), None)


def _checks(when: When, s: Situation) -> Iterator[_Check]:
    """Lazily, so evaluation stops at the first condition that fails."""
    if when.claimant is not None:
        yield _one_of("claimant", s.claimant, when.claimant)
    if when.owner is not None:
        yield _one_of("owner", s.owner, when.owner)
    if when.claimant_type is not None:
        yield _org_type("claimant", s.claimant, s.claimant_type, when.claimant_type)
    if when.owner_type is not None:
        yield _org_type("owner", s.owner, s.owner_type, when.owner_type)
    if when.origin is not None:
        yield _one_of("origin", str(s.origin), when.origin)
    if when.kind is not None:
        yield _one_of("kind", str(s.kind), when.kind)
    if when.mailbox_address is not None:
        yield _glob("mailbox.address", s.key.address.strip().casefold(), when.mailbox_address)
    if when.mailbox_domain is not None:
        yield _glob("mailbox.domain", s.key.address.rpartition("@")[2].rstrip(".").lower(), when.mailbox_domain)
    for name, values in _user_values(when):
        if values is not None:
            yield _user_attribute(name, s.user.get(name), values, s.user_note)
    if when.user_member_of is not None:
        yield _member_of(s.user.get("memberOf"), when.user_member_of, s.user_note)
    if when.during is not None:
        yield _during(_utc_date(s.now), when.during)


def _one_of(name: str, actual: str | None, values: Sequence[str]) -> _Check:
    ok = actual is not None and actual in values
    if len(values) == 1:
        return _Check(ok, f"{name} {actual or 'none'} {'is' if ok else 'is not'} {values[0]}")
    return _Check(ok, f"{name} {actual or 'none'} {'is one' if ok else 'is none'} of {_list(values)}")


def _org_type(role: str, org: str | None, actual: str | None, types: Sequence[str]) -> _Check:
    """An org's environment type; one with no type (none in the orgs file, none discovered) never matches."""
    if org is None:
        return _Check(False, f"{role}.type: there is no {role}")
    if actual is None:
        return _Check(False, f"{role}.type of {org} is not known (give it a type in the orgs file, or discover it)")
    ok = actual in types
    return _Check(ok, f"{role}.type {actual} ({org}) {'is one' if ok else 'is none'} of {_list(types)}")


def _glob(name: str, actual: str, patterns: Sequence[str]) -> _Check:
    ok = any(fnmatchcase(actual, p) for p in patterns)
    return _Check(ok, f"{name} {actual} {'matches' if ok else 'does not match'} {_list(patterns)}")


def _user_values(when: When) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    return (
        ("usageLocation", when.user_usage_location),
        ("country", when.user_country),
        ("department", when.user_department),
        ("companyName", when.user_company_name),
        ("officeLocation", when.user_office_location),
    )


def _unknown(name: str, note: str | None) -> str:
    return f"{name} is not known ({note or 'the directory did not supply it'})"


def _user_attribute(name: str, actual: object, values: Sequence[str], note: str | None = None) -> _Check:
    if not isinstance(actual, str) or not actual.strip():
        return _Check(False, _unknown(f"user.{name}", note))
    ok = actual.strip().casefold() in {v.casefold() for v in values}
    return _Check(ok, f"user.{name} {actual} {'matches' if ok else 'does not match'} {_list(values)}")


def _member_of(actual: object, groups: Sequence[str], note: str | None = None) -> _Check:
    if isinstance(actual, str):
        actual = [actual]
    if not isinstance(actual, list | tuple | set | frozenset):
        return _Check(False, _unknown("user.memberOf", note))
    mine = {g.strip().casefold() for g in actual if isinstance(g, str)}
    hits = [g for g in groups if g.casefold() in mine]
    if hits:
        return _Check(True, f"the user is a member of {_list(hits)}")
    return _Check(False, f"the user is a member of none of {_list(groups)}")


def _during(today: date, window: tuple[date, date]) -> _Check:
    start, end = window
    ok = start <= today <= end
    return _Check(ok, f"{today} is {'within' if ok else 'outside'} {start} to {end}")


def _utc_date(now: datetime) -> date:
    """The UTC calendar day of ``now``; a naive time is taken as UTC already."""
    if now.tzinfo is None:
        return now.date()
    try:
        return now.astimezone(UTC).date()
    except OverflowError:  # the first or last representable day in another zone
        return now.date()


def _list(values: Sequence[str]) -> str:
    return ", ".join(values)


def _terms(when: When) -> str:
    """The conditions as written: "mailbox.domain contoso.co.jp and user.usageLocation JP"."""
    dumped = when.model_dump(mode="json")
    return " and ".join(f"{name} {' to '.join(v) if name == 'during' else _list(v)}" for name, v in dumped.items())


def _scope(when: When) -> str:
    """The conditions in words, for the explanation: "from contoso-dev, contoso-test"."""
    phrases: tuple[tuple[str, Sequence[str] | None], ...] = (
        ("from {}", when.claimant),
        ("against {}", when.owner),
        ("from {} orgs", when.claimant_type),
        ("against {} orgs", when.owner_type),
        ("arriving via {}", when.origin),
        ("of kind {}", when.kind),
        ("for {}", when.mailbox_address),
        ("in {}", when.mailbox_domain),
        *((f"where user.{name} is {{}}", values) for name, values in _user_values(when)),
        ("where the user is in {}", when.user_member_of),
    )
    parts = [words.format(_list(values)) for words, values in phrases if values is not None]
    if when.during is not None:
        parts.append(f"between {when.during[0]} and {when.during[1]}")
    return " ".join(parts)
