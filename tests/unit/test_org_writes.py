"""The rule for "already in the target state" after a lost answer (``shared.service.org_writes``), table by table."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.dataverse.port import DataverseError
from shared.domain.model import ActionKind
from shared.service.org_writes import Baseline, ambiguous, landed

BEFORE: dict[str, Any] = {
    "@odata.etag": 'W/"100"',
    "actdeliverymethod": 1,
    "orgmarkedasprimaryforexchangesync": True,  # an owner that was promoted once before
    "testemailconfigurationscheduled": False,
    "testemailconfigurationretrycount": 3,
    "testmailboxaccesscompletedon": "2026-11-01T09:00:00Z",
}
BASE = Baseline.of(BEFORE)


def after(**changes: Any) -> dict[str, Any]:
    return {**BEFORE, "@odata.etag": 'W/"101"', **changes}


PROMOTES = [
    # (row read back, landed?, why)
    (BEFORE, False, "nothing changed: the write never arrived"),
    (after(testemailconfigurationscheduled=True), True, "scheduled by the write, not yet run"),
    (after(testemailconfigurationretrycount=4, testmailboxaccesscompletedon="2026-11-02T10:00:00Z"), True,
     "Test & Enable ran and cleared the flag"),
    (after(testemailconfigurationretrycount=4, orgmarkedasprimaryforexchangesync=False), True,
     "ran, and this version resets the check box"),
    (after(testmailboxaccesscompletedon="2026-11-02T10:00:00Z"), True, "ran (the count is not kept)"),
    (after(actdeliverymethod=2, testemailconfigurationscheduled=True), False, "someone set ACT to None since"),
    (after(orgmarkedasprimaryforexchangesync=False), False, "the row changed, but no test was asked or ran"),
    ({**BEFORE, "testemailconfigurationscheduled": True}, False, "scheduled before the baseline, same version"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "expected", "why"), PROMOTES, ids=[p[2] for p in PROMOTES])
def test_a_promote_landed_only_if_test_and_enable_was_asked_or_ran_since_the_baseline(row, expected, why) -> None:
    assert landed(ActionKind.PROMOTE, row, BASE) is expected, why


def test_a_promote_without_its_baseline_never_counts_as_landed() -> None:
    assert not landed(ActionKind.PROMOTE, after(testemailconfigurationscheduled=True), None)


@pytest.mark.parametrize(
    ("method", "checkbox", "expected"), [(2, False, True), (2, True, False), (1, False, False), (None, None, False)]
)
def test_a_demote_landed_when_the_row_holds_its_values(method, checkbox, expected) -> None:
    row = {"actdeliverymethod": method, "orgmarkedasprimaryforexchangesync": checkbox}
    assert landed(ActionKind.DEMOTE, row, None) is expected


@given(
    etag=st.one_of(st.none(), st.integers(0, 10**9).map(lambda n: f'W/"{n}"')),
    tests=st.one_of(st.none(), st.integers(0, 10**6)),
    tested=st.one_of(st.none(), st.datetimes().map(lambda d: d.isoformat() + "Z")),
    scheduled=st.one_of(st.none(), st.booleans()),
)
def test_the_baseline_survives_being_written_into_the_recorded_error(etag, tests, tested, scheduled) -> None:
    base = Baseline(etag, tests, tested, scheduled)
    error = f"503: lost: answer lost (timed out); not yet known whether it reached the org {base.note()}"
    assert Baseline.from_note(error) == base


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DataverseError("ReadTimeout", code="transport"), True),
        (DataverseError("gateway", status=504), True),
        (DataverseError("unavailable", status=503), True),
        (DataverseError("throttled", status=429), False),
        (DataverseError("bad", status=400), False),
        (DataverseError("no token", code="token"), False),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
    ],
)
def test_which_failures_leave_it_unknown_whether_a_write_landed(error, expected) -> None:
    assert ambiguous(error) is expected
