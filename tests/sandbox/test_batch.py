"""`$batch` as the Web API takes it: multipart/mixed, atomic change sets, continue-on-error, 1000 max."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import AIKO_JP, api

pytestmark = pytest.mark.sandbox
ROOT = api("contoso-jp")


def request(method: str, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> str:
    lines = [
        f"{method} {url} HTTP/1.1",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return "\r\n".join(lines) + "\r\n\r\n" + (json.dumps(body) if body is not None else "")


def patch(row: dict[str, Any], body: dict[str, Any], *, if_match: str = "*", root: str = "") -> str:
    """A PATCH of mailbox ``row``: its URL relative to the batch's, or absolute from the service ``root``."""
    return request("PATCH", f"{root}mailboxes({row['mailboxid']})", body, {"If-Match": if_match})


def part(text: str, content_id: str | None = None) -> str:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    return "\r\n".join(head) + "\r\n\r\n" + text


def batch(items: list[str | list[str]]) -> tuple[str, bytes]:
    chunks = []
    for index, item in enumerate(items):
        if isinstance(item, list):
            inner = f"changeset_{index}"
            body = "".join(f"--{inner}\r\n{part(text, str(n + 1))}\r\n" for n, text in enumerate(item))
            chunks.append(f"--batch_x\r\nContent-Type: multipart/mixed; boundary={inner}\r\n\r\n{body}--{inner}--\r\n")
        else:
            chunks.append(f"--batch_x\r\n{part(item)}\r\n")
    return "multipart/mixed; boundary=batch_x", ("".join(chunks) + "--batch_x--\r\n").encode()


def statuses(answer: httpx.Response, outer: int = 200) -> list[int]:
    assert answer.status_code == outer, answer.text
    assert answer.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    return [int(code) for code in re.findall(r"^HTTP/1\.1 (\d{3})", answer.text, flags=re.MULTILINE)]


def send(client: httpx.Client, items: list[str | list[str]], prefer: str | None = None) -> httpx.Response:
    content_type, body = batch(items)
    headers = {"Content-Type": content_type}
    if prefer:
        headers["Prefer"] = prefer
    return client.post(ROOT + "$batch", content=body, headers=headers)


def two_rows(client: httpx.Client) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.get(
        ROOT + "mailboxes", params={"$filter": "actdeliverymethod eq 1 and statecode eq 0", "$top": "2"}
    ).json()["value"]
    return rows


def test_a_change_set_applies_all_of_its_requests(admin: httpx.Client) -> None:
    first, second = two_rows(admin)
    answer = send(
        admin,
        [
            [
                patch(first, {"actdeliverymethod": 2}, root=ROOT),
                patch(second, {"actdeliverymethod": 2}),
            ],
            request("GET", f"{ROOT}mailboxes({first['mailboxid']})?$select=actdeliverymethod"),
        ],
    )
    assert statuses(answer) == [204, 204, 200]
    assert "changesetresponse_" in answer.text
    assert '"actdeliverymethod": 2' in answer.text
    for row in (first, second):
        assert admin.get(ROOT + f"mailboxes({row['mailboxid']})").json()["actdeliverymethod"] == 2


def test_a_failing_change_set_applies_nothing(admin: httpx.Client) -> None:
    first, second = two_rows(admin)
    answer = send(
        admin,
        [
            [
                patch(first, {"actdeliverymethod": 2}),
                patch(second, {"actdeliverymethod": 2}, if_match='W/"1"'),
            ]
        ],
    )
    assert statuses(answer, outer=412) == [412]
    assert admin.get(ROOT + f"mailboxes({first['mailboxid']})").json()["actdeliverymethod"] == 1
    assert admin.get(ROOT + f"mailboxes({first['mailboxid']})").json()["@odata.etag"] == first["@odata.etag"]


def test_without_continue_on_error_the_batch_stops_at_the_first_failure_and_answers_its_status(
    admin: httpx.Client,
) -> None:
    """execute-batch-operations-using-web-api.md, "Handling errors": the batch error is the first failing request's."""
    missing = "mailboxes(00000000-0000-4000-8000-000000000000)"
    items: list[str | list[str]] = [request("GET", "WhoAmI"), request("GET", missing), request("GET", "WhoAmI")]
    assert statuses(send(admin, items), outer=404) == [200, 404]
    answer = send(admin, items, prefer="odata.continue-on-error")
    assert statuses(answer) == [200, 404, 200]
    assert answer.headers["Preference-Applied"] == "odata.continue-on-error"


def test_a_batch_that_stops_on_a_validation_error_answers_400(admin: httpx.Client) -> None:
    (row, _) = two_rows(admin)
    items: list[str | list[str]] = [
        patch(row, {"actdeliverymethod": 7}),
        patch(row, {"actdeliverymethod": 0}),
    ]
    answer = send(admin, items)
    assert statuses(answer, outer=400) == [400]
    assert "outside the valid range" in answer.text
    assert admin.get(ROOT + f"mailboxes({row['mailboxid']})").json()["actdeliverymethod"] == 1


def test_continue_on_error_goes_on_after_a_failed_change_set(admin: httpx.Client) -> None:
    (row, _) = two_rows(admin)
    items: list[str | list[str]] = [
        [patch(row, {"nosuchcolumn": 1})],
        patch(row, {"actdeliverymethod": 0}),
    ]
    assert statuses(send(admin, items, prefer="odata.continue-on-error")) == [400, 204]
    assert admin.get(ROOT + f"mailboxes({row['mailboxid']})").json()["actdeliverymethod"] == 0


def test_more_than_1000_requests_is_a_400(admin: httpx.Client) -> None:
    items: list[str | list[str]] = [request("GET", "WhoAmI")] * 1001
    answer = send(admin, items)
    assert answer.status_code == 400
    assert "1000" in answer.json()["error"]["message"]


def test_a_batch_counts_once_against_the_number_of_requests(admin: httpx.Client, control: httpx.Client) -> None:
    """api-limits.md: a batch is one request; its operations add execution time, not requests."""
    control.put("/_sandbox/settings", json={"budget": 3, "window_s": 120})
    answer = send(admin, [request("GET", "WhoAmI")] * 5)
    assert statuses(answer) == [200] * 5
    assert answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "2"
    assert send(admin, [request("GET", "WhoAmI")] * 50).status_code == 200
    assert admin.get(ROOT + "WhoAmI").headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "0"
    refused = send(admin, [request("GET", "WhoAmI")])
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 120
    assert refused.json()["error"]["code"] == "0x80072322"
    counters = control.get("/_sandbox/requests").json()["contoso-jp"]
    assert (counters["batches"], counters["batch_inner"], counters["throttled"]) == (3, 55, 1)


def test_a_batch_adds_the_execution_time_of_all_its_operations(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"execution_budget_s": 10, "execution_cost_s": 1, "window_s": 120})
    answer = send(admin, [request("GET", "WhoAmI")] * 4)
    assert answer.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "6000.00"
    assert send(admin, [request("GET", "WhoAmI")] * 6).status_code == 200  # at the limit: served, as documented
    refused = admin.get(ROOT + "WhoAmI")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "0x80072321"
    assert "10,000 milliseconds" in refused.json()["error"]["message"]


def test_a_batch_part_that_is_not_http_is_refused(admin: httpx.Client) -> None:
    body = b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    answer = admin.post(ROOT + "$batch", content=body, headers={"Content-Type": "multipart/mixed; boundary=b"})
    assert answer.status_code == 400
    assert admin.get(ROOT + f"mailboxes({AIKO_JP})").status_code == 200
