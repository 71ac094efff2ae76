"""The CLI's client for the controller API on its unix socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from corral.errors import ControllerError, CorralError, LockHeld, NotFound

_ERRORS: dict[str, type[CorralError]] = {"NotFound": NotFound, "LockHeld": LockHeld}


def raise_error(error: dict[str, Any]) -> None:
    kind = _ERRORS.get(str(error.get("type")), CorralError)
    raise kind(str(error.get("message")), hint=error.get("hint"))


class ControllerClient:
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)),
                                  base_url="http://corral", timeout=timeout)

    def is_up(self) -> bool:
        try:
            return self._http.get("/v1/ping", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    def get(self, path: str, **params: Any) -> Any:
        return self._answer(lambda: self._http.get(path, params=params or None))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._answer(lambda: self._http.post(path, json=body))

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST and yield each NDJSON event; raises the error event as a CorralError."""
        try:
            with self._http.stream("POST", path, json=body, timeout=None) as response:
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "error":
                        raise_error(event["error"])
                    yield event
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _answer(self, call: Any) -> Any:
        try:
            response = call()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        body = response.json()
        if response.status_code >= 400 and "error" in body:
            raise_error(body["error"])
        return body

    def _unreachable(self, exc: Exception) -> ControllerError:
        return ControllerError(f"the controller is not running (no answer on {self.socket_path})",
                               hint="start it with `corral up -d`")

    def close(self) -> None:
        self._http.close()
