"""Settings are read once, from the environment, and a bad value is refused with the setting's name."""

from __future__ import annotations

import pytest

from shared.config.settings import Settings, SettingsError


@pytest.mark.parametrize(("raw", "seconds"), [(None, 10.0), ("", 10.0), ("2.5", 2.5), (" 30 ", 30.0), ("54.9", 54.9)])
def test_the_gate_deadline_is_seconds_under_dataverse_s_timeout(raw: str | None, seconds: float) -> None:
    env = {} if raw is None else {"ORGGUARD_GATE_DEADLINE_S": raw}
    assert Settings.from_env(env).gate_deadline_s == seconds


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("0", "more than 0"),
        ("-3", "more than 0"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("ten", "a number of seconds"),
        ("55", "well under Dataverse's 60 s"),
        ("60", "well under Dataverse's 60 s"),
        ("600", "well under Dataverse's 60 s"),
    ],
)
def test_a_gate_deadline_dataverse_would_not_wait_for_is_refused(raw: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says) as refused:
        Settings.from_env({"ORGGUARD_GATE_DEADLINE_S": raw})
    assert refused.value.field == "ORGGUARD_GATE_DEADLINE_S"
