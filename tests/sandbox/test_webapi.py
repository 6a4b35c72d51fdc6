"""The simulated Web API answers like Dataverse: paging, $select, $filter, ETags, WhoAmI, 429."""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.conftest import AIKO, AIKO_JP, JP_ID, api, mailbox

pytestmark = pytest.mark.sandbox


def test_requests_without_a_bearer_token_are_refused(base_url: str, control: httpx.Client) -> None:
    answer = httpx.get(f"{base_url}{api('contoso-jp')}WhoAmI")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_each_token_is_its_own_systemuser(base_url: str, control: httpx.Client) -> None:
    def who(token: str) -> dict[str, str]:
        answer = httpx.get(f"{base_url}{api('contoso-jp')}WhoAmI", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        body: dict[str, str] = answer.json()
        return body

    first, again, other = who("alice"), who("alice"), who("orgguard-app")
    assert first["UserId"] == again["UserId"] != other["UserId"]
    assert first["OrganizationId"] == JP_ID
    assert first["BusinessUnitId"] == "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9"


def test_organizations_answers_the_org_row(admin: httpx.Client) -> None:
    rows = admin.get(api("contoso-na") + "organizations", params={"$select": "name"}).json()["value"]
    assert rows == [
        {"@odata.etag": rows[0]["@odata.etag"], "name": "contoso-na", "organizationid": rows[0]["organizationid"]}
    ]


def test_paging_follows_next_links_until_every_row_was_seen(admin: httpx.Client, control: httpx.Client) -> None:
    total = next(org["mailboxes"] for org in control.get("/_sandbox/orgs").json() if org["name"] == "contoso-jp")
    url: str | None = api("contoso-jp") + "mailboxes?$select=emailaddress"
    seen: list[str] = []
    pages = 0
    while url:
        page = admin.get(url, headers={"Prefer": "odata.maxpagesize=7"})
        assert page.status_code == 200
        assert page.headers["Preference-Applied"] == "odata.maxpagesize=7"
        body = page.json()
        assert len(body["value"]) <= 7
        seen += [row["mailboxid"] for row in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            assert "$skiptoken=" in url and "$skip=" not in url
            assert "$select=emailaddress" in url
        pages += 1
    assert len(seen) == len(set(seen)) == total
    assert pages == -(-total // 7)


def test_page_size_defaults_to_5000_and_skip_is_refused(admin: httpx.Client) -> None:
    everything = admin.get(api("contoso-na") + "mailboxes", params={"$select": "name"})
    assert "@odata.nextLink" not in everything.json()
    assert "Preference-Applied" not in everything.headers
    assert admin.get(api("contoso-na") + "mailboxes", params={"$skip": "5"}).status_code == 400
    too_big = admin.get(api("contoso-na") + "mailboxes", headers={"Prefer": "odata.maxpagesize=5001"})
    assert too_big.status_code == 400


def test_select_answers_only_the_chosen_columns_with_etag_and_key(admin: httpx.Client) -> None:
    rows = admin.get(api("contoso-eu") + "mailboxes", params={"$select": "emailaddress,actstatus"}).json()["value"]
    assert rows
    assert all(set(row) == {"@odata.etag", "mailboxid", "emailaddress", "actstatus"} for row in rows)
    assert all(row["@odata.etag"].startswith('W/"') for row in rows)
    unknown = admin.get(api("contoso-eu") + "mailboxes", params={"$select": "emailaddress,nosuchcolumn"})
    assert unknown.status_code == 400
    assert "nosuchcolumn" in unknown.json()["error"]["message"]


def test_full_rows_carry_the_mailbox_columns_orgguard_reads(admin: httpx.Client) -> None:
    row = admin.get(api("contoso-jp") + f"mailboxes({AIKO_JP})").json()
    for column in (
        "mailboxid",
        "emailaddress",
        "actdeliverymethod",
        "orgmarkedasprimaryforexchangesync",
        "testemailconfigurationscheduled",
        "actstatus",
        "statecode",
        "_regardingobjectid_value",
        "isactsyncorgflagset",
        "mailboxstatus",
    ):
        assert column in row
    assert row["_regardingobjectid_value"] == "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"


@pytest.mark.parametrize(
    ("condition", "check"),
    [
        ("actdeliverymethod eq 2", lambda row: row["actdeliverymethod"] == 2),
        (
            "actdeliverymethod ne 1 and statecode eq 0",
            lambda row: row["actdeliverymethod"] != 1 and row["statecode"] == 0,
        ),
        ("statecode eq 1", lambda row: row["statecode"] == 1),
        ("actstatus eq 2", lambda row: row["actstatus"] == 2),
        ("orgmarkedasprimaryforexchangesync eq false", lambda row: not row["orgmarkedasprimaryforexchangesync"]),
        (
            "endswith(emailaddress,'@contoso.com')",
            lambda row: row["emailaddress"].strip().lower().endswith("@contoso.com"),
        ),
        ("startswith(emailaddress,'AIKO')", lambda row: row["emailaddress"].lower().startswith("aiko")),
        ("contains(emailaddress,'tanaka')", lambda row: "tanaka" in row["emailaddress"].lower()),
    ],
)
def test_filter_keeps_exactly_the_matching_rows(admin: httpx.Client, condition: str, check: object) -> None:
    everything = admin.get(api("contoso-na") + "mailboxes").json()["value"]
    answer = admin.get(api("contoso-na") + "mailboxes", params={"$filter": condition})
    assert answer.status_code == 200, answer.text
    found = {row["mailboxid"] for row in answer.json()["value"]}
    assert callable(check)
    assert found == {row["mailboxid"] for row in everything if check(row)}


def test_filter_on_address_is_case_insensitive_like_dataverse(admin: httpx.Client) -> None:
    row = mailbox(admin, "contoso-jp", "aiko.tanaka@CONTOSO.com")
    assert row["mailboxid"] == AIKO_JP
    assert row["emailaddress"] == AIKO


@pytest.mark.parametrize(
    "condition",
    [
        "substringof('aiko',emailaddress)",
        "emailaddress eq 'unterminated",
        "actdeliverymethod eq '1'",
        "nosuchcolumn eq 1",
        "regardingobjectid/fullname eq 'Aiko'",
        "actdeliverymethod in (1,2)",
    ],
)
def test_unsupported_filters_are_a_400_with_an_odata_error(admin: httpx.Client, condition: str) -> None:
    answer = admin.get(api("contoso-na") + "mailboxes", params={"$filter": condition})
    assert answer.status_code == 400
    assert set(answer.json()["error"]) == {"code", "message"}


def test_patch_with_the_current_etag_saves_and_a_stale_one_is_412(admin: httpx.Client) -> None:
    row = mailbox(admin, "contoso-eu", mailbox_address(admin, "contoso-eu"))
    url = api("contoso-eu") + f"mailboxes({row['mailboxid']})"
    saved = admin.patch(url, json={"actdeliverymethod": 2}, headers={"If-Match": row["@odata.etag"]})
    assert saved.status_code == 204
    assert saved.headers["OData-EntityId"].endswith(f"mailboxes({row['mailboxid']})")
    after = admin.get(url).json()
    assert after["actdeliverymethod"] == 2
    assert after["@odata.etag"] != row["@odata.etag"]
    stale = admin.patch(url, json={"actdeliverymethod": 1}, headers={"If-Match": row["@odata.etag"]})
    assert stale.status_code == 412
    assert admin.get(url).json()["actdeliverymethod"] == 2
    assert admin.patch(url, json={"actdeliverymethod": 1}, headers={"If-Match": "*"}).status_code == 204


def mailbox_address(client: httpx.Client, org: str) -> str:
    rows = client.get(api(org) + "mailboxes", params={"$filter": "actdeliverymethod eq 1 and statecode eq 0"})
    address: str = rows.json()["value"][0]["emailaddress"]
    return address.strip()


def test_patch_rejects_unknown_columns_and_bad_values_and_missing_rows(admin: httpx.Client) -> None:
    url = api("contoso-jp") + f"mailboxes({AIKO_JP})"
    before = admin.get(url).json()
    assert admin.patch(url, json={"nosuchcolumn": 1}, headers={"If-Match": "*"}).status_code == 400
    assert admin.patch(url, json={"actdeliverymethod": 7}, headers={"If-Match": "*"}).status_code == 400
    assert admin.patch(url, json={"actdeliverymethod": "1"}, headers={"If-Match": "*"}).status_code == 400
    assert admin.get(url).json() == before
    missing = api("contoso-jp") + "mailboxes(00000000-0000-4000-8000-000000000000)"
    answer = admin.patch(missing, json={"actdeliverymethod": 2}, headers={"If-Match": "*"})
    assert answer.status_code == 404
    assert admin.get(missing).status_code == 404


def test_return_representation_answers_the_saved_row(admin: httpx.Client) -> None:
    url = api("contoso-jp") + f"mailboxes({AIKO_JP})?$select=actdeliverymethod"
    answer = admin.patch(
        url, json={"actdeliverymethod": 1}, headers={"If-Match": "*", "Prefer": "return=representation"}
    )
    assert answer.status_code == 200
    assert answer.json()["actdeliverymethod"] == 1


def test_budget_answers_429_with_retry_after_per_user(
    admin: httpx.Client, control: httpx.Client, base_url: str
) -> None:
    control.put("/_sandbox/settings", json={"budget": 3, "window_s": 120})
    remaining = [
        admin.get(api("contoso-na") + "WhoAmI").headers["x-ms-ratelimit-burst-remaining-xrm-requests"] for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]
    refused = admin.get(api("contoso-na") + "WhoAmI")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 120
    assert refused.json()["error"]["code"] == "0x80072322"
    other = httpx.get(f"{base_url}{api('contoso-na')}WhoAmI", headers={"Authorization": "Bearer someone-else"})
    assert other.status_code == 200
    assert control.get("/_sandbox/requests").json()["contoso-na"]["throttled"] == 1


def test_injected_faults_answer_then_clear(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"org": "contoso-jp", "fail": {"status": 503, "count": 2}})
    statuses = [admin.get(api("contoso-jp") + "WhoAmI").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert admin.get(api("contoso-na") + "WhoAmI").status_code == 200


def test_top_limits_rows_but_is_ignored_with_maxpagesize(admin: httpx.Client) -> None:
    """page-results.md: "Don't use $top with the Prefer: odata.maxpagesize request header. If you include both,
    $top is ignored." """
    root = api("contoso-na") + "mailboxes"
    alone = admin.get(root, params={"$select": "name", "$top": "2"}).json()
    assert len(alone["value"]) == 2 and "@odata.nextLink" not in alone
    both = admin.get(root, params={"$select": "name", "$top": "2"}, headers={"Prefer": "odata.maxpagesize=5"})
    assert both.headers["Preference-Applied"] == "odata.maxpagesize=5"
    assert len(both.json()["value"]) == 5 and "@odata.nextLink" in both.json()
    assert admin.get(root, params={"$top": "0"}, headers={"Prefer": "odata.maxpagesize=5"}).status_code == 400


def test_status_retry_count_and_test_date_columns_are_writable(admin: httpx.Client) -> None:
    """The mailbox reference lists ACTStatus, the email statuses, TestEmailConfigurationRetryCount and
    TestMailboxAccessCompletedOn among the writable columns; MailboxStatus is read-only."""
    url = api("contoso-jp") + f"mailboxes({AIKO_JP})"
    written = {
        "actstatus": 2,
        "incomingemailstatus": 0,
        "outgoingemailstatus": 2,
        "testemailconfigurationretrycount": 7,
        "testmailboxaccesscompletedon": "2026-12-01T10:00:00Z",
    }
    before = admin.get(url).json()
    assert admin.patch(url, json={**written, "mailboxstatus": 0}, headers={"If-Match": "*"}).status_code == 204
    after = admin.get(url).json()
    assert {column: after[column] for column in written} == written
    assert after["mailboxstatus"] == before["mailboxstatus"] == 1  # read-only: ignored, as Dataverse does


@pytest.mark.parametrize(
    "body",
    [
        {"testmailboxaccesscompletedon": "yesterday"},
        {"testemailconfigurationretrycount": "3"},
        {"actstatus": 5},
        {"incomingemailstatus": True},
    ],
)
def test_bad_values_for_those_columns_are_a_400_and_change_nothing(
    admin: httpx.Client, body: dict[str, object]
) -> None:
    url = api("contoso-jp") + f"mailboxes({AIKO_JP})"
    before = admin.get(url).json()
    answer = admin.patch(url, json=body, headers={"If-Match": "*"})
    assert answer.status_code == 400
    assert set(answer.json()["error"]) == {"code", "message"}
    assert admin.get(url).json() == before
