"""The vendored API specifications say where they come from, and the version list is well formed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

SPECS = Path(__file__).resolve().parents[2] / "infra" / "specs"
FILES = sorted((SPECS / "specification").rglob("*.json"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(SPECS).as_posix())
def test_every_vendored_file_names_its_source(path: Path) -> None:
    source = json.loads(path.read_text())["x-orgguard-source"]
    assert source["repository"] == "Azure/azure-rest-api-specs"
    assert source["path"] == path.relative_to(SPECS).as_posix(), "laid out as in the repository, so $refs resolve"
    commit = source["commit"]
    assert (commit is None and "not transcribed" in source["note"]) or re.fullmatch(r"[0-9a-f]{40}", commit)


def test_the_version_list_is_well_formed() -> None:
    versions = {k: v for k, v in json.loads((SPECS / "versions.json").read_text()).items() if not k.startswith("_")}
    for resource_type, known in versions.items():
        assert re.fullmatch(r"Microsoft\.\w+(/\w+)+", resource_type)
        assert set(known) == {"stable", "preview"}
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for v in known["stable"]), resource_type
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}-preview", v) for v in known["preview"]), resource_type


def test_every_vendored_put_is_for_a_listed_version() -> None:
    versions = json.loads((SPECS / "versions.json").read_text())
    listed = {(k.lower(), v) for k, known in versions.items() if not k.startswith("_") for v in known["stable"]}
    for path in FILES:
        doc = json.loads(path.read_text())
        for route in doc.get("paths", {}):
            segments = route.rsplit("/providers/", 1)[1].split("/")
            resource_type = "/".join([segments[0], *segments[1::2]]).lower()
            assert (resource_type, doc["info"]["version"]) in listed, f"{path.name}: {route}"
