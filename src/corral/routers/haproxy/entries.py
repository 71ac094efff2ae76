"""What the HAProxy adapter keeps per service: its listen address, TLS, timeouts and the
server slots of its backend (free, or holding one corral backend with its weight and release).

Plain data with its JSON form (state.py persists it); config.py renders it as haproxy.cfg and
preview.py as preview maps. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Slot:
    """One `server` line of a backend: free, or holding one corral backend."""

    name: str
    address: str = ""  # "" when free
    weight: int = 0
    release: str = ""
    instance: str = ""
    retiring: bool = False  # no longer listed: drained, freed once idle
    seen: dict[str, int] = field(default_factory=dict)  # raw counters at the last read

    @property
    def is_free(self) -> bool:
        return not self.address

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ServiceEntry:
    listen: str
    slots: list[Slot]
    tls_pem: str | None = None  # combined cert+key file for `bind … ssl crt`
    timeouts: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"listen": self.listen, "tls_pem": self.tls_pem, "timeouts": self.timeouts,
                "slots": [s.to_json() for s in self.slots]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceEntry:
        return cls(data["listen"], [Slot(**s) for s in data["slots"]], data.get("tls_pem"),
                   dict(data.get("timeouts") or {}))
