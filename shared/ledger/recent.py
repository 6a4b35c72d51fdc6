"""Records this process wrote or read lately, by their stored text: a row read back unchanged is not decoded again.

The outbox reads back, in each round's transaction, the very action documents it wrote a moment before (leasing
them; the other org's ``$batch`` recording them): decoding each again (``json.loads`` and the codec) was a large
share of the executor's CPU. A record is found here only by the exact text stored, and the codec's round trip is
exact (``tests/unit/test_codec_round_trip.py``), so what this answers is what decoding that text would: the ledger's
rows stay the only truth, and a row another process changed has another text and is decoded as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    """Up to ``size`` decoded records by their text, the oldest forgotten first; safe to share between threads."""

    def __init__(self, decode: Callable[[str], T], size: int = 4096) -> None:
        self._decode = decode
        self._size = size
        self._by_text: dict[str, T] = {}
        self._lock = threading.Lock()

    def read(self, text: str) -> T:
        """The record ``text`` holds: the one kept for it, or decoded now (and kept)."""
        found = self._by_text.get(text)
        if found is None:
            found = self._decode(text)
            self.wrote(text, found)
        return found

    def wrote(self, text: str, record: T) -> None:
        """``record`` was stored as ``text`` (so reading ``text`` back needs no decoding)."""
        with self._lock:
            self._by_text[text] = record
            if len(self._by_text) > self._size:
                del self._by_text[next(iter(self._by_text))]
