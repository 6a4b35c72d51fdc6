"""S1 with Test & Enable completing after the save, as in Dataverse (FACTS.md "Checked again"), under each
semantics: the natural flow with a short delay, and both orders of the race OrgGuard meets — the pending test
running before OrgGuard's demote, or the demote landing first.

The sandbox holds tests back (`test_enable_delay_s`) and runs them when asked (`/_sandbox/test-enable/run`), so
each order is staged on purpose; OrgGuard's outbox is carried out the way its timer would, until quiet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.domain.model import ActionStatus, CaseQuery, CaseState
from shared.service.outbox import has_pending
from tests.factories import BLOCKING_POLICY, OVERRIDING_POLICY
from tests.integration import s1_world
from tests.integration.s1_world import SEMANTICS, World, assert_jp_took_aiko, assert_na_keeps_aiko, given_na_owns_aiko

pytestmark = pytest.mark.sandbox
HELD_BACK = 3600.0  # a pending test runs only when the test says so
ORDERS = ["test-first", "demote-first"]


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with s1_world.open_world(tmp_path) as opened:
        yield opened


def run_tests(w: World) -> None:
    """The pending Test & Enable jobs (and the old owners' synchronizations they lead to) run now."""
    w.sandbox.post("/_sandbox/test-enable/run").raise_for_status()


def answering_late(w: World, latency_ms: int, *orgs: str) -> None:
    """The orgs answer every Web API request ``latency_ms`` late: OrgGuard carries a decision out as soon as it has
    decided an event, so a test that stages its own step first holds OrgGuard's writes back this way."""
    for org in orgs:
        w.sandbox.put("/_sandbox/settings", json={"org": org, "latency_ms": latency_ms}).raise_for_status()


def jp_test(w: World) -> str:
    """How JP's first Test & Enable ended: the race's order shows in it."""
    jobs = w.sandbox.get("/_sandbox/test-enable", params={"org": "contoso-jp"}).json()["jobs"]
    outcome: str = next(job["outcome"] for job in jobs if job["kind"] == "test-and-enable")
    return outcome


def settle(w: World, *, held_back: bool) -> None:
    """Until nothing moves: pending tests run, events reach OrgGuard, OrgGuard's outbox is carried out."""
    for _ in range(6):
        w.sandbox.get("/_sandbox/events", params={"wait": 10}).raise_for_status()
        w.carry_out()  # OrgGuard's demotes and promotes land before the tests held back run
        if held_back:
            run_tests(w)
        w.sandbox.get("/_sandbox/test-enable", params={"wait": 10}).raise_for_status()
        w.sandbox.get("/_sandbox/events", params={"wait": 10}).raise_for_status()
        jobs = w.sandbox.get("/_sandbox/test-enable").json()
        events = w.sandbox.get("/_sandbox/events").json()
        if jobs["pending"] == 0 and events["pending"] == 0 and not has_pending(w.c.ledger):
            return
    raise AssertionError("the orgs and OrgGuard did not settle")


def start(w: World, semantics: str, policy: str, delay: float) -> None:
    given_na_owns_aiko(w, policy, semantics=semantics, test_enable_delay_s=delay)
    settle(w, held_back=delay == HELD_BACK)


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_s1_blocking_with_tests_completing_later(world: World, semantics: str):
    start(world, semantics, BLOCKING_POLICY, delay=0.2)
    assert world.test_and_enable("contoso-jp").status_code >= 400  # the gate stopped it: no test was scheduled
    settle(world, held_back=False)
    assert_na_keeps_aiko(world)
    (case,) = world.c.ledger.cases(CaseQuery()).items
    assert all(action.status is ActionStatus.APPLIED for action in case.actions)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("semantics", SEMANTICS)
def test_s1_overriding_with_the_pending_test_racing_orgguard(world: World, semantics: str, order: str):
    start(world, semantics, OVERRIDING_POLICY, delay=HELD_BACK)
    assert world.test_and_enable("contoso-jp").status_code == 204
    if order == "test-first":
        run_tests(world)  # JP's own test runs before OrgGuard demotes NA and promotes JP (the gate decided this
        # claim; its asynchronous event is the same operation, a duplicate, which starts no round of its own)
    settle(world, held_back=True)

    alone = "alert" if semantics == "alert" else "took-over"  # before OrgGuard's promote sets the check box
    assert jp_test(world) == (alone if order == "test-first" else "took-over")
    assert_jp_took_aiko(world)
    cases = world.c.ledger.cases(CaseQuery()).items
    assert len(cases) == 1 and cases[0].state is CaseState.APPLIED, [(c.claimant, c.state) for c in cases]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("semantics", SEMANTICS)
def test_s1_gate_off_with_the_pending_test_racing_the_demote(world: World, semantics: str, order: str):
    start(world, semantics, BLOCKING_POLICY, delay=HELD_BACK)
    world.settings(gate=False)
    if order == "test-first":
        answering_late(world, 400, "contoso-jp")
    assert world.test_and_enable("contoso-jp").status_code == 204
    world.wait_for_case()
    if order == "test-first":
        run_tests(world)  # JP's test takes the mailbox (or fails with the alert) before OrgGuard's demote lands
        answering_late(world, 0, "contoso-jp")
        world.wait_until_carried_out()
    settle(world, held_back=True)
    took = "alert" if semantics == "alert" else "took-over"
    assert jp_test(world) == (took if order == "test-first" else "not-syncing")  # the demote won the race
    assert_na_keeps_aiko(world)
    assert world.aiko("contoso-na")["orgmarkedasprimaryforexchangesync"] is True


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_s1_gate_off_with_a_short_real_delay(world: World, semantics: str):
    start(world, semantics, BLOCKING_POLICY, delay=0.3)
    world.settings(gate=False)
    assert world.test_and_enable("contoso-jp").status_code == 204
    world.wait_for_case()
    settle(world, held_back=False)
    assert_na_keeps_aiko(world)
