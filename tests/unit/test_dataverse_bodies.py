"""The Web API's bodies decode to exactly what ``json.loads`` makes of them, whichever parser did the work."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.dataverse.bodies import loads

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),  # lone surrogates included: json escapes them, and only json takes them back
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


JSONISH = '{}[]",:0123456789.eE+-tfrunalsINay \\u\n'  # nearly JSON: where two parsers may part ways


def outcome(decode: Any, content: bytes) -> str:
    try:
        return f"value {decode(content)!r}"  # repr: nan is not equal to itself
    except ValueError:  # json's own errors (JSONDecodeError, UnicodeDecodeError) are ValueErrors
        return "refused"
    except RecursionError:  # nested deeper than json goes
        return "too deep"


@settings(max_examples=400, deadline=None)
@given(values, st.booleans(), st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]))
def test_any_json_document_decodes_as_json_loads_decodes_it(value: Any, ascii_only: bool, encoding: str):
    content = json.dumps(value, ensure_ascii=ascii_only).encode(encoding, "surrogatepass")
    assert outcome(loads, content) == outcome(json.loads, content)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40) | st.text(alphabet=JSONISH, max_size=30).map(str.encode))
@example(b'{"a":1,}')
@example(b'{"a":"\\ud800"}')
@example(b'{"a":01}')
@example(b'{"a":"\x01"}')
@example(b'{"a":NaN}')
@example(b"[" * 300 + b"]" * 300)  # deeper than pydantic-core goes (json takes it)
@example(b"[" * 5000 + b"]" * 5000)
def test_any_bytes_are_refused_or_decoded_as_json_loads_does(content: bytes):
    assert outcome(loads, content) == outcome(json.loads, content)


def test_a_body_neither_parser_takes_raises_jsons_error():
    with pytest.raises(json.JSONDecodeError):
        loads(b'{"value": [1, 2,]}')
