"""``orgguard exemptions``, ``report`` and ``policy impact``: governance from a terminal.

They work on the local ledger or, with ``--url``, through the API (the caller's role applies); both give the
API's documents (``Governance``). ``orgguard discover`` is ``shared.cli.discovery``'s.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer
from rich.markup import escape

from shared.cli.render import short, table, unique, when
from shared.cli.terminal import JsonOpt, UrlOpt, actor, container, err, fail, listing, out, print_json, reported
from shared.domain.compliance import CSV_COLUMNS, STATUSES, rows
from shared.domain.exemptions import Scope

if TYPE_CHECKING:
    from shared.cli.api_client import ApiOperations
    from shared.service.orgguard import OrgGuard

Doc = dict[str, Any]
FULL_ID = 36

exemptions_app = typer.Typer(help="Exempt a mailbox, a user, a domain or two orgs from enforcement, for a while.",
                             no_args_is_help=True)  # fmt: skip


class Governance(Protocol):
    """What the governance commands ask of OrgGuard, on the ledger or through the API."""

    def exemptions(self, state: str | None) -> Doc: ...

    def add_exemption(self, body: Doc) -> Doc: ...

    def remove_exemption(self, exemption_id: str, reason: str | None) -> Doc: ...

    def report(self, sweeps: int) -> Doc: ...

    def impact(self, text: str, days: int) -> Doc: ...


class LedgerGovernance:
    def __init__(self, service: OrgGuard, who: str) -> None:
        from shared.service.exemptions import Exemptions

        self.service, self.actor, self.desk = service, who, Exemptions(service)

    def exemptions(self, state: str | None) -> Doc:
        from shared.service.views import exemption_view

        book, today = self.desk.book(), self.desk.today()
        items = [exemption_view(e, today) for e in book.items if state is None or e.state(today).value == state]
        return {"version": book.version, "items": items}

    def add_exemption(self, body: Doc) -> Doc:
        from shared.service.views import exemption_view

        scope = next(s.value for s in Scope if s.value in body)
        added = self.desk.add(scope, body[scope], reason=body["reason"], ticket=body["ticket"],
                              expires=body["expires"], actor=self.actor)  # fmt: skip
        return exemption_view(added, self.desk.today())

    def remove_exemption(self, exemption_id: str, reason: str | None) -> Doc:
        from shared.service.views import exemption_view

        return exemption_view(self.desk.remove(exemption_id, actor=self.actor, reason=reason), self.desk.today())

    def report(self, sweeps: int) -> Doc:
        from shared.service.compliance import compliance_report

        return compliance_report(self.service, sweeps=sweeps)

    def impact(self, text: str, days: int) -> Doc:
        from shared.service.impact import policy_impact

        return policy_impact(self.service, text, days=days)


class ApiGovernance:
    def __init__(self, api: ApiOperations) -> None:
        self.api = api

    def exemptions(self, state: str | None) -> Doc:
        doc: Doc = self.api._call("GET", "/api/exemptions", params={"state": state})
        return doc

    def add_exemption(self, body: Doc) -> Doc:
        doc: Doc = self.api._call("POST", "/api/exemptions", body=body)
        return doc

    def remove_exemption(self, exemption_id: str, reason: str | None) -> Doc:
        if len(exemption_id) < FULL_ID:  # the API takes whole ids; the lists show 8 characters
            ids = (str(e["id"]) for e in self.exemptions(None)["items"])
            exemption_id = unique(exemption_id, ids, "exemption")
        doc: Doc = self.api._call("DELETE", f"/api/exemptions/{exemption_id}", params={"reason": reason})
        return doc

    def report(self, sweeps: int) -> Doc:
        doc: Doc = self.api._call("GET", "/api/reports/compliance", params={"sweeps": sweeps})
        return doc

    def impact(self, text: str, days: int) -> Doc:
        doc: Doc = self.api._call("POST", "/api/policy/impact", params={"days": days}, text=text)
        return doc


@contextmanager
def governed(url: str | None) -> Iterator[Governance]:
    """The governance port: through the API at ``url``, or on the local ledger."""
    if not url:
        yield LedgerGovernance(container().service, actor())
        return
    from shared.cli.api_client import ApiOperations, check_url, credentials_for

    base = check_url(url)
    api = ApiOperations(base, credentials_for(base))
    try:
        yield ApiGovernance(api)
    finally:
        api.close()


# --- exemptions ------------------------------------------------------------------------------------------


def exemption_table(items: list[Doc]) -> Any:
    rows_ = table("exemption", "exempts", "ticket", "until", "state", "by", "reason")
    for e in items:
        rows_.add_row(short(e["id"]), e["what"], e["ticket"], e["expires"], e["state"], e["created_by"], e["reason"])
    return rows_


@exemptions_app.command("list")
def exemptions_list(
    state: Annotated[str | None, typer.Option(help="Only active, expired or removed ones.")] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List exemptions, oldest first, with their state today."""
    if state is not None and state not in ("active", "expired", "removed"):
        raise fail(f"--state must be active, expired or removed, not {state!r}", 2)
    with reported(), governed(url) as gov:
        doc = gov.exemptions(state)
    listing(doc, as_json, exemption_table, f"{len(doc['items'])} exemption(s); the set is at version {doc['version']}")


@exemptions_app.command("add")
def exemptions_add(
    reason: Annotated[str, typer.Option(help="Why (recorded, shown in every decision it makes).")],
    ticket: Annotated[str, typer.Option(help="The change or incident it belongs to.")],
    expires: Annotated[str, typer.Option(help="The last day it applies (UTC), like 2026-12-31.")],
    mailbox: Annotated[str | None, typer.Option(help="Exempt this mailbox.")] = None,
    domain: Annotated[str | None, typer.Option(help="Exempt every mailbox of this domain.")] = None,
    user: Annotated[str | None, typer.Option(help="Exempt this user's mailboxes (userPrincipalName or id).")] = None,
    org: Annotated[
        list[str] | None, typer.Option("--org", help="Exempt claims between two orgs (give it twice).")
    ] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Exempt a mailbox, a domain, a user or two orgs until a date: their claims are only recorded."""
    given = {"mailbox": mailbox, "domain": domain, "user": user, "orgs": org or None}
    chosen = {name: value for name, value in given.items() if value is not None}
    if len(chosen) != 1:
        raise fail("give exactly one of --mailbox, --domain, --user or --org (twice)", 2)
    body = {**chosen, "reason": reason, "ticket": ticket, "expires": expires}
    with reported(), governed(url) as gov:
        added = gov.add_exemption(body)
    if as_json:
        print_json(added)
        return
    out.print(f"exemption {short(added['id'])}: {added['what']} until {added['expires']} ({added['ticket']})")


@exemptions_app.command("remove")
def exemptions_remove(
    exemption: Annotated[str, typer.Argument(help="The exemption's id (or its first characters).")],
    reason: Annotated[str | None, typer.Option(help="Why it ends early (recorded).")] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """End an exemption now: the claims it covered are decided by the policy again."""
    with reported(), governed(url) as gov:
        removed = gov.remove_exemption(exemption.strip(), reason)
    if as_json:
        print_json(removed)
        return
    out.print(f"exemption {short(removed['id'])} removed: {removed['what']} is enforced again")


# --- the compliance report ----------------------------------------------------------------------------------


def report(
    sweeps: Annotated[int, typer.Option(min=1, max=100, help="How many sweeps the trend covers.")] = 10,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Also write the rows to this CSV file.")] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Compliance per org and per rule: compliant, in conflict, exempt, held, failed; the last sweep; the trend."""
    with reported(), governed(url) as gov:
        doc = gov.report(sweeps)
    if csv_file is not None:
        try:
            with csv_file.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows(doc))
        except OSError as exc:
            raise fail(f"cannot write {csv_file}: {exc.strerror or exc}") from None
    if as_json:
        print_json(doc)
        return
    last = doc["last_sweep"]
    if last:
        out.print(f"last sweep: {when(last['at'])} ({'applied' if last['apply'] else 'dry run'})")
    else:
        out.print("no sweep has run yet: conflicts are unknown (orgguard sweep); held and failed cases are live")
    grid = table("name", "per", "mailboxes", *STATUSES)
    for row in rows(doc):
        grid.add_row(row["name"], row["scope"], *(_n(row[c]) for c in ("mailboxes", *STATUSES)))
    out.print(grid)
    if doc["trend"]:
        trend = table("sweep", "finished", "mode", *STATUSES, title=f"the last {len(doc['trend'])} sweeps")
        for point in doc["trend"]:
            mode = "apply" if point["apply"] else "dry run"
            trend.add_row(short(point["sweep"]), when(point["at"]), mode, *(_n(point[s]) for s in STATUSES))
        out.print(trend)
    ex = doc["exemptions"]
    out.print(f"exemptions: {ex.get('active', 0)} active, {ex.get('expired', 0)} expired")
    for soon in ex.get("expiring_soon", []):
        out.print(f"  ends {soon['expires']}: {soon['what']} ({short(soon['id'])})")
    if csv_file is not None:
        err.print(f"rows written to {csv_file}")


def _n(value: object) -> str:
    return "-" if value is None else str(value)


# --- the impact of a policy ---------------------------------------------------------------------------------


def policy_impact(
    file: Annotated[Path, typer.Argument(help="The candidate policy (YAML or JSON).")],
    days: Annotated[int, typer.Option(min=1, max=365, help="How far back competing claims are replayed.")] = 30,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """What saving this policy would change, before it is saved: held cases, recent claims, mailboxes that
    would move. Records nothing."""
    if not file.is_file():
        raise fail(f"{file} does not exist", 2)
    text = file.read_text(encoding="utf-8")
    with reported(), governed(url) as gov:
        doc = gov.impact(text, days)
    if as_json:
        print_json(doc)
        return
    out.print(doc["summary"])
    for title, section in (("held cases", "held"), ("recent claims", "claims"), ("owned mailboxes", "ownerships")):
        part = doc[section]
        if not part["items"]:
            continue
        out.print(f"[bold]{title}[/bold] ({part['changed']} of {part['examined']}):", markup=True)
        for item in part["items"]:
            where = f"case {short(item['case'])} " if item.get("case") else ""
            out.print(f"  {where}{item['mailbox']}: {item['outcome']}")
        if part["truncated"]:
            out.print(f"  ... and {part['changed'] - len(part['items'])} more (--json lists the first 500)")
    if doc.get("on_expiry"):
        out.print(doc["on_expiry"]["outcome"])
    for warning in doc["candidate"]["warnings"]:
        err.print(f"[yellow]warning[/yellow]: {escape(warning)}", markup=True)


def register(app: typer.Typer, policy_app: typer.Typer) -> None:
    app.add_typer(exemptions_app, name="exemptions")
    app.command("report")(report)
    policy_app.command("impact")(policy_impact)
