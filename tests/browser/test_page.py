"""An approver's whole job in a real browser, against the local host and the sandbox's orgs: sign in, find held
cases, decide them one by one or in bulk, retry what failed, read a mailbox's story, ask the policy what-if,
follow a migration, and page through hundreds of cases."""

from __future__ import annotations

import re

import pytest

from shared.domain.model import CaseQuery, CaseState, MailboxKey
from tests.browser.accessibility import check_accessible
from tests.browser.steps import open_case, sign_in, status
from tests.factories import ADMIN_TOKEN, claim

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.sandbox]

LOCAL_TIME = re.compile(r"GMT\+9")  # the contexts run in Asia/Tokyo: times are shown in it, named


@pytest.fixture
def contested(open_page, make_host):
    """A host with one contested mailbox (its case held), and a page signed in to it: host, address, case, page."""
    host = make_host()
    address, case = host.contest_one()
    page = open_page()
    sign_in(page, host.url)
    return host, address, case, page


def test_sign_in_with_the_local_token(open_page, make_host, shoot):
    host = make_host()
    host.contest(2)
    page = open_page()
    page.goto(host.url + "/")
    page.get_by_role("heading", name="Sign in").wait_for()
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("not this OrgGuard's admin token").wait_for()
    shoot(page, "refused")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for()
    tiles = page.get_by_role("list", name="Cases by state")
    assert re.search(r"2\s*held", tiles.inner_text())
    oldest = page.locator("section", has=page.get_by_role("heading", name="Waiting longest"))
    assert LOCAL_TIME.search(oldest.inner_text()), oldest.inner_text()
    assert "expires" in oldest.inner_text()
    shoot(page, "overview")
    # The token lives in this tab only: a reload keeps the session, signing out forgets it.
    page.reload()
    page.get_by_role("heading", name="Overview").wait_for()
    # A token that no longer works (the host was restarted with another) leads back to signing in.
    page.evaluate("sessionStorage.setItem('orgguard-token', 'from-yesterday')")
    page.reload()
    page.get_by_role("heading", name="Sign in").wait_for()
    page.get_by_text("not this OrgGuard's admin token").wait_for()
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    assert page.evaluate("sessionStorage.getItem('orgguard-token')") is None


def test_approve_a_held_case_and_exchange_follows(open_page, make_host, shoot):
    host = make_host()
    (address,) = host.contest(1)
    assert host.exchange(address) == "contoso-na"
    page = open_page()
    sign_in(page, host.url, "#/cases?state=held")
    page.get_by_role("link", name=address).wait_for()
    shoot(page, "cases")
    page.locator("table a[href^='#/cases/']").first.click()
    page.get_by_role("button", name="Approve").wait_for()
    shoot(page, "case")

    page.get_by_role("button", name="Approve").click()  # no reason yet
    page.get_by_text("A reason is required").wait_for()
    assert host.held(), "nothing may be decided without a reason"

    page.get_by_label("Reason").fill("Aiko moved to Tokyo")
    page.get_by_role("button", name="Approve").click()
    page.get_by_text("Approved: contoso-jp becomes the owner").wait_for()
    host.wait(lambda: host.exchange(address) == "contoso-jp", "Exchange to follow contoso-jp")
    page.locator("dd .badge", has_text="applied").wait_for()  # the page follows the executor by itself
    assert page.get_by_role("button", name="Approve").count() == 0
    history = page.locator("section", has=page.get_by_role("heading", name="History")).inner_text()
    assert "local-admin" in history and "Aiko moved to Tokyo" in history
    shoot(page, "applied")

    # The mailbox's story: owners over time, and each org's row as it is now.
    page.get_by_role("link", name=address).first.click()
    page.get_by_role("heading", name="Owner over time").wait_for()
    owners = page.locator("section", has=page.get_by_role("heading", name="Owner over time")).inner_text()
    assert owners.index("contoso-na") < owners.index("contoso-jp (now)")
    assert "first to claim it" in owners and "approval" in owners
    orgs = page.locator("section", has=page.get_by_role("heading", name="In each org now"))
    orgs.get_by_text("Server-side synchronization").wait_for()
    rows = {org: orgs.locator("tr", has_text=org).inner_text() for org in ("contoso-jp", "contoso-na")}
    assert "Server-side synchronization" in rows["contoso-jp"] and "yes" in rows["contoso-jp"]
    assert "None" in rows["contoso-na"]
    timeline = page.locator("ol.timeline").inner_text()
    assert "contoso-jp became the owner" in timeline and "promote in contoso-jp" in timeline
    shoot(page, "mailbox")


def test_deny_with_the_keyboard_only(contested, shoot):
    host, address, case, page = contested
    open_case(page, host.url, case.id)
    for _ in range(60):
        if page.evaluate("document.activeElement.id") == "decide-reason":
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reached the reason")
    page.keyboard.type("contoso-na keeps Aiko")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Deny"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "keyboard focus must be visible"
    shoot(page, "deny-focused")
    page.keyboard.press("Enter")
    page.get_by_text("Denied: contoso-na keeps").wait_for()
    host.wait(lambda: host.c.service.case(case.id).state is CaseState.DENIED, "the denial")
    assert host.exchange(address) == "contoso-na"
    host.wait(
        lambda: all(a.status.value == "applied" for a in host.c.service.case(case.id).actions), "the demote of JP"
    )
    jp = host.rows_with("contoso-jp", address)
    assert jp["actdeliverymethod"] == 2  # contoso-jp set to None
    shoot(page, "denied")


def test_two_approvers_at_once_the_second_sees_why_and_the_case_as_it_is(open_page, make_host, shoot):
    host = make_host()
    address, case = host.contest_one()
    first, second = open_page(), open_page()
    for page in (first, second):
        sign_in(page, host.url)
        open_case(page, host.url, case.id)
        page.get_by_label("Reason").fill("decided from this desk")
    first.get_by_role("button", name="Approve").click()
    first.get_by_text("Approved").wait_for()
    second.get_by_role("button", name="Deny").click()
    second.get_by_text("Not denied").wait_for()
    assert re.search(r"decided|applied", status(second))
    second.locator("dd .badge", has_text=re.compile("decided|applied")).wait_for()
    assert second.get_by_role("button", name="Deny").count() == 0
    shoot(second, "second-approver")
    host.wait(lambda: host.exchange(address) == "contoso-jp", "the one approval to be carried out")
    history = host.c.service.case(case.id).history
    assert [h.state for h in history].count(CaseState.DECIDED) == 1
    assert CaseState.DENIED not in [h.state for h in history]


def test_retry_a_failed_action_after_the_fault_is_cleared(open_page, make_host, shoot):
    host = make_host()
    address, case = host.contest_one()
    host.fault("contoso-jp", {"status": 400, "count": 1000, "methods": ["PATCH"]})
    page = open_page()
    sign_in(page, host.url)
    open_case(page, host.url, case.id)
    page.get_by_label("Reason").fill("move to JP")
    page.get_by_role("button", name="Approve").click()
    retry = page.get_by_role("button", name="Retry promote in contoso-jp")
    retry.wait_for(timeout=20_000)
    actions = page.locator("section", has=page.get_by_role("heading", name="Actions")).inner_text()
    assert "400" in actions, actions  # the last error, as the org answered it
    assert page.locator("dd .badge", has_text="failed").count() == 1
    shoot(page, "failed")

    host.fault("contoso-jp", None)
    retry.click()
    page.get_by_text("queued again").wait_for()
    host.wait(lambda: host.exchange(address) == "contoso-jp", "Exchange to follow after the retry")
    page.locator("dd .badge", has_text="applied").wait_for()
    assert page.get_by_role("button", name=re.compile("^Retry")).count() == 0
    shoot(page, "retried")


def test_bulk_approve_twenty_held_cases(open_page, make_host, shoot):
    host = make_host()
    addresses = host.contest(20)
    page = open_page()
    sign_in(page, host.url, "#/cases?state=held")
    page.get_by_text("Cases 1–20 of 20").first.wait_for()
    bulk = page.locator("section", has=page.get_by_role("heading", name="Decide every matching case"))
    bulk.get_by_text("20 held cases match state held").wait_for()
    bulk.get_by_role("button", name="Review").click()
    bulk.get_by_text("A reason is required").wait_for()
    bulk.get_by_label("Reason").fill("the Tokyo office takes these over")
    bulk.get_by_role("button", name="Review").click()
    confirm = bulk.get_by_role("button", name="Approve 20 cases")
    confirm.wait_for()
    assert len(host.held()) == 20, "nothing happens before the confirmation"
    shoot(page, "confirm")
    confirm.click()
    page.get_by_text("Approved 20 cases; 0 skipped.").wait_for()
    page.get_by_text("No case matches these filters.").wait_for()
    assert host.held() == []
    host.wait(lambda: all(host.exchange(a) == "contoso-jp" for a in addresses), "Exchange to follow for all 20")
    shoot(page, "done")


def test_page_through_250_cases_and_search_them(open_page, make_host, shoot):
    host = make_host()
    for i in range(250):
        key = MailboxKey(f"user{i:03d}@contoso.com")
        host.c.service.handle_claim(claim("contoso-na", key=key, op=f"na-{i}"))
        host.c.service.handle_claim(claim("contoso-jp", key=key, op=f"jp-{i}"))
    page = open_page()
    sign_in(page, host.url, "#/cases?state=open")
    seen: list[str] = []
    for n in range(5):
        first, last = n * 50 + 1, n * 50 + 50
        page.get_by_text(f"Cases {first}–{last} of 250").first.wait_for()
        links = page.locator("table a[href^='#/cases/']")
        seen += [href.split("/")[-1] for href in links.evaluate_all("els => els.map(e => e.getAttribute('href'))")]
        if n < 4:
            page.get_by_role("button", name="Next").first.click()
    assert page.get_by_role("button", name="Next").first.is_disabled()
    ledger = {c.id for c in host.c.ledger.cases(CaseQuery(limit=500)).items}
    assert len(seen) == 250 and set(seen) == ledger, "every case once, none twice"
    page.get_by_role("button", name="Previous").first.click()
    page.get_by_text("Cases 151–200 of 250").first.wait_for()
    shoot(page, "page-4")

    page.get_by_label("Mailbox").fill("user12")
    page.get_by_role("button", name="Show").click()
    page.get_by_text("Cases 1–10 of 10").first.wait_for()  # user120 to user129
    assert "mailbox=user12" in page.url
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Show").click()
    page.get_by_text("No case matches these filters.").wait_for()


def test_what_if_records_nothing(open_page, make_host, shoot):
    host = make_host()
    host.contest(1)
    before = len(host.c.ledger.cases(CaseQuery(limit=500)).items)
    page = open_page()
    sign_in(page, host.url, "#/policy")
    page.get_by_role("heading", name="What if…").wait_for()
    page.get_by_label("Mailbox").fill("aiko.tanaka@contoso.com")
    page.get_by_label("Claimant org").select_option("contoso-eu")
    page.get_by_role("button", name="Evaluate").click()
    answer = page.locator("#whatif-answer")
    answer.get_by_text("OrgGuard would hold").wait_for()
    assert "no: this was only a question" in answer.inner_text()
    assert "default" in answer.inner_text()
    shoot(page, "answer")
    page.get_by_label("Mailbox").fill("not an address")
    page.get_by_role("button", name="Evaluate").click()
    answer.locator(".error-text").wait_for()
    assert "mailbox" in answer.inner_text().lower()
    assert len(host.c.ledger.cases(CaseQuery(limit=500)).items) == before


def test_a_migration_started_from_the_page_shows_its_progress_to_the_end(open_page, make_host, shoot):
    host = make_host()
    both = sorted(set(host.rows("contoso-na")) & set(host.rows("contoso-jp")))[:5]
    page = open_page()
    sign_in(page, host.url, "#/jobs")
    form = page.get_by_role("form", name="Start a migration")
    form.get_by_label("From").select_option("contoso-na")
    form.get_by_label("To").select_option("contoso-jp")
    form.get_by_label("Or mailboxes").fill("\n".join(both))
    form.get_by_label(re.compile("^ ?Apply")).check()
    form.get_by_role("button", name="Start a migration").click()
    page.get_by_role("heading", name=re.compile("^Migration ")).wait_for()
    page.locator("dd .badge", has_text="done").wait_for(timeout=30_000)  # polled until it finished
    page.get_by_text("5 of 5 moves settled").wait_for()
    shoot(page, "migration-done")
    assert all(host.exchange(a) == "contoso-jp" for a in both)
    page.get_by_role("link", name="Sweeps & migrations").click()
    page.get_by_role("table", name="Migrations, newest first").get_by_text("done").wait_for()

    sweep = page.get_by_role("form", name="Start a sweep")
    sweep.get_by_role("button", name="Start a sweep").click()
    page.get_by_role("heading", name=re.compile("^Sweep ")).wait_for()
    page.locator("dd .badge", has_text="done").wait_for(timeout=30_000)
    page.get_by_role("heading", name="Findings").wait_for()
    shoot(page, "sweep-done")


def test_every_view_is_labelled_keyboard_usable_and_legible(contested, shoot):
    host, address, case, page = contested
    views = {
        "overview": ("#/", "Overview"),
        "cases": ("#/cases?state=held", "Cases"),
        "case": (f"#/cases/{case.id}", f"Case {case.id[:8]}"),
        "mailbox": (f"#/mailboxes/{address}", address),
        "policy": ("#/policy", "Policy"),
        "jobs": ("#/jobs", "Sweeps & migrations"),
    }
    for name, (hash, title) in views.items():
        page.goto(f"{host.url}/{hash}")
        page.get_by_role("heading", name=title, exact=True).wait_for()
        page.wait_for_load_state("networkidle")
        problems = check_accessible(page)
        assert not problems, f"{name}: {problems}"
        assert page.evaluate("document.activeElement.tagName") == "H1", f"{name}: focus goes to the heading"
    live = page.locator("#status")
    assert live.get_attribute("aria-live") == "polite" and live.get_attribute("role") == "status"
