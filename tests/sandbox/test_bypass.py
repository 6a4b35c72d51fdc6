"""Bypassing custom logic (bypass-custom-business-logic.md): the save happens without OrgGuard's steps for a
caller holding the privilege (System Administrators by default); anyone else gets PrivilegeDenied."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import AIKO_JP, Hook, api, exchange, mailbox, register

pytestmark = pytest.mark.sandbox
JP = api("contoso-jp")
TEST_ENABLE = {"testemailconfigurationscheduled": True}
ALL = {"MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync"}


def make_admin(control: httpx.Client) -> dict[str, Any]:
    """The `admin` fixture's bearer token becomes a System Administrator in every org."""
    answer = control.put("/_sandbox/users/admin-token", json={"system_administrator": True})
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view


def save(admin: httpx.Client, headers: dict[str, str], body: dict[str, Any] | None = None) -> httpx.Response:
    return admin.patch(JP + f"mailboxes({AIKO_JP})", json=body or TEST_ENABLE, headers={"If-Match": "*", **headers})


def heard(control: httpx.Client, hook: Hook) -> tuple[int, int]:
    control.get("/_sandbox/events", params={"wait": 5})
    return len(hook.of_mode(0)), len(hook.of_mode(1))


def test_a_system_administrator_saves_without_orgguards_steps(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    hook.sync = (409, '{"effect": "block"}')  # the gate would stop it
    view = make_admin(control)
    assert view["contoso-jp"]["bypass"] == {"prvBypassCustomBusinessLogic": True, "prvBypassCustomPlugins": True}
    assert save(admin, ALL).status_code == 204
    assert heard(control, hook) == (0, 0)
    assert exchange(control) == "contoso-jp"  # Test & Enable itself is not custom logic: it ran
    assert mailbox(admin, "contoso-jp")["_modifiedby_value"] == view["contoso-jp"]["user_id"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"MSCRM.BypassBusinessLogicExecution": "CustomSync"}, (0, 1)),
        ({"MSCRM.BypassBusinessLogicExecution": "CustomAsync"}, (1, 0)),
        ({"MSCRM.BypassBusinessLogicExecution": "customsync , CustomAsync"}, (0, 0)),
        ({"MSCRM.BypassCustomPluginExecution": "true"}, (0, 1)),
        ({"MSCRM.BypassCustomPluginExecution": "false"}, (1, 1)),
    ],
)
def test_each_bypass_skips_its_kind_of_step(
    admin: httpx.Client, control: httpx.Client, hook: Hook, headers: dict[str, str], expected: tuple[int, int]
) -> None:
    register(admin, "contoso-jp", hook.url)
    make_admin(control)
    assert save(admin, headers).status_code == 204
    assert heard(control, hook) == expected


@pytest.mark.parametrize(("skipped", "expected"), [("gate", (0, 1)), ("events", (1, 0))])
def test_step_ids_skip_only_those_steps(
    admin: httpx.Client, control: httpx.Client, hook: Hook, skipped: str, expected: tuple[int, int]
) -> None:
    ids = register(admin, "contoso-jp", hook.url)
    make_admin(control)
    quoted = f'"{ids[skipped].upper()}, 00000000-0000-4000-8000-000000000001"'  # as the doc's example quotes them
    assert save(admin, {"MSCRM.BypassBusinessLogicExecutionStepIds": quoted}).status_code == 204
    assert heard(control, hook) == expected


@pytest.mark.parametrize(
    ("headers", "privilege"),
    [
        (ALL, "prvBypassCustomBusinessLogic"),
        (
            {"MSCRM.BypassBusinessLogicExecutionStepIds": "00000000-0000-4000-8000-000000000001"},
            "prvBypassCustomBusinessLogic",
        ),
        ({"MSCRM.BypassCustomPluginExecution": "TRUE"}, "prvBypassCustomPlugins"),
    ],
)
def test_a_user_without_the_privilege_gets_privilege_denied_and_nothing_changes(
    admin: httpx.Client, control: httpx.Client, hook: Hook, headers: dict[str, str], privilege: str
) -> None:
    register(admin, "contoso-jp", hook.url)
    before = mailbox(admin, "contoso-jp")
    answer = save(admin, headers)
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "0x80040220" and privilege in error["message"]
    assert error["message"].startswith("The user does not hold the necessary privileges.")
    assert mailbox(admin, "contoso-jp") == before and heard(control, hook) == (0, 0)
    assert exchange(control) == "contoso-na"


def test_each_privilege_can_be_granted_without_the_role(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/users/admin-token", json={"privileges": ["prvBypassCustomBusinessLogic"]})
    assert save(admin, ALL).status_code == 204
    assert save(admin, {"MSCRM.BypassCustomPluginExecution": "true"}).status_code == 403
    control.put("/_sandbox/users/admin-token", json={"privileges": ["prvBypassCustomPlugins"]})
    assert save(admin, {"MSCRM.BypassCustomPluginExecution": "true"}).status_code == 204
    assert save(admin, ALL).status_code == 403


def test_roles_are_per_org_and_per_user(base_url: str, admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/users/admin-token", json={"org": "contoso-na", "system_administrator": True})
    assert save(admin, ALL).status_code == 403  # not an administrator in JP
    make_admin(control)
    with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer someone-else"}) as other:
        assert save(other, ALL).status_code == 403
    assert save(admin, ALL).status_code == 204
    control.put("/_sandbox/users/admin-token", json={"system_administrator": False})
    assert save(admin, ALL).status_code == 403


def test_bypass_headers_on_a_batch_apply_to_its_requests(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    hook.sync = (409, '{"effect": "block"}')
    make_admin(control)
    body = (
        "--b\r\nContent-Type: application/http\r\n\r\n"
        f"PATCH mailboxes({AIKO_JP}) HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: *\r\n\r\n"
        '{"testemailconfigurationscheduled": true}\r\n--b--\r\n'
    )
    answer = admin.post(
        JP + "$batch", content=body.encode(), headers={"Content-Type": "multipart/mixed; boundary=b", **ALL}
    )
    assert answer.status_code == 200 and "HTTP/1.1 204" in answer.text
    assert heard(control, hook) == (0, 0)
    assert exchange(control) == "contoso-jp"


@pytest.mark.parametrize(
    "headers",
    [
        {"MSCRM.BypassBusinessLogicExecution": "CustomEverything"},
        {"MSCRM.BypassBusinessLogicExecution": ""},
        {"MSCRM.BypassBusinessLogicExecutionStepIds": "not-a-guid"},
        {
            "MSCRM.BypassBusinessLogicExecutionStepIds": ",".join(
                f"00000000-0000-4000-8000-00000000000{n}" for n in range(4)
            )
        },
        {"MSCRM.BypassCustomPluginExecution": "yes"},
    ],
)
def test_malformed_bypass_headers_are_a_400_and_change_nothing(
    admin: httpx.Client, control: httpx.Client, headers: dict[str, str]
) -> None:
    make_admin(control)
    before = mailbox(admin, "contoso-jp")
    answer = save(admin, headers)
    assert answer.status_code == 400
    assert "MSCRM.Bypass" in answer.json()["error"]["message"]
    assert mailbox(admin, "contoso-jp") == before


def test_the_step_id_limit_is_a_setting(admin: httpx.Client, control: httpx.Client) -> None:
    make_admin(control)
    four = ",".join(f"00000000-0000-4000-8000-00000000000{n}" for n in range(4))
    control.put("/_sandbox/settings", json={"bypass_step_ids_limit": 4})
    assert save(admin, {"MSCRM.BypassBusinessLogicExecutionStepIds": four}).status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        {"privileges": ["prvEverything"]},
        {"system_administrator": None},
        {"org": "contoso-xx", "system_administrator": True},
    ],
)
def test_bad_role_updates_are_refused(control: httpx.Client, body: dict[str, Any]) -> None:
    answer = control.put("/_sandbox/users/admin-token", json=body)
    assert answer.status_code in (404, 422)
    assert control.get("/_sandbox/users/admin-token").json()["contoso-jp"]["system_administrator"] is False
