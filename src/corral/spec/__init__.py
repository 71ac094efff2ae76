"""The spec: corral.toml loaded and validated into frozen models. Pure; no I/O but reading."""

from corral.spec.load import DEFAULT_SPEC, LoadedSpec, load_spec, parse_spec, spec_digest
from corral.spec.model import ImageSpec, ServiceSpec, Spec

__all__ = ["DEFAULT_SPEC", "ImageSpec", "LoadedSpec", "ServiceSpec", "Spec", "load_spec",
           "parse_spec", "spec_digest"]
