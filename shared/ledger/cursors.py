"""Page cursors that cannot be edited: each is signed with a secret of the deployment's ledger.

A cursor says where the next page of cases starts. Unsigned, anyone could edit
one to start anywhere, and a made-up position would be passed to the storage's
query as it came. Both ledgers keep a random secret of their own (SQLite in its
``meta`` table, Table Storage in its ``policies`` table, created on first use),
so every instance of one deployment signs alike and a cursor from elsewhere, or
an edited one, is refused with 400.

What a cursor holds is ``<kind>:<position>`` in URL-safe base64: ``seq:<n>`` for
the ledgers that number their cases (SQLite, in memory), ``rk:<row key>`` for
Table Storage's listings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from shared.domain.model import DomainError

MAX_CURSOR = 512  # characters; the ledgers' cursors are far shorter
_TAG_BYTES = 16


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class CursorCodec:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode("utf-8")

    def sign(self, cursor: str) -> str:
        return f"{cursor}.{_b64(self._tag(cursor))}"

    def verify(self, signed: str) -> str:
        """The cursor the ledger gave out; ``DomainError`` (400) for anything else."""
        cursor, dot, tag = signed.rpartition(".")
        if len(signed) > MAX_CURSOR or not dot or not cursor or not signed.isascii():
            raise _refused()
        if not hmac.compare_digest(tag.encode("ascii"), _b64(self._tag(cursor)).encode("ascii")):
            raise _refused()
        return cursor

    def issue(self, kind: str, position: object) -> str:
        """The signed cursor for the page that starts after ``position``."""
        return self.sign(_b64(f"{kind}:{position}".encode()))

    def position(self, kind: str, signed: str) -> str:
        """The position a cursor of ``kind`` holds; ``DomainError`` (400) for anything else."""
        cursor = self.verify(signed)
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            raise _refused() from None
        found, _, value = raw.partition(":")
        if found != kind or not value:
            raise _refused()
        return value

    def seq(self, signed: str) -> int:
        """The case number a ``seq`` cursor holds (SQLite, in memory)."""
        value = self.position("seq", signed)
        try:
            return int(value)
        except ValueError:
            raise _refused() from None

    def _tag(self, cursor: str) -> bytes:
        return hmac.new(self._key, b"orgguard-cases-cursor:" + cursor.encode("utf-8"), hashlib.sha256).digest()[
            :_TAG_BYTES
        ]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _refused() -> DomainError:
    return DomainError("the cursor is not one this API gave out", field="cursor")
