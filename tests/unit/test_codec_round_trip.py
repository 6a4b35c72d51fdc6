"""What the ledger stores decodes to exactly what was written: the outbox keeps what it wrote by its text
(``shared/ledger/recent.py``) instead of decoding the row it reads back, which is right only if the two are equal."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.model import Action, ActionKind, ActionStatus, Fence, Notice, NoticeKind
from shared.ledger.codec import action_doc, action_from
from shared.ledger.recent import Recent

zones = st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5, minutes=-30))])
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones)
words = st.text(max_size=40)
notices = st.builds(Notice, st.sampled_from(NoticeKind), st.tuples(words) | st.just(()), st.tuples(words, words))
actions = st.builds(
    Action,
    id=words,
    case_id=words,
    org=words,
    mailbox_id=st.none() | words,
    kind=st.sampled_from(ActionKind),
    status=st.sampled_from(ActionStatus),
    attempts=st.integers(min_value=0, max_value=10_000),
    last_error=st.none() | words,
    created_at=moments,
    updated_at=moments,
    next_attempt_at=st.none() | moments,
    notice=st.none() | notices,
    fence=st.lists(st.sampled_from(Fence), max_size=3).map(tuple),  # () too: stored as [], read back as ()
)


@given(actions)
def test_an_action_stored_reads_back_equal_to_the_one_written(action: Action) -> None:
    assert action_from(json.loads(json.dumps(action_doc(action)))) == action


def test_an_action_stored_before_fences_reads_back_fencing_act_only() -> None:
    doc = action_doc(Action("a", "c", "contoso-na", None, ActionKind.DEMOTE))
    del doc["fence"]
    assert action_from(doc).fence == (Fence.ACT,)


def test_recent_answers_what_was_written_for_its_text_and_decodes_any_other() -> None:
    decoded: list[str] = []

    def decode(text: str) -> str:
        decoded.append(text)
        return text.upper()

    recent: Recent[str] = Recent(decode, size=2)
    recent.wrote("a", "kept")
    assert recent.read("a") == "kept" and decoded == []
    assert recent.read("b") == "B" and recent.read("b") == "B" and decoded == ["b"]  # decoded once, then kept
    recent.wrote("c", "C")  # over size: the oldest ("a") is forgotten
    assert recent.read("a") == "A" and decoded == ["b", "a"]


def test_recent_shared_by_threads_keeps_no_more_than_its_size_and_answers_each_text_right() -> None:
    recent: Recent[str] = Recent(str.upper, size=64)
    wrong: list[str] = []

    def work(n: int) -> None:
        for i in range(2_000):
            text = f"t{(i * 7 + n) % 500}"
            if recent.read(text) != text.upper():
                wrong.append(text)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    assert len(recent._by_text) <= 64
