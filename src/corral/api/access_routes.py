"""Routes of access: the token book (admin only). A new token is in the answer of its
creation and nowhere else; listings never show a token or its digest."""

from __future__ import annotations

import time
from typing import Any

from corral.api.bodies import NoBody, TokenBody
from corral.api.routes import Request, route
from corral.engine.access.tokens import create_token, revoke_token, token_view
from corral.engine.controller import Controller


@route("GET", "/v1/tokens", role="admin")
def tokens(controller: Controller, request: Request) -> dict[str, Any]:
    now = time.time()
    return {"tokens": [token_view(r, now) for r in controller.ws.tokens.records()]}


@route("POST", "/v1/tokens", role="admin", body=TokenBody)
def create(controller: Controller, request: Request) -> dict[str, Any]:
    body = request.body
    token = create_token(controller.ws.tokens, controller.ws.store, request.actor, body["name"],
                         body["role"], body["expires"], time.time())
    return {"name": body["name"], "role": body["role"], "token": token}


@route("POST", "/v1/tokens/{name}/revoke", role="admin", body=NoBody)
def revoke(controller: Controller, request: Request) -> dict[str, Any]:
    now = time.time()
    record = revoke_token(controller.ws.tokens, controller.ws.store, request.actor,
                          request.params["name"], now)
    return token_view(record, now)
