"""An ASGI app that answers every request with what the server put in its scope, for
`chat-storage serve --app scope_echo:create_app`: how the servers fill the scope is the
point (proxy headers, scheme, client address), not the service."""

import json

from starlette.types import ASGIApp, Receive, Scope, Send


def create_app() -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] == 'lifespan':
            while True:
                message = await receive()
                if message['type'] == 'lifespan.startup':
                    await send({'type': 'lifespan.startup.complete'})
                elif message['type'] == 'lifespan.shutdown':
                    await send({'type': 'lifespan.shutdown.complete'})
                    return
        client = scope.get('client')
        body = json.dumps(
            {
                'scheme': scope.get('scheme'),
                'client': None if client is None else client[0],
                'path': scope.get('path'),
            }
        ).encode()
        await send(
            {
                'type': 'http.response.start',
                'status': 200,
                'headers': [(b'content-type', b'application/json')],
            }
        )
        await send({'type': 'http.response.body', 'body': body})

    return app
