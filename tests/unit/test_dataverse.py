"""The Web API client against httpx.MockTransport: headers, paging, retries, errors, $batch."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.dataverse.batch import encode_batch, match_batch_results, parse_batch_response
from shared.dataverse.client import DataverseClient
from shared.dataverse.port import (
    MAX_BATCH,
    BatchOperation,
    DataverseError,
    PreconditionFailed,
    RetryPolicy,
    Throttled,
)
from shared.dataverse.tokens import AzureIdentityToken, LocalDevToken, token_provider_for

ORG = "https://contoso.crm.dynamics.com"
ROOT = ORG + "/api/data/v9.2/"
TOKEN = "secret-token-value"
MAILBOX = "0d3c6a1e-6f31-4b8e-9d2a-6c1f1f0e9a11"
FAST = RetryPolicy(attempts=4, base_delay=0.5, max_delay=30.0, timeout=5.0, jitter=False)

Handler = Callable[[httpx.Request], httpx.Response]


class FixedToken:
    def __init__(self) -> None:
        self.resources: list[str] = []

    async def token(self, resource: str) -> str:
        self.resources.append(resource)
        return TOKEN


class Harness:
    """A client whose transport is ``handler`` and whose sleeps are recorded, not slept."""

    def __init__(self, handler: Handler, *, retry: RetryPolicy = FAST, base_url: str = ORG) -> None:
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []
        self.tokens = FixedToken()

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        http = httpx.AsyncClient(transport=httpx.MockTransport(record))
        self.client = DataverseClient(base_url, self.tokens, http=http, retry=retry, sleep=sleep)


def sequence(*responses: httpx.Response | Exception) -> Handler:
    """Answer each request with the next response (or raise the next exception)."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def odata_error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def collect(client: DataverseClient, **kwargs: Any) -> list[list[dict[str, Any]]]:
    return [page async for page in client.query("mailboxes", **kwargs)]


# ---------------------------------------------------------------------------
# Every request


def test_who_am_i_sends_the_web_api_headers_and_parses_the_ids() -> None:
    body = {"BusinessUnitId": "b1", "UserId": "u1", "OrganizationId": "o1"}
    h = Harness(sequence(httpx.Response(200, json=body)))

    who = run(h.client.who_am_i())

    assert (who.business_unit_id, who.user_id, who.organization_id) == ("b1", "u1", "o1")
    request = h.requests[0]
    assert str(request.url) == ROOT + "WhoAmI"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["OData-MaxVersion"] == "4.0"
    assert request.headers["OData-Version"] == "4.0"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == "OrgGuard/0.1"
    assert h.tokens.resources == [ORG]
    assert h.client.requests_sent == 1


def test_sandbox_org_url_keeps_its_path_in_the_web_api_root() -> None:
    h = Harness(sequence(httpx.Response(200, json={"value": []})), base_url="http://127.0.0.1:8072/orgs/contoso-na/")
    run(collect(h.client, select=["mailboxid"]))
    assert str(h.requests[0].url).startswith("http://127.0.0.1:8072/orgs/contoso-na/api/data/v9.2/mailboxes?")


def test_plain_http_is_refused_for_a_remote_org() -> None:
    with pytest.raises(ValueError, match="loopback"):
        DataverseClient("http://contoso.crm.dynamics.com", LocalDevToken())


# ---------------------------------------------------------------------------
# Paging


def test_query_sends_maxpagesize_and_follows_next_link_as_given() -> None:
    next_link = ROOT + "mailboxes?$select=mailboxid,emailaddress&$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"
    h = Harness(
        sequence(
            httpx.Response(200, json={"value": [{"mailboxid": "1"}, {"mailboxid": "2"}], "@odata.nextLink": next_link}),
            httpx.Response(200, json={"value": [{"mailboxid": "3"}]}),
        )
    )

    pages = run(
        collect(h.client, select=["mailboxid", "emailaddress"], filter="actdeliverymethod eq 1 and statecode eq 0")
    )

    assert [[row["mailboxid"] for row in page] for page in pages] == [["1", "2"], ["3"]]
    first, second = h.requests
    query = parse_qs(urlsplit(str(first.url)).query)
    assert query["$select"] == ["mailboxid,emailaddress"]
    assert query["$filter"] == ["actdeliverymethod eq 1 and statecode eq 0"]
    assert str(second.url) == next_link
    assert [r.headers["Prefer"] for r in h.requests] == ["odata.maxpagesize=5000"] * 2


@pytest.mark.parametrize(("asked", "sent"), [(250, "250"), (20000, "5000")])
def test_page_size_is_capped_at_5000(asked: int, sent: str) -> None:
    h = Harness(sequence(httpx.Response(200, json={"value": []})))
    run(collect(h.client, select=["mailboxid"], page_size=asked))
    assert h.requests[0].headers["Prefer"] == f"odata.maxpagesize={sent}"


# ---------------------------------------------------------------------------
# Retries


def test_429_waits_as_long_as_retry_after_says() -> None:
    h = Harness(
        sequence(
            odata_error(429, "0x80072322", "Number of requests exceeded the limit", **{"Retry-After": "7"}),
            httpx.Response(200, json={"value": []}),
        )
    )
    run(collect(h.client, select=["mailboxid"]))
    assert h.sleeps == [7.0]
    assert h.client.requests_sent == 2


def test_a_retry_after_longer_than_the_caller_waits_is_handed_back_not_cut_short() -> None:
    """Sending again after 30 s of a 300 s penalty would only extend it (FACTS.md, "Checked again")."""
    h = Harness(sequence(httpx.Response(429, headers={"Retry-After": "300"}), httpx.Response(200, json={"value": []})))
    with pytest.raises(Throttled) as caught:
        run(collect(h.client, select=["mailboxid"]))
    assert caught.value.retry_after == 300.0
    assert h.sleeps == [] and h.client.requests_sent == 1


def test_a_retry_after_the_caller_can_wait_is_waited_in_full() -> None:
    h = Harness(sequence(httpx.Response(429, headers={"Retry-After": "30"}), httpx.Response(200, json={"value": []})))
    run(collect(h.client, select=["mailboxid"]))
    assert h.sleeps == [30.0] and h.client.requests_sent == 2


def test_429_that_never_ends_raises_throttled_with_the_wait() -> None:
    h = Harness(lambda _: odata_error(429, "0x80072321", "Combined execution time exceeded", **{"Retry-After": "12"}))
    with pytest.raises(Throttled) as caught:
        run(collect(h.client, select=["mailboxid"]))
    assert caught.value.retry_after == 12.0
    assert caught.value.status == 429
    assert "Combined execution time" in str(caught.value)
    assert h.client.requests_sent == FAST.attempts
    assert h.sleeps == [12.0] * (FAST.attempts - 1)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_with_exponential_backoff(status: int) -> None:
    h = Harness(sequence(httpx.Response(status), httpx.Response(status), httpx.Response(200, json={"value": []})))
    run(collect(h.client, select=["mailboxid"]))
    assert h.sleeps == [0.5, 1.0]


def test_backoff_jitter_stays_within_half_to_full_delay() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.backoff(attempt) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1


def test_5xx_that_persists_surfaces_the_status() -> None:
    h = Harness(lambda _: odata_error(503, "0x80040216", "Service unavailable"))
    with pytest.raises(DataverseError) as caught:
        run(collect(h.client, select=["mailboxid"]))
    assert caught.value.status == 503
    assert h.client.requests_sent == FAST.attempts


def test_4xx_is_not_retried_and_the_odata_message_is_surfaced() -> None:
    message = "Could not find a property named 'emailadress' on type 'Microsoft.Dynamics.CRM.mailbox'."
    h = Harness(sequence(odata_error(400, "0x0", message)))
    with pytest.raises(DataverseError) as caught:
        run(collect(h.client, select=["emailadress"]))
    assert (caught.value.status, caught.value.code, caught.value.message) == (400, "0x0", message)
    assert h.client.requests_sent == 1
    assert h.sleeps == []


def test_transport_errors_on_a_read_are_retried() -> None:
    h = Harness(
        sequence(httpx.ReadTimeout("timed out"), httpx.ConnectError("refused"), httpx.Response(200, json={"value": []}))
    )
    run(collect(h.client, select=["mailboxid"]))
    assert h.sleeps == [0.5, 1.0]


def test_a_create_that_may_have_landed_is_not_repeated() -> None:
    h = Harness(sequence(httpx.ReadTimeout("timed out"), httpx.Response(204)))
    with pytest.raises(DataverseError, match="ReadTimeout"):
        run(h.client.create("serviceendpoints", {"name": "x"}))
    assert h.client.requests_sent == 1


def test_a_create_answered_500_is_not_repeated() -> None:
    h = Harness(sequence(httpx.Response(500), httpx.Response(204)))
    with pytest.raises(DataverseError):
        run(h.client.create("serviceendpoints", {"name": "x"}))
    assert h.client.requests_sent == 1


def test_a_create_that_never_connected_is_retried() -> None:
    entity = ROOT + "serviceendpoints(5b5a0c1e-1111-4a2b-8c3d-000000000001)"
    h = Harness(sequence(httpx.ConnectError("refused"), httpx.Response(204, headers={"OData-EntityId": entity})))
    assert run(h.client.create("serviceendpoints", {"name": "x"})) == "5b5a0c1e-1111-4a2b-8c3d-000000000001"
    assert h.client.requests_sent == 2


def test_a_patch_is_idempotent_so_a_timeout_is_retried() -> None:
    h = Harness(sequence(httpx.ReadTimeout("timed out"), httpx.Response(204)))
    run(h.client.patch("mailboxes", MAILBOX, {"actdeliverymethod": 2}))
    assert h.client.requests_sent == 2


# ---------------------------------------------------------------------------
# Rows


def test_patch_sends_if_match_with_the_etag() -> None:
    h = Harness(sequence(httpx.Response(204)))
    run(h.client.patch("mailboxes", MAILBOX, {"actdeliverymethod": 2}, etag='W/"5521"'))
    request = h.requests[0]
    assert request.method == "PATCH"
    assert str(request.url) == f"{ROOT}mailboxes({MAILBOX})"
    assert request.headers["If-Match"] == 'W/"5521"'
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"actdeliverymethod": 2}


def test_patch_without_etag_sends_if_match_star_so_it_never_creates() -> None:
    h = Harness(sequence(httpx.Response(204)))
    run(h.client.patch("mailboxes", "{" + MAILBOX.upper() + "}", {"actdeliverymethod": 2}))
    assert h.requests[0].headers["If-Match"] == "*"
    assert str(h.requests[0].url) == f"{ROOT}mailboxes({MAILBOX})"


def test_412_raises_precondition_failed() -> None:
    h = Harness(sequence(odata_error(412, "0x80060882", "The version of the existing record doesn't match")))
    with pytest.raises(PreconditionFailed) as caught:
        run(h.client.patch("mailboxes", MAILBOX, {"actdeliverymethod": 2}, etag='W/"1"'))
    assert caught.value.code == "0x80060882"
    assert h.client.requests_sent == 1


def test_get_returns_the_row_or_none_when_missing() -> None:
    row = {"@odata.etag": 'W/"9"', "mailboxid": MAILBOX, "actdeliverymethod": 1}
    h = Harness(sequence(httpx.Response(200, json=row), odata_error(404, "0x80040217", "mailbox Does Not Exist")))
    assert run(h.client.get("mailboxes", MAILBOX, select=["actdeliverymethod"])) == row
    assert run(h.client.get("mailboxes", MAILBOX, select=["actdeliverymethod"])) is None
    assert str(h.requests[0].url) == f"{ROOT}mailboxes({MAILBOX})?$select=actdeliverymethod"


def test_create_reads_the_id_from_the_body_when_there_is_no_header() -> None:
    body = {"@odata.id": ROOT + "serviceendpoints(5b5a0c1e-1111-4a2b-8c3d-000000000002)"}
    h = Harness(sequence(httpx.Response(201, json=body)))
    assert run(h.client.create("serviceendpoints", {"name": "x"})) == "5b5a0c1e-1111-4a2b-8c3d-000000000002"


def test_delete_addresses_the_row() -> None:
    h = Harness(sequence(httpx.Response(204)))
    run(h.client.delete("serviceendpoints", MAILBOX))
    assert (h.requests[0].method, str(h.requests[0].url)) == ("DELETE", f"{ROOT}serviceendpoints({MAILBOX})")


def test_ids_and_entity_sets_cannot_smuggle_url_syntax() -> None:
    h = Harness(sequence())
    with pytest.raises(ValueError):
        run(h.client.get("mailboxes", "x)?$select=*", select=["mailboxid"]))
    with pytest.raises(ValueError):
        run(h.client.delete("mailboxes/../systemusers", MAILBOX))
    assert h.requests == []


# ---------------------------------------------------------------------------
# Logs


def test_logs_name_the_entity_set_but_never_the_token_or_the_address(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(sequence(httpx.Response(503), httpx.Response(200, json={"value": []})))
    with caplog.at_level(logging.DEBUG, logger="orgguard.dataverse"):
        run(collect(h.client, select=["mailboxid"], filter="emailaddress eq 'ceo@contoso.com'"))
    assert "mailboxes" in caplog.text
    assert "503" in caplog.text
    assert "attempt 2" in caplog.text
    assert TOKEN not in caplog.text
    assert "ceo" not in caplog.text


# ---------------------------------------------------------------------------
# Tokens


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8072/orgs/contoso-na", "http://127.5.6.7/orgs/x", "http://localhost:8072", "http://[::1]:8072"],
)
def test_loopback_orgs_use_the_local_development_token(url: str) -> None:
    provider = token_provider_for(url)
    assert isinstance(provider, LocalDevToken)
    assert run(provider.token(url)) == "orgguard-local-dev"


@pytest.mark.parametrize("url", ["https://contoso.crm.dynamics.com", "https://128.0.0.1", "https://localhost.evil.com"])
def test_other_orgs_use_azure_identity(url: str) -> None:
    assert isinstance(token_provider_for(url, client_id="abc"), AzureIdentityToken)


def test_azure_identity_asks_for_the_org_default_scope() -> None:
    class FakeCredential:
        scopes: list[tuple[str, ...]] = []

        async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            self.scopes.append(scopes)
            return type("AccessToken", (), {"token": "aad-token", "expires_on": 0})()

        async def close(self) -> None:
            pass

    credential = FakeCredential()
    provider = AzureIdentityToken(credential=credential)  # type: ignore[arg-type]
    assert run(provider.token(ORG)) == "aad-token"
    assert credential.scopes == [(f"{ORG}/.default",)]


def test_a_token_failure_becomes_a_dataverse_error() -> None:
    class Broken:
        async def token(self, resource: str) -> str:
            raise RuntimeError("no managed identity here")

    client = DataverseClient(ORG, Broken(), http=httpx.AsyncClient(transport=httpx.MockTransport(sequence())))
    with pytest.raises(DataverseError) as caught:
        run(client.who_am_i())
    assert caught.value.code == "token"


# ---------------------------------------------------------------------------
# $batch: the request


def parse_multipart(content_type: str, body: bytes) -> email.message.Message:
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    assert not message.defects, message.defects
    return message


def parts_of(message: email.message.Message) -> list[email.message.Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    return [part for part in payload if isinstance(part, email.message.Message)]


def http_part(part: email.message.Message) -> tuple[str, dict[str, str], str]:
    """Request line, headers and body of an application/http part."""
    assert part.get_content_type() == "application/http"
    assert part["Content-Transfer-Encoding"] == "binary"
    raw = part.get_payload()
    assert isinstance(raw, str)
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    request_line, *header_lines = head.split("\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return request_line, headers, body.strip()


DEMOTE = {"actdeliverymethod": 2, "orgmarkedasprimaryforexchangesync": False}
OPS = [
    BatchOperation("PATCH", f"mailboxes({MAILBOX})", DEMOTE, etag='W/"11"'),
    BatchOperation("PATCH", "mailboxes(1d3c6a1e-6f31-4b8e-9d2a-6c1f1f0e9a12)", DEMOTE),
    BatchOperation("GET", "mailboxes(1d3c6a1e-6f31-4b8e-9d2a-6c1f1f0e9a12)?$select=actdeliverymethod"),
]


def test_batch_request_is_multipart_the_stdlib_parser_accepts() -> None:
    body = encode_batch(OPS, api_root=ROOT, boundary="batch_abc", atomic=False)
    message = parse_multipart('multipart/mixed; boundary="batch_abc"', body)

    parts = parts_of(message)
    assert len(parts) == 3
    line, headers, payload = http_part(parts[0])
    assert line == f"PATCH {ROOT}mailboxes({MAILBOX}) HTTP/1.1"
    assert headers["If-Match"] == 'W/"11"'
    assert headers["Content-Type"] == "application/json; type=entry"
    assert json.loads(payload) == DEMOTE
    assert http_part(parts[1])[1]["If-Match"] == "*"
    line, headers, payload = http_part(parts[2])
    assert line.startswith("GET ") and line.endswith("?$select=actdeliverymethod HTTP/1.1")
    assert "If-Match" not in headers and payload == ""
    assert b"\r\n" in body and body.endswith(b"--batch_abc--\r\n")


def test_atomic_batch_is_one_change_set_with_content_ids() -> None:
    body = encode_batch(OPS[:2], api_root=ROOT, boundary="batch_abc", atomic=True)
    message = parse_multipart('multipart/mixed; boundary="batch_abc"', body)

    (changeset,) = parts_of(message)
    assert changeset.get_content_type() == "multipart/mixed"
    assert str(changeset.get_boundary()).startswith("changeset_")
    inner = parts_of(changeset)
    assert [part["Content-ID"] for part in inner] == ["1", "2"]
    assert [http_part(part)[0].split()[0] for part in inner] == ["PATCH", "PATCH"]


def test_batch_posts_to_dollar_batch_with_continue_on_error() -> None:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return batch_answer(request)

    h = Harness(handler)
    results = run(h.client.batch(OPS[:2]))
    request = captured[0]
    assert (request.method, str(request.url)) == ("POST", ROOT + "$batch")
    assert request.headers["Prefer"] == "odata.continue-on-error"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    message = parse_multipart(request.headers["Content-Type"], request.content)
    assert len(parts_of(message)) == 2
    assert [r.status for r in results] == [204, 204]


def test_atomic_batch_without_continue_on_error_sends_no_prefer() -> None:
    h = Harness(batch_answer)
    run(h.client.batch(OPS[:2], atomic=True, continue_on_error=False))
    assert "Prefer" not in h.requests[0].headers


def test_batch_is_split_into_requests_of_at_most_1000() -> None:
    ops = [BatchOperation("PATCH", f"mailboxes({MAILBOX})", {"actdeliverymethod": n % 3}) for n in range(2500)]
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        boundary = request.headers["Content-Type"].split("boundary=")[1].strip('"')
        sizes.append(request.content.count(f"--{boundary}\r\n".encode()))  # the email parser is slow at 1000
        return batch_answer_for(sizes[-1])

    h = Harness(handler)
    results = run(h.client.batch(ops))
    assert sizes == [MAX_BATCH, MAX_BATCH, 500]
    assert len(results) == 2500 and all(r.ok for r in results)
    assert h.client.requests_sent == 3


def test_atomic_batch_over_1000_is_refused() -> None:
    ops = [BatchOperation("PATCH", f"mailboxes({MAILBOX})", {})] * (MAX_BATCH + 1)
    with pytest.raises(ValueError, match="change set"):
        run(Harness(batch_answer).client.batch(ops, atomic=True))


def test_a_throttled_batch_is_retried_whole() -> None:
    h = Harness(sequence(httpx.Response(429, headers={"Retry-After": "2"}), batch_answer_for(2)))
    results = run(h.client.batch(OPS[:2]))
    assert h.sleeps == [2.0]
    assert [r.status for r in results] == [204, 204]


def test_a_batch_rejected_without_multipart_raises() -> None:
    h = Harness(sequence(odata_error(400, "0x80048d19", "Batch request contains more than 1000 requests")))
    with pytest.raises(DataverseError, match="more than 1000"):
        run(h.client.batch(OPS[:2]))


# ---------------------------------------------------------------------------
# $batch: the answer, written after Microsoft's "Execute batch operations using the Web API"

CHANGESET_ANSWER = (
    "--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15\r\n"
    "\r\n"
    "--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 2\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-Version: 4.0\r\n"
    "Location: https://contoso.crm.dynamics.com/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)\r\n"
    "OData-EntityId: https://contoso.crm.dynamics.com/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15--\r\n"
    "--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json; odata.metadata=minimal; odata.streaming=true\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    "{\r\n"
    '  "@odata.context": "https://contoso.crm.dynamics.com/api/data/v9.2/$metadata#tasks(subject)",\r\n'
    '  "value": [{"@odata.etag": "W/\\"77181173\\"", "subject": "Task 1 in batch"}]\r\n'
    "}\r\n"
    "--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f--\r\n"
)
CHANGESET_TYPE = "multipart/mixed; boundary=batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f"

CONTINUE_ON_ERROR_ANSWER = (
    "--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 400 Bad Request\r\n"
    "REQ_ID: de4c5227-4a28-4ebd-8ced-3392ece1697b\r\n"
    "Content-Type: application/json; odata.metadata=minimal\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    '{"error":{"code":"0x80044331","message":"A validation error occurred.  The length of the '
    "'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'.\"}}\r\n"
    "--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-Version: 4.0\r\n"
    "Location: https://contoso.crm.dynamics.com/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)\r\n"
    "OData-EntityId: https://contoso.crm.dynamics.com/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)\r\n"
    "\r\n"
    "\r\n"
    "--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139--\r\n"
)
CONTINUE_TYPE = "multipart/mixed; boundary=batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139"


def test_change_set_answer_is_matched_by_content_id_and_the_get_follows() -> None:
    responses = parse_batch_response(CHANGESET_TYPE, CHANGESET_ANSWER.encode())
    assert [r.status for r in responses] == [204, 204, 200]

    first, second = match_batch_results(2, responses[:2], atomic=True)
    assert first.entity_id == "e73ffc82-e292-ed11-aad1-000d3a9933c9"  # Content-ID 1 came second
    assert second.entity_id is None
    get = match_batch_results(1, responses[2:], atomic=False)[0]
    assert get.ok and get.body is not None
    assert get.body["value"][0]["subject"] == "Task 1 in batch"


def test_continue_on_error_answer_gives_each_operation_its_own_outcome() -> None:
    results = match_batch_results(
        2, parse_batch_response(CONTINUE_TYPE, CONTINUE_ON_ERROR_ANSWER.encode()), atomic=False
    )
    failed, created = results
    assert not failed.ok and failed.status == 400 and failed.error is not None
    assert failed.error.code == "0x80044331"
    assert "exceeded the maximum allowed length" in failed.error.message
    assert created.ok and created.entity_id == "aed2ae8b-3c94-ed11-aad1-000d3a9933c9"


def test_a_batch_that_stopped_at_the_first_error_marks_the_rest_unprocessed() -> None:
    stopped = CONTINUE_ON_ERROR_ANSWER.split("--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139\r\n")[1]
    body = (
        "--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139\r\n"
        + stopped
        + "--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139--\r\n"
    )
    h = Harness(sequence(httpx.Response(400, content=body.encode(), headers={"Content-Type": CONTINUE_TYPE})))
    results = run(h.client.batch(OPS, continue_on_error=False))
    assert [r.status for r in results] == [400, None, None]
    assert results[1].error is not None and results[1].error.code == "not_processed"
    assert h.client.requests_sent == 1  # a 400 batch is not retried


def test_a_failed_change_set_fails_every_operation_in_it() -> None:
    body = (
        "--batchresponse_1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "\r\n"
        "HTTP/1.1 412 Precondition Failed\r\n"
        "Content-Type: application/json; odata.metadata=minimal\r\n"
        "\r\n"
        '{"error":{"code":"0x80060882","message":"The version of the existing record doesn\'t match"}}\r\n'
        "--batchresponse_1--\r\n"
    )
    h = Harness(
        sequence(
            httpx.Response(
                400, content=body.encode(), headers={"Content-Type": "multipart/mixed; boundary=batchresponse_1"}
            )
        )
    )
    results = run(h.client.batch(OPS[:2], atomic=True))
    assert [r.status for r in results] == [412, 412]
    assert all(isinstance(r.error, PreconditionFailed) for r in results)


def test_later_chunks_are_not_sent_after_a_stopped_chunk() -> None:
    ops = [BatchOperation("PATCH", f"mailboxes({MAILBOX})", {})] * (MAX_BATCH + 5)
    stopped = (
        "--b\r\nContent-Type: application/http\r\n\r\n"
        'HTTP/1.1 403 Forbidden\r\n\r\n{"error":{"code":"0x80040220","message":"no privilege"}}\r\n--b--\r\n'
    )
    h = Harness(
        sequence(httpx.Response(403, content=stopped.encode(), headers={"Content-Type": "multipart/mixed; boundary=b"}))
    )
    results = run(h.client.batch(ops, continue_on_error=False))
    assert len(results) == MAX_BATCH + 5
    assert results[0].status == 403 and all(r.status is None for r in results[1:])
    assert h.client.requests_sent == 1


def test_lf_only_answers_parse_too() -> None:
    lf = CONTINUE_ON_ERROR_ANSWER.replace("\r\n", "\n").encode()
    results = match_batch_results(2, parse_batch_response(CONTINUE_TYPE, lf), atomic=False)
    assert [r.status for r in results] == [400, 204]


# ---------------------------------------------------------------------------
# A minimal $batch server for the tests above


def batch_answer(request: httpx.Request) -> httpx.Response:
    """204 for every operation in the request, in a change set when the request had one."""
    message = parse_multipart(request.headers["Content-Type"], request.content)
    lines: list[str] = []
    for part in parts_of(message):
        if part.get_content_type() == "multipart/mixed":
            lines += ["--batchresponse_x", "Content-Type: multipart/mixed; boundary=changesetresponse_y", ""]
            for number, _ in enumerate(parts_of(part), start=1):
                lines += ["--changesetresponse_y", "Content-Type: application/http", f"Content-ID: {number}", ""]
                lines += ["HTTP/1.1 204 No Content", "OData-Version: 4.0", "", ""]
            lines += ["--changesetresponse_y--"]
        else:
            lines += ["--batchresponse_x", "Content-Type: application/http", "", "HTTP/1.1 204 No Content", "", ""]
    lines += ["--batchresponse_x--", ""]
    return httpx.Response(
        200,
        content="\r\n".join(lines).encode(),
        headers={"Content-Type": "multipart/mixed; boundary=batchresponse_x"},
    )


def batch_answer_for(count: int) -> httpx.Response:
    lines: list[str] = []
    for _ in range(count):
        lines += ["--batchresponse_x", "Content-Type: application/http", "", "HTTP/1.1 204 No Content", "", ""]
    lines += ["--batchresponse_x--", ""]
    return httpx.Response(
        200, content="\r\n".join(lines).encode(), headers={"Content-Type": "multipart/mixed; boundary=batchresponse_x"}
    )


# ---------------------------------------------------------------------------
# Writes that must reach Dataverse at most once


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("reset"), httpx.Response(503), httpx.Response(504)],
    ids=["timeout", "reset-after-send", "503", "504"],
)
def test_a_batch_that_writes_is_not_repeated_once_it_may_have_landed(failure: Any) -> None:
    h = Harness(sequence(failure, batch_answer_for(2)))
    if isinstance(failure, Exception):
        with pytest.raises(DataverseError):
            run(h.client.batch(OPS[:2]))
    else:
        with pytest.raises(DataverseError, match=str(failure.status_code)):
            run(h.client.batch(OPS[:2]))
    assert h.client.requests_sent == 1


def test_a_batch_of_reads_is_repeated_after_a_timeout() -> None:
    reads = [BatchOperation("GET", f"mailboxes({MAILBOX})?$select=actdeliverymethod")] * 2
    h = Harness(sequence(httpx.ReadTimeout("timed out"), batch_answer_for(2)))
    assert len(run(h.client.batch(reads))) == 2 and h.client.requests_sent == 2


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("timed out"), httpx.Response(502)], ids=["timeout", "502"])
def test_a_patch_sent_at_most_once_is_not_repeated(failure: Any) -> None:
    h = Harness(sequence(failure, httpx.Response(204)))
    with pytest.raises(DataverseError):
        run(h.client.patch("mailboxes", MAILBOX, {"testemailconfigurationscheduled": True}, at_most_once=True))
    assert h.client.requests_sent == 1


def test_a_write_that_never_connected_or_was_throttled_is_retried_even_at_most_once() -> None:
    h = Harness(sequence(httpx.ConnectError("refused"), httpx.Response(429, headers={"Retry-After": "1"}),
                         httpx.Response(204)))  # fmt: skip
    run(h.client.patch("mailboxes", MAILBOX, {"testemailconfigurationscheduled": True}, at_most_once=True))
    assert h.client.requests_sent == 3
