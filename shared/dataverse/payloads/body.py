"""A payload's body: the one size rule, and JSON decoded strictly.

Every way a Dataverse payload arrives (the webhooks' HTTP bodies, Service Bus
messages, Event Grid data) is held to the same limit, here, and answered 413 past it.
"""

from __future__ import annotations

import json

from shared.domain.model import InvalidPayload

MAX_BODY = 256 * 1024  # bytes; Dataverse itself trims contexts above this


class PayloadTooLarge(InvalidPayload, status=413, title="Payload too large"):
    """The body is over :data:`MAX_BODY`; entry points answer 413."""


def check_size(size: int, *, field: str | None = None, limit: int = MAX_BODY) -> None:
    """Refuse a body of ``size`` bytes over ``limit`` (``field`` names it in the error, when it is one)."""
    if size > limit:
        what = field or "the payload"
        raise PayloadTooLarge(f"{what} is larger than the {limit} bytes OrgGuard takes", field=field)


def loads(body: object, *, field: str) -> object:
    """The JSON in ``body`` (bytes or text), within the size limit, no key given twice, no NaN."""
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        check_size(len(raw), field=field)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidPayload(f"{field} is not UTF-8", field=field) from None
    elif isinstance(body, str):
        check_size(len(body.encode("utf-8", errors="surrogatepass")), field=field)
        text = body.removeprefix("\ufeff")
    else:
        raise InvalidPayload(f"{field} must be bytes or text", field=field)
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"{field} is not valid JSON: {exc.msg} at line {exc.lineno}", field=field) from None
    except (ValueError, RecursionError):
        raise InvalidPayload(f"{field} is not valid JSON (too deep or a number too long)", field=field) from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Two readers of one body must not see two different values for a key.
    found = dict(pairs)  # built in C; only a body that names a key twice comes out shorter
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidPayload(f"the key {key[:64]!r} appears twice in one object", field=key[:64])
            seen.add(key)
    return found


def _no_constant(name: str) -> object:
    raise InvalidPayload(f"{name} is not JSON", field="body")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)  # made once
