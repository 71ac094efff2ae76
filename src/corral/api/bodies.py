"""The JSON bodies the API's POST routes accept, validated before a handler runs.

Every POST route names its body model (`@route(..., body=DeployBody)`; NoBody for `{}`);
the server validates the request against it and answers 400 with the first bad field
named, so no engine call ever sees a missing, unknown or mistyped field. Query numbers
are read with `query_int`, whose BadBody is a 400 too. Each model mirrors the engine
request it becomes (tests/integration/test_api_client.py checks the fields match). Shape
only: whether a service or release exists is the engine's answer, not this module's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from corral.core.access import TOKEN_NAME_PATTERN
from corral.core.strategies import STRATEGIES


class Body(BaseModel):
    """Unknown keys are errors and values are not coerced ("1" is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoBody(Body):
    """POST routes that take no fields (promote, abort, reconcile): `{}` only."""


class PushBody(Body):
    """POST /v1/pipeline/push: a git host's push event. Only `ref` is read; the rest of
    the host's payload (commits, repository, sender, …) is ignored, not refused, since each
    host sends its own."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    ref: str | None = None


class ShutdownBody(Body):
    """POST /v1/shutdown: leave instances and the router running when true."""

    keep_instances: bool = False


class DeployBody(Body):
    """POST /v1/deploy: engine.deploy.DeployRequest, but for its actor: the server names
    who calls from the credentials, never from the body (an `actor` field is refused)."""

    service: str = Field(min_length=1)
    image_digest: str = Field(min_length=1)
    config: dict[str, Any]
    git_commit: str | None = None
    git_commit_time: float | None = None
    force: bool = False
    strategy: str | None = None
    reserve_memory: int = Field(default=0, ge=0)
    reserve_cpus: float = Field(default=0.0, ge=0)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str | None) -> str | None:
        if value is not None and value not in STRATEGIES:
            raise ValueError(f"must be one of {', '.join(STRATEGIES)}")
        return value


class RollbackBody(Body):
    """POST /v1/rollback: engine.rollback.RollbackRequest, its actor from the credentials."""

    service: str = Field(min_length=1)
    to: int | None = Field(default=None, ge=1)


class WaitBody(Body):
    """POST /v1/deployments/{id}/wait: engine.outcome.await_outcome's limit."""

    timeout: float = Field(default=300.0, gt=0, le=3600)


class ChaosBody(Body):
    """POST /v1/chaos: engine.chaos.ChaosRequest."""

    service: str | None = None
    kill: int = Field(default=1, ge=1)
    interval: float = Field(default=5.0, ge=0)
    duration: float = Field(default=120.0, ge=0)
    drift: bool = False
    seed: int | None = None
    restore_timeout: float = Field(default=60.0, gt=0)
    load: bool = False


class TokenBody(Body):
    """POST /v1/tokens: a token's name, role and lifetime in seconds (None: no expiry)."""

    name: str = Field(pattern=TOKEN_NAME_PATTERN)
    role: Literal["viewer", "deployer", "admin"]
    expires: float | None = Field(default=None, gt=0)


class BadBody(ValueError):
    """A body that does not validate: `field` is its dotted key path ("" for the whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def query_int(query: dict[str, str], name: str, default: int) -> int:
    """The query parameter `name` as a whole number (0 or more); raises BadBody.

    >>> query_int({"limit": "20"}, "limit", 100), query_int({}, "limit", 100)
    (20, 100)
    """
    value = query.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()):
        raise BadBody(name, f"{name}: must be a whole number, not {value!r}")
    return int(value)


def validated(model: type[Body], body: Any) -> dict[str, Any]:
    """`body` checked against `model`, with its defaults filled in; raises BadBody.

    >>> validated(RollbackBody, {"service": "web"})
    {'service': 'web', 'to': None}
    >>> validated(RollbackBody, {"service": "web", "to": "3"})
    Traceback (most recent call last):
    ...
    corral.api.bodies.BadBody: to: Input should be a valid integer
    """
    if not isinstance(body, dict):
        raise BadBody("", f"the body must be a JSON object, not {type(body).__name__}")
    try:
        return model.model_validate(body).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = ("unknown field" if first["type"] == "extra_forbidden"
                   else str(first["ctx"]["error"]) if first["type"] == "value_error"
                   else first["msg"])
        raise BadBody(field, f"{field}: {message}") from None
