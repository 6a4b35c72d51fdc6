"""Policy text to a ``Policy``: read the YAML or JSON within bounds, then the domain checks the document.

The reading is configuration's part (PyYAML, the bounds of ``shared.config.documents``,
duplicate keys, impossible dates left as text); the checking is the domain's
(``shared.domain.policy.parse_policy``). Either way a bad policy is one ``PolicyError``
listing what is wrong, with paths.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import yaml

from shared.config.documents import BoundedLoader, TooComplex, load_json
from shared.domain.policy import Policy, PolicyError, parse_policy


def load_policy(text: str, *, known_orgs: Collection[str] | None = None) -> Policy:
    """Parse and validate a policy (YAML or JSON); PolicyError lists every error with its path.

    With ``known_orgs``, every org a rule or designation names must be one of them.
    """
    return parse_policy(read_policy(text), known_orgs=known_orgs)


def read_policy(text: str) -> object:
    """The document in ``text``: JSON when it parses as JSON (PyYAML reads a few JSON documents
    differently), YAML otherwise; PolicyError when it cannot be read, or holds a key twice."""
    errors: list[dict[str, str]] = []
    try:
        doc = load_json(text, object_pairs_hook=_json_object(errors))
    except TooComplex as exc:
        raise PolicyError.listing([{"path": "", "message": str(exc)}]) from None
    except (ValueError, RecursionError):
        doc = _read_yaml(text, errors)  # not JSON after all: read it as YAML, which JSON mostly is
    else:
        if not errors:
            return doc
    if errors:
        raise PolicyError.listing(errors)
    return doc


def _read_yaml(text: str, errors: list[dict[str, str]]) -> object:
    errors.clear()  # duplicate keys the JSON attempt saw belong to a document that was not JSON
    doc: object = None
    loader = None
    try:
        loader = _Loader(text)
        doc = loader.get_single_data()
    except TooComplex as exc:
        errors.append(_whole(str(exc)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        errors.append(_whole(f"YAML syntax error{where}: {exc.problem or exc.context or 'unreadable'}"))
    except yaml.YAMLError as exc:
        errors.append(_whole(f"YAML syntax error: {exc}"))
    except (ValueError, TypeError, RecursionError) as exc:
        errors.append(_whole(f"the policy could not be read as YAML: {exc.__class__.__name__}"))
    finally:
        if loader is not None:
            loader.dispose()
            errors.extend(loader.duplicates)
    return doc


def _whole(message: str) -> dict[str, str]:
    return {"path": "", "message": message}


def _json_object(errors: list[dict[str, str]]) -> Callable[[list[tuple[str, object]]], dict[str, object]]:
    def build(pairs: list[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                errors.append(
                    _whole(f"the key {key!r} appears twice in one object; the second would replace the first")
                )
            seen[key] = value
        return seen

    return build


class _Loader(BoundedLoader):
    """The bounded SafeLoader, reporting duplicate keys too (PyYAML keeps the last one silently)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[dict[str, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                line = key_node.start_mark.line + 1
                message = f"line {line}: the key {key_node.value!r} appears twice; the second would replace the first"
                self.duplicates.append(_whole(message))
            seen.add(ident)
        return super().construct_mapping(node, deep)


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    """An impossible date (2026-02-30) stays text, so validation can say where it is."""
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
