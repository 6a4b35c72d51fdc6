"""The Global Discovery Service client over real HTTP: what the sandbox serves, and every bad answer a service
could give; writing the chosen environments into an orgs file without losing what an operator wrote there."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.server import running
from shared.config.orgs_file import add_orgs, writable
from shared.dataverse.discovery import connect_discovery
from shared.dataverse.port import DataverseError
from shared.domain.environments import OrgEntry, OrgType, choose, compare
from shared.domain.model import DomainError
from shared.domain.orgs import OrgsError
from shared.service.discovery import entries_for
from tests.serving import serve

NA = "3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01"


def listed(base: str) -> Any:
    async def go() -> Any:
        directory = connect_discovery(base, client_id=None)
        try:
            return await directory.environments()
        finally:
            await directory.aclose()

    return asyncio.run(go())


def test_the_sandbox_lists_its_orgs_as_the_discovery_service_does():
    with running(port=0, mailboxes=5, orgs=5) as url:
        found = {e.name: e for e in listed(f"{url}/discovery")}
    assert list(found) == ["contoso-na", "contoso-jp", "contoso-eu", "contoso-org4", "contoso-org5"]
    na = found["contoso-na"]
    assert (na.id, na.url, na.type, na.enabled, na.friendly_name) == (
        NA,
        f"{url}/orgs/contoso-na",
        OrgType.PRODUCTION,
        True,
        "Contoso NA",
    )
    assert {found["contoso-org4"].type, found["contoso-org5"].type} == {OrgType.TRIAL, OrgType.DEVELOPER}


def fake(answer: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/api/discovery/v2.0/Instances")
    async def instances(request: Request) -> Response:
        result: Response = answer(request)
        return result

    return app


INSTANCE = {"Id": NA, "UniqueName": "unq1", "UrlName": "contoso-na", "FriendlyName": "Contoso NA", "State": 0,
            "Url": "https://contoso-na.crm.dynamics.com", "OrganizationType": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (lambda r: Response("<html>login</html>", 200, media_type="text/html"), "not JSON"),
        (lambda r: JSONResponse([1, 2]), "not an OData collection"),
        (lambda r: JSONResponse({"value": 3}), "without a list"),
        (lambda r: JSONResponse({"error": {"code": "0x1", "message": "no access"}}, 403), "no access"),
        (lambda r: Response(status_code=401), "401"),
        (lambda r: JSONResponse({"value": [{**INSTANCE, "Id": "not-a-guid"}]}), "no usable Id"),
        (lambda r: JSONResponse({"value": [{**INSTANCE, "Url": None}]}), "no usable Url"),
    ],
)
def test_a_bad_answer_is_one_clear_error(answer, fragment):
    with serve(fake(answer)) as url, pytest.raises(DataverseError) as failed:
        listed(url)
    assert fragment in str(failed.value)


def test_pages_are_followed_and_the_bearer_token_is_sent():
    seen: list[str] = []

    def answer(request: Request) -> Response:
        seen.append(request.headers.get("authorization", ""))
        if "page" in request.query_params:
            second = {**INSTANCE, "Id": "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12", "UrlName": "jp", "State": 1,
                      "OrganizationType": 10}  # fmt: skip
            return JSONResponse({"value": [second]})
        return JSONResponse(
            {"value": [INSTANCE], "@odata.nextLink": f"{request.base_url}api/discovery/v2.0/Instances?page=2"}
        )

    with serve(fake(answer)) as url:
        found = listed(url)
    assert [e.name for e in found] == ["contoso-na", "jp"] and seen == ["Bearer orgguard-local-dev"] * 2
    assert found[1].type is None and not found[1].enabled  # MsftInvestigation: no customer environment
    with pytest.raises(DomainError, match="disabled"):
        choose(compare(found, {}), ["jp"])


def test_a_service_that_does_not_answer_is_reported():
    with pytest.raises(DataverseError, match="cannot reach"):
        listed("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="loopback"):
        connect_discovery("http://disco.example.com", client_id=None)


# --- the orgs file -----------------------------------------------------------------------------------


def entry(name: str, org_id: str, **kw: Any) -> OrgEntry:
    return OrgEntry(name, org_id, f"https://{name}.crm.dynamics.com", f"key-{name}-0123456789", **kw)


def test_entries_are_appended_keeping_comments_and_layout(tmp_path: Path):
    path = tmp_path / "orgs.yaml"
    path.write_text(f"# who we hear\norgs:\n- name: contoso-na  # main\n  id: {NA}\n  url: https://na.crm.dynamics.com\n"
                    "  webhook_key: k-na-0123456789\n")  # fmt: skip
    registry, kept = add_orgs(path, [entry("contoso-x", "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12", type="sandbox")])
    assert kept and registry.names == ["contoso-na", "contoso-x"] and registry.get("contoso-x").type == "sandbox"
    assert path.read_text().startswith("# who we hear\norgs:\n- name: contoso-na  # main\n")


def test_a_file_laid_out_otherwise_is_written_again_and_says_so(tmp_path: Path):
    path = tmp_path / "orgs.yaml"
    path.write_text(json.dumps({"orgs": [{"name": "contoso-na", "id": NA, "url": "https://na.crm.dynamics.com",
                                          "webhook_key": "k-na-0123456789"}]}))  # fmt: skip
    registry, kept = add_orgs(path, [entry("contoso-x", "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12")])
    assert not kept and registry.names == ["contoso-na", "contoso-x"]


def test_an_entry_that_would_break_the_file_is_refused_and_nothing_is_written(tmp_path: Path):
    path = tmp_path / "orgs.yaml"
    text = f"orgs:\n  - name: contoso-na\n    id: {NA}\n    url: https://na.crm.dynamics.com\n"
    text += "    webhook_key: kk-0123456789\n"
    path.write_text(text)
    with pytest.raises(OrgsError, match="unique"):
        add_orgs(path, [entry("contoso-na", "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12")])
    with pytest.raises(OrgsError, match="unique"):
        add_orgs(path, [entry("other", NA)])
    assert path.read_text() == text
    with pytest.raises(OrgsError, match="document itself"):
        writable('{"orgs": []}')


def test_new_names_never_take_a_registered_one():
    from shared.domain.environments import Discovered, Environment

    env = Environment(NA, "unq", "contoso-na", "Contoso NA", "https://x", 5, True)
    made = entries_for([Discovered(env, None)], {"contoso-na", "contoso-na-2"}, key=lambda: "k-0123456789")
    assert made[0].name == "contoso-na-3" and made[0].type == "sandbox" and made[0].label == "Contoso NA"
