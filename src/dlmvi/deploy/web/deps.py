"""What a request handler of ``dlmvi serve`` is given (FastAPI ``Depends``): the server's state
and the access check. The state lives on the application (``app.state.server``), set once by
:func:`dlmvi.deploy.server.create_app`; routers never build or hold it themselves."""

from __future__ import annotations

import secrets

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dlmvi.deploy.web.state import Server

bearer = HTTPBearer(auto_error=False, description="the token printed by `dlmvi serve`")


def get_server(request: Request) -> Server:
    """The :class:`~dlmvi.deploy.web.state.Server` of the application handling ``request``."""
    return request.app.state.server


def authorised(server: Server = Depends(get_server),
               cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """Refuse (401) a request without the server's access token, when the server has one."""
    token = server.config.token
    if token is None:
        return
    if cred is None or not secrets.compare_digest(cred.credentials.encode(), token.encode()):
        raise HTTPException(401, "this server requires its access token: open the address printed by "
                            "`dlmvi serve` (it ends with #token=...), or send 'Authorization: Bearer TOKEN'",
                            headers={"WWW-Authenticate": "Bearer"})
