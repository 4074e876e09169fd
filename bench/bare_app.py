"""The service's application plus one bare route: the framework's ceiling on the same server.

`GET /bench/bare` answers a constant small JSON document without touching metadata or
disk, so its requests/s is what the server and framework manage at most; every small
request of the service is compared with it. The bench serves this factory instead of
`api.app:create_app`; every other route is the service's own.
"""

from fastapi import FastAPI

from api.app import create_app as create_service_app
from bench import BARE_PATH

BARE_BODY = {'status': 'ok'}


def create_app() -> FastAPI:
    app = create_service_app()

    @app.get(BARE_PATH, include_in_schema=False)
    async def bare() -> dict[str, str]:
        return BARE_BODY

    return app
