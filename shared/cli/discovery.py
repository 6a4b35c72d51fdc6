"""``orgguard discover``: every environment of the tenant, and registering the chosen ones in one step.

It asks the Dataverse Global Discovery Service as the operator (``az login``; ``ORGGUARD_DISCOVERY_URL``), and
with ``--register`` writes the chosen orgs into the orgs file (a new webhook key each, their type) and registers
OrgGuard in each, as ``orgguard register`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from shared.cli.render import table
from shared.cli.terminal import JsonOpt, container, err, fail, out, print_json, reported, settings


def discover(
    register: Annotated[
        list[str] | None, typer.Option("--register", help="Register this environment (its name, unique name or id).")
    ] = None,
    url: Annotated[str | None, typer.Option(help="OrgGuard's public base URL, for --register.")] = None,
    discovery_url: Annotated[
        str | None,
        typer.Option(help="The Global Discovery Service [default: ORGGUARD_DISCOVERY_URL, or the commercial cloud's]."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List every environment of the tenant (Dataverse Global Discovery Service), registered or not; with
    --register, add the chosen ones to the orgs file with new webhook keys and register OrgGuard in each."""
    import asyncio

    from shared.bootstrap import discovery_directory
    from shared.dataverse.port import DataverseError
    from shared.service.discovery import discover as find
    from shared.service.discovery import discovered_view

    if register and not url:
        raise fail("--register needs --url, OrgGuard's public base URL the orgs will call", 2)
    with reported():
        base = _discovery_base(discovery_url)
        registry = _registry()

        async def listed() -> Any:
            directory = discovery_directory(base, client_id=settings().azure_client_id)
            try:
                return await find(directory, registry)
            finally:
                await directory.aclose()

        try:
            found = asyncio.run(listed())
        except DataverseError as exc:
            raise fail(f"the discovery service at {base} failed: {exc}") from None
    if register:
        _register(found, register, url or "")
        return
    if as_json:
        print_json({"discovery": base, "environments": [discovered_view(d) for d in found]})
        return
    grid = table("environment", "name", "type", "state", "registered as", "url")
    for d in found:
        doc = discovered_view(d)
        grid.add_row(doc["friendly_name"], doc["name"], doc["type"] or f"- ({doc['organization_type']})",
                     doc["state"], doc["registered_as"] or "not registered", doc["url"])  # fmt: skip
    out.print(grid)
    waiting = [d.environment.name for d in found if d.registered_as is None and d.environment.enabled]
    out.print(f"{len(found)} environment(s), {len(found) - len(waiting)} registered")
    if waiting:
        out.print(f"register them: orgguard discover --register {' --register '.join(waiting)} --url <OrgGuard URL>")


def _discovery_base(option: str | None) -> str:
    """The discovery service: the option (checked as ORGGUARD_DISCOVERY_URL is), else the setting."""
    from shared.config.settings import Settings

    if option is None:
        return settings().discovery_url
    return Settings.from_env({"ORGGUARD_DISCOVERY_URL": option}).discovery_url


def _registry() -> Any:
    """The registered orgs; none yet when the orgs file does not exist (a tenant OrgGuard hears nothing of yet)."""
    from shared.config.orgs import load_orgs
    from shared.config.settings import inline_document
    from shared.domain.orgs import OrgRegistry

    setting = settings().orgs
    if inline_document(setting) is None and not Path(setting).exists():
        return OrgRegistry([])
    return load_orgs(setting)


def _register(found: list[Any], wanted: list[str], url: str) -> None:
    import asyncio

    from shared.cli.api_client import check_url
    from shared.config.orgs_file import add_orgs, writable
    from shared.dataverse.port import DataverseError
    from shared.domain.environments import choose
    from shared.domain.model import DomainError
    from shared.service.discovery import entries_for

    with reported():
        base = check_url(url)
        chosen = choose(found, wanted)
        path = writable(settings().orgs)
        taken = {d.registered_as for d in found if d.registered_as} | set(_registry().names)
        entries = entries_for(chosen, taken)
        registry, kept = add_orgs(path, entries)
    for entry in entries:
        out.print(f"{entry.name}: added to {path} (type {entry.type or 'unknown'}, a new webhook key)")
    if not kept:
        err.print(f"[yellow]note[/yellow]: {escape(str(path))} was written again from its contents; its comments "
                  "are gone", markup=True)  # fmt: skip
    try:
        results = asyncio.run(container().register([e.name for e in entries], base, orgs=registry))
    except (DataverseError, DomainError, OSError) as exc:
        names = " ".join(f"--org {e.name}" for e in entries)
        raise fail(f"registering OrgGuard failed ({exc}); the orgs file has them: orgguard register {names} "
                   f"--url {base}") from None  # fmt: skip
    for r in results:
        out.print(f"{r.org}: {len(r.created)} created, {len(r.updated)} updated, {len(r.unchanged)} unchanged")
    out.print("restart OrgGuard (or redeploy ORGGUARD_ORGS in Azure) so it hears the new orgs")


def install(app: typer.Typer) -> None:
    app.command("discover")(discover)
