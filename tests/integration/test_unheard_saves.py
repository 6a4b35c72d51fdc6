"""Saves that skipped OrgGuard's gate, against the sandbox's orgs: found afterwards, and the case says how.

A System Administrator (who holds the bypass privileges, FACTS.md "Checked again") saves with
``MSCRM.BypassBusinessLogicExecution``: with ``CustomSync,CustomAsync`` neither of OrgGuard's steps runs and
only the next sweep finds the claim; with ``CustomSync`` alone (or the legacy
``MSCRM.BypassCustomPluginExecution``, which bypasses synchronous logic only) the asynchronous step still
reports it. A disabled gate step lets an ordinary save through the same way. Each case records its origin,
``found`` (``bypass``, ``gate_disabled``) and the user who saved; OrgGuard repairs per policy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from shared.domain.model import CaseQuery, CaseState, Found, Origin
from tests.factories import AIKO, BLOCKING_POLICY
from tests.integration.s1_world import World, na_owns_aiko, open_world

pytestmark = pytest.mark.sandbox
JP_ADMIN = "admin-of-contoso-jp"  # World.admin's bearer token in contoso-jp
BYPASS_BOTH = {"MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync"}
BYPASS_SYNC = {"MSCRM.BypassBusinessLogicExecution": "CustomSync"}
LEGACY = {"MSCRM.BypassCustomPluginExecution": "true"}


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with open_world(tmp_path) as opened:
        yield opened


def start(w: World, *, delay: float = 0.0) -> str:
    """NA owns Aiko's mailbox; JP's admin is a System Administrator; OrgGuard's registration was checked.

    Returns JP's admin's systemuser id."""
    w.c.service.save_policy(BLOCKING_POLICY, actor="test")
    w.settings(semantics="overwrite", test_enable_delay_s=delay)
    na_owns_aiko(w)
    settle(w)
    w.sandbox.put(f"/_sandbox/users/{JP_ADMIN}", json={"system_administrator": True}).raise_for_status()
    checked = asyncio.run(w.c.check_registration())
    assert all(r.ok for r in checked), [r.doc() for r in checked]
    time.sleep(1.05)  # Dataverse stamps modifiedon to the second: the admin's save comes a second later
    with w.admin("contoso-jp") as client:
        return str(client.get("WhoAmI").json()["UserId"])


def settle(w: World) -> None:
    """Pending tests run and events arrive (a short delay, when there is one)."""
    w.sandbox.get("/_sandbox/test-enable", params={"wait": 10}).raise_for_status()
    w.sandbox.get("/_sandbox/events", params={"wait": 10}).raise_for_status()


def save_bypassing(w: World, headers: dict[str, str]) -> None:
    """JP's admin runs Test & Enable on Aiko's mailbox, sending ``headers``."""
    row = w.aiko("contoso-jp")
    with w.admin("contoso-jp") as client:
        answer = client.patch(
            f"mailboxes({row['mailboxid']})",
            json={"testemailconfigurationscheduled": True},
            headers={"If-Match": "*", **headers},
        )
    assert answer.status_code == 204, answer.text


def jp_case(w: World):  # type: ignore[no-untyped-def]
    cases = [c for c in w.c.ledger.cases(CaseQuery(mailbox=AIKO)).items if c.claimant == "contoso-jp"]
    assert len(cases) == 1, [(c.origin, c.claimant) for c in cases]
    return cases[0]


def assert_repaired(w: World) -> None:
    assert w.exchange() == "contoso-na"
    assert w.aiko("contoso-jp")["actdeliverymethod"] == 2
    assert w.c.ledger.mailbox(AIKO).ownership.owner == "contoso-na"  # type: ignore[union-attr]


@pytest.mark.parametrize("delay", [0.0, 0.3], ids=["test-in-the-save", "test-completing-later"])
def test_a_save_bypassing_both_steps_is_found_by_the_next_sweep_and_the_case_says_so(world: World, delay: float):
    admin = start(world, delay=delay)
    save_bypassing(world, BYPASS_BOTH)
    settle(world)
    assert world.exchange() == "contoso-jp"  # the bypass worked: JP took the mailbox over
    assert world.c.ledger.cases(CaseQuery(mailbox=AIKO)).items == ()  # OrgGuard heard nothing

    jobs = world.c.jobs()
    _, result = asyncio.run(jobs.run_sweep(jobs.start_sweep([], apply=True, actor="test")))
    settle(world)
    world.carry_out()
    settle(world)

    finding = next(f for f in result.conflicts if f["mailbox"] == AIKO.address)
    assert finding["unheard"]["contoso-jp"]["found"] == "bypass"
    case = jp_case(world)
    assert case.origin is Origin.SWEEP and case.unheard is not None
    assert (case.unheard.found, case.unheard.by) == (Found.BYPASS, Origin.SWEEP)
    if delay == 0:
        assert case.unheard.saved_by == admin  # the row's last change was the admin's save
    assert case.unheard.saved_at is not None
    assert "never reached OrgGuard's gate" in case.history[0].note
    shown = httpx.get(f"{world.orgguard}/api/cases/{case.id}", headers={"Authorization": "Bearer t"}).json()
    assert shown["unheard"]["found"] == "bypass" and shown["origin"] == "sweep"
    audit = [e.event.data for e in world.c.ledger.audit_entries(limit=10_000) if e.event.data.get("case") == case.id]
    assert audit[0]["found"] == "bypass"
    assert_repaired(world)


@pytest.mark.parametrize("headers", [BYPASS_SYNC, LEGACY], ids=["CustomSync", "legacy-plugin-bypass"])
def test_a_save_bypassing_the_gate_alone_is_found_by_the_asynchronous_event(world: World, headers: dict[str, str]):
    admin = start(world)
    save_bypassing(world, headers)
    world.wait_for_case(1)  # NA's own claim opened none; JP's event opens one
    settle(world)
    world.carry_out()
    case = jp_case(world)
    assert case.origin is Origin.WEBHOOK and case.unheard is not None
    assert (case.unheard.found, case.unheard.saved_by) == (Found.BYPASS, admin)
    assert case.state is CaseState.APPLIED
    assert_repaired(world)


def test_an_ordinary_save_past_a_disabled_gate_step_says_the_gate_was_disabled(world: World):
    start(world)
    with world.admin("contoso-jp") as client:  # someone deactivates OrgGuard's gate step in JP
        steps = client.get(
            "sdkmessageprocessingsteps",
            params={"$select": "sdkmessageprocessingstepid", "$filter": "name eq 'OrgGuard: mailbox Update (gate)'"},
        ).json()["value"]
        client.patch(
            f"sdkmessageprocessingsteps({steps[0]['sdkmessageprocessingstepid']})",
            json={"statecode": 1, "statuscode": 2},
            headers={"If-Match": "*"},
        ).raise_for_status()
    asyncio.run(world.c.check_registration())  # the housekeeping timer's check
    assert world.test_and_enable("contoso-jp").status_code == 204  # nothing stopped it
    world.wait_for_case(1)
    settle(world)
    world.carry_out()
    case = jp_case(world)
    assert case.unheard is not None and case.unheard.found is Found.GATE_DISABLED
    assert_repaired(world)
    health = httpx.get(f"{world.orgguard}/api/health").json()["checks"]["registration"]["orgs"]["contoso-jp"]
    assert health["gate"] == "off"


def test_a_save_the_gate_decided_says_nothing_of_the_kind(world: World):
    start(world)
    assert world.test_and_enable("contoso-jp").status_code >= 400  # the gate stopped it
    settle(world)
    world.carry_out()
    case = jp_case(world)
    assert case.origin is Origin.GATE and case.unheard is None
