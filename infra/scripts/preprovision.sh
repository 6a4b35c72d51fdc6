#!/bin/sh
# azd preprovision hook: stop before Azure does, with the step that is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

if [ -z "${AZURE_AUTH_CLIENT_ID:-}" ]; then
    echo "AZURE_AUTH_CLIENT_ID is not set: OrgGuard's page and API sign people in with an app registration." >&2
    echo "Create one with infra/scripts/new-app-registration.sh (it sets the value), or" >&2
    echo "  azd env set AZURE_AUTH_CLIENT_ID <application (client) id>" >&2
    exit 1
fi

if ! python3 - "$here/../orgs.json" <<'PY'
import json, re, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
assert isinstance(doc, list), "infra/orgs.json must be a JSON list"
for i, org in enumerate(doc):
    assert isinstance(org, dict) and {"name", "id", "url"} <= org.keys(), f"orgs[{i}] needs name, id and url"
    assert re.fullmatch(r"[a-z0-9-]+", org["name"]), f"orgs[{i}].name must be lowercase letters, digits and hyphens"
    assert org["url"].startswith("https://"), f"orgs[{i}].url must be https"
    types = ("production", "sandbox", "trial", "developer", "default", "teams")
    assert org.get("type") in (None, *types), f"orgs[{i}].type must be one of {', '.join(types)}"
PY
then
    echo "infra/orgs.json is not a valid list of orgs (see infra/README.md)" >&2
    exit 1
fi
