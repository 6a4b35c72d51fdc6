"""What a person does on the page, step by step, shared by the browser suites."""

from __future__ import annotations

from typing import Any

from tests.factories import ADMIN_TOKEN


def sign_in(page: Any, url: str, hash: str = "#/") -> None:
    """Sign in locally with the admin token, landing on ``hash``."""
    page.goto(f"{url}/{hash}")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#who").get_by_text("local-admin").wait_for()


def status(page: Any) -> str:
    """What the live region last said."""
    text: str = page.locator("#status").inner_text()
    return text


def open_case(page: Any, url: str, case_id: str) -> None:
    page.goto(f"{url}/#/cases/{case_id}")
    page.get_by_role("heading", name=f"Case {case_id[:8]}").wait_for()
