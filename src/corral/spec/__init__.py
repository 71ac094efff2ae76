"""The spec: corral.toml loaded and validated into frozen models. Pure; no I/O but reading.

Names are imported on first use: pydantic (the models) costs a tenth of a second of CLI
start-up, which commands that only talk to the controller never need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.spec.load import DEFAULT_SPEC, LoadedSpec, load_spec, parse_spec, spec_digest
    from corral.spec.model import ImageSpec, ServiceSpec, Spec

__all__ = ["DEFAULT_SPEC", "ImageSpec", "LoadedSpec", "ServiceSpec", "Spec", "load_spec",
           "parse_spec", "spec_digest"]

_HOMES = {"ImageSpec": "model", "ServiceSpec": "model", "Spec": "model"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_HOMES.get(name, 'load')}")
    return getattr(module, name)
