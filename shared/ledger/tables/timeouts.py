"""Each HTTP try the Table Storage SDK makes, cut to the current work's deadline (the gate's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from shared.ledger import deadline
from shared.ledger.port import LedgerError

if TYPE_CHECKING:
    from azure.core.pipeline import PipelineRequest

MIN_TRY_S: Final = 0.2  # the shortest timeout one HTTP try gets under a deadline
_TRIES: Final = "orgguard_tries"


class PastDeadline(LedgerError):
    """A claimed commit's call would be retried past the deadline: it is not (whether it landed is unknown)."""


def with_deadline(client_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The SDK client's options with ``cut_to_deadline`` run before every try of every call."""
    return {"raw_request_hook": cut_to_deadline, **(client_options or {})}


def cut_to_deadline(request: PipelineRequest[Any]) -> None:
    """Fit one HTTP try to the current work's deadline (the gate's), or refuse it when none is left.

    Runs inside the SDK's retry loop, so its retries stop at the deadline too. Once the commit is
    claimed, the calls that finish it (the transaction, reading back whether a lost answer landed)
    still go out, each cut to what is left; past the deadline each call gets one try and no retry, so
    a claimed commit against a stalled account ends (its outcome unknown) instead of retrying for minutes.
    """
    work = deadline.current()
    if work is None:
        return
    tries = int(request.context.get(_TRIES, 0)) + 1  # the context lives as long as the call, across its retries
    request.context[_TRIES] = tries
    if not work.committing:
        work.check("reach Table Storage")
    elif tries > 1 and work.remaining() <= 0:
        raise PastDeadline(
            f"Table Storage did not answer within the {work.seconds:g} s deadline; "
            "the decision may or may not be recorded"
        )
    left = max(work.remaining(), MIN_TRY_S)
    request.context.options["connection_timeout"] = left
    request.context.options["read_timeout"] = left
