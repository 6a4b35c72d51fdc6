"""Reading YAML and JSON that people hand OrgGuard (policies, the orgs file), within fixed bounds.

YAML's aliases and merge keys (``<<``) let a document of a few hundred bytes
stand for billions of nodes (the "billion laughs"): PyYAML shares an aliased
node once composed, but merging copies pairs, and everything that later walks
the result (validation, JSON, pydantic) walks the expansion. So a document is
measured before anything is built from it: its size in bytes, its depth while
it is composed, and the number of nodes and the depth it has once every alias
and merge is expanded -- counted on the composed graph, each node once, so the
count itself costs time in proportion to the text. A recursive alias (a node
that contains itself) is refused outright. Whatever exceeds a bound is refused
within milliseconds, before a single Python object is constructed.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

MAX_BYTES = 256 * 1024  # the most a policy or orgs file may be (as much as one webhook payload)
MAX_DEPTH = 32  # nesting, after expansion; the normative policy needs 6
MAX_NODES = 50_000  # scalars, lists and mappings, after expansion; a large real policy has a few thousand


class TooComplex(ValueError):
    """The document is bigger, deeper or expands further than OrgGuard reads."""


def check_size(text: str) -> None:
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise TooComplex(f"the document is {size:,} bytes; OrgGuard reads at most {MAX_BYTES:,}")


class BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses deep documents while composing and explosive ones before constructing."""

    def __init__(self, stream: str) -> None:
        check_size(stream)
        super().__init__(stream)
        self._depth = 0
        self._composed = 0  # never more than the expansion, so a flat document over the bound stops early

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        self._composed += 1
        try:
            if self._depth > MAX_DEPTH:
                raise TooComplex(f"the document nests deeper than {MAX_DEPTH} levels (line {self.line + 1})")
            if self._composed > MAX_NODES:
                raise TooComplex(f"the document has more than {MAX_NODES:,} nodes; OrgGuard reads at most that")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _Measure().node(node, 1)
        return super().construct_document(node)


class _Measure:
    """Nodes and height of a composed graph as if every alias and merge were expanded, each node visited once."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int, int]] = {}  # node -> (expanded nodes, height)
        self.open: set[int] = set()

    def node(self, node: yaml.Node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise TooComplex(f"the document nests deeper than {MAX_DEPTH} levels once its aliases are expanded")
        known = self.seen.get(id(node))
        if known is None:
            if id(node) in self.open:
                raise TooComplex(f"an alias refers to a node that contains it (a recursive document){_at(node)}")
            self.open.add(id(node))
            known = self._measure(node, depth)
            self.open.discard(id(node))
            self.seen[id(node)] = known
        if depth + known[1] > MAX_DEPTH:
            raise TooComplex(f"the document nests deeper than {MAX_DEPTH} levels once its aliases are expanded")
        return known

    def _measure(self, node: yaml.Node, depth: int) -> tuple[int, int]:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        nodes, height = 1, 0
        for child in children:
            child_nodes, child_height = self.node(child, depth + 1)
            nodes, height = nodes + child_nodes, max(height, child_height + 1)
            if nodes > MAX_NODES:
                raise TooComplex(
                    f"the document expands to more than {MAX_NODES:,} nodes once its aliases and merge keys (<<) "
                    f"are expanded{_at(node)}; OrgGuard reads at most that"
                )
        return nodes, height


def _at(node: yaml.Node) -> str:
    return f" (line {node.start_mark.line + 1})" if node.start_mark else ""


def load_yaml(text: str) -> Any:
    """A YAML document within the bounds; ``TooComplex`` or ``yaml.YAMLError`` otherwise."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def check_json(doc: object) -> None:
    """The same node and depth bounds for a document that arrived as JSON (which has no aliases)."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise TooComplex(f"the document nests deeper than {MAX_DEPTH} levels")
        if nodes > MAX_NODES:
            raise TooComplex(f"the document has more than {MAX_NODES:,} nodes; OrgGuard reads at most that")
        if isinstance(value, dict):
            stack += [(part, depth + 1) for pair in value.items() for part in pair]
        elif isinstance(value, list):
            stack += [(item, depth + 1) for item in value]


def load_json(text: str, **kwargs: Any) -> Any:
    check_size(text)
    doc = json.loads(text, **kwargs)
    check_json(doc)
    return doc
