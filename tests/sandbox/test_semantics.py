"""Test & Enable on Aiko's JP mailbox (Exchange points to NA) under each of the three semantics."""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.conftest import AIKO_JP, api, exchange, mailbox

pytestmark = pytest.mark.sandbox
JP, NA = api("contoso-jp"), api("contoso-na")


def run_test_enable(admin: httpx.Client, checkbox: bool = False) -> None:
    body: dict[str, bool] = {"testemailconfigurationscheduled": True}
    if checkbox:
        body["orgmarkedasprimaryforexchangesync"] = True
    answer = admin.patch(JP + f"mailboxes({AIKO_JP})", json=body, headers={"If-Match": "*"})
    assert answer.status_code == 204, answer.text


def alerts(admin: httpx.Client, mailbox_id: str) -> list[str]:
    rows = admin.get(JP + "tracelogs", params={"$filter": f"_regardingobjectid_value eq {mailbox_id}"})
    assert rows.status_code == 200
    return [row["text"] for row in rows.json()["value"]]


def test_the_seed_has_aiko_in_na_and_jp_with_exchange_on_na(admin: httpx.Client, control: httpx.Client) -> None:
    na, jp = mailbox(admin, "contoso-na"), mailbox(admin, "contoso-jp")
    assert jp["mailboxid"] == AIKO_JP != na["mailboxid"]
    assert na["actdeliverymethod"] == jp["actdeliverymethod"] == 1
    assert exchange(control) == "contoso-na"
    assert exchange(control, "  AIKO.tanaka@contoso.COM ") == "contoso-na"


def test_overwrite_takes_the_mailbox_silently(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"semantics": "overwrite"})
    na_before = mailbox(admin, "contoso-na")
    run_test_enable(admin)
    assert exchange(control) == "contoso-jp"
    jp = mailbox(admin, "contoso-jp")
    assert (jp["actstatus"], jp["testemailconfigurationscheduled"]) == (1, False)
    assert mailbox(admin, "contoso-na") == na_before


def test_alert_fails_here_and_writes_the_alert(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"semantics": "alert"})
    run_test_enable(admin)
    assert exchange(control) == "contoso-na"
    jp = mailbox(admin, "contoso-jp")
    assert (jp["actstatus"], jp["testemailconfigurationscheduled"]) == (2, False)
    (text,) = alerts(admin, AIKO_JP)
    assert "is configured with another organization" in text
    assert "Aiko Tanaka" in text


def test_alert_with_the_check_box_overwrites(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"semantics": "alert"})
    run_test_enable(admin, checkbox=True)
    assert exchange(control) == "contoso-jp"
    assert mailbox(admin, "contoso-jp")["actstatus"] == 1
    assert alerts(admin, AIKO_JP) == []


def test_disable_other_sets_the_losing_org_to_none(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"semantics": "disable-other"})
    run_test_enable(admin)
    assert exchange(control) == "contoso-jp"
    assert mailbox(admin, "contoso-jp")["actstatus"] == 1
    assert mailbox(admin, "contoso-na")["actdeliverymethod"] == 2


@pytest.mark.parametrize("semantics", ["overwrite", "alert", "disable-other"])
def test_the_check_box_wins_in_every_semantics(admin: httpx.Client, control: httpx.Client, semantics: str) -> None:
    control.put("/_sandbox/settings", json={"semantics": semantics})
    run_test_enable(admin, checkbox=True)
    assert exchange(control) == "contoso-jp"
    assert mailbox(admin, "contoso-jp")["orgmarkedasprimaryforexchangesync"] is True


def test_semantics_can_differ_per_org(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"semantics": "overwrite"})
    control.put("/_sandbox/settings", json={"org": "contoso-jp", "semantics": "alert"})
    run_test_enable(admin)
    assert exchange(control) == "contoso-na"
    view = control.get("/_sandbox/settings").json()
    assert view["global"]["semantics"] == "overwrite"
    assert view["orgs"]["contoso-jp"]["overrides"] == {"semantics": "alert"}


def test_act_none_does_not_claim_the_mailbox(admin: httpx.Client, control: httpx.Client) -> None:
    answer = admin.patch(
        JP + f"mailboxes({AIKO_JP})",
        json={"actdeliverymethod": 2, "testemailconfigurationscheduled": True},
        headers={"If-Match": "*"},
    )
    assert answer.status_code == 204
    assert exchange(control) == "contoso-na"
    assert mailbox(admin, "contoso-jp")["testemailconfigurationscheduled"] is False
