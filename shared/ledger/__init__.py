"""Ledger port and its implementations; ``open_ledger`` picks one from a URL."""

from shared.ledger.port import ConcurrencyConflict, DuplicateEvent, Ledger, LedgerError

__all__ = ["ConcurrencyConflict", "DuplicateEvent", "Ledger", "LedgerError", "open_ledger"]


def open_ledger(url: str, *, client_id: str | None = None) -> Ledger:
    """``sqlite:///path`` (embedded), ``tables:<connection string or account URL>``, or ``memory:[name]`` (tests).

    ``client_id``: the managed identity an account URL is reached with (``Settings.azure_client_id``).
    """
    if url.startswith("sqlite:"):
        from shared.ledger.sqlite import SqliteLedger

        return SqliteLedger.from_url(url)
    if url.startswith("memory:"):
        from shared.ledger.memory import MemoryLedger

        return MemoryLedger.from_url(url)
    if url.startswith("tables:"):
        from shared.ledger.tables import TableLedger

        return TableLedger.from_url(url, client_id=client_id)
    raise LedgerError(f"unknown ledger URL scheme: {url.split(':', 1)[0]!r} (use sqlite:///, tables: or memory:)")
