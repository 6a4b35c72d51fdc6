"""WAL checkpoints off the writers' path: one thread per process folds each SQLite ledger's log into its file.

SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold
(1,000 pages), so now and then one decision pays for copying the whole log: a
gate answer of several hundred milliseconds where the others take one. The
ledger's connections turn the automatic checkpoint off (``wal_autocheckpoint=0``)
and tell this module after each commit; a daemon thread runs a ``PASSIVE``
checkpoint on each ledger that committed since its last round, on a connection of
its own, while writers go on (a passive checkpoint never waits for them). A
process that closes its ledger checkpoints it once more (``SqliteLedger.close``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Protocol

log = logging.getLogger("orgguard.ledger")

EVERY_S = 0.5  # how often committed pages are folded in; the log stays a few hundred pages at most


class Checkpointable(Protocol):
    def checkpoint(self) -> None: ...


class Checkpointer:
    """The process's checkpoint thread, started by the first commit it hears of."""

    def __init__(self, every: float = EVERY_S) -> None:
        self.every = every
        self._dirty: weakref.WeakSet[Checkpointable] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def committed(self, ledger: Checkpointable) -> None:
        """``ledger`` wrote to its log: fold it in at the next round."""
        with self._lock:
            self._dirty.add(ledger)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="orgguard-checkpoint", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            with self._lock:
                due = list(self._dirty)
                self._dirty.clear()
            for ledger in due:
                try:
                    ledger.checkpoint()
                except Exception:  # a ledger closed or its file gone meanwhile: nothing to fold in
                    log.debug("checkpoint skipped", exc_info=True)


CHECKPOINTS = Checkpointer()
