"""``orgguard deadletters list|show|replay|purge``: the dead-letter queue from a terminal.

On this machine's queue (``ORGGUARD_BUS``; after ``make run``, ``.orgguard/bus.db``) with the
ledger for the audit entries, or with ``--url`` through the API (``/api/deadletters``), where
the caller's role applies: a Reader lists and shows, an Admin replays and purges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Protocol
from urllib.parse import quote

import typer
from rich.markup import escape

from shared.bus.port import QueueError
from shared.cli.operations import Doc
from shared.cli.render import table, when
from shared.cli.terminal import JsonOpt, UrlOpt, actor, container, fail, out, print_json, reported

deadletters_app = typer.Typer(help="See, replay and purge dead letters (messages no consumer could settle).",
                              no_args_is_help=True)  # fmt: skip


class DeadLetterOps(Protocol):
    def oldest(self, limit: int, queue: str | None) -> Doc: ...

    def show(self, letter_id: str) -> Doc: ...

    def replay(self, letter_id: str) -> Doc: ...

    def purge(self, letter_id: str) -> Doc: ...


class LocalDeadLetters:
    """This machine's queue and ledger, as ``shared.bootstrap`` builds them from the settings."""

    def __init__(self) -> None:
        self.letters = container().dead_letters()
        self.actor = actor()

    def oldest(self, limit: int, queue: str | None) -> Doc:
        from shared.service.deadletters import counts_view, dead_letter_view

        items = self.letters.oldest(limit, queue)
        return {"items": [dead_letter_view(d) for d in items], "counts": counts_view(self.letters.counts())}

    def show(self, letter_id: str) -> Doc:
        from shared.service.deadletters import dead_letter_view

        return dead_letter_view(self.letters.show(letter_id), body=True)

    def replay(self, letter_id: str) -> Doc:
        from shared.service.deadletters import dead_letter_view

        return {"replayed": dead_letter_view(self.letters.replay(letter_id, actor=self.actor))}

    def purge(self, letter_id: str) -> Doc:
        from shared.service.deadletters import dead_letter_view

        return {"purged": dead_letter_view(self.letters.purge(letter_id, actor=self.actor))}


class ApiDeadLetters:
    """The same through ``/api/deadletters`` (``ApiOperations`` carries the credentials and the errors)."""

    def __init__(self, url: str) -> None:
        from shared.cli.api_client import ApiOperations, check_url, credentials_for

        base = check_url(url)
        self.api = ApiOperations(base, credentials_for(base))

    def _call(self, method: str, path: str, params: Doc | None = None) -> Doc:
        doc: Doc = self.api._call(method, path, params=params)
        return doc

    def oldest(self, limit: int, queue: str | None) -> Doc:
        return self._call("GET", "/api/deadletters", {"limit": limit, "queue": queue})

    def show(self, letter_id: str) -> Doc:
        return self._call("GET", f"/api/deadletters/{quote(letter_id, safe='')}")

    def replay(self, letter_id: str) -> Doc:
        return self._call("POST", f"/api/deadletters/{quote(letter_id, safe='')}/replay")

    def purge(self, letter_id: str) -> Doc:
        return self._call("DELETE", f"/api/deadletters/{quote(letter_id, safe='')}")

    def close(self) -> None:
        self.api.close()


@contextmanager
def letters(url: str | None) -> Iterator[DeadLetterOps]:
    """The dead letters through the API at ``url``, or on this machine; a command's errors as one line."""
    with reported():
        ops: DeadLetterOps = ApiDeadLetters(url) if url else LocalDeadLetters()
        try:
            yield ops
        except QueueError as exc:
            raise fail(f"the queue is unavailable: {exc}") from None
        finally:
            close = getattr(ops, "close", None)
            if close is not None:
                close()


Limit = Annotated[int, typer.Option(min=1, max=500, help="At most this many, oldest first.")]
Queue = Annotated[str | None, typer.Option(help="Only this queue's (work: OrgGuard's own; dataverse: Dataverse's).")]


@deadletters_app.command("list")
def deadletters_list(limit: Limit = 100, queue: Queue = None, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """List dead letters, oldest first, with why each was dead-lettered."""
    with letters(url) as ops:
        doc = ops.oldest(limit, queue)
    if as_json:
        print_json(doc)
        return
    rows = table("id", "queue", "reason", "deliveries", "enqueued", "case / message")
    for d in doc["items"]:
        rows.add_row(d["id"], d["queue"], d["reason"], str(d["delivery_count"]), when(d["enqueued_at"]),
                     d.get("case") or d["message_id"])  # fmt: skip
    if doc["items"]:
        out.print(rows)
    counts = doc["counts"]
    per = ", ".join(f"{q}: {c['dead']}{'+' if c['at_least'] else ''}" for q, c in counts["queues"].items())
    out.print(f"{counts['total']}{'+' if counts['at_least'] else ''} dead letter(s) ({per})")


@deadletters_app.command("show")
def deadletters_show(letter_id: str, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show one dead letter: why, how often it was delivered, its properties and body."""
    with letters(url) as ops:
        d = ops.show(letter_id.strip())
    if as_json:
        print_json(d)
        return
    out.print(f"[bold]dead letter {escape(d['id'])}[/bold]  in the {escape(d['queue'])} queue", markup=True)
    facts: list[tuple[str, Any]] = [
        ("reason", d["reason"]),
        ("description", d["description"] or "-"),
        ("message", d["message_id"]),
        ("session", d.get("session") or "-"),
        ("case", d.get("case") or "-"),
        ("deliveries", d["delivery_count"]),
        ("enqueued", when(d["enqueued_at"])),
        ("dead-lettered", when(d.get("dead_lettered_at"))),
    ]
    for label, value in facts:
        out.print(f"  {label:<15}{value}", highlight=False)
    for key, value in (d.get("properties") or {}).items():
        out.print(f"  property       {key} = {value}", highlight=False)
    truncated = " (first 64 KiB)" if d.get("body_truncated") else ""
    out.print(f"body ({d.get('body_encoding')}){truncated}:", highlight=False)
    out.print(d.get("body", ""), highlight=False)


def _settling(name: str, settle: Callable[[DeadLetterOps, str], Doc], done: str, told: str, help: str) -> None:
    """A command that settles one dead letter (``settle``) and says so (``told``, from the answer's ``done`` part)."""

    def command(letter_id: str, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
        with letters(url) as ops:
            doc = settle(ops, letter_id.strip())
        if as_json:
            print_json(doc)
        else:
            out.print(told.format_map(doc[done]))

    deadletters_app.command(name, help=help)(command)


_settling(
    "replay",
    lambda ops, letter_id: ops.replay(letter_id),
    "replayed",
    "dead letter {id} is back in the {queue} queue (message {message_id})",
    "Send a dead letter back to its queue as it was; the queue's consumer takes it at once.",
)
_settling(
    "purge",
    lambda ops, letter_id: ops.purge(letter_id),
    "purged",
    "dead letter {id} purged (message {message_id}, {reason})",
    "Remove a dead letter for good (recorded in the audit log).",
)


def register(app: typer.Typer) -> None:
    app.add_typer(deadletters_app, name="deadletters")
