"""POST /v1/ingest as a plain ASGI callable in front of the Starlette application.

Every box's upload takes this path, and Starlette's routing, middleware and Request object cost
about as much of the event loop as TLS and HTTP parsing together (bench/cloud/profile_worker.py).
This handles exactly that path and method with the endpoint's own handler (Endpoint.ingest_body:
the same limits, logs, refusals and answers) and passes every other request to the application.
"""
from starlette.requests import ClientDisconnect

INGEST = "/v1/ingest"


async def _chunks(receive):
    """The request body's chunks as they arrive; ClientDisconnect if the client goes away."""
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


class IngestFastPath:
    """ASGI: POST /v1/ingest straight to `endpoint`, anything else to `app`."""

    def __init__(self, app, endpoint):
        self.app, self.endpoint = app, endpoint
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != INGEST or scope["method"] != "POST" or scope.get("root_path"):
            return await self.app(scope, receive, send)
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value.decode("latin-1")
                break
        client = scope.get("client")
        response = await self.endpoint.ingest_body(length, client[0] if client else "-", _chunks(receive))
        await response(scope, receive, send)
