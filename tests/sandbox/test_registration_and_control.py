"""Registration tables as the Plugin Registration Tool writes them; control routes; Graph; seeding."""

from __future__ import annotations

import time

import httpx
import pytest

from sandbox.seed import seed
from tests.sandbox.conftest import AIKO, AIKO_JP, api, exchange, mailbox, register

pytestmark = pytest.mark.sandbox
NA = api("contoso-na")


def test_messages_and_filters_can_be_looked_up(admin: httpx.Client) -> None:
    update = admin.get(NA + "sdkmessages", params={"$filter": "name eq 'Update'"}).json()["value"]
    assert [row["name"] for row in update] == ["Update"]
    filters = admin.get(
        NA + "sdkmessagefilters",
        params={
            "$filter": f"primaryobjecttypecode eq 'mailbox' and _sdkmessageid_value eq {update[0]['sdkmessageid']}"
        },
    ).json()["value"]
    assert len(filters) == 1
    assert admin.post(NA + "sdkmessages", json={"name": "Mine"}).status_code == 405


def test_registration_rows_are_created_read_updated_and_deleted(admin: httpx.Client, hook_url: str) -> None:
    ids = register(admin, "contoso-na", hook_url)
    step = admin.get(NA + f"sdkmessageprocessingsteps({ids['gate']})").json()
    assert (step["stage"], step["mode"], step["_eventhandler_value"]) == (20, 0, ids["gate_endpoint"])
    endpoint = admin.get(NA + f"serviceendpoints({ids['gate_endpoint']})").json()
    assert (endpoint["contract"], endpoint["authtype"], endpoint["messageformat"]) == (8, 5, 2)
    assert endpoint["authvalue"] is None  # write-only, as in Dataverse
    found = admin.get(NA + "sdkmessageprocessingsteps", params={"$filter": "startswith(name,'OrgGuard')"})
    assert len(found.json()["value"]) == 2
    renamed = admin.patch(NA + f"sdkmessageprocessingsteps({ids['gate']})", json={"rank": 5}, headers={"If-Match": "*"})
    assert renamed.status_code == 204
    assert admin.get(NA + f"sdkmessageprocessingsteps({ids['gate']})").json()["rank"] == 5
    in_use = admin.delete(NA + f"serviceendpoints({ids['gate_endpoint']})")
    assert in_use.status_code == 400
    assert admin.delete(NA + f"sdkmessageprocessingsteps({ids['gate']})").status_code == 204
    images = admin.get(
        NA + "sdkmessageprocessingstepimages", params={"$filter": f"_sdkmessageprocessingstepid_value eq {ids['gate']}"}
    )
    assert images.json()["value"] == []
    assert admin.delete(NA + f"serviceendpoints({ids['gate_endpoint']})").status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        {"name": "async pre-op", "stage": 20, "mode": 1},
        {"name": "bad attribute", "stage": 20, "mode": 0, "filteringattributes": "nosuchattribute"},
        {"name": "no handler", "stage": 20, "mode": 0, "eventhandler_serviceendpoint@odata.bind": None},
    ],
)
def test_invalid_steps_are_refused(admin: httpx.Client, hook_url: str, body: dict[str, object]) -> None:
    ids = register(admin, "contoso-na", hook_url)
    message = admin.get(NA + "sdkmessages", params={"$filter": "name eq 'Update'"}).json()["value"][0]["sdkmessageid"]
    mailbox_filter = admin.get(NA + "sdkmessagefilters", params={"$filter": "primaryobjecttypecode eq 'mailbox'"})
    filter_id = mailbox_filter.json()["value"][0]["sdkmessagefilterid"]
    payload = {
        "sdkmessageid@odata.bind": f"/sdkmessages({message})",
        "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({ids['gate_endpoint']})",
        **body,
    }
    assert admin.post(NA + "sdkmessageprocessingsteps", json=payload).status_code == 400


def test_a_webhook_needs_header_settings(admin: httpx.Client) -> None:
    answer = admin.post(
        NA + "serviceendpoints",
        json={"name": "x", "contract": 8, "url": "http://127.0.0.1:1/x", "authtype": 5, "authvalue": "plain"},
    )
    assert answer.status_code == 400


def test_reset_restores_the_seeded_world(admin: httpx.Client, control: httpx.Client, hook_url: str) -> None:
    seeded = mailbox(admin, "contoso-jp")
    register(admin, "contoso-jp", hook_url)
    control.put("/_sandbox/settings", json={"semantics": "alert", "budget": 1000})
    control.put(f"/_sandbox/exchange/{AIKO}", json={"org": "contoso-eu"})
    admin.patch(api("contoso-jp") + f"mailboxes({AIKO_JP})", json={"actdeliverymethod": 2}, headers={"If-Match": "*"})
    assert control.post("/_sandbox/reset").status_code == 200
    assert mailbox(admin, "contoso-jp") == seeded
    assert exchange(control) == "contoso-na"
    assert control.get("/_sandbox/settings").json()["global"]["semantics"] == "overwrite"
    assert all(org["steps"] == org["serviceendpoints"] == 0 for org in control.get("/_sandbox/orgs").json())


def test_seed_route_builds_a_new_world(admin: httpx.Client, control: httpx.Client) -> None:
    answer = control.post("/_sandbox/seed", json={"mailboxes": 25, "overlap": 0.5, "seed": 3, "orgs": 4})
    assert answer.status_code == 200
    orgs = {org["name"]: org for org in control.get("/_sandbox/orgs").json()}
    assert list(orgs) == ["contoso-na", "contoso-jp", "contoso-eu", "contoso-org4"]
    assert all(org["mailboxes"] == 25 + org["queues"] and org["queues"] == 2 for org in orgs.values())
    assert mailbox(admin, "contoso-jp")["mailboxid"] == AIKO_JP
    assert admin.get(api("contoso-org4") + "WhoAmI").json()["OrganizationId"] == orgs["contoso-org4"]["id"]
    assert control.post("/_sandbox/seed", json={"mailboxes": 0}).status_code == 422


def test_request_counters_count_each_operation(admin: httpx.Client, control: httpx.Client) -> None:
    control.delete("/_sandbox/requests")
    for _ in range(3):
        admin.get(NA + "WhoAmI")
    counters = control.get("/_sandbox/requests").json()["contoso-na"]
    assert (counters["http"], counters["requests"], counters["by_method"]) == (3, 3, {"GET": 3})


def test_graph_answers_user_attributes_groups_and_records_mail(admin: httpx.Client, control: httpx.Client) -> None:
    user = admin.get(
        "/graph/v1.0/users/aiko.tanaka@contoso.com", params={"$select": "usageLocation,country,department"}
    )
    assert user.status_code == 200
    body = user.json()
    assert (body["usageLocation"], body["country"], body["department"]) == ("JP", "Japan", "Sales")
    direct = admin.get(f"/graph/v1.0/users/{body['id']}/memberOf").json()["value"]
    assert {group["displayName"] for group in direct} == {"Contoso JP", "Sales"}
    nested = admin.get(f"/graph/v1.0/users/{body['id']}/transitiveMemberOf").json()["value"]
    assert {group["displayName"] for group in nested} == {"Contoso JP", "Sales", "All Employees"}
    assert admin.get("/graph/v1.0/users/nobody@contoso.com").status_code == 404
    assert httpx.get(f"{control.base_url}/graph/v1.0/users/{body['id']}").status_code == 401
    mail = {"Message": {"Subject": "OrgGuard case", "ToRecipients": [{"EmailAddress": {"Address": AIKO}}]}}
    assert admin.post(f"/graph/v1.0/users/{body['id']}/sendMail", json=mail).status_code == 202
    (sent,) = control.get("/_sandbox/mail").json()["mail"]
    assert sent["message"]["Subject"] == "OrgGuard case"


def test_seeding_is_deterministic_and_messy_like_real_data() -> None:
    first, second = seed(mailboxes=80, seed=11), seed(mailboxes=80, seed=11)
    for name, org in first.orgs.items():
        assert list(org.mailboxes.rows) == list(second.orgs[name].mailboxes.rows)
    assert first.exchange == second.exchange
    rows = [row for org in first.orgs.values() for row in org.mailboxes.rows.values()]
    addresses = [str(row.get("emailaddress")) for row in rows]
    assert any(address != address.strip() for address in addresses)
    assert any(address != address.lower() for address in addresses)
    assert {row.get("actdeliverymethod") for row in rows} >= {1, 2}
    assert {row.get("statecode") for row in rows} == {0, 1}
    shared = [
        key
        for key, ids in first.orgs["contoso-na"].mailboxes.by_key.items()
        if key in first.orgs["contoso-jp"].mailboxes.by_key
    ]
    assert len(shared) > 5


def test_seeding_scales() -> None:
    started = time.perf_counter()
    world = seed(mailboxes=10_000, orgs=4)
    assert sum(len(org.mailboxes) - len(org.tables["queues"]) for org in world.orgs.values()) == 40_000
    assert time.perf_counter() - started < 5


def webhook(client: httpx.Client, url: str, **extra: object) -> httpx.Response:
    body = {"name": "w", "contract": 8, "url": url, "authtype": 4, "authvalue": "k", **extra}
    return client.post(NA + "serviceendpoints", json=body)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://orgguard.example.com/api/dataverse/gate", True),
        ("https://orgguard.example.com:443/api/dataverse/gate", True),
        ("http://orgguard.example.com/api/dataverse/gate", True),
        ("https://orgguard.example.com:8443/api/dataverse/gate", False),
        ("http://orgguard.example.com:8071/api/dataverse/gate", False),
        ("http://orgguard.example.com:443/api/dataverse/gate", False),
        ("https://orgguard.example.com:80/api/dataverse/gate", False),
        ("http://127.0.0.1:8071/api/dataverse/gate", False),
        ("http://localhost:8071/api/dataverse/gate", False),
        ("https://orgguard.example.com:99999/x", False),
        ("ftp://orgguard.example.com/x", False),
    ],
)
def test_webhook_urls_only_on_ports_80_and_443(
    admin: httpx.Client, control: httpx.Client, url: str, accepted: bool
) -> None:
    """register-web-hook.md: "Registered WebHooks support only port 80 for HTTP and port 443 for HTTPS"."""
    control.put("/_sandbox/settings", json={"loopback_webhooks": False})
    answer = webhook(admin, url)
    assert answer.status_code == (204 if accepted else 400), answer.text
    if not accepted:
        assert admin.get(NA + "serviceendpoints").json()["value"] == []


def test_the_loopback_exception_is_a_visible_setting_for_loopback_only(
    admin: httpx.Client, control: httpx.Client
) -> None:
    assert seed(mailboxes=1).settings.loopback_webhooks is False  # Dataverse's rule unless someone turns it on
    assert control.get("/_sandbox/settings").json()["global"]["loopback_webhooks"] is True  # this suite did
    refused = control.put("/_sandbox/settings", json={"loopback_webhooks": False})
    assert refused.json()["global"]["loopback_webhooks"] is False
    message = webhook(admin, "http://127.0.0.1:8071/x").json()["error"]["message"]
    assert "port 80 for HTTP and port 443 for HTTPS" in message and "loopback_webhooks" in message
    control.put("/_sandbox/settings", json={"loopback_webhooks": True})
    assert webhook(admin, "http://127.0.0.1:8071/x").status_code == 204
    assert webhook(admin, "http://[::1]:8071/x").status_code == 204
    assert webhook(admin, "http://orgguard.example.com:8071/x").status_code == 400
    assert control.post("/_sandbox/reset").status_code == 200
    assert control.get("/_sandbox/settings").json()["global"]["loopback_webhooks"] is True  # the server's default


def test_webhooks_are_accepted_without_messageformat(admin: httpx.Client) -> None:
    created = webhook(admin, "https://orgguard.example.com/api/dataverse/events")
    assert created.status_code == 204
    endpoint_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert admin.get(NA + f"serviceendpoints({endpoint_id})").json()["contract"] == 8
    assert webhook(admin, "https://orgguard.example.com/x", messageformat=1).status_code == 204  # posts JSON anyway


def test_moving_a_webhook_to_another_port_is_refused_too(admin: httpx.Client, control: httpx.Client) -> None:
    created = webhook(admin, "https://orgguard.example.com/x")
    endpoint_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    moved = admin.patch(
        NA + f"serviceendpoints({endpoint_id})",
        json={"url": "https://orgguard.example.com:8443/x"},
        headers={"If-Match": "*"},
    )
    assert moved.status_code == 400
    assert admin.get(NA + f"serviceendpoints({endpoint_id})").json()["url"] == "https://orgguard.example.com/x"
