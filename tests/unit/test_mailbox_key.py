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


def one_by_one(raws: list[object]) -> list[str | None]:
    keys: list[str | None] = []
    for raw in raws:
        try:
            keys.append(MailboxKey.parse(raw).address)
        except InvalidAddress:
            keys.append(None)
    return keys


# What a page of rows may hold in its address column: text of every kind, line breaks, nothing, other JSON values.
values = (
    addresses
    | st.builds("{}\n{}".format, addresses, addresses)
    | st.sampled_from(["", "\n", "a@contoso.com\n", "\r\na@contoso.com", "a@contoso.com\u2028"])
    | st.none()
    | st.integers()
    | st.booleans()
)


@settings(max_examples=600, deadline=None)
@given(st.lists(values, max_size=12))
@example(["a@contoso.com", None, "B@Contoso.COM"])
@example(["a@contoso.com", "b@contoso.com\nc@contoso.com"])
@example(["a" * 65 + "@contoso.com", "a" * 62 + "@contoso.com", "a@contoso.com."])
@example(["a@" + "b" * 250 + ".com", " " * 1100 + "a@contoso.com"])
@example(["a@xn--contoso.com", "a@-contoso.com", "a@com", "a@Contoso.com", "a..b@contoso.com"])
@example(["", "", ""])
@example([])
def test_a_page_of_addresses_gets_the_keys_parse_gives_one_by_one(raws: list[object]):
    assert MailboxKey.addresses(raws) == one_by_one(raws)
