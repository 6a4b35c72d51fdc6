"""What a registration check says, and how long OrgGuard trusts it (health, the sweep, unheard saves)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from shared.domain.drift import Drift, DriftKind, GateState, OrgRegistration, Part
from shared.service.registrations import Registrations

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
GATE_OFF = Drift(Part.GATE, "sdkmessageprocessingstep:OrgGuard: mailbox Update (gate)", DriftKind.DISABLED, "off")


def test_a_drift_turns_off_only_the_part_it_concerns_and_an_unread_org_is_unknown():
    checked = OrgRegistration("contoso-jp", T0, (GATE_OFF,))
    assert (checked.ok, checked.gate, checked.state(Part.EVENTS)) == (False, GateState.OFF, GateState.ENABLED)
    unread = OrgRegistration("contoso-jp", T0, error="contoso-jp could not be read (HTTP 503)")
    assert (unread.ok, unread.gate, unread.state(Part.EVENTS)) == (False, GateState.UNKNOWN, GateState.UNKNOWN)
    assert OrgRegistration("contoso-jp", T0).ok


def test_the_gate_state_is_trusted_only_while_the_check_is_recent():
    seen = Registrations(trusted_for=timedelta(minutes=30))
    assert seen.gate("contoso-jp", T0) is GateState.UNKNOWN  # never checked
    seen.record([OrgRegistration("contoso-jp", T0, (GATE_OFF,))])
    assert seen.gate("contoso-jp", T0 + timedelta(minutes=29)) is GateState.OFF
    assert seen.gate("contoso-jp", T0 + timedelta(minutes=31)) is GateState.UNKNOWN


def test_a_check_is_due_when_any_org_was_never_checked_or_not_lately():
    seen = Registrations(every=timedelta(minutes=5))
    assert seen.due(["contoso-na"], T0)
    seen.record([OrgRegistration("contoso-na", T0)])
    assert not seen.due(["contoso-na"], T0 + timedelta(minutes=4))
    assert seen.due(["contoso-na"], T0 + timedelta(minutes=5)) and seen.due(["contoso-na", "contoso-jp"], T0)


def test_of_two_checks_recorded_at_once_the_later_one_stays():
    seen = Registrations()
    checks = [OrgRegistration("contoso-na", T0 + timedelta(seconds=i), (GATE_OFF,) * (i % 2)) for i in range(200)]
    threads = [threading.Thread(target=seen.record, args=([c],)) for c in reversed(checks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen.latest(["contoso-na"])["contoso-na"] == checks[-1]


def test_health_s_view_says_how_fresh_each_org_is_and_never_shows_details():
    seen = Registrations()
    seen.record([OrgRegistration("contoso-jp", T0, (GATE_OFF,))])
    view = seen.view(["contoso-na", "contoso-jp"], T0 + timedelta(seconds=90))
    assert view["ok"] is False and view["advisory"] is True
    orgs = view["orgs"]
    assert isinstance(orgs, dict)
    assert orgs["contoso-na"] == {"ok": None, "checked_at": None, "reason": "not checked yet"}
    assert orgs["contoso-jp"] == {
        "ok": False,
        "gate": "off",
        "events": "enabled",
        "checked_at": T0.isoformat(),
        "age_s": 90.0,
        "error": None,
        "drift": 1,
    }
