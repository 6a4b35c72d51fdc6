"""Random sequences of claims, attempts and retries keep the ledger's invariants (hypothesis)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.model import ActionStatus, CaseQuery, CaseState, Effect, EventOutcome
from shared.ledger.port import Ledger
from shared.ledger.tables import TableLedger
from tests.contract.conftest import T0, Clock, LedgerSpec, claim, event_key, mailbox, table_spec

pytestmark = pytest.mark.slow
FAR = T0 + timedelta(days=365)
ORGS = ("contoso-na", "contoso-jp", "contoso-eu")

claims = st.tuples(st.just("claim"), st.integers(0, 1), st.sampled_from(ORGS),
                   st.sampled_from([Effect.BLOCK, Effect.OVERRIDE, Effect.HOLD]), st.integers(0, 3))  # fmt: skip
attempts = st.tuples(st.just("attempt"), st.integers(0, 99),
                     st.sampled_from([ActionStatus.APPLIED, ActionStatus.FAILED, ActionStatus.PENDING]))  # fmt: skip
resets = st.tuples(st.just("reset"), st.integers(0, 99))
programs = st.lists(st.one_of(claims, attempts, resets), min_size=1, max_size=9)


@pytest.fixture
def fresh(spec: LedgerSpec, tmp_path: Path) -> Iterator[Callable[[], Ledger]]:
    """A new, empty ledger of the parametrized kind for each hypothesis example."""
    opened: list[Ledger] = []

    def make() -> Ledger:
        if spec.kind == "sqlite":
            url = f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
        elif spec.kind == "memory":
            url = "memory:"
        else:
            url = table_spec(spec.url.removeprefix("tables:").rsplit(";TablePrefix=", 1)[0]).url
        opened.append(LedgerSpec(spec.kind, url).open())
        return opened[-1]

    yield make
    for ledger in opened:
        if isinstance(ledger, TableLedger):
            ledger.drop_tables()
        ledger.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=programs)
def test_any_sequence_of_claims_and_attempts_keeps_the_invariants(fresh: Callable[[], Ledger], program) -> None:
    ledger, clock = fresh(), Clock()
    versions = {0: 0, 1: 0}
    outcomes: dict[str, EventOutcome] = {}
    for step in program:
        if step[0] == "claim":
            _, m, org, effect, n = step
            op = f"op-{n}:m{m}"
            change, outcome = claim(ledger, mailbox(m), org, op, clock(), effect)
            if event_key(org, op) in outcomes:  # a redelivery: the first outcome, nothing written
                assert change is None and outcome == outcomes[event_key(org, op)]
            else:
                assert change is not None
                outcomes[event_key(org, op)] = outcome
                versions[m] += 1
        elif step[0] == "attempt":
            pending = ledger.pending_actions(now=FAR)
            if pending:
                action = pending[step[1] % len(pending)]
                retry = FAR - timedelta(days=1) if step[2] is ActionStatus.PENDING else None
                error = None if step[2] is ActionStatus.APPLIED else "boom"
                done = ledger.record_attempt(action.id, step[2], error, retry_at=retry)
                assert (done.status, done.attempts) == (step[2], action.attempts + 1)
        else:
            failed = [a for c in ledger.cases(CaseQuery(state=CaseState.FAILED, limit=500)).items for a in c.actions
                      if a.status is ActionStatus.FAILED]  # fmt: skip
            if failed:
                assert ledger.reset_action(failed[step[1] % len(failed)].id, actor="ops").status is ActionStatus.PENDING
        assert {m: ledger.mailbox(mailbox(m)).version for m in versions} == versions
    check_invariants(ledger, outcomes)


def check_invariants(ledger: Ledger, outcomes: dict[str, EventOutcome]) -> None:
    for key, outcome in outcomes.items():
        assert ledger.event(key) == outcome  # invariant 2: each event recorded once, as first decided
    everything = ledger.cases(CaseQuery(limit=500)).items
    pending = set()
    for case in everything:
        statuses = {a.status for a in case.actions}
        if ActionStatus.PENDING in statuses:
            assert case.state is CaseState.DECIDED
            pending |= {a.id for a in case.actions if a.status is ActionStatus.PENDING}
        elif ActionStatus.FAILED in statuses:
            assert case.state is CaseState.FAILED  # invariant 3: a failed action is visible on its case
        elif statuses:
            assert case.state is CaseState.APPLIED
        else:
            assert case.state in (CaseState.HELD, CaseState.DECIDED)
        for state in (case.state, None):
            assert case.id in {c.id for c in ledger.cases(CaseQuery(state=state, limit=500)).items}
    assert {a.id for a in ledger.pending_actions(limit=500, now=FAR)} == pending  # no action lost
    owners = [ledger.mailbox(mailbox(m)).ownership for m in (0, 1)]
    assert all(o is None or o.owner in ORGS for o in owners)
    assert ledger.verify_audit().ok  # invariant 4
