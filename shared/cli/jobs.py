"""``orgguard sweep`` and ``orgguard migrate`` (plus ``migrations`` to watch, pause and cancel them).

Registered on the main app by ``shared.cli.app`` (``cli_jobs.register(app)``). A job runs
where it is started (in this process on the local ledger, or in OrgGuard with
``--url``); the command watches its record with a progress bar. Ctrl-C pauses a
migration (resume it with ``--resume``) and cancels a sweep run here; a second
Ctrl-C stops at once. Either way the record never stays ``running``.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from shared.cli.operations import Doc, MigrationOrder, Operations
from shared.cli.render import short, table, unique, when
from shared.cli.terminal import JsonOpt, UrlOpt, connected, err, fail, out, print_json, reported
from shared.domain.jobs import JobKind, JobState
from shared.domain.model import DomainError

CSV_FIELDS = ("mailbox", "orgs", "kinds", "owner", "failing", "winner", "effect", "rule", "cases", "explanation")
FULL_ID = 36
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C
STOPPED = {JobState.PAUSED.value, JobState.CANCELLED.value, JobState.RUNNING.value}


class Interrupted(Exception):
    def __init__(self, doc: Doc) -> None:
        super().__init__(doc["id"])
        self.doc = doc


def follow(ops: Operations, kind: JobKind, doc: Doc, seen: Callable[[Doc], None]) -> Doc:
    """Watch a started job's record until it is settled; its final document.

    Ctrl-C asks the job to stop (``Operations.interrupt``) and waits for it, then raises
    ``Interrupted``; a second Ctrl-C stops it at once; a job that cannot be stopped from
    here (a sweep in OrgGuard) is left to run.
    """
    asked = 0
    while True:
        try:
            while not ops.settled(doc):
                time.sleep(ops.poll)
                doc = ops.job(kind, str(doc["id"]))
                seen(doc)
            final = ops.report(kind, str(doc["id"]))
            seen(final)
            if asked and final["state"] in STOPPED:
                raise Interrupted(final)  # stopped as asked (a job that finished meanwhile is reported as such)
            return final
        except KeyboardInterrupt:
            asked += 1
            if asked > 2 or not ops.interrupt(kind, str(doc["id"]), hard=asked > 1):
                raise Interrupted(doc) from None
            what = "pausing after the batch in flight" if kind is JobKind.MIGRATION and asked == 1 else "stopping"
            err.print(f"{what}; Ctrl-C again to stop at once")


# --- sweep -----------------------------------------------------------------------------


def sweep(
    org: Annotated[list[str] | None, typer.Option("--org", help="Only this org (repeatable); all by default.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Open cases and carry out their actions.")] = False,
    as_json: JsonOpt = False,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write every finding to this CSV file.")] = None,
    url: UrlOpt = None,
) -> None:
    """Find latent conflicts in every org: one mailbox syncing in several, the alert, ledger drift.

    Without --apply nothing is written anywhere; each finding says what the policy would do.
    """
    with reported(), connected(url) as ops, _bar(err, transient=as_json, rows=True) as progress:
        tasks: dict[str, TaskID] = {}

        def on_page(name: str, rows: int, pages: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=None, rows=0, pages=0)
            progress.update(tasks[name], rows=rows, pages=pages)

        phase = progress.add_task("sweeping", total=None, rows=0, pages=0, visible=url is not None)

        def seen(doc: Doc) -> None:
            progress.update(phase, description=str(doc.get("progress", {}).get("phase") or doc["state"]))

        started = ops.start_sweep(org or [], apply, on_page=on_page)
        try:
            doc = follow(ops, JobKind.SWEEP, started, seen)
        except Interrupted as stop:
            progress.stop()
            raise _interrupted(JobKind.SWEEP, stop.doc, ops.where) from None
    result = doc.get("result") or {}
    if doc["state"] != JobState.DONE.value:
        raise fail(f"sweep {doc['id']} {doc['state']}: {doc.get('error') or 'no result'}")
    if csv_file is not None:
        _write_csv(csv_file, result)
    if as_json:
        print_json({"sweep": doc["id"], **result})
        return
    _print_sweep(doc["id"], result, csv_file)


def _write_csv(path: Path, result: Doc) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for conflict in result.get("conflicts", []):
            row = {k: conflict.get(k) for k in CSV_FIELDS}
            for name in ("orgs", "kinds", "failing", "cases"):
                row[name] = " ".join(conflict.get(name) or [])
            writer.writerow(row)
    if result.get("truncated"):
        err.print(
            f"{path} has the first {len(result.get('conflicts', []))} of {result.get('conflicts_total')} "
            "findings OrgGuard keeps in the job record; run the sweep on the ledger's host for all of them"
        )


def _print_sweep(sweep_id: str, result: Doc, csv_file: Path | None) -> None:
    from shared.domain.findings import FindingKind

    orgs = table("org", "syncing mailboxes", "pages", title=f"sweep {sweep_id}")
    for name in result.get("org_names", []):
        orgs.add_row(name, f"{result['rows_by_org'].get(name, 0):,}", str(result["pages"].get(name, 0)))
    out.print(orgs)
    kinds = table("finding", "mailboxes")
    for kind in FindingKind:
        kinds.add_row(kind.value, f"{result['counts'].get(kind.value, 0):,}")
    kinds.add_row(Text("unowned, one org only (no conflict)", style="dim"), f"{result.get('unowned', 0):,}")
    out.print(kinds)
    for org in result.get("registration", []):
        if not org.get("ok"):
            said = org.get("error") or "; ".join(f"{d['record']} {d['kind']}" for d in org.get("drift", []))
            out.print(
                f"  OrgGuard's registration in {org['org']} is not as registered: {said} "
                f"(repair: orgguard register --org {org['org']} --url <OrgGuard's URL>)",
                highlight=False,
            )
    conflicts = result.get("conflicts", [])
    for conflict in conflicts[:20]:
        out.print(
            f"  {conflict['mailbox']}: {', '.join(conflict['orgs'])} -> {conflict['winner'] or '?'} "
            f"({conflict['effect']}, {conflict['rule']})",
            highlight=False,
        )
    total = int(result.get("conflicts_total", len(conflicts)))
    if total > 20:
        out.print(f"  ... and {total - 20:,} more" + (f" (in {csv_file})" if csv_file else ""))
    apply = bool(result.get("apply"))
    verb = "acted on" if apply else "found (nothing written; --apply acts)"
    out.print(
        f"{total:,} finding(s) {verb}; {result.get('requests', 0):,} Dataverse requests, "
        f"{result.get('throttled', 0)} throttled, {result.get('seconds', 0):.1f} s"
        + (
            f"; {result['cases']} case(s), {result['applied']} action(s) applied, {result['failed']} failed"
            if apply
            else ""
        )
    )


# --- migrate ---------------------------------------------------------------------------


def migrate(
    source: Annotated[str | None, typer.Option("--from", help="The org the mailboxes leave.")] = None,
    target: Annotated[str | None, typer.Option("--to", help="The org that takes them over.")] = None,
    mailboxes: Annotated[Path | None, typer.Option("--mailboxes", help="File of addresses, one a line.")] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="Every address in this domain.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Carry it out (default: plan only).")] = False,
    plan: Annotated[
        str | None,
        typer.Option("--plan", help="With --apply: apply this reviewed plan (a migration run without --apply)."),
    ] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Resume this paused or interrupted migration.")] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Move mailboxes from one org to another as override cases: plan first, then --apply (--plan ID applies
    the reviewed plan as it was, or refuses if the orgs changed since)."""
    order = _order(source, target, mailboxes, domain, apply, plan, resume)
    with reported(), connected(url) as ops, _bar(err, transient=as_json, rows=False) as progress:
        task = progress.add_task("planning", total=None)

        def seen(doc: Doc) -> None:
            p = doc.get("progress") or {}
            phase = "moves settled" if p.get("phase") == "moving" or "settled" in p else "planning"
            progress.update(task, description=phase, total=p.get("planned"), completed=p.get("settled", 0))

        if resume:
            started = ops.resume_migration(_migration_id(ops, resume))
        elif plan:
            started = ops.apply_plan(_migration_id(ops, plan))
        else:
            assert order is not None
            started = ops.start_migration(order)
        err.print(f"migration {started['id']} ({'apply' if started['params'].get('apply') else 'plan only'})")
        try:
            job = follow(ops, JobKind.MIGRATION, started, seen)
        except Interrupted as stop:
            progress.stop()
            raise _interrupted(JobKind.MIGRATION, stop.doc, ops.where) from None
    if as_json:
        print_json(job)
    else:
        _print_migration(job)
    if job["state"] == JobState.FAILED.value:
        raise typer.Exit(1)


def _order(
    source: str | None,
    target: str | None,
    mailboxes: Path | None,
    domain: str | None,
    apply: bool,
    plan: str | None,
    resume: str | None,
) -> MigrationOrder | None:
    """What was asked, or exit 2 for a command line that cannot work."""
    given = {"--from": source, "--to": target, "--mailboxes": mailboxes, "--domain": domain}
    chosen = [name for name, value in given.items() if value]
    if resume and plan:
        raise fail("give --resume ID or --plan ID, not both", 2)
    if plan and not apply:
        raise fail("--plan ID applies a reviewed plan: give --apply too", 2)
    if resume or plan:
        if chosen:
            which = "--resume" if resume else "--plan"
            raise fail(f"{which} takes the migration as it was planned; leave out {', '.join(chosen)}", 2)
        return None
    if not source or not target or (mailboxes is None) == (domain is None):
        raise fail("give --from, --to and either --mailboxes FILE or --domain D (or --resume ID, --plan ID)", 2)
    from shared.service.migration import check_route

    try:
        check_route(source, target)
    except DomainError as exc:
        raise fail(exc.detail, 2) from None
    addresses = None
    if mailboxes is not None:
        if not mailboxes.is_file():
            raise fail(f"{mailboxes} does not exist", 2)
        # Lines end at "\n" only (str.splitlines would also break at control characters, hiding them); the
        # address itself is left for MailboxKey.parse to judge, which refuses every control character.
        lines = [line.removesuffix("\r") for line in mailboxes.read_text(encoding="utf-8").split("\n")]
        addresses = [s.split(",")[0].strip(" ") for s in lines if s.strip(" ") and not s.lstrip(" ").startswith("#")]
    return MigrationOrder(source, target, addresses, domain, apply)


def _migration_id(ops: Operations, given: str) -> str:
    if len(given) >= FULL_ID:
        return given
    return unique(given, (str(j["id"]) for j in ops.jobs(JobKind.MIGRATION)), "migration")


def _interrupted(kind: JobKind, doc: Doc, where: str) -> typer.Exit:
    state, job_id = doc["state"], doc["id"]
    if kind is JobKind.MIGRATION and state == JobState.PAUSED.value:
        err.print(f"migration {job_id} paused; resume it with: orgguard migrate --resume {short(job_id)}")
    elif kind is JobKind.MIGRATION:
        err.print(f"migration {job_id} is {state}; see: orgguard migrations show {short(job_id)}")
    elif state == JobState.RUNNING.value:
        err.print(f"stopped watching; sweep {job_id} goes on in {where}")
    else:
        err.print(f"sweep {job_id} {state}; nothing more is recorded (run the sweep again to finish)")
    return typer.Exit(INTERRUPTED)


class CountColumn(ProgressColumn):
    """``done/total``, or ``done/?`` while the total is not known yet (rich's format spec would crash on None)."""

    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else f"{int(task.total):,}"
        return Text(f"{int(task.completed):,}/{total}")


class RowsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        rows, pages = task.fields.get("rows", 0), task.fields.get("pages", 0)
        return Text(f"{rows:>8,} rows  {pages:>4} pages")


def _bar(console: Console, *, transient: bool, rows: bool) -> Progress:
    columns: list[ProgressColumn] = [TextColumn("{task.description:<14}"), BarColumn()]
    columns.append(RowsColumn() if rows else CountColumn())
    return Progress(
        *columns,
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )


def _print_migration(job: Doc) -> None:
    plan = job["result"].get("plan") or job["progress"].get("plan") or {}
    out.print(
        f"[bold]migration {job['id']}[/bold]  {job['state']}  {plan.get('from')} -> {plan.get('to')}", markup=True
    )
    if job["params"].get("plan"):
        out.print(f"applying the reviewed plan of migration {job['params']['plan']}")
    rows = table("", "count")
    rows.add_row("to move", str(plan.get("moves", 0)))
    rows.add_row("skipped", str(plan.get("skipped", 0)))
    for reason, n in (plan.get("skipped_by_reason") or {}).items():
        rows.add_row(f"  {reason}", str(n))
    requests = plan.get("requests") or {}
    rows.add_row("requests (reads + write batches)", f"{requests.get('reads', 0)} + {requests.get('write_batches', 0)}")
    rows.add_row("estimated time (s)", str(plan.get("estimated_seconds")))
    for name in ("moved", "failed", "pending"):
        if name in job["result"]:
            rows.add_row(name, str(job["result"][name]))
    out.print(rows)
    for failure in job["result"].get("failed_mailboxes", [])[:20]:
        out.print(
            f"  [red]failed[/red] {escape(failure['mailbox'])}: {escape('; '.join(failure['errors']))}", markup=True
        )
    if job.get("error"):
        err.print(f"[red]error:[/red] {escape(str(job['error']))}", markup=True)
    if job["state"] == JobState.PLANNED.value:
        out.print(
            "plan only: nothing was written. Apply this plan as it is with: "
            f"orgguard migrate --apply --plan {short(job['id'])}"
        )
    elif job["state"] == JobState.PAUSED.value:
        out.print(f"paused: orgguard migrate --resume {short(job['id'])}")


# --- watching migrations -----------------------------------------------------------------

migrations_app = typer.Typer(help="Watch, pause and cancel migrations.", no_args_is_help=True)


@migrations_app.command("list")
def migrations_list(as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """Migrations, newest first."""
    with reported(), connected(url) as ops:
        jobs = ops.jobs(JobKind.MIGRATION, 50)
    if as_json:
        print_json({"items": jobs})
        return
    rows = table("migration", "created", "state", "from", "to", "apply", "planned", "settled")
    for j in jobs:
        rows.add_row(
            short(j["id"]),
            when(j["created_at"]),
            j["state"],
            str(j["params"].get("from")),
            str(j["params"].get("to")),
            "yes" if j["params"].get("apply") else "plan",
            str(j["progress"].get("planned", "-")),
            str(j["progress"].get("settled", "-")),
        )
    out.print(rows)


@migrations_app.command("show")
def migrations_show(job_id: str, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """One migration: plan, progress and report."""
    with reported(), connected(url) as ops:
        job = ops.job(JobKind.MIGRATION, _migration_id(ops, job_id))
    if as_json:
        print_json(job)
    else:
        _print_migration(job)


def _set_state(job_id: str, state: JobState, url: str | None) -> None:
    with reported(), connected(url) as ops:
        saved = ops.set_state(_migration_id(ops, job_id), state)
    out.print(f"migration {saved['id']} is now {saved['state']}")


@migrations_app.command("pause")
def migrations_pause(job_id: str, url: UrlOpt = None) -> None:
    """Stop after the current round; resume with `orgguard migrate --resume ID`."""
    _set_state(job_id, JobState.PAUSED, url)


@migrations_app.command("cancel")
def migrations_cancel(job_id: str, url: UrlOpt = None) -> None:
    """Record no further moves; the moves already decided are still carried out by the outbox."""
    _set_state(job_id, JobState.CANCELLED, url)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
    app.command("migrate")(migrate)
    app.add_typer(migrations_app, name="migrations")
