"""The slice of OData v4 the Web API's clients use: errors, `$filter`, `$select` and paging cookies.

String comparisons behave like Dataverse's SQL collation: case-insensitive, trailing spaces
ignored. Anything outside the slice is refused with a 400 and an OData error body rather
than silently answered wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from sandbox.model import Column, Kind, Record, TableSpec, mailbox_key

QUERY_ERROR = "0x80060888"
NOT_FOUND = "0x80040217"
VERSION_MISMATCH = "0x80060882"
PLUGIN_FAILED = "0x80040265"
BAD_REQUEST = "0x80040203"


class ODataError(Exception):
    """An error answered the way the Web API answers it: status and `{"error": {code, message}}`."""

    def __init__(self, status: int, message: str, code: str = BAD_REQUEST, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def no_property(spec: TableSpec, name: str) -> ODataError:
    return ODataError(400, f"Could not find a property named '{name}' on type '{spec.type_name}'.", QUERY_ERROR)


Predicate = Callable[[Record], bool]
Pins = frozenset[tuple[str, str]]  # the primary keys of the only rows a predicate can be true for

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![\w-])
      | (?P<number>-?\d+(?:\.\d+)?)(?![\w.])
      | (?P<name>[A-Za-z_][\w./]*)
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"contains", "startswith", "endswith"}
_MISSING = object()


@dataclass
class Filter:
    """A compiled `$filter`: the predicate, and the rows it pins down if it does (index look-ups).

    `emailaddress eq 'a'` pins one address, `... or emailaddress eq 'b'` a few, and `mailboxid eq <id>`
    (the primary key) one row: SQL Server answers such a filter from the column's index rather than by
    reading every row, and so does the sandbox. Each pin is `("address", key)` or `("id", guid)`.
    """

    predicate: Predicate
    pins: frozenset[tuple[str, str]] | None = None


def parse_filter(spec: TableSpec, text: str) -> Filter:
    parser = _Parser(spec, text)
    predicate = parser.expression()
    if parser.peek() is not None:
        raise parser.error(f"unexpected '{parser.peek()}'")
    return Filter(predicate, parser.pinned.get(predicate))


class _Parser:
    def __init__(self, spec: TableSpec, text: str) -> None:
        self.spec = spec
        self.text = text
        self.tokens = self._tokenize(text)
        self.position = 0
        self.pinned: dict[Predicate, Pins] = {}  # a predicate true only for these rows

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, index = [], 0
        while index < len(text):
            if text[index:].strip() == "":
                break
            match = _TOKEN.match(text, index)
            if match is None or match.lastgroup is None:
                raise self.error(f"syntax error at position {index}")
            tokens.append((match.lastgroup, match.group(match.lastgroup)))
            index = match.end()
        return tokens

    def error(self, detail: str) -> ODataError:
        return ODataError(400, f"Invalid $filter '{self.text}': {detail}.", QUERY_ERROR)

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise self.error("unexpected end of expression")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expect(self, value: str) -> None:
        _, text = self.take()
        if text != value:
            raise self.error(f"expected '{value}' but found '{text}'")

    def expression(self) -> Predicate:
        return self._chain("or", self.conjunction, any, _union)

    def conjunction(self) -> Predicate:
        return self._chain("and", self.unary, all, _narrowest)

    def _chain(
        self,
        word: str,
        operand: Callable[[], Predicate],
        quantifier: Callable[[Iterable[bool]], bool],
        pin: Callable[[list[Pins | None]], Pins | None],
    ) -> Predicate:
        """``operand (word operand)*``: one predicate over the operands (any for or, all for and), pinned to the
        rows ``pin`` derives from the operands' pins."""
        parts = [operand()]
        while self.peek() == word:
            self.take()
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]

        def joined(row: Record) -> bool:
            return quantifier(part(row) for part in parts)

        pins = pin([self.pinned.get(part) for part in parts])
        if pins is not None:
            self.pinned[joined] = pins
        return joined

    def unary(self) -> Predicate:
        if self.peek() == "not":
            self.take()
            inner = self.unary()
            return lambda row: not inner(row)
        if self.peek() == "(":
            self.take()
            inner = self.expression()
            self.expect(")")
            return inner
        return self.comparison()

    def column(self, name: str) -> Column:
        if "/" in name or "." in name:
            raise self.error(f"navigation paths and qualified names ('{name}') are not supported by the sandbox")
        column = self.spec.columns.get(name)
        if column is None:
            raise no_property(self.spec, name)
        return column

    def comparison(self) -> Predicate:
        kind, name = self.take()
        if kind != "name":
            raise self.error(f"expected a property name but found '{name}'")
        if name in _FUNCTIONS and self.peek() == "(":
            return self.function(name)
        if self.peek() == "(":
            raise self.error(f"the function '{name}' is not supported by the sandbox")
        column = self.column(name)
        _, operator = self.take()
        if operator not in _COMPARISONS:
            raise self.error(f"the operator '{operator}' is not supported")
        value = self.literal(column, name)
        compared = _compare(name, column, operator, value)
        if name == "emailaddress" and operator == "eq" and isinstance(value, str):
            self.pinned[compared] = frozenset({("address", mailbox_key(value))})
        elif name == self.spec.primary_key and operator == "eq" and isinstance(value, str):
            self.pinned[compared] = frozenset({("id", value)})
        return compared

    def function(self, function: str) -> Predicate:
        self.expect("(")
        kind, name = self.take()
        if kind != "name":
            raise self.error(f"{function} needs a property as its first argument")
        column = self.column(name)
        if column.kind is not Kind.STRING:
            raise self.error(f"{function} applies to string properties only, not '{name}'")
        self.expect(",")
        kind, literal = self.take()
        if kind != "string":
            raise self.error(f"{function} needs a string literal as its second argument")
        self.expect(")")
        needle = _fold(literal[1:-1].replace("''", "'"))
        test: Callable[[str], bool] = {
            "contains": lambda text: needle in text,
            "startswith": lambda text: text.startswith(needle),
            "endswith": lambda text: text.endswith(needle),
        }[function]

        def predicate(row: Record) -> bool:
            value = row.get(name)
            return isinstance(value, str) and test(value.casefold().rstrip(" "))

        return predicate

    def literal(self, column: Column, name: str) -> object:
        kind, text = self.take()
        if kind == "name" and text == "null":
            return None
        if column.kind in (Kind.STRING, Kind.DATETIME):
            if kind != "string" and not (column.kind is Kind.DATETIME and kind == "name"):
                raise self._incompatible(name, "Edm.String", text)
            return text[1:-1].replace("''", "'") if kind == "string" else text
        if column.kind is Kind.BOOL:
            if text not in ("true", "false"):
                raise self._incompatible(name, "Edm.Boolean", text)
            return text == "true"
        if column.kind in (Kind.GUID, Kind.LOOKUP):
            if kind != "guid":
                raise self._incompatible(name, "Edm.Guid", text)
            return text.lower()
        if kind != "number" or "." in text:
            raise self._incompatible(name, "Edm.Int32", text)
        return int(text)

    def _incompatible(self, name: str, expected: str, found: str) -> ODataError:
        return self.error(f"incompatible types: '{name}' is {expected}, the literal {found} is not")


def _fold(text: str) -> str:
    return text.casefold().rstrip(" ")


def _compare(name: str, column: Column, operator: str, value: object) -> Predicate:
    if value is None:
        if operator not in ("eq", "ne"):
            raise ODataError(400, f"Invalid $filter: '{operator} null' is not allowed.", QUERY_ERROR)
        wanted = operator == "eq"
        return lambda row: (row.get(name) is None) == wanted
    if isinstance(value, str) and column.kind is Kind.STRING:
        folded = _fold(value)

        def key(row: Record) -> object:
            current = row.get(name)
            return _fold(current) if isinstance(current, str) else _MISSING

        return _operator(operator, key, folded)
    if isinstance(value, str):  # guid, lookup, datetime: exact text, lower-cased
        return _operator(operator, lambda row: str(row.get(name) or "").lower() or _MISSING, value.lower())
    return _operator(
        operator,
        lambda row: row.get(
            name,
        ),
        value,
    )


def _operator(operator: str, key: Callable[[Record], object], value: Any) -> Predicate:
    if operator == "eq":
        return lambda row: key(row) == value
    if operator == "ne":
        return lambda row: key(row) != value

    def ordered(row: Record) -> bool:
        current: Any = key(row)
        if current is None or current is _MISSING:
            return False
        if operator == "gt":
            return bool(current > value)
        if operator == "ge":
            return bool(current >= value)
        if operator == "lt":
            return bool(current < value)
        return bool(current <= value)

    return ordered


def parse_select(spec: TableSpec, text: str | None) -> list[str]:
    """The columns to answer; all of them when there is no `$select`."""
    if text is None or not text.strip():
        return list(spec.columns)
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in spec.columns:
            raise no_property(spec, name)
    return names


def paging_cookie(page: int, position: int) -> str:
    """An opaque `$skiptoken` shaped like Dataverse's paging cookie; clients must follow it as given."""
    inner = quote(quote(f'<cookie page="{page}" position="{position}" />', safe=""), safe="")
    return f'<cookie pagenumber="{page + 1}" pagingcookie="{inner}" istracking="False" />'


_POSITION = re.compile(r'position="(\d+)"')
_PAGE = re.compile(r'pagenumber="(\d+)"')


def read_cookie(token: str) -> tuple[int, int]:
    """(page number, scan position) from a `$skiptoken` this sandbox issued."""
    inner = unquote(unquote(unquote(token)))
    position, page = _POSITION.search(inner), _PAGE.search(inner)
    if position is None or page is None:
        raise ODataError(400, "The $skiptoken is not valid; follow @odata.nextLink as given.", QUERY_ERROR)
    return int(page.group(1)), int(position.group(1))


def _union(pins: list[Pins | None]) -> Pins | None:
    """Terms of an ``or`` pin rows only if each does: then to their union."""
    if any(p is None for p in pins):
        return None
    return frozenset().union(*(p for p in pins if p is not None))


def _narrowest(pins: list[Pins | None]) -> Pins | None:
    """Any factor of an ``and`` that pins rows pins it to them (the predicate still decides each): the fewest."""
    known = [p for p in pins if p is not None]
    return min(known, key=len) if known else None
