"""What every ``orgguard`` command shares: the consoles, JSON output, the one error boundary, and the way in.

Exit codes: 0 success; 2 bad usage (the command line, or an input OrgGuard refuses as
invalid: HTTP 400/422); 1 any other failure (refused, not found, conflict, unreachable).
An error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import atexit
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.config.settings import OperatorSettings, Settings
from shared.domain.model import DomainError
from shared.ledger.port import LedgerError

if TYPE_CHECKING:
    from shared.bootstrap import Container
    from shared.cli.operations import Operations

# Markup off: cases, reasons and org errors are data, and "[/x]" in a reason must not break a command.
# The few styled lines ask for markup and escape what they interpolate.
out = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)

LOCAL_DIR = Path(".orgguard")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _url_or_setting(value: str | None) -> str | None:
    return value or operator().url


UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        callback=_url_or_setting,
        help="Go through this OrgGuard's API (your role applies) instead of the local ledger [default: ORGGUARD_URL].",
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(code)


def exit_code(status: int) -> int:
    """Bad input (400, 422) is bad usage; anything else refused or failed is a failure."""
    return 2 if status in (400, 422) else 1


@contextmanager
def reported() -> Iterator[None]:
    """The one place a command's errors become a line on stderr and an exit code."""
    try:
        yield
    except DomainError as exc:
        raise fail(exc.detail, exit_code(exc.status)) from None
    except LedgerError as exc:
        raise fail(f"the ledger is unavailable: {exc}") from None


def print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def listing(doc: Mapping[str, Any], as_json: bool, render: Callable[[list[Any]], Table], summary: str | None) -> None:
    """A list command's answer: the whole document as JSON, or its items as a table and a line saying how many."""
    if as_json:
        print_json(doc)
        return
    if doc["items"]:
        out.print(render(doc["items"]))
    if summary is not None:
        out.print(summary)


def operator() -> OperatorSettings:
    """The operator's shell: ORGGUARD_URL, ORGGUARD_API_SCOPE, ORGGUARD_ADMIN_TOKEN, USER."""
    return OperatorSettings.from_env()


def actor() -> str:
    return f"cli:{operator().user}"


def settings() -> Settings:
    """The app's settings for a command on the local ledger: the environment's, and run from the project folder
    after ``make run``, what ``serve`` left in ``.orgguard/`` for the ones the environment leaves unset."""
    found = Settings.from_env()
    local = LOCAL_DIR / "orgs.yaml"
    if "orgs" in found.model_fields_set or Path("orgs.yaml").exists() or not local.exists():
        return found
    defaults = {"ORGGUARD_ORGS": str(local), "ORGGUARD_POLICY": str(LOCAL_DIR / "policy.yaml")}
    if (LOCAL_DIR / "bus.db").exists():  # the local host's queue: work this command leaves is carried out at once
        defaults["ORGGUARD_BUS"] = f"sqlite:///{LOCAL_DIR / 'bus.db'}"
    graph = LOCAL_DIR / "graph.json"  # what `serve --sandbox` used: the CLI reads users and queues mail alike
    if graph.exists():
        defaults = {**json.loads(graph.read_text(encoding="utf-8")), **defaults}
    return Settings.from_env(under=defaults)


def container() -> Container:
    from shared import bootstrap

    try:
        c = bootstrap.container(settings)
    except DomainError as exc:
        raise fail(exc.detail, exit_code(exc.status)) from None
    if c.service.dispatch.active:  # what this command's commits handed over goes out before the process ends
        atexit.register(c.service.dispatch.flush, 5.0)
    return c


@contextmanager
def connected(url: str | None) -> Iterator[Operations]:
    """The port: through the API at ``url``, or on the local ledger; closed at the end."""
    ops: Operations
    if url:
        from shared.cli.api_client import ApiOperations, check_url, credentials_for

        base = check_url(url)
        ops = ApiOperations(base, credentials_for(base))
    else:
        from shared.cli.operations import LedgerOperations

        ops = LedgerOperations(container(), actor())
    try:
        yield ops
    finally:
        ops.close()
