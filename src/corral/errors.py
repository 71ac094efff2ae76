"""Every error corral raises on purpose, in one hierarchy.

The CLI prints any `CorralError` as a one-paragraph message with no traceback: a user
mistake deserves a sentence saying what was wrong, where, and what to do about it.
Anything else escaping is a bug in corral and keeps its traceback.

    CorralError                      base; `.hint` says what to do next
    ├── SpecError                    corral.toml is unreadable or invalid (file, key, line:col)
    ├── ImageError                   an image cannot be built, found, read or unpacked
    │   └── UnsafeLayerError         a layer tries to escape its root (traversal, devices, …)
    ├── DriverError                  an instance cannot be started, listed or stopped
    │   └── SandboxUnavailable       bubblewrap is missing or cannot create namespaces
    ├── RouterError                  the router cannot listen, or its control socket fails
    ├── StoreError                   the state database is unreadable or too new
    │   ├── LockHeld                 another deployment of the service holds its lock
    │   └── Fenced                   this controller lost its lease: it must stop acting
    ├── DeployError                  a deployment failed; the old release keeps serving
    ├── ControllerError              the controller is not running or did not answer
    ├── AccessDenied                 the API refused a request: no, bad or weak credentials
    ├── BackupError                  a backup cannot be written, or a backup file is
    │                                truncated, altered or not corral's
    └── NotFound                     a named service, release, image or instance does not exist
"""

from __future__ import annotations


class CorralError(Exception):
    """A failure a user can understand and act on."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SpecError(CorralError):
    """The spec file is missing, is not TOML, or does not validate."""

    def __init__(self, message: str, *, problems: list[str] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [self.message, *(f"  {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class ImageError(CorralError):
    """An image cannot be built, resolved, read or unpacked."""


class UnsafeLayerError(ImageError):
    """A layer holds an entry that would write outside its root or create a device."""


class DriverError(CorralError):
    """An instance cannot be started, listed or stopped."""


class SandboxUnavailable(DriverError):
    """bubblewrap is not installed or cannot create the namespaces it needs."""


class RouterError(CorralError):
    """The router cannot listen on its address or does not answer on its control socket."""


class StoreError(CorralError):
    """The state database cannot be opened or migrated."""


class LockHeld(StoreError):
    """Another deployment holds the service's lock."""


class Fenced(StoreError):
    """A write refused because the writer's controller lease has passed to another."""


class DeployError(CorralError):
    """A deployment did not reach its target; the previous release still serves."""


class BackupError(CorralError):
    """A backup cannot be taken or restored, or its file fails verification."""

    exit_code = 4  # as `ledger verify` on a broken chain: the evidence is not intact


class ControllerError(CorralError):
    """The controller is not running, or did not answer."""


class NotFound(CorralError):
    """A named service, release, image or instance does not exist."""


class AccessDenied(CorralError):
    """The controller's API refused the request: `status` is 401 (no valid token), 403 (the
    token's role may not do this) or 429 (too many failed attempts from this address)."""

    def __init__(self, message: str, *, status: int = 401, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
