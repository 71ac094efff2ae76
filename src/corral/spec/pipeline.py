"""[pipeline]: each commit of a git branch taken through build, test, deploy, smoke and
promote stages, in the order written (`corral pipeline run`, `corral watch`).

Shape and ranges only; which environments and images exist is checked with the whole spec
(spec/environments.py's check_pipeline, run by load.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from corral.spec.fields import Duration, SpecModel

# The keys each stage kind may set besides `kind`: a key another kind uses is an error,
# so a stage never silently ignores what its author wrote.
STAGE_KEYS: dict[str, set[str]] = {
    "build": set(),
    "test": {"image", "command", "timeout"},
    "deploy": {"env", "service", "approve"},
    "smoke": {"env", "service", "path", "expect_status", "expect_body", "timeout"},
    "promote": {"from_", "env", "service", "approve"},
}


class StageSpec(SpecModel):
    """One `[[pipeline.stages]]` entry. build: every image of the commit's spec. test: run
    `command` in a sandbox from the freshly built `image`; exit 0 passes. deploy: every
    service (or `service`) to `env`. smoke: GET `path` on `env`'s router for `service`.
    promote: the digests live and healthy in `from` to `env`. `approve = true` waits for
    `corral approve RUN` before a deploy or promote."""

    kind: Literal["build", "test", "deploy", "smoke", "promote"] = Field(
        description="What the stage does.")
    env: str | None = Field(default=None, description="deploy, smoke: the environment; "
                            "promote: the target environment.")
    from_: str | None = Field(default=None, alias="from",
                              description="promote: the source environment.")
    service: str | None = Field(default=None, description="deploy, smoke, promote: one "
                                "service (default: every service; smoke: the first routed).")
    image: str | None = Field(default=None, description="test: the image the command runs "
                              "in (default: the spec's only image).")
    command: tuple[str, ...] = Field(default=(), description="test: program and arguments.")
    path: str = Field(default="/", description="smoke: the HTTP path requested.")
    expect_status: int = Field(default=200, ge=100, le=599,
                               description="smoke: the status that passes.")
    expect_body: str | None = Field(default=None,
                                    description="smoke: text the answer must contain.")
    timeout: Duration = Field(default=60.0, description="test, smoke: longest the stage may "
                              "take (smoke retries until it passes or this runs out).")
    approve: bool = Field(default=False, description="deploy, promote: wait for `corral "
                          "approve RUN` first.")

    @model_validator(mode="after")
    def _keys_of_kind(self) -> StageSpec:
        allowed = STAGE_KEYS[self.kind] | {"kind"}
        extra = sorted((type(self).model_fields[k].alias or k) for k in self.model_fields_set
                       if k not in allowed)
        if extra:
            raise ValueError(f"a {self.kind} stage does not take {', '.join(extra)}")
        if self.kind == "test" and not self.command:
            raise ValueError('a test stage needs command = ["program", "arg", …]')
        if self.kind in ("deploy", "smoke", "promote") and self.env is None:
            raise ValueError(f"a {self.kind} stage needs env = \"NAME\"")
        if self.kind == "promote" and self.from_ is None:
            raise ValueError('a promote stage needs from = "NAME"')
        return self


class PipelineSpec(SpecModel):
    """`[pipeline]`: where commits come from and the stages each goes through."""

    source: str = Field(description="The git repository: a URL or a path (relative to the "
                        "spec's folder).")
    branch: str = Field(default="main", description="The branch followed.")
    poll: Duration = Field(default=1.0, description="`corral watch`: time between two "
                           "looks at the branch (a signed webhook triggers at once).")
    stages: tuple[StageSpec, ...] = Field(description="The stages, in order.", min_length=1)
