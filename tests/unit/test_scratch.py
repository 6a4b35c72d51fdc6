"""The sweep's scratch index: whole pages or nothing, and the same findings however the rows come in."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.dataverse.schema import ACT_STATUS, ADDRESS, MAILBOX_ID, TEST_ENABLE, SyncStatus
from shared.domain.findings import Finding, FindingKind
from shared.service import scratch as scratch_module
from shared.service.scratch import ScratchIndex

ORGS = ["contoso-na", "contoso-jp", "contoso-eu"]


def row(n: int, address: str, *, failing: bool = False, pending: bool = False) -> dict[str, Any]:
    status = SyncStatus.FAILURE if failing else SyncStatus.SUCCESS
    return {MAILBOX_ID: f"00000000-0000-4000-8000-{n:012X}", ADDRESS: address, ACT_STATUS: status, TEST_ENABLE: pending}


def everything(scratch: ScratchIndex) -> tuple[tuple[int, int], list[Finding]]:
    scratch.index()
    return scratch.totals(), list(scratch.findings())


def fill(scratch: ScratchIndex, pages: dict[str, list[list[dict[str, Any]]]], owners: list[tuple[str, str]]) -> None:
    for org, org_pages in pages.items():
        for page in org_pages:
            scratch.add_rows(org, page)
        failing = scratch.failing(org)
        scratch.add_alerts(org, sorted(failing)[::2])  # every other failing row carries the alert
    scratch.add_owners(owners)


PAGES = {
    "contoso-na": [[row(1, "Aiko.Tanaka@Contoso.com"), row(2, "ken@contoso.com", failing=True)]],
    "contoso-jp": [[row(3, " aiko.tanaka@contoso.com", failing=True), row(4, "yui@contoso.co.jp")]],
    "contoso-eu": [[row(5, "KEN@CONTOSO.COM"), row(6, "not an address")]],
}


def test_a_page_that_fails_half_way_leaves_none_of_its_rows_and_the_sweep_run_again_finds_the_same():
    clean = ScratchIndex(ORGS)
    fill(clean, PAGES, [])
    expected = everything(clean)
    clean.close()

    broken = ScratchIndex(ORGS)
    first = PAGES["contoso-na"][0]
    half = [*first, {ADDRESS: "lars@contoso.eu"}, row(9, "emma@contoso.eu")]  # a row without its id, mid-page
    with pytest.raises(KeyError):
        broken.add_rows("contoso-na", half)
    assert broken.totals() == (0, 0)  # the rows before the broken one are not there either
    fill(broken, PAGES, [])  # the next sweep starts afresh with the same pages
    assert everything(broken) == expected
    broken.close()


def test_rows_without_a_valid_address_are_skipped_and_the_rest_of_the_page_is_kept():
    scratch = ScratchIndex(ORGS)
    assert scratch.add_rows("contoso-eu", PAGES["contoso-eu"][0]) == 1
    assert scratch.add_rows("contoso-na", PAGES["contoso-na"][0]) == 2
    (keys, unowned), found = everything(scratch)
    assert (keys, unowned) == (2, 1)  # ken is in two orgs; aiko only in one, and nobody owns her
    assert [(f.key.address, f.kinds) for f in found] == [("ken@contoso.com", (FindingKind.MULTI_ORG,))]
    scratch.close()


def reference(
    pages: dict[str, list[list[dict[str, Any]]]], owners: dict[str, str]
) -> tuple[tuple[int, int], list[tuple[str, tuple[FindingKind, ...], list[tuple[str, str, bool, bool]]]]]:
    """What the index must answer, computed in plain Python."""
    from shared.domain.model import InvalidAddress, MailboxKey

    by_key: dict[str, list[tuple[str, str, bool, bool]]] = {}
    for org, org_pages in pages.items():
        kept = []
        for page in org_pages:
            for r in page:
                try:
                    key = MailboxKey.parse(r[ADDRESS]).address
                except InvalidAddress:
                    continue
                failed = r[ACT_STATUS] == SyncStatus.FAILURE and not r[TEST_ENABLE]
                kept.append((key, str(r[MAILBOX_ID]).lower(), failed))
        alerts = set(sorted(mailbox_id for _, mailbox_id, failed in kept if failed)[::2])
        for key, mailbox_id, failed in kept:
            by_key.setdefault(key, []).append((org, mailbox_id, failed, mailbox_id in alerts))
    unowned = sum(1 for k, rs in by_key.items() if len({r[0] for r in rs}) == 1 and k not in owners)
    found = []
    for key in sorted(set(by_key) | set(owners)):
        rs = sorted(by_key.get(key, []), key=lambda r: (ORGS.index(r[0]), r[1]))
        if not rs:
            continue
        orgs = {r[0] for r in rs}
        owner = owners.get(key)
        kinds = []
        if len(orgs) > 1:
            kinds.append(FindingKind.MULTI_ORG)
        if any(r[3] for r in rs):
            kinds.append(FindingKind.ALERT)
        if owner is not None and owner not in ORGS:
            kinds.append(FindingKind.UNKNOWN_OWNER)
        elif owner is not None and owner not in orgs:
            kinds.append(FindingKind.OWNER_NOT_SYNCING)
        if kinds:
            found.append((key, tuple(kinds), rs))
    return (len(by_key), unowned), found


people = st.sampled_from(["aiko", "ken", "yui", "emma", "lars", "sofia", "mei"])
spellings = st.sampled_from(["{}@contoso.com", " {}@Contoso.com", "{}@CONTOSO.COM ", "{}@@contoso.com"])
rows_of_an_org = st.lists(st.tuples(people, spellings, st.booleans(), st.booleans()), max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries({org: rows_of_an_org for org in ORGS}),
    st.integers(min_value=1, max_value=5),
    st.dictionaries(people, st.sampled_from([*ORGS, "contoso-gone"]), max_size=4),
    st.integers(min_value=1, max_value=4),
)
def test_the_findings_are_those_of_a_plain_grouping_whatever_the_page_size(
    drawn: dict[str, list[tuple[str, str, bool, bool]]], page_size: int, owned: dict[str, str], per_statement: int
):
    numbered = iter(range(1, 10_000))
    pages = {}
    for org, drawn_rows in drawn.items():
        org_rows = [
            row(next(numbered), spelling.format(who), failing=f, pending=p) for who, spelling, f, p in drawn_rows
        ]
        pages[org] = [org_rows[i : i + page_size] for i in range(0, len(org_rows), page_size)]
    owners = {f"{who}@contoso.com": org for who, org in owned.items()}
    scratch = ScratchIndex(ORGS)
    try:
        with patch.object(scratch_module, "ROWS_PER_STATEMENT", per_statement):  # whole statements and a rest
            fill(scratch, pages, sorted(owners.items()))
        totals, found = everything(scratch)
    finally:
        scratch.close()
    expected_totals, expected = reference(pages, owners)
    assert totals == expected_totals
    got = [(f.key.address, f.kinds, [(r.org, r.mailbox_id, r.failing, r.alert) for r in f.rows]) for f in found]
    assert got == expected
    assert all(f.owner == owners.get(f.key.address) for f in found)


def test_the_alerted_rows_are_found_through_the_partial_index_of_failing_rows() -> None:
    """Without ``r.failing = 1`` in the join (it never leaves a row out) SQLite scans every row for the alerts."""
    scratch = ScratchIndex(ORGS)
    try:
        fill(scratch, PAGES, [])
        scratch.index()
        asked: list[str] = []
        scratch.db.set_trace_callback(asked.append)
        assert next(scratch.findings(), None) is not None
        scratch.db.set_trace_callback(None)
        (findings,) = [sql for sql in asked if "WITH flagged" in sql]
        plan = [str(step[3]) for step in scratch.db.execute("EXPLAIN QUERY PLAN " + findings)]
        assert any("USING INDEX failing_rows" in step for step in plan), plan
        assert not any(step == "SCAN r" for step in plan), plan
    finally:
        scratch.close()


def test_pages_of_the_size_dataverse_sends_go_in_whole_and_a_broken_one_not_at_all():
    scratch = ScratchIndex(ORGS)
    try:
        big = [row(n, f"person{n}@contoso.com", failing=n % 7 == 0) for n in range(5_017)]
        assert scratch.add_rows("contoso-na", big[:5_000]) == 5_000  # whole statements only
        assert scratch.add_rows("contoso-jp", big[3_000:]) == 2_017  # and a rest of 17 rows
        with pytest.raises(KeyError):  # a row without its id, after two whole statements' worth of rows
            scratch.add_rows("contoso-eu", [*big[:250], {ADDRESS: "x@contoso.com"}, *big[251:400]])
        (keys, unowned), found = everything(scratch)
        assert (keys, unowned) == (5_017, 5_017 - 2_000)
        assert len(found) == 2_000 and all(f.orgs == ["contoso-jp", "contoso-na"] for f in found)
        assert sorted(scratch.failing("contoso-jp")) == sorted(
            f"00000000-0000-4000-8000-{n:012x}" for n in range(3_000, 5_017) if n % 7 == 0
        )
    finally:
        scratch.close()
