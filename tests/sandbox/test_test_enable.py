"""Test & Enable completes after the save that schedules it (FACTS.md "Checked again"), so races happen:
a demote can land before the pending test, the old owner's alert can appear afterwards. The alert is a
failure trace kept once per mailbox (tracelog table reference)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import AIKO_JP, Hook, api, exchange, mailbox, register

pytestmark = pytest.mark.sandbox
JP, NA = api("contoso-jp"), api("contoso-na")
LATER = {"test_enable_delay_s": 3600}  # pending until a test runs it through /_sandbox/test-enable/run


def later(control: httpx.Client, semantics: str | None = None) -> None:
    """Test & Enable waits until a test runs it (/_sandbox/test-enable/run), under ``semantics`` when given."""
    control.put("/_sandbox/settings", json=LATER | ({"semantics": semantics} if semantics else {}))


def save(admin: httpx.Client, org: str, body: dict[str, Any], mailbox_id: str | None = None) -> None:
    target = mailbox_id or mailbox(admin, org)["mailboxid"]
    answer = admin.patch(api(org) + f"mailboxes({target})", json=body, headers={"If-Match": "*"})
    assert answer.status_code == 204, answer.text


def enable(admin: httpx.Client, org: str = "contoso-jp", checkbox: bool = False) -> None:
    body = {"testemailconfigurationscheduled": True}
    if checkbox:
        body["orgmarkedasprimaryforexchangesync"] = True
    save(admin, org, body)


def run(control: httpx.Client, **only: str) -> list[dict[str, Any]]:
    answer = control.post("/_sandbox/test-enable/run", params=only)
    assert answer.status_code == 200, answer.text
    jobs: list[dict[str, Any]] = answer.json()["jobs"]
    return jobs


def outcomes(control: httpx.Client) -> list[tuple[str, str, str | None]]:
    jobs = control.get("/_sandbox/test-enable").json()["jobs"]
    return [(job["org"], job["kind"], job["outcome"]) for job in jobs]


def alerts(admin: httpx.Client, org: str, mailbox_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = admin.get(
        api(org) + "tracelogs", params={"$filter": f"_regardingobjectid_value eq {mailbox_id}"}
    ).json()["value"]
    return rows


def alerted(admin: httpx.Client, org: str, mailbox_id: str) -> dict[str, Any]:
    """The row's one alert trace, the row itself showing the failure (ACT status 2) as Dataverse does."""
    (trace,) = alerts(admin, org, mailbox_id)
    assert mailbox(admin, org)["actstatus"] == 2  # Aiko's row, the one each test makes fail
    return trace


def test_the_save_only_schedules_the_test_which_completes_later(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"test_enable_delay_s": 1.5})  # long enough to look at it pending
    before = mailbox(admin, "contoso-jp")
    enable(admin)
    pending = mailbox(admin, "contoso-jp")
    assert pending["testemailconfigurationscheduled"] is True  # what deployment tools poll for
    assert (pending["actstatus"], pending["testmailboxaccesscompletedon"]) == (
        before["actstatus"],
        before["testmailboxaccesscompletedon"],
    )
    assert exchange(control) == "contoso-na"
    done = control.get("/_sandbox/test-enable", params={"wait": 5}).json()
    assert done["pending"] == 0
    assert [(job["kind"], job["outcome"]) for job in done["jobs"]][:1] == [("test-and-enable", "took-over")]
    after = mailbox(admin, "contoso-jp")
    assert exchange(control) == "contoso-jp"
    assert (after["testemailconfigurationscheduled"], after["actstatus"], after["mailboxstatus"]) == (False, 1, 1)
    assert after["testmailboxaccesscompletedon"] not in (None, before["testmailboxaccesscompletedon"])
    assert after["testemailconfigurationretrycount"] == before["testemailconfigurationretrycount"] + 1


def test_a_demote_landing_before_the_pending_test_wins(admin: httpx.Client, control: httpx.Client) -> None:
    later(control)
    enable(admin)
    save(admin, "contoso-jp", {"actdeliverymethod": 2, "orgmarkedasprimaryforexchangesync": False})  # OrgGuard's demote
    (job,) = run(control)
    assert (job["state"], job["outcome"]) == ("ran", "not-syncing")
    assert exchange(control) == "contoso-na"
    assert mailbox(admin, "contoso-jp")["testemailconfigurationscheduled"] is False


def test_a_test_whose_flag_was_cleared_does_not_run(admin: httpx.Client, control: httpx.Client) -> None:
    later(control)
    before = mailbox(admin, "contoso-jp")
    enable(admin)
    save(admin, "contoso-jp", {"testemailconfigurationscheduled": False})
    (job,) = run(control)
    assert job["state"] == "cancelled"
    assert exchange(control) == "contoso-na"
    assert (
        mailbox(admin, "contoso-jp")["testemailconfigurationretrycount"] == before["testemailconfigurationretrycount"]
    )


def test_scheduling_twice_runs_one_test(admin: httpx.Client, control: httpx.Client) -> None:
    later(control)
    enable(admin)
    enable(admin, checkbox=True)
    assert control.get("/_sandbox/test-enable").json()["pending"] == 1
    assert [job["outcome"] for job in run(control) if job["kind"] == "test-and-enable"] == ["took-over"]


def test_under_overwrite_the_old_owners_alert_appears_afterwards(admin: httpx.Client, control: httpx.Client) -> None:
    later(control, "overwrite")
    na = mailbox(admin, "contoso-na")
    enable(admin)
    assert alerts(admin, "contoso-na", na["mailboxid"]) == []
    run(control)
    assert outcomes(control) == [
        ("contoso-jp", "test-and-enable", "took-over"),
        ("contoso-na", "synchronization", "alert"),
    ]
    assert "configured with another organization" in alerted(admin, "contoso-na", na["mailboxid"])["text"]
    assert exchange(control) == "contoso-jp"


def test_the_old_owners_alert_does_not_appear_when_it_took_the_mailbox_back_first(
    admin: httpx.Client, control: httpx.Client
) -> None:
    later(control, "overwrite")
    na = mailbox(admin, "contoso-na")
    enable(admin)
    run(control, org="contoso-jp")  # JP takes over; NA's next synchronization is still to come
    enable(admin, "contoso-na", checkbox=True)  # OrgGuard re-asserts NA
    run(control, org="contoso-na", kind="test-and-enable")
    run(control, org="contoso-na", kind="synchronization")
    assert ("contoso-na", "synchronization", "synchronized") in outcomes(control)
    assert alerts(admin, "contoso-na", na["mailboxid"]) == []
    assert exchange(control) == "contoso-na"


def test_under_alert_the_test_fails_with_the_alert_when_it_runs(admin: httpx.Client, control: httpx.Client) -> None:
    later(control, "alert")
    before = alerts(admin, "contoso-jp", AIKO_JP)
    enable(admin)
    assert alerts(admin, "contoso-jp", AIKO_JP) == before
    assert [job["outcome"] for job in run(control)] == ["alert"]
    trace = alerted(admin, "contoso-jp", AIKO_JP)
    assert (trace["tracestatus"], trace["level"]) == (False, 3)
    assert exchange(control) == "contoso-na"


def test_under_disable_other_the_other_row_goes_to_none_when_the_test_runs(
    admin: httpx.Client, control: httpx.Client
) -> None:
    later(control, "disable-other")
    enable(admin)
    assert mailbox(admin, "contoso-na")["actdeliverymethod"] == 1
    run(control)
    assert mailbox(admin, "contoso-na")["actdeliverymethod"] == 2
    assert exchange(control) == "contoso-jp"
    assert [job["kind"] for job in control.get("/_sandbox/test-enable").json()["jobs"]] == ["test-and-enable"]


def test_the_tests_own_writes_reach_asynchronous_steps_as_system(
    admin: httpx.Client, control: httpx.Client, hook: Hook
) -> None:
    register(admin, "contoso-jp", hook.url)
    later(control)
    enable(admin)
    control.get("/_sandbox/events", params={"wait": 5})
    (saved,) = hook.of_mode(1)
    run(control)
    control.get("/_sandbox/events", params={"wait": 5})
    assert len(hook.of_mode(0)) == 1  # the gate heard the admin's save only
    tested = hook.of_mode(1)[-1].body
    assert tested["UserId"] != saved.body["UserId"]
    target = {pair["key"]: pair["value"] for pair in tested["InputParameters"][0]["value"]["Attributes"]}
    assert target["testemailconfigurationscheduled"] is False and target["actstatus"]["Value"] == 1


def test_a_repeated_alert_updates_the_mailboxs_trace_in_place(admin: httpx.Client, control: httpx.Client) -> None:
    control.put("/_sandbox/settings", json={"semantics": "alert"})
    enable(admin)
    (first,) = alerts(admin, "contoso-jp", AIKO_JP)
    enable(admin)
    (second,) = alerts(admin, "contoso-jp", AIKO_JP)
    assert second["tracelogid"] == first["tracelogid"]
    assert second["@odata.etag"] != first["@odata.etag"]
    assert (second["tracestatus"], second["level"], second["isunique"]) == (False, 3, True)
    assert second["modifiedon"] >= first["modifiedon"] and second["createdon"] == first["createdon"]


def test_seeded_alerts_are_failures_too(admin: httpx.Client) -> None:
    rows = admin.get(NA + "tracelogs").json()["value"] + admin.get(JP + "tracelogs").json()["value"]
    assert rows and all((row["tracestatus"], row["level"]) == (False, 3) for row in rows)


def test_reset_forgets_pending_tests(admin: httpx.Client, control: httpx.Client) -> None:
    later(control)
    enable(admin)
    assert control.post("/_sandbox/reset").status_code == 200
    assert control.get("/_sandbox/test-enable").json() == {"jobs": [], "pending": 0}
    assert control.get("/_sandbox/settings").json()["global"]["test_enable_delay_s"] == 0


@pytest.mark.parametrize(("params", "status"), [({"org": "contoso-xx"}, 404), ({"kind": "sync"}, 422)])
def test_bad_run_filters_are_refused(control: httpx.Client, params: dict[str, str], status: int) -> None:
    assert control.post("/_sandbox/test-enable/run", params=params).status_code == status


@pytest.mark.parametrize("value", [-1, None, 7200])
def test_bad_delays_are_refused(control: httpx.Client, value: object) -> None:
    assert control.put("/_sandbox/settings", json={"test_enable_delay_s": value}).status_code == 422
