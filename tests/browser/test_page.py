"""An approver's whole job in a real browser: sign in, find a held case, decide it, and see the orgs follow."""

from __future__ import annotations

import pytest

from tests.factories import ADMIN_TOKEN

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.sandbox]


def sign_in(page, url):
    page.goto(url + "/")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for()


def test_approve_a_held_case_and_exchange_follows(open_page, make_host, shoot):
    host = make_host()
    (address,) = host.contest(1)
    assert host.exchange(address) == "contoso-na"
    page = open_page()
    sign_in(page, host.url)
    shoot(page, "overview")
    page.goto(host.url + "/#/cases?state=held")
    page.get_by_role("table").wait_for()
    shoot(page, "cases")
    page.get_by_role("link", name=address).first.wait_for()
    page.locator("table a[href^='#/cases/']").first.click()
    page.get_by_role("button", name="Approve").wait_for()
    shoot(page, "case")
    page.get_by_label("Reason").fill("Aiko moved to Tokyo")
    page.get_by_role("button", name="Approve").click()
    host.wait(lambda: host.exchange(address) == "contoso-jp", "Exchange to follow contoso-jp")
    page.get_by_text("applied").first.wait_for()
    shoot(page, "applied")
