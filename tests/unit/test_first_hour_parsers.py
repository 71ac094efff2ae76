"""The parsers behind a new user's first hour: one duration grammar for the spec and the
CLI, release numbers, did-you-mean for names and spec keys, spec errors in plain words, and
plans that print durations as the spec writes them."""

from __future__ import annotations

from typing import Any

import click
import pytest

from corral.cli.params import DURATION, POSITIVE, RELEASE, check_service
from corral.core.plan import Running, Wanted, plan_changes
from corral.errors import NotFound, SpecError
from corral.ports.records import Instance, InstanceState, Release
from corral.spec.duration import format_duration, parse_duration
from corral.spec.load import parse_spec
from corral.spec.locate import did_you_mean

SPEC = """\
[project]
name = "shop"

[services.web]
image = "sha256:{a}"
replicas = 3
port = 8000
strategy = "rolling"
""".replace("{a}", "a" * 64)


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("5s", 5.0), ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0),
    ("1w", 604800.0), ("1.5s", 1.5), ("30", 30.0), ("0.25", 0.25),
])
def test_cli_durations_parse_with_the_specs_grammar(text: str, seconds: float) -> None:
    assert DURATION.convert(text, None, None) == seconds
    if not text.replace(".", "").isdigit():
        assert parse_duration(text) == seconds  # the spec reads the same text the same way


@pytest.mark.parametrize("text", ["5x", "five minutes", "-5s", "1 week", ""])
def test_a_bad_cli_duration_is_a_usage_error_naming_the_forms(text: str) -> None:
    with pytest.raises(click.BadParameter, match='"500ms", "10s", "15m"'):
        DURATION.convert(text, None, None)


@pytest.mark.parametrize("seconds", [0.5, 1, 90, 900, 3600, 86400, 604800, 1.5, 0.001])
def test_formatted_durations_read_back_as_the_same_seconds(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_release_numbers_are_vn_or_n_and_anything_else_names_the_form() -> None:
    assert RELEASE.convert("v3", None, None) == 3
    assert RELEASE.convert("12", None, None) == 12
    for bad in ("latest", "vx", "v0", "v-1", "3.0"):
        with pytest.raises(click.BadParameter, match="release number such as v3"):
            RELEASE.convert(bad, None, None)


def test_counts_below_one_are_refused() -> None:
    assert POSITIVE.convert(2, None, None) == 2
    for bad in (0, -1):
        with pytest.raises(click.BadParameter):
            POSITIVE.convert(bad, None, None)


def test_an_unknown_service_names_the_closest_known_one() -> None:
    check_service("web", {"web", "worker"})
    check_service(None, {"web"})
    with pytest.raises(NotFound) as caught:
        check_service("wbe", {"web", "worker"})
    assert caught.value.hint == "did you mean web?"
    assert did_you_mean("zzz", ["web", "api"]) == "known: api, web"
    assert did_you_mean("web", []) == "none is known yet"


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    assert "corral schema" in (caught.value.hint or "")
    return list(caught.value.problems)


def test_a_misspelled_spec_key_is_located_and_gets_a_did_you_mean() -> None:
    assert problems(SPEC.replace("replicas = 3", "replicsa = 3")) == [
        "corral.toml:6:1: services.web.replicsa: unknown key; did you mean replicas?"]
    assert problems(SPEC + 'rolling = { max_surge = 1, maxunavailable = 0 }\n') == [
        "corral.toml:9:28: services.web.rolling.maxunavailable: unknown key; "
        "did you mean max_unavailable?"]
    assert problems(SPEC.replace("[project]", "[projet]"))[-1] == \
        "corral.toml:1:1: projet: unknown key; did you mean project?"


def test_spec_values_of_the_wrong_kind_say_what_was_expected_in_plain_words() -> None:
    said = {
        'replicas = "three"': "services.web.replicas: must be a whole number, not 'three'",
        "replicas = -1": "services.web.replicas: must be at least 0, not -1",
        "port = 99999": "services.web.port: must be at most 65535, not 99999",
        'strategy = "rolling-update"': "services.web.strategy: must be one of 'rolling', "
                                       "'blue-green' or 'canary', not 'rolling-update'; "
                                       "did you mean rolling?",
    }
    for line, message in said.items():
        key = line.split(" = ")[0]
        text = "\n".join(line if row.startswith(key + " =") else row
                         for row in SPEC.splitlines())
        (problem,) = problems(text)
        assert problem.endswith(message), problem
        assert "Input should" not in problem and "valid integer" not in problem


def test_list_items_are_named_with_their_index() -> None:
    text = ('[project]\nname = "shop"\n\n[images.web]\n'
            'copy = [{ srcs = "app/", dest = "/app" }]\n')
    assert problems(text) == [
        "corral.toml:5:9: images.web.copy[0].src: required key is missing",
        "corral.toml:5:11: images.web.copy[0].srcs: unknown key; did you mean src?"]
    text = text.replace('"/app" }]', '"/app" }, { src = "etc/", dst = "/etc" }]')
    assert problems(text)[-1] == \
        "corral.toml:5:59: images.web.copy[1].dst: unknown key; did you mean dest?"


def release(config: dict[str, Any]) -> Release:
    return Release("web", 4, "sha256:a", "sha256:c", config, 0.0)


def test_a_plan_writes_durations_as_the_spec_does() -> None:
    old = {"image": "sha256:a", "replicas": 1, "blue_green": {"rollback_window": 900.0},
           "health": {"timeout": 0.5}}
    new = {**old, "blue_green": {"rollback_window": 600.0}, "health": {"timeout": 2.0}}
    running = Running("web", release(old),
                      [Instance("web-0", "web", 4, "sha256:a", "a", InstanceState.READY, 0.0)])
    plan = plan_changes({"web": Wanted("web", "sha256:a", new, 1)}, {"web": running})
    assert plan.changes[0].reason == ("blue_green.rollback_window 15m → 10m; "
                                      "health.timeout 500ms → 2s")
