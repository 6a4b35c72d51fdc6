"""What a sweep says about a finding: an owner is called the owner only when the ledger records one."""

from __future__ import annotations

import pytest

from shared.domain.findings import Finding, FindingKind, Row
from shared.service.sweep import settle
from tests.factories import AIKO, HOLDING_POLICY, claim, container

NA, JP = "contoso-na", "contoso-jp"


@pytest.fixture
def service(tmp_path):
    c = container(tmp_path, HOLDING_POLICY)
    yield c.service
    c.close()


def finding(owner: str | None, *, failing: bool = False) -> Finding:
    kinds = (FindingKind.MULTI_ORG, FindingKind.ALERT) if failing else (FindingKind.MULTI_ORG,)
    rows = tuple(Row(org, f"row-{org}", failing=failing, alert=failing) for org in (NA, JP))
    return Finding(AIKO, kinds, rows, owner)


def test_a_dry_run_does_not_call_the_first_claimant_the_owner_when_the_ledger_has_none(service):
    said = settle(service, finding(None), sweep_id="s1", apply=False).explanation
    assert "owned by" not in said
    # JP claims first (the rows sort by name when no owner is recorded); NA's claim competes with it
    assert f"{NA} claimed {AIKO.address}, which {JP} also syncs and would own first" in said
    assert "the ledger names no registered owner" in said


def test_the_ledgers_owner_is_called_the_owner(service):
    service.handle_claim(claim(NA))
    said = settle(service, finding(NA), sweep_id="s1", apply=False).explanation
    assert f"{JP} claimed {AIKO.address}, owned by {NA}" in said and "would own first" not in said


def test_a_repair_says_owns_only_of_the_ledgers_owner(service):
    unowned = settle(service, finding(None, failing=True), sweep_id="s1", apply=False).explanation
    assert f"{JP} prevails over the other claims and is made the syncing org" in unowned and "owns it" not in unowned
    service.handle_claim(claim(NA))
    owned = settle(service, finding(NA, failing=True), sweep_id="s1", apply=False).explanation
    assert f"{NA} owns it and is made the syncing org" in owned
