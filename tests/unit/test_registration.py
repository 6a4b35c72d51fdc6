"""register() against a small in-memory Web API: what it writes, and that a second run writes nothing."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.dataverse.client import DataverseClient
from shared.dataverse.port import DataverseError, RetryPolicy
from shared.dataverse.registration import (
    FILTERING_ATTRIBUTES,
    IMAGE_ATTRIBUTES,
    RegistrationResult,
    http_header_authvalue,
    privileges_markdown,
    register,
    required_privileges,
)
from shared.dataverse.tokens import LocalDevToken

ORG = "https://contoso-na.crm.dynamics.com"
ROOT = "/api/data/v9.2/"
BASE = "https://orgguard.azurewebsites.net"
KEY = 'k3y-with-<xml>&"quotes"'
UPDATE_ID = "20bebb1b-ea3e-db11-86a7-000a3a5473e8"
MAILBOX_UPDATE_FILTER = "83c9bb1b-ea3e-db11-86a7-000a3a5473e8"
ALL_RECORDS = (
    "serviceendpoint:OrgGuard gate",
    "serviceendpoint:OrgGuard events",
    "sdkmessageprocessingstep:OrgGuard: mailbox Update (gate)",
    "sdkmessageprocessingstepimage:OrgGuard: mailbox Update (gate)/pre",
    "sdkmessageprocessingstep:OrgGuard: mailbox Update (events)",
    "sdkmessageprocessingstepimage:OrgGuard: mailbox Update (events)/pre",
    "sdkmessageprocessingstepimage:OrgGuard: mailbox Update (events)/post",
)
PRIMARY_KEYS = {
    "serviceendpoints": "serviceendpointid",
    "sdkmessages": "sdkmessageid",
    "sdkmessagefilters": "sdkmessagefilterid",
    "sdkmessageprocessingsteps": "sdkmessageprocessingstepid",
    "sdkmessageprocessingstepimages": "sdkmessageprocessingstepimageid",
}
LOOKUPS = {  # navigation property -> lookup column, as Dataverse maps @odata.bind
    "sdkmessageid": "_sdkmessageid_value",
    "sdkmessagefilterid": "_sdkmessagefilterid_value",
    "eventhandler_serviceendpoint": "_eventhandler_value",
    "sdkmessageprocessingstepid": "_sdkmessageprocessingstepid_value",
}
CONDITION = re.compile(r"^(\w+) eq (?:'((?:[^']|'')*)'|([0-9a-fA-F-]{36}))$")


class FakeOrg:
    """Just enough of the Web API for registration: filtered GET, POST, PATCH with ETags; authvalue unreadable."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in PRIMARY_KEYS}
        self.secrets: dict[str, str] = {}  # serviceendpointid -> authvalue (write-only in Dataverse)
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self.add("sdkmessages", {"sdkmessageid": UPDATE_ID, "name": "Update"})
        self.add("sdkmessages", {"sdkmessageid": str(uuid.uuid4()), "name": "Create"})
        self.add(
            "sdkmessagefilters",
            {
                "sdkmessagefilterid": MAILBOX_UPDATE_FILTER,
                "primaryobjecttypecode": "mailbox",
                "_sdkmessageid_value": UPDATE_ID,
            },
        )
        self.add(
            "sdkmessagefilters",
            {
                "sdkmessagefilterid": str(uuid.uuid4()),
                "primaryobjecttypecode": "account",
                "_sdkmessageid_value": UPDATE_ID,
            },
        )

    def add(self, entity_set: str, row: dict[str, Any]) -> str:
        row_id = row[PRIMARY_KEYS[entity_set]]
        self.tables[entity_set][row_id] = {**row, "versionnumber": 1}
        return str(row_id)

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        return list(self.tables[entity_set].values())

    def one(self, entity_set: str, **where: Any) -> dict[str, Any]:
        (row,) = [r for r in self.rows(entity_set) if all(r.get(k) == v for k, v in where.items())]
        return row

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(ROOT)
        match = re.fullmatch(r"(\w+)(?:\(([0-9a-f-]{36})\))?", path)
        assert match, path
        entity_set, row_id = match.groups()
        if request.method == "GET":
            return self.query(entity_set, request)
        body = json.loads(request.content)
        self.writes.append((request.method, entity_set, body))
        if request.method == "POST":
            return self.create(entity_set, body)
        assert request.method == "PATCH"
        return self.update(entity_set, row_id, body, request.headers["If-Match"])

    def query(self, entity_set: str, request: httpx.Request) -> httpx.Response:
        params = parse_qs(urlsplit(str(request.url)).query)
        select = params["$select"][0].split(",")
        assert "authvalue" not in select, "authvalue is not readable"
        conditions = params["$filter"][0].split(" and ")
        rows = [r for r in self.rows(entity_set) if all(self.matches(r, c) for c in conditions)]
        size = int(request.headers["Prefer"].removeprefix("odata.maxpagesize="))
        value = [{"@odata.etag": f'W/"{r["versionnumber"]}"', **{c: r.get(c) for c in select}} for r in rows[:size]]
        return httpx.Response(200, json={"value": value})

    @staticmethod
    def matches(row: dict[str, Any], condition: str) -> bool:
        found = CONDITION.match(condition)
        assert found, condition
        column, text, guid = found.groups()
        return row.get(column) == (text.replace("''", "'") if text is not None else guid)

    def create(self, entity_set: str, body: dict[str, Any]) -> httpx.Response:
        row_id = str(uuid.uuid4())
        row = {PRIMARY_KEYS[entity_set]: row_id, "statecode": 0, "statuscode": 1} if "steps" in entity_set else {}
        row.setdefault(PRIMARY_KEYS[entity_set], row_id)
        self.apply(entity_set, row, body)
        self.add(entity_set, row)
        entity = f"{ORG}{ROOT}{entity_set}({row_id})"
        return httpx.Response(204, headers={"OData-EntityId": entity})

    def update(self, entity_set: str, row_id: str, body: dict[str, Any], if_match: str) -> httpx.Response:
        row = self.tables[entity_set].get(row_id)
        if row is None:
            return httpx.Response(404, json={"error": {"code": "0x80040217", "message": "Does Not Exist"}})
        if if_match not in ("*", f'W/"{row["versionnumber"]}"'):
            return httpx.Response(412, json={"error": {"code": "0x80060882", "message": "version mismatch"}})
        self.apply(entity_set, row, body)
        row["versionnumber"] += 1
        return httpx.Response(204)

    def apply(self, entity_set: str, row: dict[str, Any], body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key.endswith("@odata.bind"):
                target = re.fullmatch(r"/(\w+)\(([0-9a-f-]{36})\)", value)
                assert target, value
                assert target.group(2) in self.tables[target.group(1)], f"bind to a missing row: {value}"
                row[LOOKUPS[key.removesuffix("@odata.bind")]] = target.group(2)
            elif key == "authvalue":
                self.secrets[row[PRIMARY_KEYS[entity_set]]] = value
            else:
                row[key] = value


def run_register(org: FakeOrg, *, base: str = BASE, key: str = KEY) -> RegistrationResult:
    async def go() -> RegistrationResult:
        http = httpx.AsyncClient(transport=httpx.MockTransport(org))
        async with DataverseClient(ORG, LocalDevToken(), http=http, retry=RetryPolicy(attempts=1)) as client:
            return await register(client, org_name="contoso-na", base_url=base, key=key)

    return asyncio.run(go())


def header_settings(authvalue: str) -> dict[str, str]:
    root = ET.fromstring(authvalue)  # noqa: S314 - our own output
    assert root.tag == "settings"
    return {s.attrib["name"]: s.attrib["value"] for s in root.findall("setting")}


# ---------------------------------------------------------------------------


def test_first_run_creates_endpoints_steps_and_images() -> None:
    org = FakeOrg()
    result = run_register(org)

    assert result.org == "contoso-na"
    assert sorted(result.created) == sorted(ALL_RECORDS)
    assert result.updated == () and result.unchanged == ()
    assert result.changed


def test_endpoints_are_json_webhooks_carrying_the_key_header() -> None:
    org = FakeOrg()
    run_register(org, base=BASE + "/")

    gate = org.one("serviceendpoints", name="OrgGuard gate")
    events = org.one("serviceendpoints", name="OrgGuard events")
    assert gate["url"] == BASE + "/api/dataverse/gate"
    assert events["url"] == BASE + "/api/dataverse/events"
    for endpoint in (gate, events):
        assert (endpoint["contract"], endpoint["authtype"], endpoint["messageformat"]) == (8, 5, 2)
        assert header_settings(org.secrets[endpoint["serviceendpointid"]]) == {"x-orgguard-key": KEY}
        assert KEY not in endpoint["description"]


def test_steps_are_bound_to_update_of_mailbox_and_their_endpoint() -> None:
    org = FakeOrg()
    run_register(org)
    gate_endpoint = org.one("serviceendpoints", name="OrgGuard gate")["serviceendpointid"]
    events_endpoint = org.one("serviceendpoints", name="OrgGuard events")["serviceendpointid"]

    gate = org.one("sdkmessageprocessingsteps", name="OrgGuard: mailbox Update (gate)")
    events = org.one("sdkmessageprocessingsteps", name="OrgGuard: mailbox Update (events)")

    assert (gate["stage"], gate["mode"], gate["asyncautodelete"]) == (20, 0, False)
    assert (events["stage"], events["mode"], events["asyncautodelete"]) == (40, 1, True)
    for step, endpoint in ((gate, gate_endpoint), (events, events_endpoint)):
        assert step["_eventhandler_value"] == endpoint
        assert step["_sdkmessageid_value"] == UPDATE_ID
        assert step["_sdkmessagefilterid_value"] == MAILBOX_UPDATE_FILTER
        assert step["filteringattributes"] == FILTERING_ATTRIBUTES
        assert (step["rank"], step["supporteddeployment"]) == (1, 0)


def test_images_give_the_gate_a_pre_image_and_the_events_pre_and_post() -> None:
    org = FakeOrg()
    run_register(org)
    steps = {s["name"]: s["sdkmessageprocessingstepid"] for s in org.rows("sdkmessageprocessingsteps")}

    def images(step: str) -> dict[str, int]:
        rows = [
            i
            for i in org.rows("sdkmessageprocessingstepimages")
            if i["_sdkmessageprocessingstepid_value"] == steps[step]
        ]
        for image in rows:
            assert image["messagepropertyname"] == "Target"
            assert image["attributes"] == IMAGE_ATTRIBUTES
        return {image["entityalias"]: image["imagetype"] for image in rows}

    assert images("OrgGuard: mailbox Update (gate)") == {"pre": 0}
    assert images("OrgGuard: mailbox Update (events)") == {"pre": 0, "post": 1}


def test_second_run_changes_nothing() -> None:
    org = FakeOrg()
    run_register(org)
    writes_after_first = len(org.writes)

    second = run_register(org)

    assert len(org.writes) == writes_after_first
    assert sorted(second.unchanged) == sorted(ALL_RECORDS)
    assert second.created == () and second.updated == ()
    assert not second.changed


def test_a_new_url_patches_the_endpoints_but_keeps_the_key_out_of_the_write() -> None:
    org = FakeOrg()
    run_register(org)
    org.writes.clear()

    result = run_register(org, base="https://orgguard-2.azurewebsites.net")

    assert sorted(result.updated) == ["serviceendpoint:OrgGuard events", "serviceendpoint:OrgGuard gate"]
    assert [(method, entity_set) for method, entity_set, _ in org.writes] == [("PATCH", "serviceendpoints")] * 2
    assert all(set(body) == {"url"} for _, _, body in org.writes)
    assert (
        org.one("serviceendpoints", name="OrgGuard gate")["url"]
        == "https://orgguard-2.azurewebsites.net/api/dataverse/gate"
    )


def test_a_new_key_is_written_although_dataverse_cannot_read_the_old_one_back() -> None:
    org = FakeOrg()
    run_register(org)

    result = run_register(org, key="rotated-key")

    assert len(result.updated) == 2
    for endpoint in org.rows("serviceendpoints"):
        assert header_settings(org.secrets[endpoint["serviceendpointid"]]) == {"x-orgguard-key": "rotated-key"}
    assert not run_register(org, key="rotated-key").changed


def test_a_drifted_step_is_put_back_and_a_disabled_one_enabled() -> None:
    org = FakeOrg()
    run_register(org)
    gate = org.one("sdkmessageprocessingsteps", name="OrgGuard: mailbox Update (gate)")
    gate.update(filteringattributes="actdeliverymethod", statecode=1, statuscode=2)

    result = run_register(org)

    assert result.updated == ("sdkmessageprocessingstep:OrgGuard: mailbox Update (gate)",)
    assert gate["filteringattributes"] == FILTERING_ATTRIBUTES
    assert (gate["statecode"], gate["statuscode"]) == (0, 1)


def test_filtering_attributes_in_another_order_are_equal() -> None:
    org = FakeOrg()
    run_register(org)
    gate = org.one("sdkmessageprocessingsteps", name="OrgGuard: mailbox Update (gate)")
    gate["filteringattributes"] = ",".join(reversed(FILTERING_ATTRIBUTES.split(",")))
    assert not run_register(org).changed


def test_a_missing_image_is_recreated() -> None:
    org = FakeOrg()
    run_register(org)
    post = org.one("sdkmessageprocessingstepimages", entityalias="post")
    del org.tables["sdkmessageprocessingstepimages"][post["sdkmessageprocessingstepimageid"]]

    result = run_register(org)

    assert result.created == ("sdkmessageprocessingstepimage:OrgGuard: mailbox Update (events)/post",)


def test_duplicate_endpoints_are_reported_not_guessed() -> None:
    org = FakeOrg()
    run_register(org)
    copy = dict(org.one("serviceendpoints", name="OrgGuard gate"), serviceendpointid=str(uuid.uuid4()))
    org.add("serviceendpoints", copy)
    with pytest.raises(DataverseError, match="more than one"):
        run_register(org)


def test_an_org_without_the_update_message_fails_clearly() -> None:
    org = FakeOrg()
    org.tables["sdkmessages"].pop(UPDATE_ID)
    with pytest.raises(DataverseError, match="sdkmessages"):
        run_register(org)


def test_the_steps_go_on_the_mailbox_filter_of_update_among_the_mailboxs_other_filters() -> None:
    """``register`` finds the filter as ``check`` does: among the mailbox's filters, by its message."""
    org = FakeOrg()
    create = org.one("sdkmessages", name="Create")["sdkmessageid"]
    filters = org.rows("sdkmessagefilters")
    org.tables["sdkmessagefilters"] = {}
    org.add("sdkmessagefilters", {"sdkmessagefilterid": str(uuid.uuid4()), "primaryobjecttypecode": "mailbox",
                                  "_sdkmessageid_value": create})  # fmt: skip  # the mailbox's Create filter first
    for row in filters:
        org.add("sdkmessagefilters", row)
    run_register(org)
    steps = org.rows("sdkmessageprocessingsteps")
    assert {s["_sdkmessagefilterid_value"] for s in steps} == {MAILBOX_UPDATE_FILTER}


@pytest.mark.parametrize(
    ("entity_set", "row_id"), [("sdkmessages", UPDATE_ID), ("sdkmessagefilters", MAILBOX_UPDATE_FILTER)]
)
def test_an_org_without_the_mailbox_update_filter_fails_clearly_before_writing_anything(
    entity_set: str, row_id: str
) -> None:
    org = FakeOrg()
    org.tables[entity_set].pop(row_id)
    with pytest.raises(DataverseError, match=entity_set):
        run_register(org)
    assert org.writes == []  # no endpoint left behind without its steps


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        run_register(FakeOrg(), key="")


def test_authvalue_escapes_the_key_for_xml() -> None:
    text = http_header_authvalue({"x-orgguard-key": 'a"b<c>&d'})
    assert header_settings(text) == {"x-orgguard-key": 'a"b<c>&d'}


# ---------------------------------------------------------------------------


def test_privileges_cover_what_orgguard_reads_and_writes() -> None:
    names = {name for privilege in required_privileges() for name in privilege.names}
    expected = {
        "prvReadMailbox",
        "prvWriteMailbox",
        "prvReadOrganization",
        "prvCreateServiceEndpoint",
        "prvWriteServiceEndpoint",
        "prvCreateSdkMessageProcessingStep",
        "prvWriteSdkMessageProcessingStep",
        "prvCreateSdkMessageProcessingStepImage",
        "prvWriteSdkMessageProcessingStepImage",
        "prvReadSdkMessage",
        "prvReadSdkMessageFilter",
        "prvReadTraceLog",
    }
    assert expected <= names
    assert not any(name.startswith(("prvDelete", "prvCreateMailbox")) for name in names)


def test_privileges_render_as_a_markdown_table() -> None:
    table = privileges_markdown().splitlines()
    assert table[0].startswith("| table |")
    assert len(table) == 2 + len(required_privileges())
    assert any("`tracelog`" in row and "prvReadTraceLog" in row for row in table)
