"""Adding orgs to the orgs file (``orgguard discover --register``), keeping what an operator wrote in it.

The new entries are appended as text when the file ends with its ``orgs:`` list, so comments and layout stay; a
file laid out otherwise is written again from its contents (its comments are lost, and the command says so).
Either way the result is loaded the way OrgGuard loads it before it replaces the file, so a write never leaves
an orgs file OrgGuard would refuse. The file holds webhook keys: it is written with mode 600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from shared.config.documents import TooComplex, load_yaml
from shared.config.orgs import parse_orgs
from shared.config.settings import inline_document
from shared.domain.environments import OrgEntry
from shared.domain.orgs import OrgRegistry, OrgsError


def writable(setting: str) -> Path:
    """The orgs file ``ORGGUARD_ORGS`` names, or why entries cannot be added to it."""
    if inline_document(setting) is not None:
        raise OrgsError(
            "ORGGUARD_ORGS holds the orgs document itself, not a file: add the new orgs to it (infra/orgs.json in "
            "Azure) and run orgguard register",
            field="ORGGUARD_ORGS",
        )
    return Path(setting)


def add_orgs(path: Path, entries: Sequence[OrgEntry], env: Mapping[str, str] | None = None) -> tuple[OrgRegistry, bool]:
    """Append ``entries`` to the orgs file at ``path`` (created if missing); the registry it now holds, and whether
    the file kept its text (False: it was written again from its contents)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "orgs:\n"
    try:
        doc = load_yaml(text)
    except (yaml.YAMLError, TooComplex) as exc:
        raise OrgsError(f"{path} is not a valid orgs file: {exc}", field="ORGGUARD_ORGS") from None
    if isinstance(doc, dict) and doc.get("orgs") is None:
        doc = {**doc, "orgs": []}  # "orgs:" with nothing under it yet
    if not isinstance(doc, dict) or not isinstance(doc.get("orgs"), list):
        raise OrgsError(f"{path} has no top-level 'orgs' list to add to", field="ORGGUARD_ORGS")
    wanted = {**doc, "orgs": [*doc["orgs"], *(e.doc() for e in entries)]}
    kept = _appended(text, [e.doc() for e in entries])
    try:
        kept_text = load_yaml(kept) == wanted
    except yaml.YAMLError:  # a file written in flow style (JSON): appending lines cannot extend its list
        kept_text = False
    if not kept_text:
        kept = yaml.safe_dump(wanted, sort_keys=False)
    registry = parse_orgs(load_yaml(kept), env)  # refused here, and nothing written: duplicates, bad values
    _replace(path, kept)
    return registry, kept_text


def _appended(original: str, docs: list[dict[str, Any]]) -> str:
    """``docs`` appended as list items, indented as the file's own items are (``  - name:`` or ``- name:``)."""
    items = [line for line in original.splitlines() if line.lstrip().startswith("- ")]
    indent = len(items[0]) - len(items[0].lstrip()) if items else 2
    block = yaml.safe_dump(docs, sort_keys=False)
    return original.rstrip("\n") + "\n" + "".join(" " * indent + line + "\n" for line in block.splitlines())


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
