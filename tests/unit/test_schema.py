"""The mailbox table's constants agree with each rule that uses them: what OrgGuard writes is what it
recognizes as written, and its own demote never reads as a claim."""

from __future__ import annotations

import json

import pytest

from shared.dataverse.payloads.rows import target_kind
from shared.dataverse.schema import ACT_METHOD, PRIMARY_FLAG, TEST_ENABLE, WRITES, ActMethod, State, SyncStatus
from shared.domain.model import Action, ActionKind, ClaimKind
from shared.service.org_writes import Baseline, landed
from shared.service.rollout import done_in_org


def test_the_option_values_are_the_ones_dataverse_documents() -> None:
    # FACTS.md, "Dataverse mailbox table"
    assert [ActMethod.OUTLOOK, ActMethod.SERVER_SIDE_SYNC, ActMethod.NONE] == [0, 1, 2]
    assert [SyncStatus.NOT_RUN, SyncStatus.SUCCESS, SyncStatus.FAILURE] == [0, 1, 2]
    assert [State.ACTIVE, State.INACTIVE] == [0, 1]


def test_the_writes_go_out_as_plain_json_numbers() -> None:
    assert json.loads(json.dumps(dict(WRITES[ActionKind.DEMOTE]))) == {ACT_METHOD: 2, PRIMARY_FLAG: False}
    assert json.loads(json.dumps(dict(WRITES[ActionKind.PROMOTE]))) == {
        PRIMARY_FLAG: True,
        ACT_METHOD: 1,
        TEST_ENABLE: True,
    }


def test_the_writes_cannot_be_changed_by_a_caller() -> None:
    with pytest.raises(TypeError):
        WRITES[ActionKind.DEMOTE][ACT_METHOD] = ActMethod.OUTLOOK  # type: ignore[index]


def action(kind: ActionKind) -> Action:
    return Action("a1", "c1", "contoso-na", "0d3c6a1e-6f31-4b8e-9d2a-6c1f1f0e9a11", kind)


def test_a_demoted_row_counts_as_demoted_after_a_lost_answer_and_after_a_restart() -> None:
    row = dict(WRITES[ActionKind.DEMOTE])
    assert landed(ActionKind.DEMOTE, row, None)
    assert done_in_org(action(ActionKind.DEMOTE), row)


def test_a_promoted_row_counts_as_promoted_once_test_and_enable_is_scheduled_since() -> None:
    before = {"@odata.etag": 'W/"1"', **WRITES[ActionKind.DEMOTE]}
    after = {"@odata.etag": 'W/"2"', **WRITES[ActionKind.PROMOTE]}
    assert landed(ActionKind.PROMOTE, after, Baseline.of(before))
    assert done_in_org(action(ActionKind.PROMOTE), after)
    assert not landed(ActionKind.PROMOTE, before, Baseline.of(before))
    assert not done_in_org(action(ActionKind.PROMOTE), before)


def test_orgguards_own_demote_is_no_claim_and_its_promote_is_one() -> None:
    assert target_kind(WRITES[ActionKind.DEMOTE]) is None
    assert target_kind(WRITES[ActionKind.PROMOTE]) is ClaimKind.PRIMARY_FLAG
