"""The sandbox's Graph refuses what Graph refuses, so a client that works here works there."""

from __future__ import annotations

import base64

import httpx

GRAPH = "/graph/v1.0"
AUTH = {"Authorization": "Bearer any"}
EVENTUAL = {**AUTH, "ConsistencyLevel": "eventual"}
PROXY = "proxyAddresses/any(p:p eq 'smtp:aiko.tanaka@contoso.com')"


def test_a_proxy_address_filter_is_an_advanced_query(control: httpx.Client) -> None:
    plain = control.get(f"{GRAPH}/users", params={"$filter": PROXY}, headers=AUTH)
    assert plain.status_code == 400 and plain.json()["error"]["code"] == "Request_UnsupportedQuery"
    found = control.get(f"{GRAPH}/users", params={"$filter": PROXY, "$count": "true"}, headers=EVENTUAL).json()
    assert found["@odata.count"] == 1 and found["value"][0]["usageLocation"] == "JP"


def test_unsupported_filters_and_pages_are_refused(control: httpx.Client) -> None:
    bad = control.get(f"{GRAPH}/users", params={"$filter": "startswith(mail,'a')"}, headers=AUTH)
    assert bad.status_code == 400
    assert control.get(f"{GRAPH}/users", params={"$top": "1000"}, headers=AUTH).status_code == 400
    assert control.get(f"{GRAPH}/users", params={"$select": "password"}, headers=AUTH).status_code == 400
    assert control.get(f"{GRAPH}/users", headers={}).status_code == 401


def test_members_page_with_next_links(control: httpx.Client) -> None:
    control.post("/_sandbox/graph/groups/Big/members", json={"count": 250}).raise_for_status()
    (group,) = control.get(f"{GRAPH}/groups", params={"$filter": "displayName eq 'Big'"}, headers=AUTH).json()["value"]
    url: str | None = f"{control.base_url}{GRAPH}/groups/{group['id']}/transitiveMembers?$top=100"
    seen: list[str] = []
    while url:
        page = httpx.get(url, headers=AUTH).json()
        seen += [m["mail"] for m in page["value"]]
        url = page.get("@odata.nextLink")
    assert len(seen) == len(set(seen)) == 250


def test_batch_limits_and_relative_urls(control: httpx.Client) -> None:
    one = {"id": "1", "method": "GET", "url": "/users?$top=1"}
    assert (
        control.post(f"{GRAPH}/$batch", json={"requests": [one]}, headers=AUTH).json()["responses"][0]["status"] == 200
    )
    many = {"requests": [{**one, "id": str(n)} for n in range(21)]}
    assert control.post(f"{GRAPH}/$batch", json=many, headers=AUTH).status_code == 400
    absolute = {"requests": [{**one, "url": "https://graph.microsoft.com/v1.0/users"}]}
    assert control.post(f"{GRAPH}/$batch", json=absolute, headers=AUTH).status_code == 400


def test_mime_send_mail_is_read_as_the_message_it_becomes(control: httpx.Client) -> None:
    mime = b"From: orgguard@contoso.com\r\nTo: a@contoso.com\r\nSubject: Hello\r\nMessage-ID: <1@contoso.com>\r\n"
    mime += b"\r\nHi\r\n"
    sent = control.post(f"{GRAPH}/users/orgguard@contoso.com/sendMail", content=base64.b64encode(mime),
                        headers={**AUTH, "Content-Type": "text/plain"})  # fmt: skip
    assert sent.status_code == 202
    (mail,) = control.get("/_sandbox/mail").json()["mail"]
    assert (mail["message"]["subject"], mail["message"]["internetMessageId"]) == ("Hello", "<1@contoso.com>")
    garbled = control.post(f"{GRAPH}/users/orgguard@contoso.com/sendMail", content=b"not base64!",
                           headers={**AUTH, "Content-Type": "text/plain"})  # fmt: skip
    assert garbled.status_code == 400
    unknown = control.post(f"{GRAPH}/users/nobody@contoso.com/sendMail", content=base64.b64encode(mime),
                           headers={**AUTH, "Content-Type": "text/plain"})  # fmt: skip
    assert unknown.status_code == 404
    assert len(control.get("/_sandbox/mail").json()["mail"]) == 1
