"""``MailboxKey.parse``'s quick path for plain ASCII addresses answers exactly what the full checks answer."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.domain.model import InvalidAddress, MailboxKey

# Characters that make addresses plain, nearly plain, and not plain at all.
ALPHABET = "aZ09._-+'@ .-xn\t\u00e9\u200b\u0130\uff21!#~`"
addresses = st.text(alphabet=ALPHABET, max_size=30) | st.builds(
    "{}{}@{}{}".format,
    st.text(" ", max_size=2),
    st.text("aZ09._-+'", min_size=1, max_size=70),
    st.text("aZ09.-", min_size=1, max_size=30),
    st.text(" .", max_size=2),
)


def outcome(parse: object, raw: str) -> str:
    try:
        return f"key {parse(raw, field='address').address}"  # type: ignore[operator]
    except InvalidAddress as exc:
        return f"invalid {exc}"


@settings(max_examples=2000, deadline=None)
@given(addresses)
@example(" " * 2000 + "a@contoso.com")
@example("a" * 65 + "@contoso.com")
@example("a@" + "b" * 250 + ".com")
@example("a@-contoso.com")
@example("a@xn--contoso.com")
@example("a..b@contoso.com")
@example("Aiko.Tanaka@Contoso.com. ")
@example("a@com")
def test_the_quick_path_and_the_full_checks_agree(raw: str):
    assert outcome(MailboxKey.parse, raw) == outcome(MailboxKey._checked, raw)
