"""Resource bodies and API versions against Azure's REST API specifications.

infra/specs/ holds, for every resource type and API version the templates
deploy, the swagger file of Azure/azure-rest-api-specs that defines its PUT
operation (trimmed to what the templates use; the source path and commit are
in each file's "x-orgguard-source"), laid out as in that repository so that
relative "$ref"s resolve. infra/specs/versions.json lists the published API
versions of each resource type.

For each resource the templates declare:

* its API version must be published, and not a preview when a stable version
  exists;
* a vendored spec must define its PUT (`existing` resources are only read, so
  only their version is checked);
* every property of the body must exist in the spec's schema, must not be
  read-only, and every required property must be there, at every depth the
  template writes a literal object (values computed by expressions are not
  looked into; strings are never type-checked because pycep cannot tell a
  string literal from an identifier).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from checks.model import BICEP_KEYWORDS, Problem, body, is_expression

PROVIDERS = "/providers/"


@dataclass(frozen=True)
class Operation:
    """One PUT of a vendored spec: the resource type it creates and the schema of its body."""

    resource_type: str
    fixed_name: str | None  # e.g. "authsettingsV2" for sites/config/authsettingsV2
    version: str
    file: Path
    schema: dict[str, Any]


@dataclass
class Flat:
    """A schema with its $refs followed and its allOf merged."""

    properties: dict[str, tuple[dict[str, Any], Path]] = field(default_factory=dict)
    required: set[str] = field(default_factory=set)
    additional: bool | dict[str, Any] = False
    additional_file: Path | None = None
    discriminator: str | None = None
    missing: str | None = None  # a $ref the vendored files do not hold, or a part left out on purpose
    file: Path | None = None
    type: str | None = None


class Specs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions: dict[str, dict[str, list[str]]] = {
            k.lower(): v for k, v in json.loads((root / "versions.json").read_text()).items() if not k.startswith("_")
        }
        self.operations: list[Operation] = []
        for path in sorted((root / "specification").rglob("*.json")):
            doc = load(path)
            version = str(doc.get("info", {}).get("version", ""))
            for route, methods in doc.get("paths", {}).items():
                put = methods.get("put")
                if not put or PROVIDERS not in route:
                    continue
                resource_type, fixed = _type_of(route)
                bodies = [p["schema"] for p in put.get("parameters", []) if p.get("in") == "body"]
                if bodies:
                    self.operations.append(Operation(resource_type, fixed, version, path, bodies[0]))

    # --- versions -------------------------------------------------------------------------

    def version_problems(self, resource_type: str, version: str) -> list[str]:
        known = self.versions.get(resource_type.lower())
        if known is None:
            return [f"{resource_type} is not in infra/specs/versions.json: add its published API versions"]
        stable, preview = known.get("stable", []), known.get("preview", [])
        if version not in stable and version not in preview:
            return [
                f"{resource_type}@{version} is not a published API version "
                f"(published: {', '.join(sorted(stable + preview)) or 'none recorded'})"
            ]
        if "preview" in version and stable:
            return [f"{resource_type}@{version} is a preview; a stable version exists (newest: {max(stable)})"]
        return []

    # --- bodies ---------------------------------------------------------------------------

    def operation(self, resource_type: str, version: str, name: Any) -> Operation | str:
        matches = [
            op for op in self.operations if op.resource_type.lower() == resource_type.lower() and op.version == version
        ]
        if not matches:
            return (
                f"no vendored spec defines PUT {resource_type}@{version}: add the spec file to infra/specs "
                "(infra/specs/README.md says how)"
            )
        if len(matches) == 1 and matches[0].fixed_name is None:
            return matches[0]
        for op in matches:
            if op.fixed_name is not None and isinstance(name, str) and op.fixed_name.lower() == name.lower():
                return op
        names = ", ".join(sorted(op.fixed_name or "{name}" for op in matches))
        return f"{resource_type}@{version} named {name!r}: the vendored spec has only {names}"

    def body_problems(self, resource_type: str, version: str, config: dict[str, Any]) -> list[str]:
        op = self.operation(resource_type, version, config.get("name"))
        if isinstance(op, str):
            return [op]
        problems: list[str] = []
        top = {k: v for k, v in config.items() if k not in BICEP_KEYWORDS}
        self._check(top, op.schema, op.file, "", problems, top_level=True)
        return problems

    def _check(
        self, value: Any, schema: dict[str, Any], file: Path, where: str, out: list[str], top_level: bool = False
    ) -> None:
        if is_expression(value) or isinstance(value, str) or value is None:
            return
        flat = self.flatten(schema, file)
        if isinstance(value, bool):
            if flat.type not in (None, "boolean"):
                out.append(f"{where or 'body'}: a boolean where the spec wants {flat.type}")
            return
        if isinstance(value, int | float):
            if flat.type in ("boolean", "string", "object", "array"):
                out.append(f"{where or 'body'}: a number where the spec wants {flat.type}")
            return
        if isinstance(value, list):
            items = schema.get("items") or (self.resolve(schema, file) or ({}, file))[0].get("items")
            if items is None:
                out.append(f"{where}: a list where the spec has no items")
                return
            for i, item in enumerate(value):
                self._check(item, items, file, f"{where}[{i}]", out)
            return
        if not isinstance(value, dict):
            return
        value = {_key(k): v for k, v in value.items()}
        if flat.missing:
            out.append(f"{where or 'body'}: {flat.missing}")
            return
        if flat.discriminator and isinstance(value.get(flat.discriminator), str) and flat.file is not None:
            sub = self._subtype(flat.file, value[flat.discriminator])
            if sub is None:
                out.append(f"{where}.{flat.discriminator}: no schema for {value[flat.discriminator]!r}")
                return
            flat = self.flatten(sub, flat.file)
        for key, sub_value in value.items():
            path = f"{where}.{key}" if where else key
            if key in flat.properties:
                prop, prop_file = flat.properties[key]
                if prop.get("readOnly") or (self.resolve(prop, prop_file) or ({}, prop_file))[0].get("readOnly"):
                    out.append(f"{path} is read-only in the spec (the service sets it)")
                    continue
                self._check(sub_value, prop, prop_file, path, out)
            elif flat.additional:
                if isinstance(flat.additional, dict):
                    self._check(sub_value, flat.additional, flat.additional_file or file, path, out)
            else:
                hint = difflib.get_close_matches(key, list(flat.properties), n=1)
                out.append(
                    f"{path} is not a property of the spec's schema" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                )
        for name in sorted(flat.required - value.keys() - ({"name"} if top_level else set())):
            out.append(f"{where + '.' if where else ''}{name} is required by the spec and missing")

    # --- schemas --------------------------------------------------------------------------

    def resolve(self, schema: dict[str, Any], file: Path) -> tuple[dict[str, Any], Path] | None:
        """The definition a "$ref" points at, or None when the vendored files do not hold it."""
        ref = schema.get("$ref")
        if not ref:
            return schema, file
        target, _, pointer = ref.partition("#")
        path = (file.parent / target).resolve() if target else file
        if not path.is_file():
            return None
        node: Any = load(path)
        for part in pointer.strip("/").split("/"):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node, path

    def flatten(self, schema: dict[str, Any], file: Path, depth: int = 0) -> Flat:
        flat = Flat(file=file, type=schema.get("type"))
        if depth > 20:
            return flat
        if "$ref" in schema:
            resolved = self.resolve(schema, file)
            if resolved is None:
                flat.missing = f"the spec's {schema['$ref']} is not in infra/specs: vendor it"
                return flat
            inner = self.flatten(resolved[0], resolved[1], depth + 1)
            inner.required |= set(schema.get("required", []))
            return inner
        if "x-orgguard-not-vendored" in schema:
            flat.missing = f"not vendored: {schema['x-orgguard-not-vendored']}"
            return flat
        for part in schema.get("allOf", []):
            base = self.flatten(part, file, depth + 1)
            if base.missing:
                flat.missing = base.missing
            flat.properties.update(base.properties)
            flat.required |= base.required
            flat.additional = flat.additional or base.additional
            flat.additional_file = flat.additional_file or base.additional_file
            flat.discriminator = flat.discriminator or base.discriminator
            flat.type = flat.type or base.type
        for name, prop in schema.get("properties", {}).items():
            flat.properties[name] = (prop, file)
        flat.required |= set(schema.get("required", []))
        extra = schema.get("additionalProperties")
        if extra is True or isinstance(extra, dict):
            flat.additional, flat.additional_file = extra, file
        if schema.get("discriminator"):
            flat.discriminator = schema["discriminator"]
        if flat.properties or flat.additional:
            flat.type = flat.type or "object"
        return flat

    def _subtype(self, file: Path, value: str) -> dict[str, Any] | None:
        for definition in load(file).get("definitions", {}).values():
            if definition.get("x-ms-discriminator-value") == value:
                return dict(definition)
        return None


def check_resource(specs: Specs, resource: dict[str, Any]) -> list[str]:
    """Every problem of one pycep resource: its version, and (unless `existing`) its body."""
    resource_type, version = resource["type"], resource["api_version"]
    problems = specs.version_problems(resource_type, version)
    if not resource["existing"]:
        problems += specs.body_problems(resource_type, version, body(resource["config"]))
    return problems


def check_templates(specs: Specs, templates: dict[str, tuple[dict[str, Any], dict[str, int]]]) -> list[Problem]:
    """templates: relative name -> (pycep template, resource symbol -> line)."""
    found = []
    for name, (template, lines) in templates.items():
        for symbol, resource in template.get("resources", {}).items():
            label = f"{symbol} ({resource['type']}@{resource['api_version']})"
            for what in check_resource(specs, resource):
                found.append(Problem(name, lines.get(symbol, 1), f"{label}: {what}"))
    return found


def _key(key: str) -> str:
    """pycep keeps the quotes of a quoted key ('odata.type')."""
    return key[1:-1] if len(key) > 1 and key[0] == key[-1] == "'" else key


@cache
def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _type_of(route: str) -> tuple[str, str | None]:
    """'/.../providers/Microsoft.Web/sites/{name}/config/authsettingsV2'
    -> ('Microsoft.Web/sites/config', 'authsettingsV2')."""
    segments = route.rsplit(PROVIDERS, 1)[1].strip("/").split("/")
    namespace, rest = segments[0], segments[1:]
    types = rest[0::2]
    last = rest[-1] if len(rest) % 2 == 0 else None
    fixed = None if last is None or last.startswith("{") else last
    return "/".join([namespace, *types]), fixed
