"""Who may do what on the page behind App Service Authentication, the offline API docs, and a 400 px phone."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from shared.domain.model import CaseState
from tests.browser.steps import open_case, sign_in
from tests.factories import easyauth_principal

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.sandbox]


def as_user(open_page, name: str, *roles: str, **options):
    """A browser whose every request carries the principal App Service Authentication would add."""
    return open_page(extra_http_headers={"X-MS-CLIENT-PRINCIPAL": easyauth_principal(name, *roles)}, **options)


def test_a_reader_sees_no_decision_and_a_forged_one_is_refused(open_page, make_host, shoot):
    host = make_host(auth="easyauth")
    (address,) = host.contest(1)
    (case,) = host.held()
    reader = as_user(open_page, "rei@contoso.com", "OrgGuard.Reader")
    reader.goto(host.url + "/")
    reader.get_by_role("heading", name="Overview").wait_for()
    assert "rei@contoso.com" in reader.locator("#who").inner_text()
    assert reader.get_by_role("button", name="Sign out").count() == 0  # the platform's sign-out link instead
    assert reader.get_by_role("link", name="Sign out").get_attribute("href").startswith("/.auth/logout")

    open_case(reader, host.url, case.id)
    reader.get_by_text("waits for an approver").wait_for()
    for name in ("Approve", "Deny", re.compile("^Retry")):
        assert reader.get_by_role("button", name=name).count() == 0
    shoot(reader, "reader-case")
    reader.goto(f"{host.url}/#/cases?state=held")
    reader.get_by_role("link", name=address).wait_for()
    assert reader.get_by_role("button", name="Review").count() == 0

    # The buttons are not the guard: the API refuses the Reader's own credentials.
    forged = reader.evaluate(
        """async (id) => {
            const r = await fetch(`/api/cases/${id}/approve`, {method: "POST",
              headers: {"Content-Type": "application/json"}, body: JSON.stringify({reason: "forged"})});
            return [r.status, r.headers.get("content-type"), (await r.json()).detail];
        }""",
        case.id,
    )
    assert forged[0] == 403 and forged[1].startswith("application/problem+json") and "Approver" in forged[2]
    bulk = reader.evaluate(
        """async () => (await fetch("/api/cases:bulk", {method: "POST", headers: {"Content-Type": "application/json"},
            body: JSON.stringify({filter: {state: "held"}, decision: "approve", reason: "forged"})})).status"""
    )
    assert bulk == 403
    assert host.c.service.case(case.id).state is CaseState.HELD
    assert host.exchange(address) == "contoso-na"

    # An Approver decides it through the same page; the history names them. Retry stays an Admin's.
    approver = as_user(open_page, "aki@contoso.com", "OrgGuard.Approver")
    approver.goto(host.url + "/")
    open_case(approver, host.url, case.id)
    approver.get_by_label("Reason").fill("the Tokyo office owns Aiko now")
    approver.get_by_role("button", name="Approve").click()
    approver.get_by_text("Approved: contoso-jp").wait_for()
    host.wait(lambda: host.exchange(address) == "contoso-jp", "Exchange to follow the approval")
    actors = [h.actor for h in host.c.service.case(case.id).history]
    assert "aki@contoso.com" in actors
    assert approver.get_by_role("columnheader", name="Retry").count() == 0
    shoot(approver, "approver-decided")


def test_without_a_session_the_page_sends_the_browser_to_the_platform_login(open_page, make_host):
    host = make_host(auth="easyauth")
    page = open_page()
    # Here nothing serves the platform's /.auth/ routes (App Service does): the browser's arrival there is the proof.
    answer = page.goto(host.url + "/")
    parts = urlsplit(page.url)
    assert (parts.path, parts.query) == ("/.auth/login/aad", "post_login_redirect_uri=/")
    assert answer.request.redirected_from.url == host.url + "/"
    assert answer.request.redirected_from.response().status == 302

    # A session that ends while the page is open: the platform answers the page's API call with a redirect to
    # the sign-in, which the page does not follow (it is elsewhere) but obeys.
    aki = as_user(open_page, "aki@contoso.com", "OrgGuard.Approver")
    aki.goto(host.url + "/")
    aki.get_by_role("heading", name="Overview").wait_for()
    aki.route(
        "**/api/policy",
        lambda route: route.fulfill(status=302, headers={"Location": "https://login.microsoftonline.com/x"}),
    )
    aki.get_by_role("link", name="Policy").click()
    aki.wait_for_url(re.compile(r"/\.auth/login/aad\?post_login_redirect_uri=/$"))

    nobody = as_user(open_page, "guest@contoso.com")  # signed in, no OrgGuard app role
    nobody.goto(host.url + "/")
    nobody.get_by_role("heading", name="No access").wait_for()
    assert "no OrgGuard app role" in nobody.locator("main").inner_text()


def test_api_docs_render_offline_with_the_authorize_button(open_page, make_host, shoot):
    host = make_host()
    page = open_page()
    elsewhere: list[str] = []

    def only_here(route):
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.goto(host.url + "/api/docs")
    page.locator(".swagger-ui .info .title", has_text="OrgGuard").wait_for()
    page.locator(".opblock-summary-path", has_text="/api/cases").first.wait_for()
    page.get_by_role("button", name=re.compile("Authorize")).first.click()
    dialog = page.locator(".modal-ux")
    dialog.get_by_text("bearer").first.wait_for()
    assert "http, Bearer" in dialog.inner_text()
    shoot(page, "authorize")
    assert elsewhere == [], f"the docs asked the network: {elsewhere}"


def test_a_400_px_screen_needs_no_sideways_scrolling(open_page, make_host, shoot):
    host = make_host()
    host.contest(3)
    (case, *_) = host.held()
    page = open_page(viewport={"width": 400, "height": 860}, is_mobile=True, has_touch=True)
    sign_in(page, host.url, "#/cases?state=held")
    page.get_by_text("Cases 1–3 of 3").first.wait_for()

    def fits() -> bool:
        return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    assert fits(), "the case list scrolls sideways"
    head = page.locator("thead").first.bounding_box()
    assert head is not None and head["x"] + head["width"] <= 0, "column heads move off screen; cells name them"
    shoot(page, "cases")
    for hash in ("#/", f"#/cases/{case.id}", "#/policy", "#/jobs"):
        page.goto(f"{host.url}/{hash}")
        page.locator("main h1").wait_for()
        page.wait_for_timeout(200)
        assert fits(), f"{hash} scrolls sideways"
    open_case(page, host.url, case.id)
    approve = page.get_by_role("button", name="Approve")
    box = approve.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 400
    shoot(page, "case")
    page.get_by_label("Reason").fill("decided on a phone")
    approve.tap()
    page.get_by_text("Approved: contoso-jp").wait_for()
