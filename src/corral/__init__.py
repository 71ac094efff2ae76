"""corral: immutable infrastructure for services."""

__version__ = "0.1.0"
