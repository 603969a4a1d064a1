"""The web application behind ``dlmvi serve``, in rooms: settings (:mod:`.config`), the state
shared by the requests (:mod:`.state`: the model, the prediction queue, pending uploads), the
request dependencies (:mod:`.deps`: the server state and the access token, injected with
FastAPI's ``Depends``), form parsing (:mod:`.forms`), the ASGI guard and logging (:mod:`.asgi`),
and one router per concern (:mod:`.routers`). :func:`dlmvi.deploy.server.create_app` assembles them.
"""
