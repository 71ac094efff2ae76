"""Every worked example in corral's docstrings holds: each module whose source has a `>>>`
example is run through doctest."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import corral

SOURCE = Path(corral.__file__).parent
MODULES = sorted(
    "corral." + ".".join(path.relative_to(SOURCE).with_suffix("").parts)
    for path in SOURCE.rglob("*.py") if ">>>" in path.read_text())


def test_examples_are_found_across_the_packages() -> None:
    assert {m.split(".")[1] for m in MODULES} >= {"core", "engine", "images", "spec"}


@pytest.mark.parametrize("module", MODULES)
def test_the_examples_in_the_module_hold(module: str) -> None:
    failed, tried = doctest.testmod(importlib.import_module(module))
    assert tried > 0 and failed == 0
