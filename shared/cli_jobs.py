"""``orgguard sweep`` and ``orgguard migrate`` (plus ``migrations`` to watch, pause and cancel them).

Registered on the main app by ``shared.cli`` (``cli_jobs.register(app)``).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.jobs import Job, JobKind, JobState, job_doc
from shared.ledger.port import JobLedger, LedgerError, job_ledger
from shared.model import DomainError

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
CSV_FIELDS = ("mailbox", "orgs", "kinds", "owner", "failing", "winner", "effect", "rule", "cases", "explanation")


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'operator')}"


def _print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def _wiring() -> tuple[Any, JobLedger]:
    from shared import cli

    container = cli._container()
    try:
        return container, job_ledger(container.ledger)
    except LedgerError as exc:
        raise cli.fail(str(exc)) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


# --- sweep -----------------------------------------------------------------------------


def sweep(
    org: Annotated[list[str] | None, typer.Option("--org", help="Only this org (repeatable); all by default.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Open cases and carry out their actions.")] = False,
    as_json: JsonOpt = False,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write every finding to this CSV file.")] = None,
) -> None:
    """Find latent conflicts in every org: one mailbox syncing in several, the alert, ledger drift.

    Without --apply nothing is written anywhere; each finding says what the policy would do.
    """
    from shared.sweep import FindingKind, new_job, run_sweep

    container, ledger = _wiring()
    job = new_job(org or [], actor=_actor(), apply=apply)
    try:
        for name in org or []:
            container.orgs.get(name)
        job = ledger.save_job(job)
    except DomainError as exc:
        raise _fail(exc.detail) from None
    with ExitStack() as stack:
        writer = None
        if csv_file is not None:
            handle: IO[str] = stack.enter_context(csv_file.open("w", newline="", encoding="utf-8"))
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            writer.writeheader()

        def on_finding(doc: dict[str, Any]) -> None:
            if writer is not None:
                row = {k: doc.get(k) for k in CSV_FIELDS}
                for name in ("orgs", "kinds", "failing", "cases"):
                    row[name] = " ".join(doc.get(name) or [])
                writer.writerow(row)

        progress = stack.enter_context(
            Progress(
                TextColumn("{task.description:<14}"),
                BarColumn(),
                TextColumn("{task.fields[rows]:>8,} rows  {task.fields[pages]:>4} pages"),
                TimeElapsedColumn(),
                console=err,
                transient=as_json,
                disable=not err.is_terminal,
            )
        )
        tasks: dict[str, TaskID] = {}

        def on_page(name: str, rows: int, pages: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=None, rows=0, pages=0)
            progress.update(tasks[name], rows=rows, pages=pages)

        try:
            job, result = asyncio.run(
                run_sweep(container.service, ledger, job, progress=on_page, on_finding=on_finding, keep=200)
            )
        except DomainError as exc:
            raise _fail(exc.detail) from None
        except Exception as exc:
            raise _fail(f"the sweep failed: {type(exc).__name__}: {exc}") from None
    doc = {"sweep": job.id, **result.doc()}
    if as_json:
        _print_json(doc)
        return
    orgs = Table("org", "syncing mailboxes", "pages", title=f"sweep {job.id}")
    for name in result.orgs:
        orgs.add_row(name, f"{result.rows_by_org.get(name, 0):,}", str(result.pages.get(name, 0)))
    out.print(orgs)
    kinds = Table("finding", "mailboxes")
    for kind in FindingKind:
        kinds.add_row(kind.value, f"{result.counts.get(kind.value, 0):,}")
    kinds.add_row("[dim]unowned, one org only (no conflict)[/dim]", f"{result.unowned:,}")
    out.print(kinds)
    for conflict in result.conflicts[:20]:
        out.print(
            f"  {conflict['mailbox']}: {', '.join(conflict['orgs'])} -> {conflict['winner'] or '?'} "
            f"({conflict['effect']}, {conflict['rule']})"
        )
    if len(result.conflicts) > 20:
        out.print(f"  ... and {len(result.conflicts) - 20:,} more" + (f" (all in {csv_file})" if csv_file else ""))
    verb = "acted on" if apply else "found (nothing written; --apply acts)"
    out.print(
        f"{len(result.conflicts):,} finding(s) {verb}; {result.requests:,} Dataverse requests, "
        f"{result.throttled} throttled, {result.seconds:.1f} s"
        + (f"; {result.cases} case(s), {result.applied} action(s) applied, {result.failed} failed" if apply else "")
    )


# --- migrate ---------------------------------------------------------------------------


def migrate(
    source: Annotated[str | None, typer.Option("--from", help="The org the mailboxes leave.")] = None,
    target: Annotated[str | None, typer.Option("--to", help="The org that takes them over.")] = None,
    mailboxes: Annotated[Path | None, typer.Option("--mailboxes", help="File of addresses, one a line.")] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="Every address in this domain.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Carry it out (default: plan only).")] = False,
    resume: Annotated[str | None, typer.Option("--resume", help="Resume this paused or interrupted migration.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move mailboxes from one org to another as override cases: plan first, then --apply."""
    from shared.migration import Selection, check_route, new_job

    if not resume and source and target:
        try:
            check_route(source, target)
        except DomainError as exc:
            raise _fail(exc.detail, 2) from None
    container, ledger = _wiring()
    if resume:
        job = ledger.job(resume)
        if job is None or job.kind is not JobKind.MIGRATION:
            raise _fail(f"no migration {resume}")
        if job.state in (JobState.DONE, JobState.CANCELLED, JobState.PLANNED):
            raise _fail(f"migration {resume} is {job.state.value}; nothing to resume")
        job = ledger.save_job(job.moved_to(JobState.RUNNING))
    else:
        if not source or not target or (mailboxes is None) == (domain is None):
            raise _fail("give --from, --to and either --mailboxes FILE or --domain D (or --resume ID)", 2)
        try:
            addresses = _addresses(mailboxes) if mailboxes else None
            selection = Selection.parse(addresses=addresses, domain=domain)
            container.orgs.get(source)
            container.orgs.get(target)
            job = ledger.save_job(new_job(source, target, selection, actor=_actor(), apply=apply))
        except DomainError as exc:
            raise _fail(exc.detail) from None
    err.print(f"migration {job.id} ({'apply' if job.apply else 'plan only'})")
    job = asyncio.run(_run_migration(container, ledger, job, quiet=as_json))
    if as_json:
        _print_json(job_doc(job))
    else:
        _print_migration(job)
    if job.state is JobState.FAILED:
        raise typer.Exit(1)


def _addresses(path: Path) -> list[str]:
    if not path.exists():
        raise DomainError(f"{path} does not exist", field="mailboxes")
    # Lines end at "\n" only (str.splitlines would also break at control characters, hiding them); the
    # address itself is left for MailboxKey.parse to judge, which refuses every control character.
    lines = [line.removesuffix("\r") for line in path.read_text(encoding="utf-8").split("\n")]
    return [line.split(",")[0].strip(" ") for line in lines if line.strip(" ") and not line.lstrip(" ").startswith("#")]


async def _run_migration(container: Any, ledger: JobLedger, job: Job, *, quiet: bool) -> Job:
    from shared.migration import Migration
    from shared.pacing import Pacer

    pacer = Pacer()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=err,
        transient=quiet,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("moves settled", total=None)

        async def on_progress(saved: Job) -> None:
            p = saved.progress
            progress.update(task, total=p.get("planned"), completed=p.get("settled", 0))

        try:
            return await Migration(container.service, ledger, pacer, job, on_progress=on_progress).run()
        finally:
            await pacer.aclose()


def _print_migration(job: Job) -> None:
    plan = job.result.get("plan") or job.progress.get("plan") or {}
    out.print(f"[bold]migration {job.id}[/bold]  {job.state.value}  {plan.get('from')} -> {plan.get('to')}")
    table = Table("", "count")
    table.add_row("to move", str(plan.get("moves", 0)))
    table.add_row("skipped", str(plan.get("skipped", 0)))
    for reason, n in (plan.get("skipped_by_reason") or {}).items():
        table.add_row(f"  {reason}", str(n))
    requests = plan.get("requests") or {}
    table.add_row(
        "requests (reads + write batches)", f"{requests.get('reads', 0)} + {requests.get('write_batches', 0)}"
    )
    table.add_row("estimated time (s)", str(plan.get("estimated_seconds")))
    for name in ("moved", "failed", "pending"):
        if name in job.result:
            table.add_row(name, str(job.result[name]))
    out.print(table)
    for failure in job.result.get("failed_mailboxes", [])[:20]:
        out.print(f"  [red]failed[/red] {failure['mailbox']}: {'; '.join(failure['errors'])}")
    if job.error:
        err.print(f"[red]error:[/red] {job.error}")
    if job.state is JobState.PLANNED:
        out.print("plan only: nothing was written. Run again with --apply to carry it out.")
    elif job.state is JobState.PAUSED:
        out.print(f"paused: orgguard migrate --resume {job.id}")


# --- watching migrations -----------------------------------------------------------------

migrations_app = typer.Typer(help="Watch, pause and cancel migrations.", no_args_is_help=True)


@migrations_app.command("list")
def migrations_list(as_json: JsonOpt = False) -> None:
    """Migrations, newest first."""
    _, ledger = _wiring()
    jobs = ledger.jobs(JobKind.MIGRATION)
    if as_json:
        _print_json({"items": [job_doc(j) for j in jobs]})
        return
    table = Table("migration", "created", "state", "from", "to", "planned", "settled")
    for j in jobs:
        table.add_row(
            j.id,
            f"{j.created_at:%Y-%m-%d %H:%M}",
            j.state.value,
            str(j.params.get("from")),
            str(j.params.get("to")),
            str(j.progress.get("planned", "-")),
            str(j.progress.get("settled", "-")),
        )
    out.print(table)


@migrations_app.command("show")
def migrations_show(job_id: str, as_json: JsonOpt = False) -> None:
    """One migration: plan, progress and report."""
    _, ledger = _wiring()
    job = ledger.job(job_id)
    if job is None or job.kind is not JobKind.MIGRATION:
        raise _fail(f"no migration {job_id}")
    if as_json:
        _print_json(job_doc(job))
    else:
        _print_migration(job)


def _set_state(job_id: str, state: JobState) -> None:
    _, ledger = _wiring()
    job = ledger.job(job_id)
    if job is None or job.kind is not JobKind.MIGRATION:
        raise _fail(f"no migration {job_id}")
    try:
        saved = ledger.save_job(job.moved_to(state))
    except DomainError as exc:
        raise _fail(exc.detail) from None
    out.print(f"migration {saved.id} is now {saved.state.value}")


@migrations_app.command("pause")
def migrations_pause(job_id: str) -> None:
    """Stop after the current round; resume with `orgguard migrate --resume ID`."""
    _set_state(job_id, JobState.PAUSED)


@migrations_app.command("cancel")
def migrations_cancel(job_id: str) -> None:
    """Record no further moves; the moves already decided are still carried out by the outbox."""
    _set_state(job_id, JobState.CANCELLED)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
    app.command("migrate")(migrate)
    app.add_typer(migrations_app, name="migrations")
