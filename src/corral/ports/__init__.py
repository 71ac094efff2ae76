"""Ports: the typing.Protocol contracts between the engine and its adapters, and the
records that cross them. No behaviour lives here beyond pure methods on records."""
