"""Governance on the page, in a real browser against the local host and the sandbox's orgs: exemptions added and
removed, the compliance report and its chart after real sweeps, and a policy change whose impact is seen before
an Admin saves it; each view labelled, legible, and usable from the keyboard and on a 400 px phone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.model import CaseState, Effect
from tests.browser.accessibility import check_accessible
from tests.browser.conftest import run_async
from tests.browser.steps import sign_in, status
from tests.factories import claim, easyauth_principal

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.sandbox]

UNTIL = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
READER = {"X-MS-CLIENT-PRINCIPAL": easyauth_principal("rei@contoso.com", "OrgGuard.Reader")}


def test_an_admin_exempts_a_mailbox_and_removes_the_exemption(open_page, make_host, shoot):
    host = make_host()
    address = sorted(set(host.rows("contoso-na")) & set(host.rows("contoso-jp")))[0]
    page = open_page()
    sign_in(page, host.url, "#/exemptions")
    page.get_by_role("heading", name="Exemptions", exact=True).wait_for()
    page.get_by_text("Nothing is exempt.").wait_for()
    form = page.get_by_role("form", name="Add an exemption")
    form.get_by_label("Mailbox address").fill(address)
    form.get_by_role("button", name="Add exemption").click()  # no reason yet
    form.get_by_text("A reason is required.").wait_for()
    assert form.get_by_label("Reason").get_attribute("aria-invalid") == "true"
    assert host.c.ledger.exemptions().version == 0
    form.get_by_label("Reason").fill("moving to Tokyo")
    form.get_by_label("Ticket").fill("CHG-2041")
    form.get_by_label("Last day (UTC)").fill(UNTIL)
    form.get_by_role("button", name="Add exemption").click()
    listed = page.get_by_role("table", name="Exemptions, oldest first")
    listed.get_by_text("CHG-2041").wait_for()
    assert "active" in listed.inner_text() and address in listed.inner_text()
    assert "Exempt until" in status(page)
    shoot(page, "added")

    # A claim on it now is only recorded, and the case names the exemption.
    host.c.service.handle_claim(claim("contoso-na", key=host_key(address), op="own"))
    outcome = host.c.service.handle_claim(claim("contoso-jp", key=host_key(address), op="claim"))
    assert outcome.effect is Effect.AUDIT
    page.goto(f"{host.url}/#/cases/{outcome.case_id}")
    page.get_by_role("link", name=re.compile("^exemption ")).wait_for()

    # The same mailbox again: refused, saying which exemption covers it.
    page.goto(f"{host.url}/#/exemptions")
    form = page.get_by_role("form", name="Add an exemption")
    form.get_by_label("Mailbox address").fill(address.upper())
    form.get_by_label("Reason").fill("again")
    form.get_by_label("Ticket").fill("CHG-2042")
    form.get_by_label("Last day (UTC)").fill(UNTIL)
    form.get_by_role("button", name="Add exemption").click()
    form.get_by_text(re.compile("exempt already, by exemption")).wait_for()

    page.once("dialog", lambda dialog: dialog.accept("back in Seattle"))
    page.get_by_role("button", name=f"Remove the exemption of the mailbox {address}").click()
    listed = page.get_by_role("table", name="Exemptions, oldest first")
    listed.get_by_text("removed by local-admin: back in Seattle").wait_for()
    page.get_by_label("Show").select_option("active")
    page.get_by_text("No active exemption.").wait_for()
    assert host.c.ledger.exemptions().version == 2
    assert not check_accessible(page)
    shoot(page, "removed")


def host_key(address: str):
    from shared.domain.model import MailboxKey

    return MailboxKey.parse(address)


def test_a_reader_sees_exemptions_but_cannot_add_or_remove_one(open_page, make_host):
    host = make_host(auth="easyauth")
    from shared.service.exemptions import Exemptions

    Exemptions(host.c.service).add("domain", "contoso.eu", reason="pilot", ticket="T-1", expires=UNTIL, actor="x")
    reader = open_page(extra_http_headers=READER)
    reader.goto(f"{host.url}/#/exemptions")
    reader.get_by_role("table", name="Exemptions, oldest first").get_by_text("contoso.eu").wait_for()
    assert reader.get_by_role("form", name="Add an exemption").count() == 0
    assert reader.get_by_role("button", name=re.compile("^Remove")).count() == 0


def test_the_compliance_report_charts_the_trend_of_real_sweeps(open_page, make_host, shoot):
    host = make_host(mailboxes=40, overlap=0.5)
    both = sorted(set(host.rows("contoso-na")) & set(host.rows("contoso-jp")))
    assert both, "the sandbox has mailboxes syncing in both orgs"
    jobs = host.c.jobs()
    for apply in (False, False, True):
        run_async(lambda apply=apply: jobs.run_sweep(jobs.start_sweep([], apply=apply, actor="test")))
    page = open_page()
    sign_in(page, host.url, "#/compliance")
    page.get_by_role("heading", name="Compliance", exact=True).wait_for()
    chart = page.get_by_role("img", name=re.compile("over the last 3 sweeps"))
    chart.wait_for()
    assert chart.locator("rect").count() >= 2  # the dry runs' conflicts, stacked
    description = page.locator("figure.trend figcaption").inner_text()
    assert re.search(r"Conflicts went from \d+ to \d+ over 3 sweeps", description), description
    by_org = page.get_by_role("table", name="Mailboxes per org")
    assert all(org in by_org.inner_text() for org in ("contoso-na", "contoso-jp", "contoso-eu"))
    page.get_by_text("The numbers behind the chart").click()
    rows = page.get_by_role("table", name="The trend as a table").locator("tbody tr")
    assert rows.count() == 3 and "apply" in rows.nth(2).inner_text()
    assert not check_accessible(page)
    shoot(page, "report")
    page.get_by_label("Show").select_option("5")
    page.wait_for_url(re.compile(r"sweeps=5"))
    page.get_by_role("img", name=re.compile("over the last 3 sweeps")).wait_for()

    phone = open_page(viewport={"width": 400, "height": 800})
    sign_in(phone, host.url, "#/compliance")
    phone.get_by_role("img", name=re.compile("over the last 3 sweeps")).wait_for()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "nothing scrolls sideways"
    shoot(phone, "phone")


CANDIDATE = """version: 2
mode: enforce
default: override
rules: []
approval:
  approvers: [group:OrgGuard Approvers]
  expires_after: P3D
  on_expiry: block
"""


def test_the_impact_is_shown_before_an_admin_saves_a_policy(open_page, make_host, shoot):
    host = make_host()
    held = host.contest(2)
    page = open_page()
    sign_in(page, host.url, "#/policy")
    editor = page.get_by_label("New policy")
    editor.wait_for()
    assert "default: hold" in editor.input_value()  # the policy in force, to start from
    save = page.get_by_role("button", name="Save this policy")
    assert save.is_disabled()

    editor.fill("version: 2\nrules: [{id: a, effect: {gate: block}}]\n")
    page.get_by_role("button", name="Check the impact").click()
    errors = page.get_by_role("list", name="Every error in the policy")
    errors.get_by_text(re.compile(r"rules\[0\]\.effect: says nothing for")).wait_for()
    assert save.is_disabled()

    editor.fill(CANDIDATE)
    page.get_by_role("button", name="Check the impact").click()
    impact = page.locator("#impact")
    impact.get_by_text("Held cases, if decided again: 2 of 2 would change").wait_for()
    assert "approved when decided again: the mailbox moves to contoso-jp" in impact.inner_text()
    assert held[0] in impact.inner_text() and "nothing: this was only a question" in impact.inner_text()
    assert host.c.service.policy_text()[0] == 1  # nothing saved yet
    shoot(page, "impact")
    assert save.is_enabled()
    editor.press("End")
    editor.type("# one more line\n")
    page.get_by_text("The text changed: check its impact again before saving.").wait_for()
    assert save.is_disabled()
    page.get_by_role("button", name="Check the impact").click()
    impact.get_by_text("Held cases, if decided again").first.wait_for()
    save.click()
    page.get_by_role("heading", name="Version 2").wait_for()
    assert "Saved: the policy is now version 2." in status(page)
    assert host.c.service.policy().default is Effect.OVERRIDE
    assert [c.state for c in host.held()] == [CaseState.HELD, CaseState.HELD]  # saving decides nothing by itself
    assert not check_accessible(page)
    shoot(page, "saved")


def test_a_reader_may_ask_for_the_impact_but_not_save(open_page, make_host):
    host = make_host(auth="easyauth")
    reader = open_page(extra_http_headers=READER)
    reader.goto(f"{host.url}/#/policy")
    reader.get_by_label("New policy").fill(CANDIDATE)
    reader.get_by_role("button", name="Check the impact").click()
    reader.locator("#impact").get_by_text("Owned mailboxes").wait_for()
    assert reader.get_by_role("button", name="Save this policy").count() == 0
    reader.get_by_text("Only an Admin can save a policy.").wait_for()


def test_the_environments_view_shows_which_orgs_are_registered(open_page, make_host, shoot):
    host = make_host()
    host.c.settings = host.c.settings.model_copy(update={"discovery_url": f"{host.sandbox_url}/discovery"})
    page = open_page()
    sign_in(page, host.url, "#/environments")
    listed = page.get_by_role("table", name="Environments of the tenant")
    listed.get_by_text("registered as contoso-eu").wait_for()
    assert "Contoso NA" in listed.inner_text() and "production" in listed.inner_text()
    assert page.get_by_role("heading", name="Register the others").count() == 0  # the sandbox has three, all heard
    assert not check_accessible(page)
    shoot(page, "environments")
