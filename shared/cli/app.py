"""The ``orgguard`` command: registration, case work, jobs, policy and audit from a terminal.

Exit codes: 0 success, 1 failure (a refused or failed operation), 2 bad usage
(``shared.cli.terminal``). The case and job commands (``shared.cli.cases``,
``shared.cli.jobs``) work on the local ledger or, with ``--url``, through the API.
The commands that host OrgGuard on this machine (``serve``, ``sandbox``) are added by
``functions/console.py``, the console entry point: they run the HTTP app of
``functions/`` and the sandbox, which the core never imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from shared.cli.terminal import JsonOpt, err, exit_code, fail, out, print_json, reported
from shared.cli.terminal import container as _container
from shared.domain.model import ClaimKind, DomainError, MailboxKey
from shared.domain.policy import PolicyError

app = typer.Typer(
    help="OrgGuard: one owner org per Exchange mailbox, governed and audited.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(help="Validate and explain policies.", no_args_is_help=True)
audit_app = typer.Typer(help="Check the audit log.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"orgguard {version('orgguard')}")
        except PackageNotFoundError:
            out.print("orgguard (not installed: run `make lint` or `pip install -e .`)")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """OrgGuard: one owner org per Exchange mailbox, governed and audited."""


@app.command()
def register(
    org: Annotated[list[str], typer.Option("--org", help="Org name from the orgs file (repeat for several).")],
    url: Annotated[str, typer.Option(help="OrgGuard's public base URL, e.g. https://orgguard.azurewebsites.net")],
    check: Annotated[
        bool,
        typer.Option("--check", help="Only compare what is registered with what register writes; exit 1 on drift."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create or update (idempotently) OrgGuard's service endpoints, steps and images in each org.

    With --check nothing is written: each org's endpoints, steps and images are compared with what
    register would write (present, enabled, as registered), and the command exits 1 if any differ.
    """
    import asyncio

    from shared.cli.api_client import check_url
    from shared.dataverse.port import DataverseError
    from shared.dataverse.registration import webhook_port_refused

    with reported():
        url = check_url(url)
    container = _container()
    for name in org:
        try:
            refused = webhook_port_refused(url, container.orgs.get(name))
        except DomainError as exc:
            raise fail(str(exc)) from None
        if refused:
            raise fail(refused, 2)
    if check:
        _check_registration(container, org, url.rstrip("/"), as_json=as_json)
        return
    try:
        results = asyncio.run(container.register(org, url.rstrip("/")))
    except (DomainError, DataverseError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json(
            [{"org": r.org, "created": r.created, "updated": r.updated, "unchanged": r.unchanged} for r in results]
        )
        return
    for r in results:
        out.print(f"{r.org}: {len(r.created)} created, {len(r.updated)} updated, {len(r.unchanged)} unchanged")


def _check_registration(container: Any, names: list[str], url: str, *, as_json: bool) -> None:
    """``register --check``: what differs in each org, and exit 1 when anything does (or an org cannot be read)."""
    import asyncio

    try:
        found = asyncio.run(container.check_registration(names, url))
    except DomainError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json([{**r.doc(), "repair": None if r.ok else r.repair(url)} for r in found])
    else:
        for r in found:
            if r.ok:
                out.print(f"{r.org}: as registered (gate and events present and enabled)")
                continue
            err.print(f"{r.org}: {r.error or 'not as registered'}", markup=False)
            for d in r.drift:
                err.print(f"  {d.part.value}: {d.record} {d.kind.value}: {d.detail}", markup=False)
            if not r.error:
                err.print(f"  repair: {r.repair(url)}", markup=False)
    if not all(r.ok for r in found):
        raise typer.Exit(1)


# --- policy ----------------------------------------------------------------------------


@policy_app.command("validate")
def policy_validate(file: Path, as_json: JsonOpt = False) -> None:
    """Check a policy file as `PUT /api/policy` does (org names against the registered orgs); print every error."""
    from shared.service.orgguard import check_policy

    if not file.is_file():
        raise fail(f"{file} does not exist", 2)
    text = file.read_text(encoding="utf-8")
    try:
        policy = check_policy(text, _container().orgs)
    except PolicyError as exc:
        if as_json:
            print_json({"ok": False, "errors": exc.errors})
        else:
            for e in exc.errors:
                err.print(f"[red]{escape(e['path'] or '(top)')}[/red]: {escape(e['message'])}", markup=True)
        raise typer.Exit(1) from None
    warnings = _policy_warnings(policy)
    if as_json:
        print_json({"ok": True, "version": policy.version, "rules": len(policy.rules), "warnings": warnings})
    else:
        out.print(f"{file}: valid (version {policy.version}, {len(policy.rules)} rule(s), mode {policy.mode})")
        for warning in warnings:
            err.print(f"[yellow]warning[/yellow]: {escape(warning)}", markup=True)


def _policy_warnings(policy: Any) -> list[str]:
    """What the policy will not do with this environment's settings (no Graph, no mail)."""
    from shared.cli.terminal import settings as local_settings
    from shared.domain.policy import policy_warnings

    try:
        settings = local_settings()
    except DomainError as exc:
        return [f"the settings are invalid, so Graph and mail count as absent: {exc.detail}"]
    return policy_warnings(policy, directory=bool(settings.graph_url), mail=settings.mail)


@policy_app.command("explain")
def policy_explain(
    mailbox: Annotated[str, typer.Option(help="The mailbox address.")],
    claimant: Annotated[str, typer.Option(help="The org that claims it.")],
    owner: Annotated[str | None, typer.Option(help="The owner (default: the ledger's).")] = None,
    kind: Annotated[ClaimKind, typer.Option(help="The kind of claim.")] = ClaimKind.TEST_ENABLE,
    as_json: JsonOpt = False,
) -> None:
    """Say what the current policy would decide, rule by rule; records nothing."""
    try:
        key = MailboxKey.parse(mailbox)
        service = _container().service
        decision, trace = service.explain(key, claimant, owner, kind)
        warnings = service.policy_warnings()
    except DomainError as exc:
        raise fail(exc.detail, exit_code(exc.status)) from None
    if as_json:
        print_json(
            {
                "effect": decision.effect.value,
                "rule": decision.rule,
                "explanation": decision.explanation,
                "dry_run": decision.dry_run,
                "trace": trace,
                "warnings": warnings,
            }
        )
        return
    for line in trace:
        out.print(f"  {line}")
    out.print(
        f"[bold]{decision.effect.value}[/bold] ({escape(decision.rule)}): {escape(decision.explanation)}", markup=True
    )
    for warning in warnings:
        err.print(f"[yellow]warning[/yellow]: {escape(warning)}", markup=True)


# --- audit -----------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False) -> None:
    """Recompute the audit log's hash chain; exit 1 if history was changed."""
    ok, entries, reason = _container().service.verify_audit()
    if as_json:
        print_json({"ok": ok, "entries": entries, "reason": reason})
    elif ok:
        out.print(f"audit log intact: {entries} entries")
    else:
        err.print(f"[red]audit log broken[/red] after {entries} entries: {escape(str(reason))}", markup=True)
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    app()


from shared.cli import cases as cli_cases  # noqa: E402
from shared.cli import deadletters as cli_deadletters  # noqa: E402
from shared.cli import discovery as cli_discovery  # noqa: E402
from shared.cli import governance as cli_governance  # noqa: E402
from shared.cli import jobs as cli_jobs  # noqa: E402

cli_cases.register(app)
cli_jobs.register(app)
cli_deadletters.register(app)
cli_governance.register(app, policy_app)
cli_discovery.install(app)

if __name__ == "__main__":
    main()
