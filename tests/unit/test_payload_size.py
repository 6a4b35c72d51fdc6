"""One size rule for every payload: the HTTP body reader, the intake and the parser refuse at the same byte."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from functions.deps import limited_body
from shared.dataverse.payloads import MAX_BODY, PayloadTooLarge, check_size, loads_context
from shared.domain.model import InvalidPayload, Origin
from tests.factories import KEYS, container


def request(body: bytes, *, declared: bool, chunk: int = 64 * 1024) -> Request:
    """A request whose body arrives in chunks, with or without its Content-Length."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]

    async def receive() -> dict[str, Any]:
        part = chunks.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(chunks)}

    headers = [(b"content-length", str(len(body)).encode())] if declared else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}, receive)


def declared(body: bytes) -> object:
    return asyncio.run(limited_body(request(body, declared=True)))


def streamed(body: bytes) -> object:
    return asyncio.run(limited_body(request(body, declared=False)))


def parsed(body: bytes) -> object:
    return loads_context(body)


def parsed_text(body: bytes) -> object:
    return loads_context(body.decode())


def intake(tmp_path: Path) -> Callable[[bytes], object]:
    c = container(tmp_path, in_memory=True)
    return lambda body: c.intake.receive_webhook(body, key=KEYS["contoso-na"], origin=Origin.WEBHOOK)


@pytest.mark.parametrize("read", [declared, streamed, parsed, parsed_text, intake], ids=lambda f: f.__name__)
def test_every_entry_refuses_one_byte_over_the_limit_and_takes_the_limit(read: Any, tmp_path: Path) -> None:
    if read is intake:
        read = intake(tmp_path)
    with pytest.raises(PayloadTooLarge) as refused:
        read(b" " * (MAX_BODY + 1))
    assert refused.value.status == 413
    assert str(MAX_BODY) in refused.value.detail
    try:
        read(b" " * MAX_BODY)
    except PayloadTooLarge:
        pytest.fail("a body of exactly the limit is not too large")
    except InvalidPayload:
        pass  # blanks are no context: refused as such, not for their size


def test_a_route_with_its_own_limit_holds_to_it() -> None:
    assert asyncio.run(limited_body(request(b"x" * 10, declared=False), limit=10)) == b"x" * 10
    with pytest.raises(PayloadTooLarge, match="larger than the 9 bytes"):
        asyncio.run(limited_body(request(b"x" * 10, declared=False), limit=9))


def test_a_false_content_length_does_not_get_a_large_body_through() -> None:
    body = b" " * (MAX_BODY + 1)
    lying = request(body, declared=False)
    lying.scope["headers"] = [(b"content-length", b"10")]
    with pytest.raises(PayloadTooLarge):
        asyncio.run(limited_body(lying))


def test_the_refusal_names_the_field_only_when_there_is_one() -> None:
    with pytest.raises(PayloadTooLarge) as unnamed:
        check_size(MAX_BODY + 1)
    assert unnamed.value.field is None
    with pytest.raises(PayloadTooLarge) as named:
        check_size(MAX_BODY + 1, field="data")
    assert named.value.field == "data" and named.value.detail.startswith("data is larger")
