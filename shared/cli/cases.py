"""``orgguard cases``, ``actions`` and ``mailbox``: case work, written once over the operations port.

Each command works on the local ledger, or with ``--url`` through the admin API
(where the caller's role applies); both give the API's documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shared.cli.operations import CaseFilter, Doc, Operations, Verdict
from shared.cli.render import short, table, unique, when
from shared.cli.terminal import JsonOpt, UrlOpt, connected, listing, out, print_json, reported
from shared.domain.model import CaseState

cases_app = typer.Typer(help="Work on recorded cases.", no_args_is_help=True)
actions_app = typer.Typer(help="Carry out a case's actions again.", no_args_is_help=True)
mailbox_app = typer.Typer(help="A mailbox's story: its owner, claims and cases.", no_args_is_help=True)

FULL_ID = 36
Reason = Annotated[str, typer.Option(help="Why (recorded).")]


def case_ids(ops: Operations) -> Iterator[str]:
    """Every case id, newest first, a page at a time (stops as soon as the caller has enough)."""
    cursor = None
    while True:
        page = ops.cases(CaseFilter(limit=500, cursor=cursor))
        yield from (str(c["id"]) for c in page["items"])
        cursor = page.get("next")
        if not cursor:
            return


def resolve_case(ops: Operations, given: str) -> str:
    return given if len(given) >= FULL_ID else unique(given, case_ids(ops), "case")


@cases_app.command("list")
def cases_list(
    state: Annotated[
        CaseState | None, typer.Option(help="Only cases in this state; open: held, decided or failed.")
    ] = None,
    org: Annotated[str | None, typer.Option(help="Only cases where this org is owner or claimant.")] = None,
    mailbox: Annotated[
        str | None, typer.Option(help="Only cases of this mailbox address, or whose address contains this text.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List cases, newest first."""
    query = CaseFilter(state=state.value if state else None, org=org, mailbox=mailbox, limit=limit)
    with reported(), connected(url) as ops:
        page = ops.cases(query)
    summary = None
    if "total" in page:
        more = f"; --limit {min(500, page['total'])} for more" if page["total"] > len(page["items"]) else ""
        summary = f"{len(page['items'])} of {page['total']} case(s){more}"
    listing(page, as_json, case_table, summary)


def case_table(items: list[Doc]) -> Table:
    rows = table("case", "created", "mailbox", "owner when claimed", "claimant", "effect", "state")
    for c in items:
        decision = c["decision"]
        rows.add_row(
            short(c["id"]),
            when(c["created_at"]),
            c["mailbox"],
            c.get("owner") or "-",
            c["claimant"],
            decision["effect"] + (" (dry-run)" if decision.get("dry_run") else ""),
            c["state"],
        )
    return rows


@cases_app.command("show")
def cases_show(case_id: str, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show one case: its decision, the owner when it was claimed and now, actions and history."""
    with reported(), connected(url) as ops:
        case = ops.case(resolve_case(ops, case_id))
        current = ops.mailbox(case["mailbox"])
    now = {k: current.get(k) for k in ("owner", "since", "how")}
    if as_json:
        print_json({**case, "current_owner": now})
        return
    out.print(f"[bold]case {escape(case['id'])}[/bold]  {case['state']}", markup=True)
    rows = [
        ("mailbox", case["mailbox"]),
        ("claimant", case["claimant"]),
        ("owner when claimed", case.get("owner") or "- (nobody)"),
        ("current owner", _owner_now(now)),
        ("decision", _decision(case["decision"])),
    ]
    if case.get("expires_at") and case["state"] == CaseState.HELD.value:
        rows.append(("expires", when(case["expires_at"])))
    for label, value in rows:
        out.print(f"  {label:<20}{value}", highlight=False)
    if case.get("actions"):
        out.print("actions")
    for a in case.get("actions", []):
        error = f"; last error: {a['last_error']}" if a.get("last_error") else ""
        out.print(
            f"  {a['id']}  {a['kind']} in {a['org']}: {a['status']} ({a['attempts']} attempt(s)){error}",
            highlight=False,
        )
    out.print("history")
    for h in case.get("history", []):
        out.print(f"  {when(h['at'])}  {h['state']:<8} {h['actor']}: {h['note']}", highlight=False)


def _owner_now(owner: dict[str, Any]) -> str:
    if not owner.get("owner"):
        return "- (nobody, in the ledger)"
    return f"{owner['owner']} since {when(owner['since'])} ({owner['how']}), from the ledger"


def _decision(d: Doc) -> str:
    return f"{d['effect']}{' (dry-run)' if d.get('dry_run') else ''} by {d['rule']}: {d['explanation']}"


def _resolve(case_id: str, reason: str, verdict: Verdict, as_json: bool, url: str | None) -> None:
    with reported(), connected(url) as ops:
        case = ops.decide(resolve_case(ops, case_id), verdict, reason)
    if as_json:
        print_json(case)
    else:
        out.print(f"case {case['id']} is now {case['state']}")


@cases_app.command("approve")
def cases_approve(case_id: str, reason: Reason, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """Approve a held case: the claimant becomes the owner."""
    _resolve(case_id, reason, "approve", as_json, url)


@cases_app.command("deny")
def cases_deny(case_id: str, reason: Reason, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """Deny a held case: the owner keeps the mailbox, the claimant is demoted."""
    _resolve(case_id, reason, "deny", as_json, url)


@actions_app.command("retry")
def actions_retry(action_id: str, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """Carry out a failed action again (its id is in `orgguard cases show`)."""
    with reported(), connected(url) as ops:
        doc = ops.retry_action(action_id.strip())
    if as_json:
        print_json(doc)
    else:
        out.print(f"action {doc['action']} is {doc['status']} again: the outbox carries it out on its next round")


@mailbox_app.command("show")
def mailbox_show(address: str, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """A mailbox's owner (since when and how), its recent claims and cases."""
    with reported(), connected(url) as ops:
        doc = ops.mailbox(address)
    if as_json:
        print_json(doc)
        return
    out.print(f"[bold]{escape(doc['mailbox'])}[/bold]", markup=True)
    out.print(f"  owner  {_owner_now(doc)}", highlight=False)
    claims = table("at", "org", "kind", "origin", "effect", "case", title="claims")
    for c in doc.get("claims", []):
        claims.add_row(when(c["at"]), c["org"], c["kind"], c["origin"], c["effect"], short(c["case"] or "-"))
    out.print(claims if doc.get("claims") else "  no claims recorded")
    out.print(case_table(doc["cases"]) if doc.get("cases") else "  no cases")


def register(app: typer.Typer) -> None:
    app.add_typer(cases_app, name="cases")
    app.add_typer(actions_app, name="actions")
    app.add_typer(mailbox_app, name="mailbox")
