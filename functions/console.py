"""``orgguard``, the console entry point: the core's command line plus the commands that host OrgGuard here.

``serve`` runs the same ASGI app as Azure (``functions/``) with the background work,
and with ``--sandbox`` the simulated orgs too; ``sandbox`` runs those alone. They live
here, among the entry points, because the core (``shared/``) never imports
``functions/`` or ``sandbox/`` (the import contracts in ``pyproject.toml``). Neither
command ships to Azure: ``.funcignore`` leaves the command line out of the package.
"""

from __future__ import annotations

import json
import secrets
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.cli.app import app
from shared.cli.terminal import LOCAL_DIR, fail, out
from shared.domain.model import DomainError

SANDBOX_SENDER = "orgguard@contoso.com"  # the sandbox seeds this mailbox in its Graph
SANDBOX_ORGS = {
    "contoso-na": "3f0e6c1a-5b7d-4e2a-9c11-2a6f0b8d4e01",
    "contoso-jp": "8a2d4f60-1c3b-4f7e-b5a9-7d0c9e2f6a12",
    "contoso-eu": "c47b9e23-6d5a-4b18-8e3f-5f1a2c7d9b34",
}
SANDBOX_TYPES = {"contoso-na": "production", "contoso-jp": "production", "contoso-eu": "sandbox"}  # as it discovers


# --- local set-up --------------------------------------------------------------------


def ensure_local_setup(sandbox_url: str, directory: Path = LOCAL_DIR) -> dict[str, str]:
    """Write the local orgs file, keys, admin token and policy once; return them as settings for what the
    environment leaves unset."""
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
            f"    type: {SANDBOX_TYPES[name]}",
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
        "ORGGUARD_LEDGER": f"sqlite:///{directory}/ledger.db",
    }


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for OrgGuard's API.")] = 7071,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Also run the simulated orgs.")] = False,
    no_sandbox: Annotated[bool, typer.Option("--no-sandbox", hidden=True)] = False,
    sandbox_port: Annotated[int, typer.Option(help="Port of the simulated orgs.")] = 7072,
    ledger: Annotated[str | None, typer.Option(help="Ledger URL (sqlite:///... or tables:...).")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file the ledger starts from.")] = None,
    orgs: Annotated[Path | None, typer.Option(help="Registered orgs file.")] = None,
) -> None:
    """Run the local host: admin API, gate, event intake and dashboard on one port.

    With --sandbox it also runs three simulated orgs and registers OrgGuard's gate
    and event endpoints in each, the way `orgguard register` does for real orgs.
    Settings from the environment (ORGGUARD_ADMIN_TOKEN, ORGGUARD_POLICY, ...) win
    over the ones it writes under .orgguard/.
    """
    import asyncio
    from contextlib import ExitStack

    import uvicorn

    from functions.local_host import create_local_app
    from shared import bootstrap
    from shared.config.environment import environment
    from shared.config.settings import Settings
    from shared.dataverse.port import DataverseError

    if sandbox and no_sandbox:
        raise fail("give --sandbox or --no-sandbox, not both", 2)
    _check_ports(host, port, sandbox_port if sandbox else None)
    environ = environment()
    token_in_env = bool(environ.get("ORGGUARD_ADMIN_TOKEN"))
    with ExitStack() as stack:
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        if sandbox:
            from sandbox.server import running

            try:  # OrgGuard listens on a loopback port, not 80/443: the sandbox's visible exception for that
                sandbox_url = stack.enter_context(running(port=sandbox_port, loopback_webhooks=True))
            except OSError as exc:  # taken between the check and now
                raise fail(_port_taken("127.0.0.1", sandbox_port, "--sandbox-port", exc)) from None
            out.print(f"[bold]sandbox[/bold] orgs on {sandbox_url}/orgs/<name>/api/data/v9.2/", markup=True)
        # What the environment leaves unset comes from .orgguard/ and, with --sandbox, the sandbox's Graph;
        # the command's options win over both. Nothing is written into the environment.
        local = orgs is None and not environ.get("ORGGUARD_ORGS")
        defaults = ensure_local_setup(sandbox_url) if local else {}
        defaults = {"ORGGUARD_BUS": f"sqlite:///{LOCAL_DIR}/bus.db", **defaults}  # the local work queue
        if sandbox:  # the sandbox's Graph: users for user.* conditions, and sendMail for notices
            defaults |= {
                "ORGGUARD_GRAPH_URL": f"{sandbox_url}/graph/v1.0",
                "ORGGUARD_MAIL_FROM": SANDBOX_SENDER,
                "ORGGUARD_PUBLIC_URL": f"http://{host}:{port}",
                "ORGGUARD_DISCOVERY_URL": f"{sandbox_url}/discovery",  # the sandbox's own discovery service
            }
        options = {"ORGGUARD_LEDGER": ledger, "ORGGUARD_POLICY": policy, "ORGGUARD_ORGS": orgs}
        chosen = {name: str(value) for name, value in options.items() if value is not None}
        try:
            settings = Settings.from_env({**environ, **chosen}, under=defaults)
            container = bootstrap.build(settings)
        except DomainError as exc:
            raise fail(exc.detail) from None
        if sandbox and local:  # the CLI, run from here, reads users and queues mail as this host does
            used = {"ORGGUARD_GRAPH_URL": settings.graph_url, "ORGGUARD_MAIL_FROM": settings.mail_from,
                    "ORGGUARD_PUBLIC_URL": settings.public_url,
                    "ORGGUARD_DISCOVERY_URL": settings.discovery_url}  # fmt: skip
            (LOCAL_DIR / "graph.json").write_text(json.dumps({k: v for k, v in used.items() if v}), encoding="utf-8")
        stack.callback(container.close)
        bootstrap.install(container)
        base = f"http://{host}:{port}"
        if sandbox:
            try:
                results = asyncio.run(container.register(container.orgs.names, base))
            except (DomainError, DataverseError) as exc:
                raise fail(f"registering OrgGuard in the simulated orgs failed: {exc}") from None
            for result in results:
                out.print(
                    f"  registered in {result.org}: {len(result.created)} created, "
                    f"{len(result.updated)} updated, {len(result.unchanged)} unchanged"
                )
        _banner(container, base, token_in_env)
        uvicorn.run(create_local_app(container), host=host, port=port, log_level="warning")


def _check_ports(host: str, port: int, sandbox_port: int | None) -> None:
    """Both ports free before anything starts, or one line saying which is taken and how to choose another."""
    if sandbox_port is not None and sandbox_port == port and port != 0:
        raise fail(f"--port and --sandbox-port are both {port}; give them different ports", 2)
    for where, number, option in ((host, port, "--port"), ("127.0.0.1", sandbox_port, "--sandbox-port")):
        if not number:
            continue
        try:
            family, kind, proto, _, address = socket.getaddrinfo(where, number, type=socket.SOCK_STREAM)[0]
        except socket.gaierror as exc:
            raise fail(f"cannot listen on {where}: {exc.strerror}", 2) from None
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind(address)
            except OSError as exc:
                raise fail(_port_taken(where, number, option, exc)) from None


def _port_taken(host: str, port: int, option: str, exc: OSError) -> str:
    return (
        f"port {port} on {host} is taken ({exc.strerror or exc}; another `make run`?): choose another with "
        f"{option} N, e.g. orgguard serve --sandbox --port 8071 --sandbox-port 8072 "
        "(make run PORT=8071 SANDBOX_PORT=8072)"
    )


def _banner(container: Any, base: str, token_in_env: bool) -> None:
    out.print(f"[bold]OrgGuard[/bold] on {base}  (dashboard {base}/ · API docs {base}/api/docs)", markup=True)
    out.print(f"  gate    POST {base}/api/dataverse/gate   (header x-orgguard-key)")
    out.print(f"  ledger  {container.settings.ledger}")
    out.print(f"  orgs    {', '.join(container.orgs.names)}")
    s = container.settings
    out.print(f"  graph   {s.graph_url or 'none (user.* conditions never match, nobody is mailed)'}")
    if s.mail_from and s.graph_url and "/graph/" in s.graph_url:  # the sandbox's Graph keeps what it was sent
        out.print(f"  mail    from {s.mail_from}; sent mail at {s.graph_url.split('/graph/')[0]}/_sandbox/mail")
    elif s.mail_from:
        out.print(f"  mail    from {s.mail_from}")
    token = container.settings.admin_token
    if token and token_in_env:  # the operator's own: not printed again
        out.print("  admin token  from ORGGUARD_ADMIN_TOKEN in the environment")
        out.print(f'  try: curl -H "Authorization: Bearer $ORGGUARD_ADMIN_TOKEN" {base}/api/cases')
    elif token:
        out.print(f"  admin token  {token}  (from {LOCAL_DIR / 'admin-token'}, written once)")
        out.print(f"  try: curl -H 'Authorization: Bearer {token}' {base}/api/cases")
    out.print(f"  CLI     orgguard cases list --url {base}   (or the ledger directly, without --url)")
    out.print(f"  discover  orgguard discover   (the Global Discovery Service at {s.discovery_url})")
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
