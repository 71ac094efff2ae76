"""Write docs/spec.md from the spec models, so the reference and the validation cannot drift.

Run `python scripts/gen_spec_docs.py` after changing src/corral/spec/model.py; a test fails
while docs/spec.md is out of date.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from corral.spec.duration import duration_keys, format_duration
from corral.spec.model import (
    BackupSchedule,
    BlueGreenSpec,
    CanarySpec,
    CapacitySpec,
    ContainerDriverSpec,
    ControllerSpec,
    CopyStep,
    EnvironmentSpec,
    GcSpec,
    HealthSpec,
    ImageSpec,
    Project,
    ResourcesSpec,
    RollingSpec,
    RouterSpec,
    RunStep,
    SecretRef,
    ServiceOverlay,
    ServiceSpec,
    SwarmDriverSpec,
)
from corral.spec.pipeline import PipelineSpec, StageSpec

OUT = Path(__file__).resolve().parent.parent / "docs" / "spec.md"

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("[project]", Project),
    ("backup = {…} (in [project])", BackupSchedule),
    ("[images.NAME]", ImageSpec),
    ("copy = [{…}] entries", CopyStep),
    ("run = [{…}] entries", RunStep),
    ("[services.NAME]", ServiceSpec),
    ("router = {…}", RouterSpec),
    ("health = {…}", HealthSpec),
    ("rolling = {…}", RollingSpec),
    ("blue_green = {…}", BlueGreenSpec),
    ("canary = {…}", CanarySpec),
    ('{ secret = "NAME" } (in env and files)', SecretRef),
    ("resources = {…}", ResourcesSpec),
    ("[gc]", GcSpec),
    ("[capacity]", CapacitySpec),
    ("[drivers.container]", ContainerDriverSpec),
    ("[drivers.swarm]", SwarmDriverSpec),
    ("[environments.NAME]", EnvironmentSpec),
    ("[environments.NAME.services.SERVICE]", ServiceOverlay),
    ("[pipeline]", PipelineSpec),
    ("[[pipeline.stages]]", StageSpec),
    ("[controller]", ControllerSpec),
]

INTRO = """# corral.toml reference

Generated from `src/corral/spec/model.py` by `scripts/gen_spec_docs.py`; do not edit by hand.
Unknown keys are errors. Durations are strings such as `"500ms"`, `"10s"`, `"15m"`, `"1h"`,
`"7d"`, `"1w"` (the CLI's `--since`, `--interval` and `--duration` options take the same forms).
Sizes are strings such as `"512k"`, `"256M"`, `"1.5G"` (binary units) or a number of bytes.
`corral validate` checks a spec and names the file, key, line and column of every problem;
`corral schema` prints the JSON Schema for editor completion.

```toml
[project]
name = "shop"

[images.web]
base = "debian:bookworm"
packages = ["python3"]
copy = [{ src = "app/", dest = "/app" }]
env = { APP_VERSION = "1" }
workdir = "/app"
entrypoint = ["python3", "/app/server.py"]

[services.web]
image = "web"
replicas = 3
port = 8000
env = { GREETING = "hello" }
router = { listen = "127.0.0.1:8080" }
health = { path = "/healthz", interval = "1s", healthy_after = 1, unhealthy_after = 3 }
strategy = "rolling"
rolling = { max_surge = 1, max_unavailable = 0 }
```
"""


def _default(info: FieldInfo, is_duration: bool = False) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(table defaults)"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if is_duration and isinstance(value, int | float):
        return f'`"{format_duration(value)}"`'  # as a user writes it in corral.toml
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`".replace("'", '"')


def render() -> str:
    lines = [INTRO]
    for title, model in SECTIONS:
        lines += [f"## {title}", "", inspect.cleandoc(model.__doc__ or ""), "",
                  "| key | default | meaning |", "|---|---|---|"]
        durations = duration_keys(model)
        for name, info in model.model_fields.items():
            key = info.alias or name
            default = _default(info, key in durations)
            lines.append(f"| `{key}` | {default} | {info.description or ''} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.exists() and OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT}")
