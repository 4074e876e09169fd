"""The composition root: `create_app()` wires settings, backends, storage and routers."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from adapter.blob_store import BlobStore
from adapter.chat_view import ChatViews
from fastapi import FastAPI

from adapter.clock import SystemClock
from adapter.id_generator import UuidGenerator
from api.body import install_body_chunk_timeout, install_parsed_body_limit
from api.container import Services, build_services
from api.drain import install_drain
from api.gateway import install_identity_first
from api.logs import ensure_logging
from api.observability import install_observability
from api.openapi_docs import finish_openapi
from api.problems import install_problem_handlers
from api.routers import chats, export, files, health, history, links, sandbox, workspace
from api.settings import Settings, SettingsError, load_settings, metadata_config
from repository.factory import create_metadata_backend
from usecase.interface import Clock, IdGenerator, Tracer

logger = logging.getLogger('chat_storage')

DESCRIPTION = """\
Storage for workspaces, chats, their `history.md` and attachments.

Every `/v1` request carries the caller's id in `X-User-Id` (set by the trusted gateway)
and, when the service has a gateway token, `Authorization: Bearer <token>`. Every error is
an RFC 9457 `application/problem+json` body whose `code` is the stable token to branch on.
"""


class State(TypedDict):
    services: Services


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    tracer: Tracer | None = None,
) -> FastAPI:
    """Build the application; nothing connects until the lifespan starts."""
    if settings is None:
        try:
            settings = load_settings()
        except SettingsError as error:
            # one clear line instead of a traceback, then stop
            raise SystemExit(f'chat-storage: {error}') from None
    resolved: Settings = settings
    ensure_logging(resolved.log_level, resolved.log_format)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        backend = create_metadata_backend(metadata_config(resolved))
        await backend.connect()
        try:
            await backend.migrate()
            blobs = BlobStore(resolved.data_dir)
            views = ChatViews(resolved.data_dir)
            services = build_services(
                resolved, backend, blobs, views, clock or SystemClock(), ids or UuidGenerator()
            )
            logger.info('chat-storage ready (metadata: %s)', backend.backend_name)
            yield {'services': services}
        finally:
            await backend.close()

    app = FastAPI(
        title='chat-storage',
        version='1.0.0',
        summary='Workspaces, chats, history and attachments over HTTP',
        description=DESCRIPTION,
        lifespan=lifespan,
        # a path with a slash too many is a 404 problem like any unknown path: Starlette's
        # redirect would build its `Location` from the `Host` the client sent
        redirect_slashes=False,
        openapi_tags=[
            {'name': 'workspace', 'description': "The caller's one workspace and its quota"},
            {'name': 'chats', 'description': 'Chats of the workspace'},
            {'name': 'history', 'description': "A chat's history.md"},
            {'name': 'files', 'description': "A chat's attachments"},
            {'name': 'sandbox', 'description': 'Sandbox sessions working in a chat directory'},
            {'name': 'operations', 'description': 'Health and readiness'},
        ],
    )
    install_problem_handlers(app)
    for module in (workspace, chats, history, files, links, export, sandbox, health):
        app.include_router(module.router)
    install_parsed_body_limit(app)
    install_identity_first(app, resolved.gateway_token)
    install_observability(app, tracer=tracer, settings=resolved)
    # unread bodies of early refusals are read so that the answer arrives
    install_drain(app)
    # outermost: every wait for a body's next chunk is bounded, the drain's too
    install_body_chunk_timeout(app, resolved.body_chunk_timeout_seconds)
    _register_problem_schema(app)
    return app


def _register_problem_schema(app: FastAPI) -> None:
    """Finish the generated OpenAPI document (shared `Problem` schema, gateway header)."""
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        # a signed link's parameters are plain strings, read by the route: a malformed
        # link is `403 invalid_link`, never a 422
        return finish_openapi(
            original(),
            never_invalid=frozenset({(links.LINK_PATH, 'get')}),
            body_models=(links.LinkRequest,),
        )

    app.openapi = openapi  # type: ignore[method-assign]
