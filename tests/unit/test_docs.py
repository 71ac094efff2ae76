"""The docs keep up with the code: the spec reference is generated, every command has a page."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from corral.cli.main import COMMAND_MODULES, cli

ROOT = Path(__file__).resolve().parents[2]


def test_the_spec_reference_is_generated_from_the_current_models() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_spec_docs.py"),
                           "--check"], capture_output=True)
    assert done.returncode == 0, "docs/spec.md is stale: run scripts/gen_spec_docs.py"


def test_every_command_has_a_page_in_docs_commands() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    missing = [name for name in cli.commands
               if not (ROOT / "docs" / "commands" / f"{name}.md").exists()]
    assert missing == []
