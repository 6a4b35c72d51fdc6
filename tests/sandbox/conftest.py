"""One sandbox per test session over real HTTP, reset before each test; a tiny webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from sandbox.server import running

JP_ID = "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12"
NA_ID = "3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01"
AIKO = "Aiko.Tanaka@Contoso.com"
AIKO_JP = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
KEY = "s3cret-key"
FILTERING = "testemailconfigurationscheduled,orgmarkedasprimaryforexchangesync,actdeliverymethod"


def api(org: str) -> str:
    return f"/orgs/{org}/api/data/v9.2/"


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    # the tests' webhook receivers listen on free loopback ports: Dataverse's 80/443 rule needs the exception
    with running(loopback_webhooks=True) as url:
        yield url


@pytest.fixture
def control(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert client.post("/_sandbox/reset").status_code == 200
        yield client


@pytest.fixture
def admin(base_url: str, control: httpx.Client) -> Iterator[httpx.Client]:
    """An org admin's session: one bearer token, hence one systemuser per org."""
    with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer admin-token"}, timeout=30) as client:
        yield client


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Hook:
    """A webhook receiver: answers `sync` to synchronous contexts and `async_` to asynchronous ones."""

    url: str = ""
    calls: list[Call] = field(default_factory=list)
    sync: tuple[int, str] = (200, '{"effect": "allow"}')
    async_: tuple[int, str] = (202, '{"event": "1"}')
    delay_s: float = 0.0  # how long it takes to answer

    def of_mode(self, mode: int) -> list[Call]:
        return [call for call in self.calls if call.body.get("Mode") == mode]


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = json.loads(raw)
            state.calls.append(Call(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status, text = state.sync if body.get("Mode") == 0 else state.async_
            time.sleep(state.delay_s)
            payload = text.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                return  # the caller gave up waiting (a webhook timeout)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/dataverse"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook_url(hook: Hook) -> str:
    return hook.url


def register(client: httpx.Client, org: str, url: str, key: str = KEY) -> dict[str, str]:
    """Register OrgGuard's gate and event steps the way `orgguard register` does, through the Web API."""
    root = api(org)
    update = client.get(root + "sdkmessages", params={"$filter": "name eq 'Update'", "$select": "name"})
    message_id = update.json()["value"][0]["sdkmessageid"]
    filters = client.get(
        root + "sdkmessagefilters",
        params={"$filter": f"primaryobjecttypecode eq 'mailbox' and _sdkmessageid_value eq {message_id}"},
    )
    filter_id = filters.json()["value"][0]["sdkmessagefilterid"]
    ids: dict[str, str] = {}
    for name, path, stage, mode in (("gate", "/gate", 20, 0), ("events", "/events", 40, 1)):
        endpoint = client.post(
            root + "serviceendpoints",
            json={
                "name": f"OrgGuard {name}",
                "contract": 8,
                "url": url + path,
                "authtype": 5,
                "authvalue": f'<settings><setting name="x-orgguard-key" value="{key}" /></settings>',
                "messageformat": 2,
            },
        )
        assert endpoint.status_code == 204, endpoint.text
        endpoint_id = endpoint.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
        step = client.post(
            root + "sdkmessageprocessingsteps",
            headers={"Prefer": "return=representation"},
            json={
                "name": f"OrgGuard: mailbox Update ({name})",
                "stage": stage,
                "mode": mode,
                "rank": 1,
                "filteringattributes": FILTERING,
                "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
                "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
                "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
            },
        )
        assert step.status_code == 201, step.text
        step_id = step.json()["sdkmessageprocessingstepid"]
        images = [("pre", 0)] if stage == 20 else [("pre", 0), ("post", 1)]
        for alias, image_type in images:
            image = client.post(
                root + "sdkmessageprocessingstepimages",
                json={
                    "name": alias,
                    "entityalias": alias,
                    "imagetype": image_type,
                    "attributes": "emailaddress,actdeliverymethod,orgmarkedasprimaryforexchangesync,regardingobjectid,"
                    "actstatus,statecode,testemailconfigurationscheduled",
                    "messagepropertyname": "Target",
                    "sdkmessageprocessingstepid@odata.bind": f"/sdkmessageprocessingsteps({step_id})",
                },
            )
            assert image.status_code == 204, image.text
        ids[name] = step_id
        ids[f"{name}_endpoint"] = endpoint_id
    return ids


def mailbox(client: httpx.Client, org: str, address: str = AIKO) -> dict[str, Any]:
    found = client.get(api(org) + "mailboxes", params={"$filter": f"emailaddress eq '{address}'"})
    assert found.status_code == 200, found.text
    rows: list[dict[str, Any]] = found.json()["value"]
    assert len(rows) == 1
    return rows[0]


def exchange(control: httpx.Client, address: str = AIKO) -> str | None:
    org: str | None = control.get(f"/_sandbox/exchange/{address}").json()["org"]
    return org
