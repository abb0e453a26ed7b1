"""Retention and cap: settings defaults and per-secretary overrides through params."""

from __future__ import annotations

from datetime import timedelta

import pytest

from secretaries_core.config import Settings
from secretaries_core.context import ContextPolicy
from secretaries_core.errors import InvalidInput
from secretaries_core.plumbing.durations import format_duration, parse_duration


def test_settings_defaults_and_env() -> None:
    policy = Settings.load(env={}).context_policy
    assert policy == ContextPolicy(timedelta(days=7), 100)
    env = {"SECRETARIES_CONTEXT_TTL": "3600", "SECRETARIES_CONTEXT_MAX_MESSAGES": "20"}
    assert Settings.load(env=env).context_policy == ContextPolicy(timedelta(hours=1), 20)
    with pytest.raises(InvalidInput):
        Settings.load(env={"SECRETARIES_CONTEXT_TTL": "soon"})


def test_secretary_params_override() -> None:
    base = ContextPolicy(timedelta(days=7), 100)
    assert base.for_secretary({"temperature": 0.2}) == base
    assert base.for_secretary({"context_ttl": 60, "context_max_messages": "5"}) == ContextPolicy(
        timedelta(seconds=60), 5
    )
    with pytest.raises(InvalidInput):
        base.for_secretary({"context_max_messages": 0})
    with pytest.raises(InvalidInput):
        base.for_secretary({"context_ttl": "a week"})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("90m", 5400), ("12h", 43200), ("7d", 604800), ("2w", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "0h", "-1d", "1.5h", "7days", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)
