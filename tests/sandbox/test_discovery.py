"""The sandbox's Global Discovery Service: its orgs as Instances, a bearer challenge, $select."""

from __future__ import annotations

import httpx

from tests.sandbox.conftest import JP_ID, NA_ID

INSTANCES = "/discovery/api/discovery/v2.0/Instances"
BEARER = {"Authorization": "Bearer an-admin"}


def test_every_org_is_an_instance_with_its_id_url_and_type(control: httpx.Client, base_url: str):
    answer = control.get(INSTANCES, headers=BEARER)
    assert answer.status_code == 200 and answer.headers["odata-version"] == "4.0"
    doc = answer.json()
    assert doc["@odata.context"].endswith("$metadata#Instances")
    found = {row["UrlName"]: row for row in doc["value"]}
    assert found["contoso-na"]["Id"] == NA_ID and found["contoso-jp"]["Id"] == JP_ID
    assert found["contoso-na"]["Url"] == f"{base_url}/orgs/contoso-na" and found["contoso-na"]["State"] == 0
    assert (found["contoso-na"]["OrganizationType"], found["contoso-eu"]["OrganizationType"]) == (0, 5)
    org_api = httpx.get(f"{found['contoso-jp']['Url']}/api/data/v9.2/WhoAmI", headers=BEARER).json()
    assert org_api["OrganizationId"] == JP_ID  # the URL it names is the org's Web API base


def test_select_picks_properties_and_an_unknown_one_is_refused(control: httpx.Client):
    rows = control.get(INSTANCES, params={"$select": "ApiUrl,FriendlyName"}, headers=BEARER).json()["value"]
    assert all(set(row) == {"ApiUrl", "FriendlyName"} for row in rows)
    refused = control.get(INSTANCES, params={"$select": "DisplayName"}, headers=BEARER)
    assert refused.status_code == 400 and "DisplayName" in refused.json()["error"]["message"]


def test_a_request_without_a_token_gets_a_bearer_challenge(control: httpx.Client):
    answer = control.get(INSTANCES)
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer authorization_uri=")
