"""CORRAL_DRIFT_PERIOD: how often the controller reads each instance for runtime drift."""

from __future__ import annotations

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
