"""msgraph stays off the cold path: ``import function_app`` and decisions under a policy that never reads
the user load none of it, even with Graph configured; a policy with ``user.*`` does (so this can fail).

Each check runs in a fresh interpreter, where ``sys.modules`` tells the truth.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.factories import REPO

PROBE = r"""
import json, os, sys
os.environ["ORGGUARD_GRAPH_URL"] = "http://127.0.0.1:9/graph/v1.0"  # configured, and nobody listens
os.environ["ORGGUARD_MAIL_FROM"] = "orgguard@contoso.com"
HEAVY = ("msgraph", "msgraph_core", "kiota_abstractions", "kiota_http", "azure.identity")

def heavy():
    return sorted({h for h in HEAVY for m in sys.modules if m == h or m.startswith(h + ".")})

import function_app
seen = {"import function_app": heavy()}

from shared import bootstrap
from shared.config.settings import Settings
from tests.factories import BLOCKING_POLICY, claim, registry

folder = sys.argv[1]
settings = Settings.from_env({**os.environ, "ORGGUARD_LEDGER": f"sqlite:///{folder}/l.db",
                              "ORGGUARD_POLICY": f"{folder}/none"})
c = bootstrap.build(settings, orgs=registry())
c.service.save_policy(BLOCKING_POLICY, actor="probe")
c.service.handle_claim(claim("contoso-na", op="1"))
outcome = c.service.handle_claim(claim("contoso-jp", op="2", user_id="u-1"))
seen["decision without user.*"] = heavy()
reads_user = "rules: [{id: jp, when: {user.usageLocation: JP}, effect: override}]"
c.service.save_policy(BLOCKING_POLICY.replace("rules: []", reads_user), actor="probe")
later = c.service.handle_claim(claim("contoso-eu", op="3"))
seen["decision with user.*"] = heavy()
seen["explanation"] = later.decision.explanation
seen["effect"] = [outcome.decision.effect.value, later.decision.effect.value]
c.close()
print(json.dumps(seen))
"""


def test_msgraph_is_loaded_only_for_a_policy_that_reads_the_user(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["import function_app"] == []
    assert seen["decision without user.*"] == []
    assert "msgraph" in seen["decision with user.*"]  # the probe can see msgraph when it is there
    # and Graph being unreachable did not stop that decision: it went on without the user
    assert seen["effect"] == ["block", "block"]
    assert "Microsoft Graph was unavailable" in seen["explanation"]
