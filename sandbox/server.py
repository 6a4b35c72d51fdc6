"""Running the sandbox: in the foreground (`python -m sandbox`) or in a background thread for tests."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn

from sandbox.app import create_app
from sandbox.seed import seed as seed_world
from sandbox.state import SandboxState


def world(loopback_webhooks: bool = False, **seed_kwargs: Any) -> SandboxState:
    """A seeded world; `loopback_webhooks` lets webhooks on loopback use any port, also after a reset.

    Dataverse takes webhook URLs only on ports 80 and 443 (`sandbox.registration`). A local
    OrgGuard listens on a free loopback port, so whoever runs one against the sandbox turns
    the exception on here, visibly, rather than the sandbox allowing it by default.
    """
    state = seed_world(**seed_kwargs)
    state.defaults.loopback_webhooks = state.settings.loopback_webhooks = loopback_webhooks
    return state


def run(
    host: str = "127.0.0.1",
    port: int = 7072,
    mailboxes: int = 60,
    overlap: float = 0.3,
    seed: int = 7,
    orgs: int = 3,
    loopback_webhooks: bool = False,
) -> None:
    """Serve until interrupted (Ctrl-C stops uvicorn cleanly)."""
    state = world(loopback_webhooks, mailboxes=mailboxes, overlap=overlap, seed=seed, orgs=orgs)
    uvicorn.run(create_app(state), host=host, port=port, log_level="warning")


@contextmanager
def running(
    port: int = 0, host: str = "127.0.0.1", *, loopback_webhooks: bool = False, **seed_kwargs: Any
) -> Iterator[str]:
    """Serve in a background thread on `port` (0: a free one) and yield the base URL, e.g. http://127.0.0.1:53012."""
    with serving(create_app(world(loopback_webhooks, **seed_kwargs)), port, host) as url:
        yield url


def free_port() -> int:
    """A loopback port free this moment, for a server started in another process (which binds it itself).

    Another process may take it in between; servers in this process bind first instead (``serving``).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(
    app: Any,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    name: str = "sandbox",
    lifespan: Literal["auto", "on", "off"] = "on",
) -> Iterator[str]:
    """Any ASGI app in a background thread on a socket bound before the server starts (so no other process can
    take the port in between); the tests run OrgGuard's own app this way too."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so (else Nagle adds 40 ms a call)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    bound = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            listener.close()
            raise RuntimeError(f"the {name} did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Simulated Dataverse orgs, Exchange, Graph.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7072)
    parser.add_argument("--mailboxes", type=int, default=60, help="mailbox rows per org")
    parser.add_argument("--overlap", type=float, default=0.3, help="fraction of each org's mailboxes also in others")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--orgs", type=int, default=3)
    parser.add_argument(
        "--loopback-webhooks",
        action="store_true",
        help="accept webhook URLs on loopback at any port (Dataverse takes only ports 80 and 443)",
    )
    args = parser.parse_args(argv)
    print(f"sandbox on http://{args.host}:{args.port} (orgs under /orgs/<name>/api/data/v9.2/, control /_sandbox/)")
    run(args.host, args.port, args.mailboxes, args.overlap, args.seed, args.orgs, args.loopback_webhooks)
