"""CORRAL_DRIFT_PERIOD: how often the controller reads each instance for runtime drift."""

from __future__ import annotations

import importlib

import pytest

from corral.engine.operate.drift import RUNTIME_PERIOD, runtime_drift_period
from corral.errors import CorralError


def test_unset_or_empty_is_every_10_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_DRIFT_PERIOD", raising=False)
    assert runtime_drift_period() == RUNTIME_PERIOD == 10.0
    monkeypatch.setenv("CORRAL_DRIFT_PERIOD", "")
    assert runtime_drift_period() == 10.0


def test_seconds_are_taken_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_DRIFT_PERIOD", "2.5")
    assert runtime_drift_period() == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "10s", "soon"])
def test_anything_else_is_refused_with_what_to_write(monkeypatch: pytest.MonkeyPatch,
                                                      value: str) -> None:
    monkeypatch.setenv("CORRAL_DRIFT_PERIOD", value)
    with pytest.raises(CorralError) as refused:
        runtime_drift_period()
    assert f"CORRAL_DRIFT_PERIOD={value!r}" in str(refused.value)
    assert "CORRAL_DRIFT_PERIOD=2" in str(refused.value)


@pytest.mark.parametrize(("name", "read", "default"), [
    ("CORRAL_LEASE_TTL", "corral.engine.standby:lease_ttl", 10.0),
    ("CORRAL_USAGE_PERIOD", "corral.engine.observe.usage:sample_period", 60.0)])
def test_the_other_seconds_settings_are_read_and_refused_the_same_way(
        monkeypatch: pytest.MonkeyPatch, name: str, read: str, default: float) -> None:
    module, _, function = read.partition(":")
    setting = getattr(importlib.import_module(module), function)
    monkeypatch.delenv(name, raising=False)
    assert setting() == default
    monkeypatch.setenv(name, "2.5")
    assert setting() == 2.5
    monkeypatch.setenv(name, "2s")
    with pytest.raises(CorralError, match=f"{name}='2s' is not a number of seconds above 0"):
        setting()
