"""The ``orgguard`` command: the local host, case work, policy and audit from a terminal.

Exit codes: 0 success, 1 failure (a refused or failed operation), 2 bad usage.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shared.model import CaseQuery, CaseState, ClaimKind, DomainError, MailboxKey
from shared.policy import PolicyError

app = typer.Typer(
    help="OrgGuard: one owner org per Exchange mailbox, governed and audited.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cases_app = typer.Typer(help="Work on recorded cases.", no_args_is_help=True)
policy_app = typer.Typer(help="Validate and explain policies.", no_args_is_help=True)
audit_app = typer.Typer(help="Check the audit log.", no_args_is_help=True)
app.add_typer(cases_app, name="cases")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")

out = Console(soft_wrap=True)
err = Console(stderr=True)

LOCAL_DIR = Path(".orgguard")
SANDBOX_ORGS = {
    "contoso-na": "3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01",
    "contoso-jp": "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12",
    "contoso-eu": "c47b9e23-6d5a-4b18-8e3f-5f1a2c7d9b34",
}
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _container() -> Any:
    from shared import bootstrap

    local = LOCAL_DIR / "orgs.yaml"
    if not os.environ.get("ORGGUARD_ORGS") and not Path("orgs.yaml").exists() and local.exists():
        os.environ["ORGGUARD_ORGS"] = str(local)
        os.environ.setdefault("ORGGUARD_POLICY", str(LOCAL_DIR / "policy.yaml"))
    try:
        return bootstrap.container()
    except DomainError as exc:
        raise fail(exc.detail) from None


def _case_id(service: Any, given: str) -> str:
    """A full case id, or the unique case whose id starts with ``given`` (the list shows 8 characters)."""
    if len(given) >= 36:
        return given
    matches = [c.id for c in service.cases(CaseQuery(limit=500)).items if c.id.startswith(given)]
    if len(matches) == 1:
        return str(matches[0])
    raise fail(f"no case starts with {given!r}" if not matches else f"{given!r} names several cases; give more")


def _print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


# --- local set-up --------------------------------------------------------------------


def ensure_local_setup(sandbox_url: str, directory: Path = LOCAL_DIR) -> dict[str, str]:
    """Write the local orgs file, keys, admin token and policy once; return the env to use."""
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "admin-token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(32), encoding="utf-8")
        token_file.chmod(0o600)
    orgs_file = directory / "orgs.yaml"
    keys_file = directory / "keys.json"
    if not keys_file.exists():
        keys_file.write_text(json.dumps({n: secrets.token_urlsafe(24) for n in SANDBOX_ORGS}), encoding="utf-8")
        keys_file.chmod(0o600)
    keys = json.loads(keys_file.read_text(encoding="utf-8"))
    lines = ["# Written by `orgguard serve` for the local sandbox. Keys live in keys.json beside it.", "orgs:"]
    for name, org_id in SANDBOX_ORGS.items():
        lines += [
            f"  - name: {name}",
            f"    id: {org_id}",
            f"    url: {sandbox_url}/orgs/{name}",
            f"    webhook_key: {keys[name]}",
        ]
    orgs_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    orgs_file.chmod(0o600)
    policy_file = directory / "policy.yaml"
    example = Path(__file__).resolve().parent.parent / "examples" / "policy.yaml"
    if not policy_file.exists() and example.exists():
        policy_file.write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    return {
        "ORGGUARD_ORGS": str(orgs_file),
        "ORGGUARD_POLICY": str(policy_file),
        "ORGGUARD_ADMIN_TOKEN": token_file.read_text(encoding="utf-8").strip(),
        "ORGGUARD_LEDGER": os.environ.get("ORGGUARD_LEDGER", f"sqlite:///{directory}/ledger.db"),
    }


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for OrgGuard's API.")] = 7071,
    sandbox: Annotated[bool, typer.Option("--sandbox/--no-sandbox", help="Also run the simulated orgs.")] = False,
    sandbox_port: Annotated[int, typer.Option(help="Port of the simulated orgs.")] = 7072,
    ledger: Annotated[str | None, typer.Option(help="Ledger URL (sqlite:///... or tables:...).")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file the ledger starts from.")] = None,
    orgs: Annotated[Path | None, typer.Option(help="Registered orgs file.")] = None,
) -> None:
    """Run the local host: admin API, gate, event intake and dashboard on one port.

    With --sandbox it also runs three simulated orgs and registers OrgGuard's gate
    and event endpoints in each, the way `orgguard register` does for real orgs.
    """
    import asyncio
    from contextlib import ExitStack

    import uvicorn

    from functions.local_host import create_local_app
    from shared import bootstrap
    from shared.registration import register_orgs
    from shared.settings import Settings

    with ExitStack() as stack:
        if sandbox:
            from sandbox.server import running

            # OrgGuard listens on a loopback port, not 80/443: the sandbox's visible exception for that
            sandbox_url = stack.enter_context(running(port=sandbox_port, loopback_webhooks=True))
            out.print(f"[bold]sandbox[/bold] orgs on {sandbox_url}/orgs/<name>/api/data/v9.2/")
        if orgs is None and not os.environ.get("ORGGUARD_ORGS"):
            os.environ.update(ensure_local_setup(f"http://127.0.0.1:{sandbox_port}"))
        for name, value in (("ORGGUARD_LEDGER", ledger), ("ORGGUARD_POLICY", policy), ("ORGGUARD_ORGS", orgs)):
            if value is not None:
                os.environ[name] = str(value)
        try:
            container = bootstrap.build(Settings.from_env())
        except DomainError as exc:
            raise fail(exc.detail) from None
        stack.callback(container.close)
        bootstrap.install(container)
        base = f"http://{host}:{port}"
        if sandbox:
            for result in asyncio.run(register_orgs(container.orgs, container.orgs.names, base)):
                out.print(
                    f"  registered in {result.org}: {len(result.created)} created, "
                    f"{len(result.updated)} updated, {len(result.unchanged)} unchanged"
                )
        _banner(container, base)
        uvicorn.run(create_local_app(container), host=host, port=port, log_level="warning")


def _banner(container: Any, base: str) -> None:
    out.print(f"[bold]OrgGuard[/bold] on {base}  (dashboard {base}/ · API docs {base}/api/docs)")
    out.print(f"  gate    POST {base}/api/dataverse/gate   (header x-orgguard-key)")
    out.print(f"  ledger  {container.settings.ledger}")
    out.print(f"  orgs    {', '.join(container.orgs.names)}")
    if container.settings.admin_token:
        out.print(f"  admin token  {container.settings.admin_token}")
        out.print(f"  try: curl -H 'Authorization: Bearer {container.settings.admin_token}' {base}/api/cases")
    out.print("Ctrl-C stops it.")


@app.command("sandbox")
def sandbox_cmd(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7072,
    mailboxes: Annotated[int, typer.Option(min=1, help="Mailbox rows per org.")] = 60,
    overlap: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of mailboxes also in other orgs.")] = 0.3,
    orgs: Annotated[int, typer.Option(min=1, max=50, help="How many simulated orgs.")] = 3,
) -> None:
    """Run the simulated orgs alone (Dataverse Web API, Exchange, Graph) until Ctrl-C."""
    from sandbox.server import run

    out.print(f"sandbox on http://127.0.0.1:{port}/orgs/<name>/api/data/v9.2/  (control: /_sandbox/)")
    run(port=port, mailboxes=mailboxes, overlap=overlap, orgs=orgs)


@app.command()
def register(
    org: Annotated[list[str], typer.Option("--org", help="Org name from the orgs file (repeat for several).")],
    url: Annotated[str, typer.Option(help="OrgGuard's public base URL, e.g. https://orgguard.azurewebsites.net")],
    as_json: JsonOpt = False,
) -> None:
    """Create or update (idempotently) OrgGuard's service endpoints, steps and images in each org."""
    import asyncio

    from shared.dataverse import DataverseError
    from shared.registration import register_orgs

    if not url.startswith(("https://", "http://127.", "http://localhost")):
        raise fail("--url must be https (plain http only on loopback)", 2)
    container = _container()
    try:
        results = asyncio.run(register_orgs(container.orgs, org, url.rstrip("/")))
    except (DomainError, DataverseError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        _print_json(
            [{"org": r.org, "created": r.created, "updated": r.updated, "unchanged": r.unchanged} for r in results]
        )
        return
    for r in results:
        out.print(f"{r.org}: {len(r.created)} created, {len(r.updated)} updated, {len(r.unchanged)} unchanged")


# --- cases -----------------------------------------------------------------------------


@cases_app.command("list")
def cases_list(
    state: Annotated[CaseState | None, typer.Option(help="Only cases in this state.")] = None,
    org: Annotated[str | None, typer.Option(help="Only cases where this org is owner or claimant.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List cases, newest first."""
    from shared.views import case_view

    try:
        page = _container().service.cases(CaseQuery(state=state, org=org, limit=limit))
    except DomainError as exc:
        raise fail(exc.detail) from None
    if as_json:
        _print_json({"items": [case_view(c) for c in page.items], "next": page.next})
        return
    table = Table("case", "created", "mailbox", "owner", "claimant", "effect", "state")
    for c in page.items:
        table.add_row(
            c.id[:8],
            c.created_at.strftime("%Y-%m-%d %H:%M"),
            c.key.address,
            c.owner or "-",
            c.claimant,
            c.decision.effect.value + (" (dry-run)" if c.decision.dry_run else ""),
            c.state.value,
        )
    out.print(table)


@cases_app.command("show")
def cases_show(case_id: str, as_json: JsonOpt = False) -> None:
    """Show one case with its decision, actions and history."""
    from shared.views import case_view

    try:
        service = _container().service
        case = service.case(_case_id(service, case_id))
    except DomainError as exc:
        raise fail(exc.detail) from None
    doc = case_view(case)
    if as_json:
        _print_json(doc)
        return
    out.print(f"[bold]case {case.id}[/bold]  {case.state.value}")
    out.print(f"mailbox {case.key}  owner {case.owner or '-'}  claimant {case.claimant}")
    out.print(f"decision {case.decision.effect.value} by {case.decision.rule}: {case.decision.explanation}")
    for a in case.actions:
        out.print(
            f"  action {a.kind.value} in {a.org}: {a.status.value} ({a.attempts} attempt(s))"
            + (f" - {a.last_error}" if a.last_error else "")
        )
    for h in case.history:
        out.print(f"  {h.at:%Y-%m-%d %H:%M:%S} {h.state.value:<8} {h.actor}: {h.note}")


def _resolve(case_id: str, reason: str, approve: bool, as_json: bool) -> None:
    from shared.views import case_view

    service = _container().service
    actor = f"cli:{os.environ.get('USER', 'operator')}"
    try:
        case = (service.approve if approve else service.deny)(_case_id(service, case_id), actor=actor, reason=reason)
    except DomainError as exc:
        raise fail(exc.detail) from None
    if as_json:
        _print_json(case_view(case))
    else:
        out.print(f"case {case.id} is now {case.state.value}")


@cases_app.command("approve")
def cases_approve(
    case_id: str, reason: Annotated[str, typer.Option(help="Why (recorded).")], as_json: JsonOpt = False
) -> None:
    """Approve a held case: the claimant becomes the owner."""
    _resolve(case_id, reason, True, as_json)


@cases_app.command("deny")
def cases_deny(
    case_id: str, reason: Annotated[str, typer.Option(help="Why (recorded).")], as_json: JsonOpt = False
) -> None:
    """Deny a held case: the owner keeps the mailbox, the claimant is demoted."""
    _resolve(case_id, reason, False, as_json)


# --- policy ----------------------------------------------------------------------------


@policy_app.command("validate")
def policy_validate(file: Path, as_json: JsonOpt = False) -> None:
    """Check a policy file; print every error with its path."""
    from shared.policy import load_policy

    if not file.exists():
        raise fail(f"{file} does not exist", 2)
    try:
        policy = load_policy(file.read_text(encoding="utf-8"))
    except PolicyError as exc:
        if as_json:
            _print_json({"ok": False, "errors": exc.errors})
        else:
            for e in exc.errors:
                err.print(f"[red]{e['path'] or '(top)'}[/red]: {e['message']}")
        raise typer.Exit(1) from None
    if as_json:
        _print_json({"ok": True, "version": policy.version, "rules": len(policy.rules)})
    else:
        out.print(f"{file}: valid (version {policy.version}, {len(policy.rules)} rule(s), mode {policy.mode})")


@policy_app.command("explain")
def policy_explain(
    mailbox: Annotated[str, typer.Option(help="The mailbox address.")],
    claimant: Annotated[str, typer.Option(help="The org that claims it.")],
    owner: Annotated[str | None, typer.Option(help="The owner (default: the ledger's).")] = None,
    kind: Annotated[ClaimKind, typer.Option(help="The kind of claim.")] = ClaimKind.TEST_ENABLE,
    as_json: JsonOpt = False,
) -> None:
    """Say what the current policy would decide, rule by rule; records nothing."""
    from shared.model import Origin
    from shared.policy import Situation, explain

    try:
        key = MailboxKey.parse(mailbox)
        service = _container().service
        decision = service.evaluate(key, claimant, owner, kind)
        current = owner or (o.owner if (o := service.ledger.mailbox(key).ownership) else None)
        trace = explain(
            service.policy(),
            Situation(
                key=key, claimant=claimant, owner=current, origin=Origin.ADMIN, kind=kind, user={}, now=service.clock()
            ),
        )
    except DomainError as exc:
        raise fail(exc.detail) from None
    if as_json:
        _print_json(
            {
                "effect": decision.effect.value,
                "rule": decision.rule,
                "explanation": decision.explanation,
                "dry_run": decision.dry_run,
                "trace": trace,
            }
        )
        return
    for line in trace:
        out.print(f"  {line}")
    out.print(f"[bold]{decision.effect.value}[/bold] ({decision.rule}): {decision.explanation}")


# --- audit -----------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False) -> None:
    """Recompute the audit log's hash chain; exit 1 if history was changed."""
    ok, entries, reason = _container().service.verify_audit()
    if as_json:
        _print_json({"ok": ok, "entries": entries, "reason": reason})
    elif ok:
        out.print(f"audit log intact: {entries} entries")
    else:
        err.print(f"[red]audit log broken[/red] after {entries} entries: {reason}")
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    app()


from shared import cli_jobs  # noqa: E402

cli_jobs.register(app)

if __name__ == "__main__":
    main()
