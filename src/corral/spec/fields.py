"""What every spec model shares: the base model (frozen, unknown keys are errors) and the
Duration and Size types. Apart from model.py so that sections kept in modules of their own
(pipeline.py) can use them without an import circle."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from corral.spec.duration import DURATION_PATTERN, parse_duration
from corral.spec.size import SIZE_PATTERN, parse_size

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["500ms", "10s"]}),
]

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({"type": "string", "pattern": SIZE_PATTERN, "examples": ["256M", "1G"]}),
]


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
