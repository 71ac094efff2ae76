"""The pipeline's push webhook: `POST /v1/pipeline/push`, sent by a git host (GitHub,
Gitea, Forgejo) on each push, signed with HMAC-SHA256 of its body by the shared secret.
The server checks the signature before this handler runs (api/server.py, SIGNED); a push
to the [pipeline] branch queues its head (engine/pipeline/pushes.py), another branch's is
acknowledged and ignored. Edges only: the engine decides what runs."""

from __future__ import annotations

from typing import Any

from corral.api.bodies import PushBody
from corral.api.routes import Request, route
from corral.core.access import SIGNED
from corral.core.pipeline import is_push_to
from corral.engine.controller import Controller
from corral.errors import NotFound


@route("POST", "/v1/pipeline/push", role=SIGNED, body=PushBody)
def push(controller: Controller, request: Request) -> dict[str, Any]:
    pushes = controller.pushes
    if pushes is None:
        raise NotFound("this project has no [pipeline] to run on a push",
                       hint="docs/spec.md's [pipeline] shows one")
    ref = request.body["ref"]
    if not is_push_to(ref, pushes.branch):
        return {"queued": False, "reason": f"{ref} is not the pipeline's branch "
                f"{pushes.branch}"}
    pushes.push_received()
    return {"queued": True, "branch": pushes.branch}
