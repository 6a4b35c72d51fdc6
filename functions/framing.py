"""One ASGI middleware in front of every route: a request must say its length one way only.

A request with both ``Content-Length`` and ``Transfer-Encoding`` (or two
lengths, or a coding other than ``chunked``) can be read as one request by a
proxy in front and as another by the server behind it: request smuggling
(RFC 9112, section 6.3). The local server (h11) reads such a request by
``Transfer-Encoding`` and lets it through, and what sits in front in Azure is
not ours to know, so OrgGuard refuses it with 400 and closes the connection,
before any route reads a byte of its body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from functions.problems import problem


def framing_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why the request's length is ambiguous, or None when it is stated one way."""
    lengths = [value.strip() for name, value in headers if name.lower() == b"content-length"]
    codings = [value.strip().lower() for name, value in headers if name.lower() == b"transfer-encoding"]
    if lengths and codings:
        return "the request gives both Content-Length and Transfer-Encoding; send one"
    if len(lengths) > 1:
        return "the request gives Content-Length more than once"
    if lengths and not lengths[0].isdigit():
        return "Content-Length is not a whole number of bytes"
    if codings and b", ".join(codings) != b"chunked":
        return "Transfer-Encoding other than chunked is not accepted"
    return None


class RequestFraming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (reason := framing_problem(scope["headers"])) is not None:
            response = problem(400, "Ambiguous request length", reason)
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
