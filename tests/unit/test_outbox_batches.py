"""A round's batches to one org: one failing never leaves the others writing after the round has returned."""

from __future__ import annotations

import asyncio

import pytest

from shared.service.outbox import _all_of


def test_a_failed_batch_goes_up_only_after_every_other_batch_has_finished() -> None:
    finished: list[str] = []

    async def failing() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("the ledger refused the round's answers")

    async def slow(name: str) -> None:
        await asyncio.sleep(0.05)  # still sending when the other batch fails
        finished.append(name)

    async def round_() -> None:
        await _all_of([failing(), slow("b"), slow("c")])

    with pytest.raises(RuntimeError, match="refused the round's answers"):
        asyncio.run(round_())
    assert sorted(finished) == ["b", "c"]  # recorded before the failure went up, not after the round returned


def test_batches_that_all_succeed_answer_nothing() -> None:
    done: list[int] = []

    async def batch(n: int) -> None:
        done.append(n)

    assert asyncio.run(_all_of(batch(n) for n in range(3))) is None
    assert sorted(done) == [0, 1, 2]
