"""The policy's email fence against the sandbox's orgs: the losing org's email goes to None with ACT.

FACTS.md: ``incomingemaildeliverymethod`` 0 None, ``outgoingemaildeliverymethod`` 0 None. A policy with
``fence: [act, email]`` sets both in the org whose claim loses; the org that wins gets email back on
server-side synchronization (2) with its promote.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.domain.model import ActionStatus, CaseQuery, CaseState
from tests.factories import AIKO, BLOCKING_POLICY
from tests.integration.s1_world import World, na_owns_aiko, open_world

pytestmark = pytest.mark.sandbox
EMAIL = "incomingemaildeliverymethod,outgoingemaildeliverymethod,actdeliverymethod"


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with open_world(tmp_path) as opened:
        yield opened


def email_of(w: World, org: str) -> tuple[int, int, int]:
    row = w.aiko(org)
    with w.admin(org) as client:
        got = client.get(f"mailboxes({row['mailboxid']})", params={"$select": EMAIL}).json()
    return got["incomingemaildeliverymethod"], got["outgoingemaildeliverymethod"], got["actdeliverymethod"]


@pytest.mark.parametrize("gate", [True, False], ids=["at-the-gate", "after-the-fact"])
def test_a_blocked_claimant_loses_email_as_well_when_the_policy_fences_it(world: World, gate: bool):
    world.c.service.save_policy(BLOCKING_POLICY + "fence: [act, email]\n", actor="test")
    na_owns_aiko(world)
    assert email_of(world, "contoso-jp") == (2, 2, 1)  # seeded: email and ACT on server-side sync
    world.settings(gate=gate)
    world.test_and_enable("contoso-jp")
    world.wait_for_case()
    world.carry_out()
    assert email_of(world, "contoso-jp") == (0, 0, 2)  # None, None, None
    assert email_of(world, "contoso-na") == (2, 2, 1)  # the owner keeps everything
    (case,) = world.c.ledger.cases(CaseQuery()).items
    assert case.state is CaseState.APPLIED and all(a.status is ActionStatus.APPLIED for a in case.actions)
    assert world.exchange() == "contoso-na"


def test_without_the_fence_email_is_left_alone(world: World):
    world.c.service.save_policy(BLOCKING_POLICY, actor="test")
    na_owns_aiko(world)
    world.test_and_enable("contoso-jp")
    world.carry_out()
    assert email_of(world, "contoso-jp") == (2, 2, 2)  # ACT None, email as it was


def test_the_winner_gets_email_back_when_a_fenced_mailbox_moves_to_it(world: World):
    world.c.service.save_policy(BLOCKING_POLICY + "fence: [act, email]\n", actor="test")
    na_owns_aiko(world)
    world.test_and_enable("contoso-jp")
    world.carry_out()
    assert email_of(world, "contoso-jp")[:2] == (0, 0)
    world.c.service.designate_owner(AIKO, "contoso-jp", actor="admin", reason="Aiko moved to Tokyo")
    world.carry_out()
    assert world.c.ledger.mailbox(AIKO).ownership.owner == "contoso-jp"
    assert email_of(world, "contoso-jp") == (2, 2, 1)
    assert email_of(world, "contoso-na") == (0, 0, 2)
    assert world.exchange() == "contoso-jp"
